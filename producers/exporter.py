"""Publishes events to Kafka with confluent-kafka, Avro-encoded, keyed by trace id.

The events of one trace in one export batch go out as one ``EventBatch`` record (a lone
event as itself): a Kafka record costs the stream worker about the same whatever it
carries, so a trace's spans flushed together are read, stored and assembled together.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from tracestream import schemas
from tracestream.producers.config import ProducerConfig
from tracestream.producers.processor import Event, RateLimitedWarning, SdkStats
from tracestream.schemas.event_writer import MAX_RECORD_BYTES, encode_events

logger = logging.getLogger("tracestream.producers")


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


kafka_client_logger = logging.getLogger("tracestream.producers.kafka")
kafka_client_logger.addFilter(_RateLimitFilter())


def producer_config(config: ProducerConfig) -> dict[str, Any]:
    sdk = config.sdk
    return config.kafka.confluent_config(
        {
            # Exactly once per partition and in order, even across the client's retries.
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": sdk.compression,
            "linger.ms": sdk.linger_ms,
            "batch.size": 1_000_000,
            # The topics' limit (tracestream admin init).
            "message.max.bytes": MAX_RECORD_BYTES,
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


def _keep_forever(client: Producer) -> None:
    """One more reference that is never released, so that not even the interpreter's
    shutdown deallocates ``client``."""
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(client))


class KafkaEventExporter:
    def __init__(self, config: ProducerConfig, producer: Producer | None = None) -> None:
        self.topic = config.events_topic
        self._codec = schemas.events_codec(config.kafka.schema_registry_url, topic=self.topic)
        self._batch_by_trace = config.sdk.batch_by_trace
        self._max_batch_events = config.sdk.max_batch_events
        self._max_batch_bytes = config.sdk.max_batch_bytes
        self._stats: SdkStats | None = None
        self._warn = RateLimitedWarning()
        # Events per record handed over so far, to count the events of records still queued.
        self._handed_events = 0
        self._handed_records = 0
        self._config = {**producer_config(config), "on_delivery": self._delivery_failed}
        self._producer = producer or Producer(self._config)

    def after_fork(self) -> None:
        # librdkafka's threads do not survive a fork: the inherited client can neither send
        # nor be destroyed (destroying it waits a second for threads that are not there and
        # logs an error), so it is kept alive for good and the child gets a client of its own.
        _keep_forever(self._producer)
        self._producer = Producer(self._config)
        self._handed_events = self._handed_records = 0
        self._stats = None
        self._warn = RateLimitedWarning()

    def _delivery_failed(self, error: KafkaError | None, message: Message) -> None:
        if error is None or self._stats is None:
            return
        self._stats.add(lost_in_delivery=self._events_in(message.value()))
        self._warn("tracestream: an event was not delivered to Kafka: %s", error.str())

    def _events_in(self, value: bytes | None) -> int:
        # Only on a failed delivery: the record itself says how many events it carried.
        try:
            return len(schemas.events_of(self._codec.decode(value or b"")["event"]))
        except schemas.DecodeError:
            return 1

    def export(self, events: list[Event], stats: SdkStats) -> None:
        self._stats = stats
        encoded = encode_events(
            self._codec,
            events,
            by_trace=self._batch_by_trace,
            max_events=self._max_batch_events,
            max_bytes=self._max_batch_bytes,
        )
        if encoded.failures:
            # Each costs only itself (the writer encodes its batch one event at a time).
            stats.add(failed=len(encoded.failures))
            self._warn(
                "tracestream: an event could not be encoded and was dropped: %s", encoded.failures[0].error
            )
        produce = self._producer.produce
        for key, value, count in encoded.records:
            try:
                produce(self.topic, value, key)
            except BufferError:
                # The client's own queue is full (Kafka unreachable for long): drop, count.
                self._producer.poll(0)
                stats.add(dropped=count)
                self._warn("tracestream: Kafka client queue full, dropping events")
                continue
            except Exception as exc:  # e.g. a record larger than message.max.bytes
                stats.add(failed=count)
                self._warn("tracestream: an event could not be produced: %s", exc)
                continue
            self._handed_events += count
            self._handed_records += 1
            stats.add(handed=count)
        self._producer.poll(0)

    def poll(self) -> None:
        self._producer.poll(0)

    def outstanding(self) -> int:
        """Events in records the client has not delivered yet. The client reports failures only
        (a callback per delivered record would cost more than producing it), so the events of
        queued records are estimated from the average per record; 0 once flushed, exactly."""
        queued = len(self._producer)
        if not queued or not self._handed_records:
            return queued
        return min(self._handed_events, round(queued * self._handed_events / self._handed_records))

    def flush(self, timeout_s: float) -> int:
        return self._producer.flush(timeout_s)

    def shutdown(self) -> None:
        # What could not be sent by now never will be: purge it, so that its delivery
        # reports count it as failed rather than leaving it pending forever.
        if self._producer.flush(0.5):
            self._producer.purge()
            self._producer.flush(1.0)
