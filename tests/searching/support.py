"""Helpers of the search API's tests: traces written straight into a private index (the
indexer's own path is tested in tests/indexing) and an API client over the real app."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition
from opensearchpy import OpenSearch, helpers

from tracestream.indexer import IndexNames, build_document, ensure_index_template
from tracestream.schemas import TRACE_DELETED, events_codec, events_of
from tracestream.schemas.records import CompletedTrace
from tracestream.schemas.samples import completed_trace
from tracestream.settings import Settings


def private_settings(base: Settings, **api: Any) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return base.model_copy(
        update={
            "opensearch": base.opensearch.model_copy(update={"index_prefix": prefix}),
            "api": base.api.model_copy(update=api),
        }
    )


def write_traces(client: OpenSearch, settings: Settings, traces: list[CompletedTrace]) -> None:
    """Index ``traces`` as the indexer does (same documents, versions) and make them searchable."""
    names = IndexNames.from_settings(settings)
    ensure_index_template(client, settings)
    limit = settings.indexer.max_indexed_span_content_bytes
    actions = (
        {
            "_index": document.index,
            "_id": document.trace_id,
            "version": document.revision,
            "version_type": "external",
            "_source": document.source,
        }
        for document in (build_document(trace, names, limit) for trace in traces)
    )
    helpers.bulk(client, actions, chunk_size=500, max_chunk_bytes=10 * 1024 * 1024, request_timeout=120)
    client.indices.refresh(index=names.read_alias)


def drop(client: OpenSearch, settings: Settings) -> None:
    names = IndexNames.from_settings(settings)
    client.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
    client.indices.delete_index_template(name=names.template, ignore=[404])


def small_traces(
    count: int, seed: int, start_ms: int, step_ms: int = 1000, **kwargs: Any
) -> list[CompletedTrace]:
    """``count`` light agent traces one ``step_ms`` apart, starting at ``start_ms``."""
    rng = random.Random(seed)
    return [
        completed_trace(
            rng,
            request_time_ms=start_ms + n * step_ms,
            min_spans=2,
            max_spans=4,
            min_io_bytes=100,
            max_io_bytes=600,
            **kwargs,
        )
        for n in range(count)
    ]


ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ApiProcess:
    base_url: str
    pid: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_api(settings: Settings) -> Iterator[ApiProcess]:
    """``tracestream api serve`` in its own process, on a free loopback port, over the private
    index of ``settings``, publishing to its events topic; stopped on exit."""
    port = _free_port()
    env = {
        **os.environ,
        "TRACESTREAM_OPENSEARCH__INDEX_PREFIX": settings.opensearch.index_prefix,
        "TRACESTREAM_TOPICS__EVENTS": settings.topics.events,
        "TRACESTREAM_API__HOST": "127.0.0.1",
        "TRACESTREAM_API__PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tracestream", "api", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"the API did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield ApiProcess(base, process.pid)
    finally:
        process.terminate()
        process.wait(30)


def published_events(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """Every event on the (one-partition) events topic of ``settings``, in order."""
    consumer = Consumer(settings.kafka.confluent_config({"group.id": "unused", "enable.auto.commit": False}))
    codec = events_codec()
    events: list[tuple[str, dict[str, Any]]] = []
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(settings.topics.events, 0), timeout=10)
        if high == 0:
            return []
        consumer.assign([TopicPartition(settings.topics.events, 0, 0)])
        while True:
            message = consumer.poll(10)
            assert message is not None, "the events topic did not deliver its records"
            assert message.error() is None, message.error()
            events += events_of(codec.decode(message.value())["event"])
            if message.offset() >= high - 1:
                return events
    finally:
        consumer.close()


def deleted_trace_ids(settings: Settings) -> list[str]:
    """The trace ids of the TraceDeleted events published to the events topic, in order."""
    return [record["trace_id"] for kind, record in published_events(settings) if kind == TRACE_DELETED]
