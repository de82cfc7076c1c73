"""The dead-letter writer the indexer and the webhook deliverer share (tracestream/dead_letters.py):
the record it writes, and that flush reports a dead letter the broker did not take. No broker:
a fake producer, and a real one pointed at a closed port."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tracestream import schemas
from tracestream.dead_letters import DeadLetterWriter, dead_letter_record
from tracestream.settings import KafkaSettings, Settings


@dataclass
class Message:
    """Stands in for confluent-kafka's Message: where a record was read, and what it was."""

    topic_: str = "completed"
    partition_: int = 3
    offset_: int = 41
    key_: bytes | None = b"tr-1"
    value_: bytes | None = b"\x00not avro"

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_


@dataclass
class FakeProducer:
    """Queues what is produced; ``flush`` runs the delivery callbacks with ``errors`` (one per
    record, in order; missing ones succeed) and leaves ``unsent`` of them in the queue."""

    errors: list[Any] = field(default_factory=list)
    unsent: int = 0
    produced: list[dict[str, Any]] = field(default_factory=list)
    _queue: list[Callable[[Any, Any], None]] = field(default_factory=list)
    flush_timeouts: list[float] = field(default_factory=list)

    def produce(
        self, topic: str, key: bytes | None, value: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> None:
        self.produced.append({"topic": topic, "key": key, "value": value})
        self._queue.append(on_delivery)

    def flush(self, timeout: float) -> int:
        self.flush_timeouts.append(timeout)
        done, self._queue = (
            self._queue[: len(self._queue) - self.unsent],
            self._queue[len(self._queue) - self.unsent :],
        )
        for callback in done:
            callback(self.errors.pop(0) if self.errors else None, None)
        return len(self._queue)


def settings(**kafka: Any) -> Settings:
    base = Settings()
    return base.model_copy(
        update={
            "kafka": KafkaSettings(**{"schema_registry_url": None, "request_timeout_s": 2.0, **kafka}),
            "topics": base.topics.model_copy(update={"dead_letters": "test.deadletters"}),
        }
    )


def test_a_dead_letter_carries_the_reason_the_source_and_the_record_as_read() -> None:
    producer = FakeProducer()
    writer = DeadLetterWriter(settings(), "indexer", producer=producer)
    writer.write(Message(), "unindexable", "ValueError: " + "x" * 5000)

    [sent] = producer.produced
    assert sent["topic"] == "test.deadletters"
    assert sent["key"] == b"tr-1"
    record = schemas.dead_letters_codec().decode(sent["value"])
    assert record["reason"] == "unindexable"
    assert record["detail"].startswith("ValueError: x") and len(record["detail"]) == 2000
    assert (record["source_topic"], record["source_partition"], record["source_offset"]) == (
        "completed",
        3,
        41,
    )
    assert (record["key"], record["value"]) == (b"tr-1", b"\x00not avro")
    assert record["consumer"] == "indexer"
    assert record["time_ms"] > 0
    assert writer.flush() is True
    assert producer.flush_timeouts == [2.0]  # the Kafka request timeout


def test_the_record_the_stream_sends_has_the_same_layout() -> None:
    record = dead_letter_record("late_after_retention", "d", ("events", 0, 7), b"k", b"v", "stream")
    assert schemas.dead_letters_codec().decode(schemas.dead_letters_codec().encode(record)) == record


def test_a_failed_produce_makes_flush_report_failure_and_the_next_flush_starts_afresh() -> None:
    producer = FakeProducer(errors=[None, "KafkaError{code=MSG_TIMED_OUT}"])
    writer = DeadLetterWriter(settings(), "webhooks", producer=producer)
    writer.write(Message(offset_=1), "webhook_failed", "HTTP 500")
    writer.write(Message(offset_=2), "webhook_failed", "HTTP 500")
    assert writer.flush() is False

    writer.write(Message(offset_=2), "webhook_failed", "HTTP 500")  # read again, written again
    assert writer.flush() is True


def test_a_dead_letter_still_queued_after_the_timeout_makes_flush_report_failure() -> None:
    producer = FakeProducer(unsent=1)
    writer = DeadLetterWriter(settings(), "indexer", producer=producer)
    writer.write(Message(), "rejected_by_opensearch", "HTTP 400: mapper_parsing_exception")
    assert writer.flush() is False


@pytest.mark.timeout(30)
def test_with_no_broker_flush_reports_failure_within_the_request_timeout() -> None:
    no_broker = settings(bootstrap_servers="127.0.0.1:1", request_timeout_s=1.0)
    writer = DeadLetterWriter(no_broker, "indexer", {"log_level": 0})  # no connection errors on stderr
    writer.write(Message(), "unindexable", "KeyError: 'spans'")
    assert writer.flush() is False
    writer.close(0.1)
