"""Helpers of the indexer's tests: private settings, an indexer in a thread, producing completed
traces, reading dead letters, counting documents."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from opensearchpy import OpenSearch

from tracestream import schemas
from tracestream.indexer import Indexer, IndexNames
from tracestream.schemas.records import CompletedTrace
from tracestream.settings import IndexerSettings, Settings, TopicSettings


def isolated_settings(base: Settings, name: str, **indexer: Any) -> Settings:
    """``base`` with this test's own topics, index prefix and consumer group."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return base.model_copy(
        update={
            "topics": TopicSettings(
                events=f"{name}.events",
                completed=f"{name}.completed",
                alerts=f"{name}.alerts",
                dead_letters=f"{name}.deadletters",
                completed_partitions=3,
            ),
            "opensearch": base.opensearch.model_copy(update={"index_prefix": prefix}),
            "indexer": IndexerSettings(
                group_id=f"{name}-indexer",
                batch_linger_ms=50,
                retry_initial_backoff_s=0.2,
                retry_max_backoff_s=2.0,
                **indexer,
            ),
        }
    )


def drop_indices(client: OpenSearch, settings: Settings) -> None:
    names = IndexNames.from_settings(settings)
    client.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
    client.indices.delete_index_template(name=names.template, ignore=[404])


class RunningIndexer:
    def __init__(self, settings: Settings, client: OpenSearch | None = None) -> None:
        self.indexer = Indexer(settings, client)
        self.thread = threading.Thread(target=self.indexer.run, name="indexer", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.indexer.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the indexer did not stop"


def produce(
    settings: Settings,
    traces: list[CompletedTrace],
    raw: list[bytes] | None = None,
    first_seen_ms: int | None = None,
) -> None:
    """Publish completed traces (and optionally raw values) to the completed topic, keyed by trace
    id; with ``first_seen_ms``, with the header the stream sets."""
    codec = schemas.completed_codec(settings.kafka.schema_registry_url, settings.topics.completed)
    producer = Producer(settings.kafka.confluent_config({"acks": "all"}))
    headers = None if first_seen_ms is None else [(schemas.FIRST_SEEN_HEADER, str(first_seen_ms).encode())]
    for trace in traces:
        key, value = trace["trace_id"].encode(), codec.encode(trace)
        producer.produce(settings.topics.completed, key=key, value=value, headers=headers)
    for value in raw or ():
        producer.produce(settings.topics.completed, key=b"raw", value=value)
    assert producer.flush(30) == 0


def produce_tombstones(settings: Settings, trace_ids: list[str]) -> None:
    """Publish the stream's deletion of each trace: its id as the key, no value."""
    producer = Producer(settings.kafka.confluent_config({"acks": "all"}))
    for trace_id in trace_ids:
        producer.produce(settings.topics.completed, key=trace_id.encode(), value=None)
    assert producer.flush(30) == 0


def read_dead_letters(settings: Settings, expected: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    """The dead letters on the topic, once there are at least ``expected``; then one more second
    of reading, so that an unexpected extra one is seen."""
    codec = schemas.dead_letters_codec(settings.kafka.schema_registry_url, settings.topics.dead_letters)
    consumer = Consumer(
        settings.kafka.confluent_config(
            {"group.id": f"reader-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([settings.topics.dead_letters])
    letters: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    settle_until = None
    try:
        while time.monotonic() < deadline and (settle_until is None or time.monotonic() < settle_until):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                letters.append(codec.decode(message.value()))
            if settle_until is None and len(letters) >= expected:
                settle_until = time.monotonic() + 1.0
    finally:
        consumer.close()
    return letters


def count_documents(client: OpenSearch, settings: Settings, query: dict[str, Any] | None = None) -> int:
    names = IndexNames.from_settings(settings)
    if not client.indices.exists_alias(name=names.read_alias):
        return 0
    client.indices.refresh(index=names.read_alias)
    body = {"query": query or {"match_all": {}}}
    return int(client.count(index=names.read_alias, body=body)["count"])
