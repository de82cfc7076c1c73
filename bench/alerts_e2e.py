"""Alert rules end to end (issue 20, "Measure"): alert latency to a webhook, and the stream's
throughput with 0, 20 and 100 rules.

    .venv/bin/python bench/alerts_e2e.py [--spans-per-s 2000] [--seconds 60] [--latency-rules 20]
                                         [--traces 4000] [--runs 3]          (needs infra/up)
    smoke (about 2 minutes): --seconds 10 --traces 1000 --runs 1
    --skip-latency / --skip-throughput run one half; --keep-logs keeps the processes' logs.

Rules are bench/alerts.py's ``rule_tables`` (bench/predicate.py's typical filters with varied
values, under the five conditions in turn, half of them grouped), written to a TOML rules file
whose ``[[webhook]]`` table points at a local receiver (``stream.receiver.AlertReceiver``, in
this process: it verifies each delivery's signature and records when it arrived). Every rule
names that webhook. Each scenario has its own topics and consumer groups (tests/stream_harness.py:
``stream_settings``, ``WorkerProcess``), one stream worker process with the memory store and 6
partitions, and deletes its topics at the end.

  * alert latency: the worker with ``--latency-rules`` rules (``rule_tables`` plus one probe rule,
    ``every`` trace with ``status = 'ERROR'``, cooldown 1 ms) and a webhook deliverer
    (`tracestream alerts deliver`) as processes; one producer process emits traces through the SDK
    at ``--spans-per-s`` (bench/_e2e_producer.py: 10-span agent traces, one in ten failing), and
    logs each trace's id and the time its root span ended. Latency = the receiver got the probe's
    POST - the root span's end, for every failed trace, matched by the alert's sample trace ids;
    split at the alert's ``at_ms`` (when the worker's rule fired) into stream and delivery.
    Target p99 < 1 s at 2,000 spans/s with 20 rules.
  * throughput: as bench/stream.py's (its ``Scenario``): a worker is started and warmed up, then
    a prepared backlog of ``--traces`` traces of ``--spans-per-trace`` spans (agent traces with
    tags, a user, token usage, one in ten failing in a tool) is exported as the SDK sends it, as
    fast as it goes; spans/s = spans / (the last of them completed, by the worker's own
    ``completed_time_ms`` - the first exported). TraceEnded records are not counted (bench/
    stream.py's "span events/s" count them). 0 rules is a worker without a rules file. The three
    rule counts run ``--runs`` times, interleaved and in a rotated order; each run's ratio is to
    the 0-rule figure of the same run. Target >= 0.9x at 20 rules. Also the records each run
    wrote to the worker's changelog topics per trace, by table (the last run's), where the
    rules' window writes show.

Prints a table, then as its last line one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH))

from alerts import rule_tables  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from e2e import cpu_seconds, percentile, rounded  # noqa: E402
from stream_harness import (  # noqa: E402
    EventSender,
    WorkerProcess,
    create_topics,
    delete_all_topics,
    rag_trace,
    send_trace,
    settings_env,
    span,
    stream_settings,
)

from tracestream.health import kafka_health  # noqa: E402
from tracestream.schemas import new_trace_id  # noqa: E402
from tracestream.settings import Settings  # noqa: E402
from tracestream.stream.receiver import AlertReceiver, Received  # noqa: E402
from tracestream.stream.rules import load_rules  # noqa: E402


def _bench_module(name: str) -> Any:
    """A script of bench/ by path: ``import stream`` would name the stream package."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Scenario = _bench_module("stream").Scenario  # bench/stream.py's worker + exporter + reader
SECRET_ENV = "TRACESTREAM_BENCH_WEBHOOK_SECRET"
WEBHOOK = "bench"
PROBE_RULE = "probe-error-every"
PRODUCER = BENCH / "_e2e_producer.py"
PARTITIONS = 6


# --- the rules file ------------------------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # A JSON string or list of strings is a TOML basic string or array (same escapes).
    return json.dumps(value, ensure_ascii=False)


