"""The whole pipeline under sustained load: SDK → Kafka → stream → Kafka → indexer → OpenSearch → API.

    .venv/bin/python bench/e2e.py [--spans-per-s 10000] [--seconds 60] [--producers 2]
                                  [--spans-per-trace 10] [--workers 1] [--mlflow-traces 2000]
    (needs infra/up)

Everything runs colocated on this machine with private topics, consumer groups and index prefix:
one or more stream workers, one indexer and the search API as `tracestream` processes, and
producer processes emitting traces through the SDK at a fixed rate (bench/_e2e_producer.py;
10-span agent traces, one in ten failing). While they run:
  * freshness: one trace in 20 is polled through the search API (`request_id IN (...)` every
    200 ms); freshness = first seen in search - the root span's end;
  * alert latency: an alerts-topic consumer in this process; latency = alert received - root end,
    for every failed trace;
  * consumer lag of the stream's and the indexer's groups when the producers stop;
  * CPU time of every process, Kafka's and OpenSearch's included, from the first span produced to
    the last trace indexed, as a share of one core (2 cores = 200 %): where the time goes;
  * peak RSS (VmHWM) of every process; drops = traces the SDK counted as emitted but never indexed
    (waiting for the backlog to drain for as long as it makes progress).
"Sustained spans/s" is spans indexed / (last trace indexed - first span produced): what the
pipeline as a whole delivered, backlog included.
In the same run, MLflow 3.17.2 logs the same traces (`--mlflow-traces` of them) to its SQLite store
through `mlflow.start_span`, synchronously and with its default asynchronous export, and says how
many it stored.
Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from tracestream import schemas
from tracestream.admin import delete_topics, ensure_topics
from tracestream.indexer import IndexNames, opensearch_client
from tracestream.main_job import stop_processes
from tracestream.settings import Settings, isolated_env

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_PYTHON = ROOT / ".venv-mlflow" / "bin" / "python"
SAMPLE_EVERY = 20


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else None


def rounded(value: float | None) -> int | None:
    return None if value is None else round(value)


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, NaN once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def server_pids() -> dict[str, int]:
    """Kafka's and OpenSearch's JVMs on this machine (infra/up), found by their main classes."""
    found = {}
    for name, main_class in (("kafka", "kafka.Kafka"), ("opensearch", "org.opensearch.bootstrap.OpenSearch")):
        listed = subprocess.run(["pgrep", "-f", main_class], capture_output=True, text=True, check=False)
        pids = [int(pid) for pid in listed.stdout.split()]
        if pids:
            found[name] = pids[0]
    return found


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Run:
    """Private names for one benchmark run, as the environment of its processes."""

    def __init__(self, base: Settings, partitions: int) -> None:
        self.name = f"bench-e2e-{uuid.uuid4().hex[:6]}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.port = free_port()
        self.env = {
            **os.environ,
            **isolated_env(self.name, partitions, self.dir / "stream", api_port=self.port),
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("TRACESTREAM_")})
        self.settings = Settings()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, *args], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[name] = process
        return process

    def stop(self) -> None:
        stop_processes(list(self.processes.values()), timeout_s=20)

    def cleanup(self) -> None:
        client = opensearch_client(self.settings)
        names = IndexNames.from_settings(self.settings)
        client.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
        client.indices.delete_index_template(name=names.template, ignore=[404])
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.settings.kafka.confluent_config({}))
        topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(self.name)]
        delete_topics(self.settings, topics)


def group_lag(settings: Settings, group: str, topic: str) -> int:
    consumer = Consumer(settings.kafka.confluent_config({"group.id": group, "enable.auto.commit": False}))
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        lag = 0
        for committed in consumer.committed(partitions, timeout=10):
            low, high = consumer.get_watermark_offsets(committed, timeout=10)
            lag += high - (committed.offset if committed.offset >= 0 else low)
        return lag
    finally:
        consumer.close()


class AlertListener(threading.Thread):
    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="alerts")
        self.settings = settings
        self.received: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        codec = schemas.alerts_codec(self.settings.kafka.schema_registry_url, self.settings.topics.alerts)
        consumer = Consumer(
            self.settings.kafka.confluent_config(
                {"group.id": f"bench-alerts-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
            )
        )
        consumer.subscribe([self.settings.topics.alerts])
        try:
            while not self.stop.is_set():
                message = consumer.poll(0.1)
                if message is None or message.error() is not None:
                    continue
                now = time.time() * 1000
                alert = codec.decode(message.value())
                self.received.setdefault(alert["trace_id"], now)
        finally:
            consumer.close()


class FreshnessPoller(threading.Thread):
    """Tails the producers' trace logs; polls the API for a sample of traces until each is seen."""

    def __init__(self, api: str, logs: list[Path]) -> None:
        super().__init__(daemon=True, name="freshness")
        self.api = api
        self.logs = logs
        self.ends: dict[str, float] = {}
        self.errors: dict[str, float] = {}
        self.pending: dict[str, float] = {}
        self.freshness_ms: list[float] = []
        self.first_produced_ms: float | None = None
        self.stop = threading.Event()
        # After stop, pending samples are still polled until this monotonic time.
        self.stop_deadline = float("inf")

    def _read_new(self, offsets: dict[Path, int]) -> None:
        for path in self.logs:
            if not path.exists():
                continue
            with path.open("rb") as source:
                source.seek(offsets.get(path, 0))
                data = source.read()
            complete = data[: data.rfind(b"\n") + 1]
            offsets[path] = offsets.get(path, 0) + len(complete)
            for line in complete.splitlines():
                record = json.loads(line)
                self.ends[record["trace_id"]] = record["end_ms"]
                if record["error"]:
                    self.errors[record["trace_id"]] = record["end_ms"]
                if self.first_produced_ms is None or record["end_ms"] < self.first_produced_ms:
                    self.first_produced_ms = record["end_ms"]
                if len(self.ends) % SAMPLE_EVERY == 0:
                    self.pending[record["trace_id"]] = record["end_ms"]

    def run(self) -> None:
        offsets: dict[Path, int] = {}
        with httpx.Client(base_url=self.api, timeout=10) as http:
            while not self.stop.is_set() or self.pending:
                self._read_new(offsets)
                ids = list(self.pending)[:100]
                if ids:
                    quoted = ", ".join(f"'{i}'" for i in ids)
                    body = {"filter": f"request_id IN ({quoted})", "max_results": 100, "include_spans": False}
                    try:
                        response = http.post("/api/v1/traces/search", json=body)
                        found = [t["info"]["trace_id"] for t in response.json().get("traces", [])]
                    except (httpx.HTTPError, ValueError):
                        found = []
                    now = time.time() * 1000
                    for trace_id in found:
                        self.freshness_ms.append(now - self.pending.pop(trace_id))
                if self.stop.is_set() and self.stop_deadline < time.monotonic():
                    return
                time.sleep(0.2)


