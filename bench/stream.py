"""Throughput, latency, per-span cost and memory of one stream worker process.

    .venv/bin/python bench/stream.py [--traces 4000]     (needs the local stack: infra/up)

Each scenario uses fresh topics and a fresh worker process (memory store unless stated):
  * baseline: records/s a Faust agent reads doing nothing (bench/_faust_baseline.py), the
    ceiling of any Faust worker that reads one record per event;
  * throughput: traces of 5 spans produced as fast as possible through the SDK's exporter,
    which sends each trace flushed whole as one record (EventBatch); span events/s from the
    first event produced to the last completed trace received. Also with one record per event
    (producers older than TraceEvent v2, or batching off), and with the RocksDB store;
  * the same with traces of 1,000 spans (the per-span cost must not grow with trace size);
  * latency: traces produced at about 5,000 events/s; TraceEnded produced -> CompletedTrace out;
  * memory: worker RSS before and after 100,000 spans of traces that have not ended (records of
    10 spans).

Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from stream_harness import (
    EventSender,
    TopicReader,
    WorkerProcess,
    create_topics,
    delete_all_topics,
    latest_by_trace,
    span,
    stream_settings,
)

from tracestream import schemas
from tracestream.admin import TopicSpec, delete_topics, ensure_topics
from tracestream.health import kafka_health
from tracestream.producers.config import ProducerConfig
from tracestream.producers.exporter import KafkaEventExporter
from tracestream.producers.processor import SdkStats
from tracestream.schemas import SPAN_ENDED, TRACE_ENDED, new_span_id, new_trace_id
from tracestream.settings import Settings

# What the SDK's processor hands its exporter at most at once.
EXPORT_BATCH_EVENTS = 2_000


def make_trace(spans_per_trace: int) -> tuple[str, list[dict], dict]:
    trace_id = new_trace_id()
    now = int(time.time() * 1000)
    root = span(
        trace_id,
        "agent",
        None,
        now,
        now + 1000,
        span_type="AGENT",
        attributes={
            "mlflow.spanInputs": '{"question": "How do I reset my password?"}',
            "mlflow.spanOutputs": '"Use the link on the sign-in page."',
        },
    )
    children = [
        span(
            trace_id,
            f"step_{n}",
            root["span_id"],
            now + n,
            now + n + 1,
            span_type="LLM",
            attributes={
                "mlflow.chat.tokenUsage": '{"input_tokens": 50, "output_tokens": 10, "total_tokens": 60}',
                "mlflow.spanInputs": json.dumps({"prompt": f"step {n} of the plan " * 8}),
            },
        )
        for n in range(spans_per_trace - 1)
    ]
    ended = {
        "trace_id": trace_id,
        "client_request_id": None,
        "location": root["location"],
        "request_time_ms": now,
        "execution_duration_ms": 1000,
        "state": "OK",
        "tags": {},
        "metadata": {},
        "request_preview": None,
        "response_preview": None,
        "root_span_id": root["span_id"],
        "span_count": spans_per_trace,
    }
    return trace_id, [root, *children], ended


class Scenario:
    def __init__(self, base: Settings, workdir: Path, **stream: object) -> None:
        name = f"bench-stream-{uuid.uuid4().hex[:8]}"
        self.settings = stream_settings(base, name, workdir / name, partitions=6, **stream)
        create_topics(self.settings)
        self.sender = EventSender(self.settings)
        self.exporter = KafkaEventExporter(
            ProducerConfig(self.settings.kafka.connection(), self.settings.topics.events)
        )
        self.stats = SdkStats()
        self.completed = TopicReader(
            self.settings, self.settings.topics.completed, schemas.completed_codec(), f"{name}-reader"
        )
        self.worker = WorkerProcess(self.settings, workdir / f"{name}.log")
        trace_id, spans, ended = make_trace(3)
        self._send(spans, ended)
        self.sender.flush()
        self.completed.wait_for(lambda rs: any(r["trace_id"] == trace_id for r in rs), timeout_s=120)

    def _send(self, spans: list[dict], ended: dict | None) -> None:
        for record in spans:
            self.sender.send(SPAN_ENDED, record)
        if ended is not None:
            self.sender.send(TRACE_ENDED, ended)

    def export(self, traces: list[tuple[list[dict], dict | None]]) -> None:
        """As the SDK publishes them: export batches of up to 2,000 events, grouped by trace."""
        events: list = []
        for spans, ended in traces:
            events += [(record["trace_id"], (SPAN_ENDED, record)) for record in spans]
            if ended is not None:
                events.append((ended["trace_id"], (TRACE_ENDED, ended)))
        for start in range(0, len(events), EXPORT_BATCH_EVENTS):
            self.exporter.export(events[start : start + EXPORT_BATCH_EVENTS], self.stats)

    def flush(self) -> None:
        self.sender.flush()
        assert self.exporter.flush(60) == 0

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.worker.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024

    def close(self) -> None:
        self.exporter.shutdown()
        self.worker.stop()
        self.completed.close()
        delete_all_topics(self.settings)


def faust_baseline(base: Settings, records: int) -> float:
    """Records/s of a Faust agent that does nothing, on 300-byte records."""
    topic = f"bench-faust-noop-{uuid.uuid4().hex[:8]}"
    ensure_topics(base, [TopicSpec(topic, 6, 1)])
    try:
        sender = EventSender(
            base.model_copy(update={"topics": base.topics.model_copy(update={"events": topic})})
        )
        payload = os.urandom(300)
        for n in range(records):
            sender.send_raw(f"tr-{n % 5_000}".encode(), payload)
            if n % 10_000 == 0:
                sender.producer.poll(0)
        sender.flush()
        script = Path(__file__).resolve().parent / "_faust_baseline.py"
        done = subprocess.run(
            [sys.executable, str(script), topic, str(records)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        # Faust's worker sends the script's stdout to its log (stderr).
        figure = re.search(r"records_per_s (\d+)", done.stdout + done.stderr)
        if figure is None:
            raise RuntimeError(f"the Faust baseline printed no figure:\n{done.stderr[-2000:]}")
        return float(figure.group(1))
    finally:
        delete_topics(base, [topic])


def throughput(
    base: Settings, workdir: Path, traces: int, spans_per_trace: int, batched: bool = True, **stream: object
) -> float:
    scenario = Scenario(base, workdir, **stream)
    try:
        batch = [make_trace(spans_per_trace) for _ in range(traces)]
        wanted = {trace_id for trace_id, _, _ in batch}
        started = time.perf_counter()
        if batched:
            scenario.export([(spans, ended) for _, spans, ended in batch])
        else:
            for _, spans, ended in batch:
                scenario._send(spans, ended)
        scenario.flush()
        scenario.completed.wait_for(lambda rs: wanted <= {r["trace_id"] for r in rs}, timeout_s=900)
        elapsed = time.perf_counter() - started
    finally:
        scenario.close()
    return traces * (spans_per_trace + 1) / elapsed


def latency(base: Settings, workdir: Path, events_per_s: int, seconds: int) -> list[float]:
    scenario = Scenario(base, workdir)
    sent_at: dict[str, float] = {}
    try:
        per_trace = 5 + 1
        interval = per_trace / events_per_s
        deadline = time.perf_counter() + seconds
        next_send = time.perf_counter()
        while time.perf_counter() < deadline:
            trace_id, spans, ended = make_trace(5)
            scenario.export([(spans, ended)])
            sent_at[trace_id] = time.time()
            next_send += interval
            pause = next_send - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        scenario.flush()
        received: dict[str, float] = {}

        def all_seen(records: list[dict]) -> bool:
            for record in records:
                received.setdefault(record["trace_id"], time.time())
            return set(sent_at) <= set(received)

        scenario.completed.wait_for(all_seen, timeout_s=300)
    finally:
        scenario.close()
    # Reading happens in 0.5 s polls after sending: use the stream's own emission time instead.
    latest = latest_by_trace([r for _, r in scenario.completed.records])
    return [latest[t]["completed_time_ms"] - sent_at[t] * 1000 for t in sent_at]


def memory(base: Settings, workdir: Path, spans: int) -> tuple[float, float]:
    scenario = Scenario(base, workdir, idle_timeout_s=3600.0)
    try:
        before = scenario.rss_mb()
        sent = 0
        while sent < spans:
            trace_id = new_trace_id()
            now = int(time.time() * 1000)
            root_id = new_span_id()
            tools = [
                span(
                    trace_id,
                    f"tool_{n}",
                    root_id,
                    now,
                    now + 1,
                    attributes={"mlflow.spanInputs": '{"q": "status"}'},
                )
                for n in range(10)
            ]
            scenario.export([(tools, None)])
            sent += 10
        scenario.flush()
        # Wait until the worker has read them: its RSS stops growing.
        previous, stable = 0.0, 0
        for _ in range(240):
            time.sleep(1)
            current = scenario.rss_mb()
            stable = stable + 1 if abs(current - previous) < 1 else 0
            previous = current
            if stable >= 5:
                break
        after = scenario.rss_mb()
    finally:
        scenario.close()
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description="tracestream stream benchmark")
    parser.add_argument("--traces", type=int, default=4000, help="5-span traces for the throughput run")
    parser.add_argument("--big-traces", type=int, default=20, help="1,000-span traces for the cost run")
    parser.add_argument("--latency-seconds", type=int, default=15)
    parser.add_argument("--memory-spans", type=int, default=100_000)
    parser.add_argument("--baseline-records", type=int, default=100_000)
    args = parser.parse_args()
    base = Settings()
    if not kafka_health(base).healthy:
        sys.exit(f"Kafka at {base.kafka.bootstrap_servers} is not reachable: start it with infra/up")

    with tempfile.TemporaryDirectory(prefix="tracestream-bench-stream-") as scratch:
        workdir = Path(scratch)
        noop = faust_baseline(base, args.baseline_records)
        small = throughput(base, workdir, args.traces, 5)
        single = throughput(base, workdir, args.traces, 5, batched=False)
        rocksdb = throughput(base, workdir, args.traces, 5, store="rocksdb")
        big = throughput(base, workdir, args.big_traces, 1000)
        latencies = sorted(latency(base, workdir, 5000, args.latency_seconds))
        rss_before, rss_after = memory(base, workdir, args.memory_spans)

    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    rss_per_100k = (rss_after - rss_before) * 100_000 / args.memory_spans
    print(f"{'one worker process, memory store, 6 partitions':<62}{'value':>14}")
    print(f"{'baseline: Faust agent doing nothing, records/s':<62}{noop:>14.0f}")
    print(f"{'span events/s, 5-span traces, one record per trace (SDK)':<62}{small:>14.0f}")
    print(f"{'span events/s, 5-span traces, one record per event':<62}{single:>14.0f}")
    print(f"{'span events/s, 5-span traces, one record per trace, RocksDB':<62}{rocksdb:>14.0f}")
    print(f"{'span events/s, 1,000-span traces':<62}{big:>14.0f}")
    print(f"{'per-span cost, 1,000-span vs 5-span traces (x)':<62}{small / big:>14.2f}")
    print(f"{'completion latency at ~5,000 events/s, p50 ms':<62}{p50:>14.1f}")
    print(f"{'completion latency at ~5,000 events/s, p99 ms':<62}{p99:>14.1f}")
    print(
        f"{'worker RSS before / after ' + str(args.memory_spans) + ' in-flight spans, MB':<62}"
        f"{f'{rss_before:.0f} / {rss_after:.0f}':>14}"
    )
    print(
        json.dumps(
            {
                "faust_noop_records_per_s": round(noop),
                "span_events_per_s": round(small),
                "span_events_per_s_one_record_per_event": round(single),
                "span_events_per_s_rocksdb": round(rocksdb),
                "span_events_per_s_1000_span_traces": round(big),
                "per_span_cost_ratio_1000_vs_5": round(small / big, 2),
                "completion_latency_p50_ms": round(p50, 1),
                "completion_latency_p99_ms": round(p99, 1),
                "worker_rss_mb_per_100k_inflight_spans": round(rss_per_100k, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
