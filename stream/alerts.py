"""Reading the alerts topic: what `tracestream alerts tail` prints."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer

import schemas
from tracestream.settings import Settings


def tail_alerts(
    settings: Settings,
    from_beginning: bool = False,
    max_alerts: int | None = None,
    timeout_s: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Decoded ``TraceAlert`` records as they arrive; a record that does not decode is skipped.

    Each call reads with its own consumer group and commits nothing: tailing never takes
    alerts away from the alerting consumers.
    """
    codec = schemas.alerts_codec(settings.kafka.schema_registry_url, settings.topics.alerts)
    consumer = Consumer(
        settings.kafka.confluent_config(
            {
                "group.id": f"tracestream-alerts-tail-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "enable.auto.commit": False,
            }
        )
    )
    consumer.subscribe([settings.topics.alerts])
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    count = 0
    try:
        while (max_alerts is None or count < max_alerts) and (
            deadline is None or time.monotonic() < deadline
        ):
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            try:
                yield codec.decode(message.value())
            except schemas.DecodeError:
                continue
            count += 1
    finally:
        consumer.close()
