"""Reading the alerts topic: what `tracestream alerts tail` prints and the main job's `ALERT` lines."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from tracestream import schemas
from tracestream.admin import AdminError, KafkaUnreachableError, kafka_client_logger
from tracestream.settings import Settings

logger = logging.getLogger(__name__)

POLL_S = 0.5


class AlertsTopicMissingError(AdminError):
    """The alerts topic does not exist (``tracestream admin init`` creates it)."""


class AlertTail:
    """One consumer on the alerts topic for as long as it is open, so no alert is skipped between
    reads. It reads the partitions by assignment and commits nothing: tailing never takes alerts
    away from the alerting consumers, and it starts at once, without joining a group.

    Opening it checks that Kafka answers (else :class:`KafkaUnreachableError`) and fixes where
    reading starts: the oldest alert kept, or the end of each partition at that moment, so every
    alert produced after :meth:`open` returns is read.
    """

    def __init__(self, settings: Settings, from_beginning: bool = False) -> None:
        self.settings = settings
        self.from_beginning = from_beginning
        self._codec = schemas.alerts_codec(settings.kafka.schema_registry_url, settings.topics.alerts)
        self._consumer: Consumer | None = None

    def open(self) -> AlertTail:
        kafka = self.settings.kafka
        topic = self.settings.topics.alerts
        timeout_s = kafka.request_timeout_s
        consumer = Consumer(
            kafka.confluent_config(
                {
                    # Required by the client, never joined: partitions are assigned by hand.
                    "group.id": f"tracestream-alerts-tail-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    # Else librdkafka writes ~20 "Connection refused" lines a second to stderr
                    # while Kafka is down; the error below says it once.
                    "logger": kafka_client_logger,
                }
            )
        )
        try:
            try:
                metadata = consumer.list_topics(topic, timeout=timeout_s)
            except KafkaException as exc:
                reason = exc.args[0].str() if exc.args else str(exc)
                raise KafkaUnreachableError(
                    kafka.bootstrap_servers, f"no answer within {timeout_s:g} s: {reason}"
                ) from exc
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise AlertsTopicMissingError(
                    f"the alerts topic {topic} does not exist on Kafka at {kafka.bootstrap_servers} "
                    "(tracestream admin init creates it)"
                )
            partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(found.partitions)]
            if not self.from_beginning:
                for partition in partitions:
                    # The end as of now, not as of the first fetch: an alert produced right after
                    # open() returns is read, whatever the first poll's timing.
                    _, high = consumer.get_watermark_offsets(partition, timeout=timeout_s)
                    partition.offset = high
            consumer.assign(partitions)
        except BaseException:
            consumer.close()  # also hands librdkafka's queued log lines to the logger
            raise
        self._consumer = consumer
        return self

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> AlertTail:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def follow(
        self,
        stop: threading.Event | None = None,
        max_alerts: int | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Decoded ``TraceAlert`` records as they arrive, until ``stop`` is set, ``max_alerts``
        were read or ``timeout_s`` passed (each None: no limit). A record that does not decode is
        skipped."""
        if self._consumer is None:
            raise RuntimeError("AlertTail.follow() before open()")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        count = 0
        while max_alerts is None or count < max_alerts:
            if stop is not None and stop.is_set():
                return
            wait_s = POLL_S
            if deadline is not None:
                wait_s = min(wait_s, deadline - time.monotonic())
                if wait_s <= 0:
                    return
            message = self._consumer.poll(wait_s)
            if message is None:
                continue
            if message.error() is not None:
                logger.debug("alerts topic: %s", message.error())
                continue
            try:
                alert = self._codec.decode(message.value())
            except schemas.DecodeError:
                continue
            count += 1
            yield alert


def tail_alerts(
    settings: Settings,
    from_beginning: bool = False,
    max_alerts: int | None = None,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
) -> Iterator[dict[str, Any]]:
    """Decoded ``TraceAlert`` records as they arrive, through one :class:`AlertTail` for the whole
    iteration. Raises :class:`KafkaUnreachableError` on the first ``next()`` if Kafka does not
    answer."""
    with AlertTail(settings, from_beginning) as tail:
        yield from tail.follow(stop, max_alerts, timeout_s)
