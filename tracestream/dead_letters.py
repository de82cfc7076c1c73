"""Dead letters: the record, and writing it from a confluent-kafka process (the indexer, the
webhook deliverer; the stream sends :func:`dead_letter_record` through its Faust topic).

A dead letter is a ``DeadLetter`` record on the dead-letter topic: why (``reason``, ``detail``),
where the record was read (topic, partition, offset), its key and value as read (replayable), and
which consumer gave up on it. :class:`DeadLetterWriter` produces them with an idempotent,
``acks=all`` producer of its own and counts the ones the broker did not take, so that
:meth:`DeadLetterWriter.flush` can say whether every dead letter since the last flush is durable:
a caller stores or commits the offset that carried a dead letter only once it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from confluent_kafka import Producer

from tracestream import schemas
from tracestream.settings import Settings

logger = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 2000  # kept in the record
LOGGED_DETAIL_CHARS = 300  # shown in the log line


class Source(Protocol):
    """Where a record was read from: confluent-kafka's ``Message`` is one."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


def dead_letter_record(
    reason: str,
    detail: str,
    source: tuple[str | None, int | None, int | None],
    key: bytes | None,
    value: bytes | None,
    consumer: str,
) -> dict[str, Any]:
    """A ``DeadLetter`` record; ``source`` is the topic, partition and offset it was read from."""
    topic, partition, offset = source
    return {
        "reason": reason,
        "detail": detail[:MAX_DETAIL_CHARS],
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "key": key,
        "value": value,
        "consumer": consumer,
        "time_ms": int(time.time() * 1000),
    }


class DeadLetterWriter:
    """Dead letters of one consumer (``consumer``: its name in the records) to the dead-letter topic.

    ``producer_config``: librdkafka properties for its producer beyond ``acks=all`` and
    idempotence; ``producer``: one to use instead (tests).
    """

    def __init__(
        self,
        settings: Settings,
        consumer: str,
        producer_config: Mapping[str, Any] | None = None,
        producer: Any = None,
    ) -> None:
        self.consumer = consumer
        self.topic = settings.topics.dead_letters
        self._flush_timeout_s = settings.kafka.request_timeout_s
        self._codec = schemas.dead_letters_codec(settings.kafka.schema_registry_url, self.topic)
        self._producer = producer or Producer(
            settings.kafka.confluent_config(
                {"acks": "all", "enable.idempotence": True, **(producer_config or {})}
            )
        )
        self._failures = 0

    def write(self, message: Source, reason: str, detail: str) -> None:
        """Produce a dead letter for ``message`` (asynchronously: :meth:`flush` waits for it)."""
        record = dead_letter_record(
            reason,
            detail,
            (message.topic(), message.partition(), message.offset()),
            message.key(),
            message.value(),
            self.consumer,
        )
        self._producer.produce(
            self.topic, key=message.key(), value=self._codec.encode(record), on_delivery=self._on_delivery
        )
        logger.warning(
            "dead-lettered %s[%d]@%d: %s %s",
            message.topic(),
            message.partition(),
            message.offset(),
            reason,
            detail[:LOGGED_DETAIL_CHARS],
        )

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self._failures += 1

    def flush(self) -> bool:
        """Wait for the dead letters written since the last flush: True once the broker has them
        all; False if one failed or is still unsent after the Kafka request timeout."""
        self._failures = 0
        remaining = self._producer.flush(self._flush_timeout_s)
        return not remaining and not self._failures

    def close(self, timeout_s: float = 10) -> None:
        """Send what is still queued, waiting at most ``timeout_s``."""
        self._producer.flush(timeout_s)