def count_indexed(settings: Settings) -> int:
    client = opensearch_client(settings)
    alias = IndexNames.from_settings(settings).read_alias
    try:
        return int(client.count(index=alias, params={"ignore_unavailable": "true"})["count"])
    except Exception:
        return 0


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(Settings(), partitions=max(6, 2 * args.workers))
    figures: dict[str, Any] = {}
    try:
        ensure_topics(run.settings)
        for n in range(args.workers):
            run.start(f"stream-{n}", ["-m", "tracestream", "stream", "worker"])
        run.start("indexer", ["-m", "tracestream", "indexer", "run"])
        run.start("api", ["-m", "tracestream", "api", "serve"])
        api = f"http://127.0.0.1:{run.port}"
        # Ready when a warm-up trace is searchable: every stage is then up.
        warm_log = run.dir / "warmup.jsonl"
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "_e2e_producer.py"), "5", "1", "3", "0", str(warm_log)],
            env=run.env,
            check=True,
            capture_output=True,
        )
        warm_ids = [json.loads(line)["trace_id"] for line in warm_log.read_text().splitlines()]
        deadline = time.monotonic() + 120
        while count_indexed(run.settings) < len(warm_ids):
            if time.monotonic() > deadline:
                raise SystemExit(f"the pipeline did not index the warm-up traces; logs in {run.dir}")
            time.sleep(0.5)
        baseline_count = count_indexed(run.settings)
        print(f"pipeline ready (logs in {run.dir})", flush=True)

        alerts = AlertListener(run.settings)
        alerts.start()
        traces_per_s = args.spans_per_s / args.spans_per_trace / args.producers
        logs = [run.dir / f"producer-{n}.jsonl" for n in range(args.producers)]
        poller = FreshnessPoller(api, logs)
        poller.start()
        produce_start = time.time() * 1000
        producers = [
            run.start(
                f"producer-{n}",
                [
                    str(ROOT / "bench" / "_e2e_producer.py"),
                    str(traces_per_s),
                    str(args.seconds),
                    str(args.spans_per_trace),
                    str(100 + n),
                    str(logs[n]),
                ],
            )
            for n in range(args.producers)
        ]
        peak_lag = {"stream": 0, "indexer": 0}
        peak_rss: dict[str, float] = {}
        servers = {**server_pids(), "bench_harness": os.getpid()}
        cpu_at_start = {name: cpu_seconds(pid) for name, pid in servers.items()}
        cpu_at_start.update({name: cpu_seconds(p.pid) for name, p in run.processes.items()})
        cpu_last: dict[str, float] = {}

        def sample_rss() -> None:
            for name, process in run.processes.items():
                rss = peak_rss_mb(process.pid)
                if rss == rss:  # not NaN: the process is still there
                    peak_rss[name] = max(peak_rss.get(name, 0.0), rss)
            pids = {**servers, **{name: p.pid for name, p in run.processes.items()}}
            for name, pid in pids.items():
                used = cpu_seconds(pid)
                if used == used:
                    cpu_last[name] = used

        while any(p.poll() is None for p in producers):
            time.sleep(2)
            sample_rss()
            peak_lag["stream"] = max(
                peak_lag["stream"],
                group_lag(run.settings, run.settings.stream.app_id, run.settings.topics.events),
            )
            peak_lag["indexer"] = max(
                peak_lag["indexer"],
                group_lag(run.settings, run.settings.indexer.group_id, run.settings.topics.completed),
            )
        produced_until = time.time() * 1000
        stats = []
        for n in range(args.producers):
            lines = (run.dir / f"producer-{n}.log").read_text().strip().splitlines()
            stats.append(json.loads(lines[-1]))
        emitted_traces = sum(s["traces"] for s in stats)
        expected = baseline_count + emitted_traces
        # Drain: wait until every trace is indexed, for as long as the count keeps growing (a
        # backlog of minutes is a figure, not a loss); a minute without progress ends the wait.
        indexed = count_indexed(run.settings)
        last_change = time.time() * 1000
        while indexed < expected and time.time() * 1000 - last_change < 60_000:
            time.sleep(0.5)
            now_count = count_indexed(run.settings)
            if now_count != indexed:
                indexed, last_change = now_count, time.time() * 1000
                sample_rss()
        poller.stop_deadline = time.monotonic() + 10
        poller.stop.set()
        poller.join(30)
        time.sleep(2)
        alerts.stop.set()
        alerts.join(10)
        indexed_traces = indexed - baseline_count
        first = poller.first_produced_ms or produce_start
        alert_latency = [alerts.received[t] - end for t, end in poller.errors.items() if t in alerts.received]
        figures.update(
            {
                "target_spans_per_s": args.spans_per_s,
                "produced_spans_per_s": round(
                    sum(s["spans"] for s in stats) / ((produced_until - first) / 1000)
                ),
                "sustained_spans_per_s": round(
                    indexed_traces * args.spans_per_trace / ((last_change - first) / 1000)
                ),
                "traces_emitted": emitted_traces,
                "traces_indexed": indexed_traces,
                "drops": emitted_traces - indexed_traces,
                "sdk_dropped_events": sum(s["dropped"] + s["failed"] for s in stats),
                "freshness_p50_ms": rounded(percentile(poller.freshness_ms, 0.5)),
                "freshness_p99_ms": rounded(percentile(poller.freshness_ms, 0.99)),
                "freshness_samples": len(poller.freshness_ms),
                "alert_p50_ms": rounded(percentile(alert_latency, 0.5)),
                "alert_p99_ms": rounded(percentile(alert_latency, 0.99)),
                "alerts_received": len(alert_latency),
                "alerts_expected": len(poller.errors),
                "peak_stream_lag_events": peak_lag["stream"],
                "peak_indexer_lag_records": peak_lag["indexer"],
            }
        )
        # CPU up to the last trace indexed (sampled then), as a share of one core.
        wall_s = (last_change - produce_start) / 1000
        cpu: dict[str, float] = {}
        for name, used in cpu_last.items():
            group = "producers" if name.startswith("producer-") else name.replace("-", "_")
            cpu[group] = cpu.get(group, 0.0) + used - cpu_at_start.get(name, 0.0)
        for group, used in cpu.items():
            figures[f"cpu_{group}_pct"] = round(100 * used / wall_s)
        sample_rss()
        for name, rss in peak_rss.items():
            if not name.startswith("producer"):
                figures[f"rss_{name.replace('-', '_')}_mb"] = round(rss)
        figures["rss_producer_mb"] = round(max(v for k, v in peak_rss.items() if k.startswith("producer-")))
        return figures
    finally:
        run.stop()
        if not args.keep:
            run.cleanup()


