"""OpenSearch stopped for a minute in the middle of a stream: the indexer holds its offsets,
keeps its place in the consumer group, and indexes everything once OpenSearch is back.

The test runs its own OpenSearch (infra/up on other ports and a scratch directory) so that
stopping it disturbs nothing else.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from opensearchpy import OpenSearch
from waiting import wait_until

from indexing.support import (
    RunningIndexer,
    count_documents,
    isolated_settings,
    produce,
    read_dead_letters,
)
from tracestream.admin import delete_topics, ensure_topics, pipeline_topics
from tracestream.schemas.samples import completed_trace
from tracestream.settings import Settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
OUTAGE_S = 60


def _infra(command: str, *args: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(INFRA / command), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"infra/{command} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )


@pytest.fixture
def private_opensearch(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        "TRACESTREAM_STACK_DIR": str(tmp_path / "stack"),
        "TRACESTREAM_STACK_OPENSEARCH_PORT": "19201",
        "TRACESTREAM_STACK_OPENSEARCH_TRANSPORT_PORT": "19301",
        "TRACESTREAM_STACK_OPENSEARCH_HEAP": "512m",
    }
    (tmp_path / "stack").mkdir()
    _infra("up", "opensearch", env=env)
    yield env
    _infra("down", "--purge", env=env)


def _committed_records(settings: Settings) -> int:
    """How many records of the completed topic the indexer's group has committed."""
    consumer = Consumer(settings.kafka.confluent_config({"group.id": settings.indexer.group_id}))
    try:
        partitions = [
            TopicPartition(settings.topics.completed, p) for p in range(settings.topics.completed_partitions)
        ]
        committed = consumer.committed(partitions, timeout=10)
        return sum(max(tp.offset, 0) for tp in committed)
    finally:
        consumer.close()


def _small_traces(rng: random.Random, count: int) -> list:
    return [
        completed_trace(rng, min_spans=3, max_spans=6, min_io_bytes=200, max_io_bytes=2000)
        for _ in range(count)
    ]


def test_opensearch_stopped_for_a_minute_mid_stream_loses_nothing(
    kafka_settings: Settings, unique_name: str, private_opensearch: dict[str, str]
) -> None:
    base = kafka_settings.model_copy(
        update={"opensearch": kafka_settings.opensearch.model_copy(update={"url": "http://127.0.0.1:19201"})}
    )
    settings = isolated_settings(base, unique_name)
    ensure_topics(settings)
    client = OpenSearch(**settings.opensearch.client_kwargs())
    rng = random.Random(11)
    runner = RunningIndexer(settings)
    try:
        produce(settings, _small_traces(rng, 50))
        wait_until(lambda: count_documents(client, settings) == 50, 60, "the first 50 traces")
        wait_until(lambda: _committed_records(settings) == 50, 30, "the first 50 offsets committed")

        _infra("down", "opensearch", env=private_opensearch)
        stopped = time.monotonic()
        for _ in range(3):
            produce(settings, _small_traces(rng, 50))
            time.sleep(15)
        committed_during_outage = _committed_records(settings)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        _infra("up", "opensearch", env=private_opensearch)

        wait_until(lambda: count_documents(client, settings) == 200, 120, "all 200 traces after the outage")
        wait_until(lambda: _committed_records(settings) == 200, 30, "every offset committed")
        dead_letters = read_dead_letters(settings, expected=0, timeout_s=2)
    finally:
        runner.stop()
        client.close()
        delete_topics(settings, [spec.name for spec in pipeline_topics(settings)])

    assert committed_during_outage == 50, "offsets of unwritten traces were committed"
    assert runner.indexer.stats.bulk_retries >= 1
    assert dead_letters == []
