"""Running stream workers against the real broker, and feeding and reading their topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tracestream import schemas
from tracestream.admin import admin_client, delete_topics, ensure_topics, pipeline_topics
from tracestream.producers.config import ProducerConfig
from tracestream.producers.exporter import producer_config
from tracestream.schemas import SPAN_ENDED, TRACE_ENDED, new_span_id, new_trace_id
from tracestream.settings import Settings

LOCATION = {"type": "MLFLOW_EXPERIMENT", "experiment_id": "3"}


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker process these settings."""
    env = {
        "TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "TRACESTREAM_STREAM__LOG_LEVEL": "warning",
    }
    for group in ("topics", "stream"):
        for name, value in getattr(settings, group).model_dump().items():
            if value is not None:  # unset (stream.rules_file): "None" would be a file name
                env[f"TRACESTREAM_{group.upper()}__{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tracestream", "stream", "worker"],
            env={**os.environ, **settings_env(settings)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()

    def log_tail(self) -> str:
        return self.log_path.read_bytes()[-3000:].decode(errors="replace")


def stream_settings(base: Settings, name: str, data_dir: Path, **stream: Any) -> Settings:
    topics = base.topics.model_copy(
        update={
            "events": f"{name}.events",
            "completed": f"{name}.completed",
            "alerts": f"{name}.alerts",
            "dead_letters": f"{name}.deadletters",
            "events_partitions": stream.pop("partitions", 3),
            "completed_partitions": 1,
        }
    )
    options = {
        "app_id": f"{name}-stream",
        "idle_timeout_s": 3.0,
        "tick_interval_s": 0.5,
        "session_timeout_s": 6.0,
        "data_dir": str(data_dir),
        "store": "memory",
        **stream,
    }
    return base.model_copy(update={"topics": topics, "stream": base.stream.model_copy(update=options)})


def create_topics(settings: Settings) -> None:
    ensure_topics(settings)


def delete_all_topics(settings: Settings) -> None:
    """The pipeline topics and Faust's internal ones (changelogs, ticks) of this app id."""
    names = [spec.name for spec in pipeline_topics(settings)]
    metadata = admin_client(settings).list_topics(timeout=10)
    names += [t for t in metadata.topics if t.startswith(settings.stream.app_id)]
    delete_topics(settings, names)


def wait_for_group_members(settings: Settings, count: int, timeout_s: float = 120) -> None:
    """Wait until the stream's consumer group has ``count`` members with partitions assigned."""
    admin = admin_client(settings)
    group = settings.stream.app_id
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assigned = [m for m in description.members if m.assignment and m.assignment.topic_partitions]
        if len(assigned) == count and str(description.state).endswith("STABLE"):
            return
        time.sleep(0.5)
    raise AssertionError(f"group {group} did not reach {count} members with partitions")


class EventSender:
    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topics.events
        self.codec = schemas.events_codec()
        config = producer_config(ProducerConfig(settings.kafka.connection(), settings.topics.events))
        config.pop("logger", None)
        config["delivery.report.only.error"] = False  # the SDK's choice; here, every partition is noted
        self.producer = Producer(config)
        # The partition each trace id's records went to, as the broker acknowledged them.
        self.partitions: dict[str, int] = {}

    def send(self, kind: str, record: dict[str, Any]) -> None:
        self.producer.produce(
            self.topic, self.codec.encode_union(kind, record), record["trace_id"], on_delivery=self._delivered
        )

    def _delivered(self, error: Any, message: Any) -> None:
        if error is None:
            self.partitions[message.key().decode()] = message.partition()

    def send_batch(self, trace_id: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Several events of one trace as one record, as the SDK sends them."""
        batch = {"trace_id": trace_id, "events": events}
        self.producer.produce(self.topic, self.codec.encode_union(schemas.EVENT_BATCH, batch), trace_id)

    def send_raw(self, key: bytes, value: bytes) -> None:
        self.producer.produce(self.topic, value, key)

    def flush(self) -> None:
        assert self.producer.flush(10) == 0


def span(
    trace_id: str,
    name: str,
    parent: str | None,
    start_ms: int,
    end_ms: int,
    status: str = "OK",
    span_type: str = "UNKNOWN",
    attributes: dict[str, str] | None = None,
    events: list[dict] | None = None,
    status_message: str = "",
) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "span_id": new_span_id(),
        "parent_span_id": parent,
        "name": name,
        "span_type": span_type,
        "start_time_ns": start_ms * 1_000_000,
        "end_time_ns": end_ms * 1_000_000,
        "status_code": status,
        "status_message": status_message,
        "attributes": {
            "mlflow.traceRequestId": f'"{trace_id}"',
            "mlflow.spanType": f'"{span_type}"',
            **(attributes or {}),
        },
        "events": events or [],
        "location": LOCATION,
    }


def rag_trace(error: bool = False) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """A retrieval-augmented answer: root agent, a retriever and an LLM call, and its TraceEnded."""
    trace_id = new_trace_id()
    now = int(time.time() * 1000)
    root = span(
        trace_id,
        "support_agent",
        None,
        now,
        now + 900,
        "ERROR" if error else "OK",
        "AGENT",
        {
            "mlflow.spanInputs": '{"question": "Where is my order?"}',
            "mlflow.spanOutputs": '"It ships tomorrow."',
        },
        status_message="TimeoutError: model timed out" if error else "",
    )
    retriever = span(
        trace_id,
        "retrieve_docs",
        root["span_id"],
        now + 10,
        now + 120,
        span_type="RETRIEVER",
        attributes={"mlflow.spanInputs": '{"query": "order status"}'},
    )
    llm = span(
        trace_id,
        "ChatOpenAI",
        root["span_id"],
        now + 130,
        now + 880,
        "ERROR" if error else "OK",
        "CHAT_MODEL",
        {"mlflow.chat.tokenUsage": '{"input_tokens": 420, "output_tokens": 37, "total_tokens": 457}'},
        events=[
            {
                "name": "exception",
                "time_ns": (now + 880) * 1_000_000,
                "attributes": {"exception.type": "TimeoutError", "exception.message": "model timed out"},
            }
        ]
        if error
        else [],
        status_message="TimeoutError: model timed out" if error else "",
    )
    ended = {
        "trace_id": trace_id,
        "client_request_id": None,
        "location": LOCATION,
        "request_time_ms": now,
        "execution_duration_ms": 900,
        "state": "ERROR" if error else "OK",
        "tags": {"mlflow.traceName": "support_agent", "team": "care"},
        "metadata": {"mlflow.trace_schema.version": "3", "mlflow.trace.user": "u-77"},
        "request_preview": '{"question": "Where is my order?"}',
        "response_preview": '"It ships tomorrow."',
        "root_span_id": root["span_id"],
        "span_count": 3,
    }
    return trace_id, [root, retriever, llm], ended


def send_trace(sender: EventSender, spans: Iterable[dict], ended: dict | None) -> None:
    for record in spans:
        sender.send(SPAN_ENDED, record)
    if ended is not None:
        sender.send(TRACE_ENDED, ended)


class TopicReader:
    """Reads a topic from the start, decoding with ``codec``; remembers what it read. Tombstones
    (a key with no value: a deleted trace on the completed topic) are kept apart, with their
    headers, so the records stay decoded values."""

    def __init__(self, settings: Settings, topic: str, codec: schemas.AvroCodec, group: str) -> None:
        self.codec = codec
        self.consumer = Consumer(
            settings.kafka.confluent_config(
                {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
            )
        )
        # Partitions are assigned, not subscribed: readers that shared a group id (a test's
        # completed, alerts and dead-letter readers) rebalanced whenever one of them joined,
        # and a rebalance waits for every member to poll; the readers that were not being
        # polled held it for up to max.poll.interval.ms (300 s), and the reader being waited
        # on received nothing meanwhile, which looked like a worker that had stopped emitting.
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
        self.records: list[tuple[bytes | None, dict[str, Any]]] = []
        self.tombstones: list[tuple[bytes | None, dict[str, bytes]]] = []

    def wait_for(
        self, condition: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 60
    ) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            values = [value for _, value in self.records]
            if condition(values):
                return values
            self._read()
        raise AssertionError(f"condition not met within {timeout_s}s; read {len(self.records)} records")

    def wait_for_tombstone(self, key: bytes, timeout_s: float = 60) -> dict[str, bytes]:
        """The headers of the first tombstone of ``key``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for tombstone_key, headers in self.tombstones:
                if tombstone_key == key:
                    return headers
            self._read()
        raise AssertionError(
            f"no tombstone of {key!r} within {timeout_s}s; read {len(self.tombstones)} tombstones"
        )

    def _read(self) -> None:
        for message in self.consumer.consume(num_messages=1000, timeout=0.5):
            if message.error() is not None:
                continue
            if message.value() is None:
                self.tombstones.append((message.key(), dict(message.headers() or [])))
            else:
                self.records.append((message.key(), self.codec.decode(message.value())))

    def close(self) -> None:
        self.consumer.close()


def latest_by_trace(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        current = latest.get(record["trace_id"])
        if current is None or record["revision"] > current["revision"]:
            latest[record["trace_id"]] = record
    return latest