def run_mlflow(traces: int, spans_per_trace: int) -> dict[str, Any] | None:
    if not MLFLOW_PYTHON.exists() or traces <= 0:
        return None
    results: dict[str, Any] = {}
    for mode in ("sync", "async"):
        with tempfile.TemporaryDirectory(prefix="bench-e2e-mlflow-") as workdir:
            completed = subprocess.run(
                [
                    str(MLFLOW_PYTHON),
                    str(ROOT / "bench" / "_mlflow_e2e.py"),
                    mode,
                    str(traces),
                    str(spans_per_trace),
                    workdir,
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=workdir,  # MLflow writes trace artifacts under ./mlruns
            )
            if completed.returncode != 0:
                raise RuntimeError(f"MLflow baseline failed:\n{completed.stderr[-3000:]}")
            results[mode] = json.loads(completed.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans-per-s", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--spans-per-trace", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="Stream worker processes.")
    parser.add_argument("--mlflow-traces", type=int, default=2_000)
    parser.add_argument("--keep", action="store_true", help="Keep the run's topics and indices.")
    args = parser.parse_args()

    figures = run_pipeline(args)
    mlflow = run_mlflow(args.mlflow_traces, args.spans_per_trace)
    if mlflow:
        for mode, result in mlflow.items():
            figures[f"mlflow_{mode}_spans_per_s"] = round(result["spans_per_s"])
            figures[f"mlflow_{mode}_traces_stored"] = result["stored"]
            figures[f"mlflow_{mode}_traces_logged"] = result["traces"]
        figures["sustained_over_mlflow_sync_ratio"] = round(
            figures["sustained_spans_per_s"] / max(1, figures["mlflow_sync_spans_per_s"]), 1
        )

    print()
    print(f"{'figure':<34}{'value':>14}   target")
    print("-" * 62)
    targets = {
        "sustained_spans_per_s": ">= 10,000",
        "freshness_p99_ms": "< 2,000",
        "alert_p99_ms": "< 1,000",
        "drops": "0",
    }
    for key, value in figures.items():
        shown = "n/a" if value is None else f"{value:,}"
        print(f"{key:<34}{shown:>14}   {targets.get(key, '')}")
    print()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