def write_rules_file(path: Path, rules: int, webhook_url: str, probe: bool) -> Path:
    """``rules`` rules of bench/alerts.py's ``rule_tables`` (the last one the probe when
    ``probe``), each naming the one webhook, which points at ``webhook_url``."""
    tables = rule_tables(rules - 1 if probe else rules, random.Random(rules))
    if probe:
        tables.append(
            {"name": PROBE_RULE, "filter": "status = 'ERROR'", "condition": "every", "cooldown": "1ms"}
        )
    lines = [
        "[[webhook]]",
        f"name = {_toml_value(WEBHOOK)}",
        f"url = {_toml_value(webhook_url)}",
        'format = "json"',
        f"secret_env = {_toml_value(SECRET_ENV)}",
        "allow_private = true",
        "",
    ]
    for table in tables:
        lines.append("[[rule]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in {**table, "webhooks": [WEBHOOK]}.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    assert len(load_rules(path).rules) == rules  # the worker's own parser
    return path


# --- alert latency -------------------------------------------------------------------------------


class Arrivals:
    """What the receiver got: when the probe's alert for each trace arrived, and counts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.probe: dict[str, float] = {}  # trace id -> arrival, ms since the epoch
        self.fired: dict[str, float] = {}  # trace id -> the alert's at_ms (the worker's clock)
        self.by_rule: dict[str, int] = {}
        self.rejected = 0

    def __call__(self, received: Received) -> None:
        now_ms = time.time() * 1000
        with self.lock:
            if not received.verified:
                self.rejected += 1
                return
            if received.duplicate:
                return
            data = (received.body or {}).get("data") or {}
            rule = str(data.get("rule"))
            self.by_rule[rule] = self.by_rule.get(rule, 0) + 1
            if rule == PROBE_RULE and data.get("state") == "FIRING":
                for trace_id in data.get("sample_trace_ids") or []:
                    self.probe.setdefault(trace_id, now_ms)
                    self.fired.setdefault(trace_id, float(data.get("at_ms") or 0))

    def seen(self, trace_ids: set[str]) -> int:
        with self.lock:
            return len(trace_ids & set(self.probe))


def wait(condition: Any, timeout_s: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_bytes()[-2000:].decode(errors='replace')}" for p in logs)
            raise SystemExit(f"{what}: not within {timeout_s:.0f} s\n{tails}")
        time.sleep(0.2)


def alert_latency(base: Settings, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench-alerts-{uuid.uuid4().hex[:8]}"
    arrivals = Arrivals()
    receiver = AlertReceiver(os.environ[SECRET_ENV], on_delivery=arrivals).start()
    rules_file = write_rules_file(workdir / f"{name}.toml", args.latency_rules, receiver.url, probe=True)
    settings = stream_settings(base, name, workdir / name, partitions=PARTITIONS, rules_file=str(rules_file))
    env = {
        **os.environ,
        **settings_env(settings),
        "TRACESTREAM_WEBHOOKS__GROUP_ID": f"{name}-webhooks",
        "TRACESTREAM_WEBHOOKS__START_AT": "earliest",
        "PYTHONUNBUFFERED": "1",
    }
    worker: WorkerProcess | None = None
    deliverer: subprocess.Popen[bytes] | None = None
    deliverer_log = workdir / f"{name}-deliver.log"
    try:
        create_topics(settings)
        worker = WorkerProcess(settings, workdir / f"{name}-worker.log")
        with deliverer_log.open("wb") as log:
            deliverer = subprocess.Popen(
                [sys.executable, "-m", "tracestream", "alerts", "deliver"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # Ready when a failed trace's probe alert has gone worker -> alerts topic -> deliverer ->
        # receiver.
        sender = EventSender(settings)
        warm_id, spans, ended = rag_trace(error=True)
        send_trace(sender, spans, ended)
        sender.flush()
        wait(
            lambda: arrivals.seen({warm_id}) == 1,
            180,
            "the warm-up alert to reach the receiver",
            [worker.log_path, deliverer_log],
        )
        print(f"alert latency: pipeline ready, {args.latency_rules} rules (logs in {workdir})", flush=True)

        traces_log = workdir / f"{name}-traces.jsonl"
        traces_per_s = args.spans_per_s / args.producer_spans_per_trace
        cpu_before = {"worker": cpu_seconds(worker.process.pid), "deliverer": cpu_seconds(deliverer.pid)}
        started = time.monotonic()
        produced = subprocess.run(
            [
                sys.executable,
                str(PRODUCER),
                str(traces_per_s),
                str(args.seconds),
                str(args.producer_spans_per_trace),
                "20",
                str(traces_log),
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if produced.returncode != 0:
            raise SystemExit(f"the producer failed:\n{produced.stderr[-3000:]}")
        producer_wall_s = time.monotonic() - started
        stats = json.loads(produced.stdout.strip().splitlines()[-1])
        traces = [json.loads(line) for line in traces_log.read_text().splitlines()]
        failed = {t["trace_id"]: t["end_ms"] for t in traces if t["error"]}
        # Drain: until every failed trace's alert is in, or 20 s without a new one.
        last, last_change = -1, time.monotonic()
        while time.monotonic() - last_change < 20:
            count = arrivals.seen(set(failed))
            if count == len(failed):
                break
            if count != last:
                last, last_change = count, time.monotonic()
            time.sleep(0.2)
        wall_s = time.monotonic() - started
        cpu = {
            "worker": cpu_seconds(worker.process.pid) - cpu_before["worker"],
            "deliverer": cpu_seconds(deliverer.pid) - cpu_before["deliverer"],
        }
    finally:
        if deliverer is not None and deliverer.poll() is None:
            deliverer.send_signal(signal.SIGTERM)
            try:
                deliverer.wait(20)
            except subprocess.TimeoutExpired:
                deliverer.kill()
                deliverer.wait(5)
        if worker is not None:
            worker.stop()
        receiver.stop()
        delete_all_topics(settings)
    with arrivals.lock:
        latencies = [arrivals.probe[t] - end for t, end in failed.items() if t in arrivals.probe]
        # The two halves: root end -> the worker's evaluation (at_ms), and at_ms -> received.
        evaluated = [arrivals.fired[t] - end for t, end in failed.items() if t in arrivals.probe]
        delivered = [arrivals.probe[t] - arrivals.fired[t] for t in failed if t in arrivals.probe]
        deliveries = dict(arrivals.by_rule)
        rejected = arrivals.rejected
    return {
        "latency_rules": args.latency_rules,
        "target_spans_per_s": args.spans_per_s,
        "produced_spans_per_s": round(stats["spans"] / stats["traces"] * stats["traces_per_s"]),
        "producer_seconds": round(producer_wall_s, 1),
        "alert_latency_p50_ms": rounded(percentile(latencies, 0.5)),
        "alert_latency_p99_ms": rounded(percentile(latencies, 0.99)),
        "alert_latency_max_ms": rounded(max(latencies, default=None)),
        "alert_latency_samples": len(latencies),
        "root_end_to_evaluated_p50_ms": rounded(percentile(evaluated, 0.5)),
        "root_end_to_evaluated_p99_ms": rounded(percentile(evaluated, 0.99)),
        "evaluated_to_received_p50_ms": rounded(percentile(delivered, 0.5)),
        "evaluated_to_received_p99_ms": rounded(percentile(delivered, 0.99)),
        "alerts_expected": len(failed),
        "webhook_deliveries_other_rules": sum(n for r, n in deliveries.items() if r != PROBE_RULE),
        "webhook_deliveries_rejected": rejected,
        "cpu_worker_pct": round(100 * cpu["worker"] / wall_s),
        "cpu_deliverer_pct": round(100 * cpu["deliverer"] / wall_s),
    }


# --- throughput ----------------------------------------------------------------------------------

TOOLS = ("search_kb", "lookup_order", "issue_refund")
MODELS = ('"gpt-4o-mini"', '"claude-sonnet-4"', '"gpt-4.1"')
TOKEN_USAGE = '{"input_tokens": 420, "output_tokens": 37, "total_tokens": 457}'


def make_trace(rng: random.Random, spans_per_trace: int) -> tuple[str, list[dict], dict]:
    """A support-agent trace with what the rules' filters look at: tags (env, service, version),
    a user, LLM spans with a model and token usage, tool spans; one in ten fails in a tool."""
    trace_id = new_trace_id()
    error = rng.random() < 0.1
    now = int(time.time() * 1000)
    duration = rng.randrange(300, 3000)
    root = span(
        trace_id,
        "support_agent",
        None,
        now,
        now + duration,
        "ERROR" if error else "OK",
        "AGENT",
        {
            "mlflow.spanInputs": json.dumps({"question": f"Where is order A{rng.randrange(10000, 99999)}?"}),
            "mlflow.spanOutputs": '"Your order has shipped."',
        },
    )
    children = []
    for n in range(spans_per_trace - 1):
        start = now + n * duration // spans_per_trace
        end = start + duration // spans_per_trace
        last = n == spans_per_trace - 2
        if n % 2 == 0:
            children.append(
                span(
                    trace_id,
                    "ChatOpenAI",
                    root["span_id"],
                    start,
                    end,
                    span_type="CHAT_MODEL",
                    attributes={
                        "model": rng.choice(MODELS),
                        "mlflow.chat.tokenUsage": TOKEN_USAGE,
                        "mlflow.spanInputs": json.dumps({"prompt": f"step {n} of the plan " * 8}),
                    },
                )
            )
        else:
            children.append(
                span(
                    trace_id,
                    rng.choice(TOOLS),
                    root["span_id"],
                    start,
                    end,
                    "ERROR" if error and last else "OK",
                    "TOOL",
                    {
                        "mlflow.spanInputs": '{"order": "A12345"}',
                        "mlflow.spanOutputs": '{"status": "shipped"}',
                    },
                )
            )
    ended = {
        "trace_id": trace_id,
        "client_request_id": None,
        "location": root["location"],
        "request_time_ms": now,
        "execution_duration_ms": duration,
        "state": "ERROR" if error else "OK",
        "tags": {
            "mlflow.traceName": "support_agent",
            "env": rng.choice(("prod", "staging")),
            "service": "support-bot",
            "version": rng.choice(("1.2.0", "1.3.0", "2.0.1")),
        },
        "metadata": {"mlflow.trace_schema.version": "3", "mlflow.trace.user": f"user-{rng.randrange(100)}"},
        "request_preview": root["attributes"]["mlflow.spanInputs"],
        "response_preview": '"Your order has shipped."',
        "root_span_id": root["span_id"],
        "span_count": spans_per_trace,
    }
    return trace_id, [root, *children], ended


def changelog_records(settings: Settings) -> dict[str, int]:
    """Records in each of the worker's changelog topics so far, by table name."""
    prefix = f"{settings.stream.app_id}-"
    consumer = Consumer(settings.kafka.confluent_config({"group.id": f"{prefix}bench-watermarks"}))
    try:
        counts = {}
        for name, topic in consumer.list_topics(timeout=10).topics.items():
            if name.startswith(prefix) and name.endswith("-changelog"):
                counts[name[len(prefix) : -len("-changelog")]] = sum(
                    high - low
                    for low, high in (
                        consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                        for p in topic.partitions
                    )
                )
        return counts
    finally:
        consumer.close()


def throughput(
    base: Settings, workdir: Path, rules: int, args: argparse.Namespace, seed: int
) -> tuple[float, dict[str, int]]:
    """Spans/s of one worker through a backlog of traces with ``rules`` rules, and the records
    its changelog topics got (by table)."""
    stream: dict[str, object] = {}
    if rules:
        # No deliverer runs here: the webhook's address is never called.
        path = workdir / f"rules-{rules}.toml"
        stream["rules_file"] = str(write_rules_file(path, rules, "http://127.0.0.1:9/alerts", probe=False))
    scenario = Scenario(base, workdir, **stream)
    try:
        rng = random.Random(seed)
        batch = [make_trace(rng, args.spans_per_trace) for _ in range(args.traces)]
        wanted = {trace_id for trace_id, _, _ in batch}
        started_ms = time.time() * 1000
        scenario.export([(spans, ended) for _, spans, ended in batch])
        scenario.flush()
        records = scenario.completed.wait_for(lambda rs: wanted <= {r["trace_id"] for r in rs}, timeout_s=900)
        changelogs = changelog_records(scenario.settings)
    finally:
        scenario.close()
    # The worker's own emission time of the last of them, not the reader's 0.5 s polls.
    finished_ms = max(r["completed_time_ms"] for r in records if r["trace_id"] in wanted)
    return args.traces * args.spans_per_trace / ((finished_ms - started_ms) / 1000), changelogs


def throughput_runs(
    base: Settings, workdir: Path, args: argparse.Namespace
) -> tuple[dict[int, list[float]], dict[int, dict[str, float]]]:
    """Spans/s per rule count, run by run; and changelog records per trace by table (last run)."""
    counts = [0, *args.rule_counts]
    results: dict[int, list[float]] = {count: [] for count in counts}
    per_trace: dict[int, dict[str, float]] = {}
    for run in range(args.runs):
        order = counts[run % len(counts) :] + counts[: run % len(counts)]
        for count in order:
            value, changelogs = throughput(base, workdir, count, args, seed=run)
            results[count].append(value)
            # The warm-up trace's records are in these too: one in thousands.
            per_trace[count] = {table: n / args.traces for table, n in sorted(changelogs.items())}
            print(
                f"throughput run {run + 1}/{args.runs}: {count:>3} rules  {value:>8.0f} spans/s", flush=True
            )
    return results, per_trace


def shown(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans-per-s", type=int, default=2000, help="Alert latency: the producer's rate.")
    parser.add_argument("--seconds", type=float, default=60, help="Alert latency: producer's run time.")
    parser.add_argument("--latency-rules", type=int, default=20, help="Alert latency: rules, probe included.")
    parser.add_argument("--producer-spans-per-trace", type=int, default=10)
    parser.add_argument("--traces", type=int, default=4000, help="Throughput: traces in the backlog.")
    parser.add_argument("--spans-per-trace", type=int, default=5, help="Throughput: spans per trace.")
    parser.add_argument("--runs", type=int, default=3, help="Throughput: runs of each rule count.")
    parser.add_argument("--rule-counts", default="20,100", help="Throughput: rule counts besides 0.")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="Keep the processes' logs and rules files.")
    args = parser.parse_args()
    args.rule_counts = [int(n) for n in args.rule_counts.split(",") if n.strip()]
    base = Settings()
    if not kafka_health(base).healthy:
        sys.exit(f"Kafka at {base.kafka.bootstrap_servers} is not reachable: start it with infra/up")
    os.environ.setdefault(SECRET_ENV, uuid.uuid4().hex)  # the deliverer's and the receiver's

    began = time.monotonic()
    figures: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="tracestream-bench-alerts-"))
    try:
        if not args.skip_latency:
            figures.update(alert_latency(base, workdir, args))
        runs, changelogs = ({}, {}) if args.skip_throughput else throughput_runs(base, workdir, args)
    finally:
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    if not args.skip_latency:
        print(
            f"alert latency, root span end -> webhook received: {figures['latency_rules']} rules, "
            f"target {args.spans_per_s:,} spans/s, {args.producer_spans_per_trace}-span traces, "
            "1 in 10 failing"
        )
        rows = [
            ("produced spans/s", f"{figures['produced_spans_per_s']:,}", ""),
            (
                "probe alerts received / failed traces",
                f"{figures['alert_latency_samples']:,} / {figures['alerts_expected']:,}",
                "all",
            ),
            ("p50 ms", shown(figures["alert_latency_p50_ms"]), ""),
            ("p99 ms", shown(figures["alert_latency_p99_ms"]), "< 1,000"),
            ("max ms", shown(figures["alert_latency_max_ms"]), ""),
            (
                "  root end -> rule fired (at_ms), p50/p99",
                f"{shown(figures['root_end_to_evaluated_p50_ms'])} / "
                f"{shown(figures['root_end_to_evaluated_p99_ms'])}",
                "",
            ),
            (
                "  rule fired -> received, p50/p99",
                f"{shown(figures['evaluated_to_received_p50_ms'])} / "
                f"{shown(figures['evaluated_to_received_p99_ms'])}",
                "",
            ),
            ("deliveries of the other rules", f"{figures['webhook_deliveries_other_rules']:,}", ""),
            (
                "worker / deliverer CPU, % of one core",
                f"{figures['cpu_worker_pct']} / {figures['cpu_deliverer_pct']}",
                "",
            ),
        ]
        for label, value, target in rows:
            print(f"  {label:<40}{value:>18}   {target}")
        print()
    if runs:
        print(
            f"stream throughput, one worker, memory store, {PARTITIONS} partitions: backlog of "
            f"{args.traces:,} traces of {args.spans_per_trace} spans, {args.runs} interleaved run(s)"
        )
        header = "".join(f"{'run ' + str(n + 1):>9}" for n in range(args.runs))
        print(f"  {'rules':>5}{header}{'mean':>9}{'ratio':>8}   per-run ratio")
        zero = statistics.mean(runs[0])
        figures["throughput_traces"] = args.traces
        figures["throughput_spans_per_trace"] = args.spans_per_trace
        for count, values in runs.items():
            mean = statistics.mean(values)
            per_run_ratio = [v / z for v, z in zip(values, runs[0], strict=True)]
            cells = "".join(f"{v:>9.0f}" for v in values)
            ratios = ", ".join(f"{r:.2f}" for r in per_run_ratio)
            target = "   target >= 0.90" if count == 20 else ""
            print(f"  {count:>5}{cells}{mean:>9.0f}{mean / zero:>8.2f}   {ratios}{target}")
            figures[f"throughput_{count}_rules_spans_per_s"] = round(mean)
            figures[f"throughput_{count}_rules_spans_per_s_runs"] = [round(v) for v in values]
            figures[f"changelog_records_per_trace_{count}_rules"] = round(sum(changelogs[count].values()), 2)
            if count:
                figures[f"throughput_ratio_{count}_rules"] = round(mean / zero, 3)
                figures[f"throughput_ratio_{count}_rules_runs"] = [round(r, 3) for r in per_run_ratio]
        print("  changelog records written per trace, by table:")
        for count, tables in changelogs.items():
            cells = ", ".join(f"{table} {n:.2f}" for table, n in tables.items())
            print(f"  {count:>5}   {cells}")
        print()
    figures["bench_wall_s"] = round(time.monotonic() - began)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
