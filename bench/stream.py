"""Throughput, latency, per-span cost and memory of one stream worker process.

    .venv/bin/python bench/stream.py [--traces 4000]     (needs the local stack: infra/up)

Each scenario uses fresh topics and a fresh worker process (memory store):
  * throughput: traces of 5 spans produced as fast as possible; span events/s from the first
    event produced to the last completed trace received;
  * the same with traces of 1,000 spans (the per-span cost must not grow with trace size);
  * latency: traces produced at about 5,000 events/s; TraceEnded produced -> CompletedTrace received;
  * memory: worker RSS before and after 100,000 spans of traces that have not ended.

Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
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

import schemas
from schemas import SPAN_ENDED, TRACE_ENDED, new_span_id, new_trace_id
from tracestream.health import kafka_health
from tracestream.settings import Settings


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

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.worker.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024

    def close(self) -> None:
        self.worker.stop()
        self.completed.close()
        delete_all_topics(self.settings)


def throughput(base: Settings, workdir: Path, traces: int, spans_per_trace: int) -> float:
    scenario = Scenario(base, workdir)
    try:
        batch = [make_trace(spans_per_trace) for _ in range(traces)]
        wanted = {trace_id for trace_id, _, _ in batch}
        started = time.perf_counter()
        for _, spans, ended in batch:
            scenario._send(spans, ended)
        scenario.sender.flush()
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
            scenario._send(spans, None)
            scenario.sender.send(TRACE_ENDED, ended)
            scenario.sender.producer.poll(0)
            sent_at[trace_id] = time.time()
            next_send += interval
            pause = next_send - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        scenario.sender.flush()
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
            for n in range(10):
                scenario.sender.send(
                    SPAN_ENDED,
                    span(
                        trace_id,
                        f"tool_{n}",
                        root_id,
                        now,
                        now + 1,
                        attributes={"mlflow.spanInputs": '{"q": "status"}'},
                    ),
                )
            sent += 10
            scenario.sender.producer.poll(0)
        scenario.sender.flush()
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
    args = parser.parse_args()
    base = Settings()
    if not kafka_health(base).healthy:
        sys.exit(f"Kafka at {base.kafka.bootstrap_servers} is not reachable: start it with infra/up")

    with tempfile.TemporaryDirectory(prefix="tracestream-bench-stream-") as scratch:
        workdir = Path(scratch)
        small = throughput(base, workdir, args.traces, 5)
        big = throughput(base, workdir, args.big_traces, 1000)
        latencies = sorted(latency(base, workdir, 5000, args.latency_seconds))
        rss_before, rss_after = memory(base, workdir, args.memory_spans)

    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    rss_per_100k = (rss_after - rss_before) * 100_000 / args.memory_spans
    print(f"{'one worker process, memory store, 6 partitions':<62}{'value':>14}")
    print(f"{'span events/s, 5-span traces':<62}{small:>14.0f}")
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
                "span_events_per_s": round(small),
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
