"""Indexing throughput and freshness of one indexer process on the local stack.

    .venv/bin/python bench/index.py [--traces 600] [--rate 10] [--seconds 30]   (needs infra/up)

Workload: realistic LLM agent traces (schemas.samples: 5-20 spans, 2-20 KB inputs/outputs).
Scenarios, each with fresh topics, index prefix and consumer group:
  * baseline: the same documents sent with opensearch-py's helpers.bulk straight from memory
    (no Kafka, no decoding, no versioning): the ceiling of this OpenSearch for these documents;
  * throughput: the traces are in the completed topic first, then `tracestream indexer run`
    starts; documents/s from its start until all are searchable;
  * freshness: the indexer runs, traces are produced at --rate per second; time from the
    produce call to the trace being returned by a search (no forced refresh), p50/p99.
The index refresh interval is the default of the settings (1s) and is printed.
Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import TransportError

from tracestream import schemas
from tracestream.admin import delete_topics, ensure_topics, pipeline_topics
from tracestream.health import kafka_health, opensearch_health
from tracestream.indexer import IndexNames, build_document, ensure_index_template
from tracestream.schemas.samples import completed_trace
from tracestream.settings import Settings, TopicSettings

ROOT = Path(__file__).resolve().parent.parent


def scenario_settings(base: Settings, label: str) -> Settings:
    run = f"bench-index-{label}-{uuid.uuid4().hex[:6]}"
    return base.model_copy(
        update={
            "topics": TopicSettings(
                events=f"{run}.events",
                completed=f"{run}.completed",
                alerts=f"{run}.alerts",
                dead_letters=f"{run}.deadletters",
            ),
            "opensearch": base.opensearch.model_copy(update={"index_prefix": f"b{uuid.uuid4().hex[:10]}"}),
            "indexer": base.indexer.model_copy(update={"group_id": f"{run}-indexer"}),
        }
    )


def cleanup(client: OpenSearch, settings: Settings) -> None:
    names = IndexNames.from_settings(settings)
    client.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
    client.indices.delete_index_template(name=names.template, ignore=[404])
    delete_topics(settings, [spec.name for spec in pipeline_topics(settings)])


def indexer_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRACESTREAM_TOPICS__COMPLETED": settings.topics.completed,
        "TRACESTREAM_TOPICS__DEAD_LETTERS": settings.topics.dead_letters,
        "TRACESTREAM_OPENSEARCH__INDEX_PREFIX": settings.opensearch.index_prefix,
        "TRACESTREAM_INDEXER__GROUP_ID": settings.indexer.group_id,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tracestream", "indexer", "run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def searchable(client: OpenSearch, settings: Settings) -> int:
    names = IndexNames.from_settings(settings)
    response = client.count(index=names.read_alias, ignore_unavailable=True, allow_no_indices=True)
    return int(response.get("count", 0))


def produce_all(settings: Settings, traces: list[dict]) -> None:
    codec = schemas.completed_codec(settings.kafka.schema_registry_url, settings.topics.completed)
    producer = Producer(settings.kafka.confluent_config({"acks": "all", "linger.ms": 20}))
    for trace in traces:
        producer.produce(settings.topics.completed, key=trace["trace_id"].encode(), value=codec.encode(trace))
        producer.poll(0)
    producer.flush(60)


def baseline(client: OpenSearch, base: Settings, traces: list[dict]) -> tuple[float, float]:
    """Documents/s and MB/s of helpers.bulk from memory."""
    settings = scenario_settings(base, "baseline")
    names = IndexNames.from_settings(settings)
    ensure_index_template(client, settings)
    documents = [build_document(t, names, settings.indexer.max_indexed_span_content_bytes) for t in traces]
    size_mb = sum(len(d.source.encode()) for d in documents) / 1e6
    actions = ({"_index": d.index, "_id": d.trace_id, "_source": d.source} for d in documents)
    try:
        started = time.perf_counter()
        helpers.bulk(client, actions, chunk_size=500, max_chunk_bytes=10 * 1024 * 1024, request_timeout=120)
        client.indices.refresh(index=names.read_alias)
        elapsed = time.perf_counter() - started
        assert searchable(client, settings) == len(traces)
        return len(traces) / elapsed, size_mb / elapsed
    finally:
        cleanup(client, settings)


def throughput(client: OpenSearch, base: Settings, traces: list[dict]) -> tuple[float, float]:
    """Documents/s of the indexer draining a full topic (from its first searchable document to
    the last, so process start-up is not counted), and its seconds to the first document."""
    settings = scenario_settings(base, "throughput")
    ensure_topics(settings)
    produce_all(settings, traces)
    started = time.perf_counter()
    process = indexer_process(settings)
    first: tuple[float, int] | None = None
    try:
        while True:
            count = searchable(client, settings)
            if count and first is None:
                first = (time.perf_counter(), count)
            if count >= len(traces):
                break
            if process.poll() is not None:
                raise RuntimeError("the indexer exited")
            time.sleep(0.1)
        assert first is not None
        first_time, first_count = first
        if first_count >= len(traces):
            raise RuntimeError("all traces appeared at once: use more --traces to measure a rate")
        rate = (len(traces) - first_count) / (time.perf_counter() - first_time)
        return rate, first_time - started
    finally:
        stop(process)
        cleanup(client, settings)


def freshness(
    client: OpenSearch, base: Settings, rng: random.Random, rate: float, seconds: float
) -> list[float]:
    """Milliseconds from produce to searchable, one per trace."""
    settings = scenario_settings(base, "freshness")
    names = IndexNames.from_settings(settings)
    ensure_topics(settings)
    process = indexer_process(settings)
    codec = schemas.completed_codec(settings.kafka.schema_registry_url, settings.topics.completed)
    producer = Producer(settings.kafka.confluent_config({"acks": "all", "linger.ms": 5}))
    pending: dict[str, float] = {}
    found: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set() or pending:
            with lock:
                ids = list(pending)
            if ids:
                try:
                    response = client.search(
                        index=names.read_alias,
                        body={
                            "query": {"terms": {"trace_id": ids}},
                            "size": len(ids),
                            "_source": ["trace_id"],
                        },
                        ignore_unavailable=True,
                        allow_no_indices=True,
                    )
                except TransportError as error:
                    # 503 while the first day's index is created and its shard not yet started.
                    if error.status_code != 503:
                        raise
                    time.sleep(0.05)
                    continue
                now = time.perf_counter()
                with lock:
                    for hit in response["hits"]["hits"]:
                        sent = pending.pop(hit["_source"]["trace_id"], None)
                        if sent is not None:
                            found.append((now - sent) * 1000)
            time.sleep(0.05)

    try:
        # The indexer is up and the template exists before the clock starts.
        deadline = time.monotonic() + 60
        while not client.indices.exists_index_template(name=names.template):
            if time.monotonic() > deadline:
                raise RuntimeError("the indexer did not start")
            time.sleep(0.2)
        time.sleep(2)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        traces = [completed_trace(rng) for _ in range(int(rate * seconds))]
        start = time.perf_counter()
        for n, trace in enumerate(traces):
            target = start + n / rate
            time.sleep(max(0.0, target - time.perf_counter()))
            value = codec.encode(trace)
            with lock:
                pending[trace["trace_id"]] = time.perf_counter()
            producer.produce(settings.topics.completed, key=trace["trace_id"].encode(), value=value)
            producer.poll(0)
        producer.flush(30)
        done.set()
        poller.join(timeout=120)
        if pending:
            raise RuntimeError(f"{len(pending)} traces never became searchable")
        return found
    finally:
        done.set()
        stop(process)
        cleanup(client, settings)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, default=600)
    parser.add_argument("--rate", type=float, default=10.0, help="traces/s in the freshness scenario")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()

    base = Settings()
    for report in (kafka_health(base), opensearch_health(base)):
        if not report.healthy:
            sys.exit(f"{report.server} at {report.address} is not healthy: start the stack with infra/up")
    client = OpenSearch(**base.opensearch.client_kwargs())
    rng = random.Random(2026)
    traces = [completed_trace(rng) for _ in range(args.traces)]
    spans = statistics.mean(len(t["spans"]) for t in traces)
    avro_kb = statistics.mean(len(schemas.completed_codec().encode(t)) for t in traces) / 1024

    baseline_docs_s, baseline_mb_s = baseline(client, base, traces)
    indexer_docs_s, first_s = throughput(client, base, traces)
    fresh = freshness(client, base, rng, args.rate, args.seconds)

    figures = {
        "traces": args.traces,
        "mean_spans_per_trace": round(spans, 1),
        "mean_avro_kb_per_trace": round(avro_kb, 1),
        "refresh_interval": base.indexer.refresh_interval,
        "baseline_bulk_docs_per_s": round(baseline_docs_s, 1),
        "baseline_bulk_mb_per_s": round(baseline_mb_s, 1),
        "indexer_docs_per_s": round(indexer_docs_s, 1),
        "indexer_vs_bulk_ratio": round(indexer_docs_s / baseline_docs_s, 2),
        "indexer_first_doc_s": round(first_s, 2),
        "freshness_rate_traces_per_s": args.rate,
        "freshness_p50_ms": round(percentile(fresh, 0.5)),
        "freshness_p99_ms": round(percentile(fresh, 0.99)),
        "freshness_max_ms": round(max(fresh)),
    }
    width = max(len(k) for k in figures)
    print("bench/index.py: one indexer process, local single-node OpenSearch and Kafka")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
