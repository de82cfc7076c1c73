"""Publishes events to Kafka with confluent-kafka, Avro-encoded, keyed by trace id."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

import schemas
from producers.processor import Event, RateLimitedWarning, SdkStats
from tracestream.settings import Settings

logger = logging.getLogger("producers")


class _RateLimitFilter(logging.Filter):
    """Passes a given librdkafka message (e.g. "Connect to ... failed") at most once per
    interval: an unreachable broker must not flood the application's logs."""

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._last_seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = record.getMessage()[:120]
        now = time.monotonic()
        if now - self._last_seen.get(key, -self._interval_s) < self._interval_s:
            return False
        if len(self._last_seen) > 1_000:
            self._last_seen.clear()
        self._last_seen[key] = now
        return True


kafka_client_logger = logging.getLogger("producers.kafka")
kafka_client_logger.addFilter(_RateLimitFilter())


def producer_config(settings: Settings) -> dict[str, Any]:
    sdk = settings.sdk
    return settings.kafka.confluent_config(
        {
            # Exactly once per partition and in order, even across the client's retries.
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": sdk.compression,
            "linger.ms": sdk.linger_ms,
            "batch.size": 1_000_000,
            # The topics accept 8 MiB records (tracestream admin init).
            "message.max.bytes": 8 * 1024 * 1024,
            "queue.buffering.max.messages": max(sdk.max_queue_size, 100_000),
            "queue.buffering.max.kbytes": 512 * 1024,
            # How long the client retries an event before reporting it failed.
            "message.timeout.ms": sdk.delivery_timeout_ms,
            # librdkafka's own log lines go to Python logging, not to the application's stderr.
            "logger": kafka_client_logger,
            # Report failures only: a Python callback per delivered event would cost more than
            # producing it. Delivered = handed over - failed - still queued.
            "delivery.report.only.error": True,
        }
    )


class KafkaEventExporter:
    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        self.topic = settings.topics.events
        self._codec = schemas.events_codec(settings.kafka.schema_registry_url, topic=self.topic)
        self._stats: SdkStats | None = None
        self._warn = RateLimitedWarning()
        config = {**producer_config(settings), "on_delivery": self._delivery_failed}
        self._producer = producer or Producer(config)

    def _delivery_failed(self, error: KafkaError | None, message: Message) -> None:
        if error is None or self._stats is None:
            return
        self._stats.add(lost_in_delivery=1)
        self._warn("tracestream: an event was not delivered to Kafka: %s", error.str())

    def export(self, events: list[Event], stats: SdkStats) -> None:
        self._stats = stats
        encode = self._codec.encode_union
        produce = self._producer.produce
        topic = self.topic
        handed = 0
        for key, event in events:
            try:
                value = encode(*event)
            except schemas.EncodeError as exc:
                stats.add(failed=1)
                self._warn("tracestream: an event could not be encoded and was dropped: %s", exc)
                continue
            try:
                produce(topic, value, key)
                handed += 1
            except BufferError:
                # The client's own queue is full (Kafka unreachable for long): drop, count.
                self._producer.poll(0)
                stats.add(dropped=1)
                self._warn("tracestream: Kafka client queue full, dropping events")
            except Exception as exc:  # e.g. a record larger than message.max.bytes
                stats.add(failed=1)
                self._warn("tracestream: an event could not be produced: %s", exc)
        stats.add(handed=handed)
        self._producer.poll(0)

    def poll(self) -> None:
        self._producer.poll(0)

    def outstanding(self) -> int:
        return len(self._producer)

    def flush(self, timeout_s: float) -> int:
        return self._producer.flush(timeout_s)

    def shutdown(self) -> None:
        # What could not be sent by now never will be: purge it, so that its delivery
        # reports count it as failed rather than leaving it pending forever.
        if self._producer.flush(0.5):
            self._producer.purge()
            self._producer.flush(1.0)
