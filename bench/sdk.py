"""What tracing costs the application, and how fast events are encoded and produced.

    make bench-sdk        # creates .venv-mlflow (mlflow 3.17.2) for the baseline, then runs this
    .venv/bin/python bench/sdk.py [--calls 20000] [--mlflow-python PATH]

Measures, in one run:
  * application-thread time per span of a decorated no-op function (wall and thread CPU),
    with events published to the local Kafka, and with Kafka unreachable;
  * the same for MLflow's @mlflow.trace (default configuration: asynchronous export to a
    local SQLite tracking store), run in a subprocess with the mlflow interpreter;
  * Avro encoding + confluent-kafka produce throughput on one core.

  * the SDK's install: packages and MB that `pip install tracestream-sdk` (sdk/, from a
    wheel of this tree) adds to a fresh virtualenv, and `import tracestream.producers` time
    (python -X importtime), against mlflow-tracing 3.17.2 installed and imported the same way.

Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tracestream import producers as tracing
from tracestream import schemas
from tracestream.admin import TopicSpec, delete_topics, ensure_topics
from tracestream.health import kafka_health
from tracestream.kafka_connection import KafkaConnection
from tracestream.producers.config import ProducerConfig, SdkOptions
from tracestream.producers.exporter import producer_config
from tracestream.schemas.event_writer import MAX_RECORD_BYTES
from tracestream.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def noop() -> None:
    return None


def median_run(measure, runs: int) -> dict[str, float]:
    """Each figure's median over ``runs`` repetitions: this 2-core machine shares its cores with
    the broker and OpenSearch, and single runs vary by tens of percent."""
    results = [measure() for _ in range(runs)]
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def time_calls(function, calls: int) -> tuple[float, float]:
    """(wall µs, thread CPU µs) per call, after a warm-up."""
    for _ in range(500):
        function()
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        function()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    return wall / calls * 1e6, cpu / calls * 1e6


def traced_root_spans(config: ProducerConfig, calls: int) -> dict[str, float]:
    """Each call a one-span trace: the worst case (a SpanEnded and a TraceEnded per call)."""
    tracing.configure(config)
    traced = tracing.trace(noop)
    try:
        wall, cpu = time_calls(traced, calls)
        flushed_in = time.perf_counter()
        tracing.flush(30)
        flushed_in = time.perf_counter() - flushed_in
        stats = tracing.get_stats()
    finally:
        tracing.shutdown(0)
    return {
        "wall": wall,
        "cpu": cpu,
        "flush_s": flushed_in,
        "emitted": stats.emitted,
        "delivered": stats.delivered,
        "undelivered": stats.undelivered,
    }


def traced_child_spans(config: ProducerConfig, calls: int) -> dict[str, float]:
    """Spans inside one long trace: the per-span cost without the per-trace part."""
    tracing.configure(config)
    traced = tracing.trace(noop)
    try:
        with tracing.start_span("parent"):
            wall, cpu = time_calls(traced, calls)
        tracing.flush(30)
    finally:
        tracing.shutdown(0)
    return {"wall": wall, "cpu": cpu}


def mlflow_baseline(python: Path, calls: int) -> dict | None:
    if not python.exists():
        return None
    with tempfile.TemporaryDirectory(prefix="tracestream-bench-mlflow-") as tracking:
        result = subprocess.run(
            [str(python), str(ROOT / "bench" / "_mlflow_baseline.py"), str(calls), tracking],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tracking,  # MLflow writes trace artifacts under ./mlruns
        )
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def realistic_span(n: int) -> dict:
    trace_id = f"tr-{n:032x}"
    return {
        "trace_id": trace_id,
        "span_id": f"{n:016x}",
        "parent_span_id": f"{n + 1:016x}",
        "name": "ChatOpenAI",
        "span_type": "CHAT_MODEL",
        "start_time_ns": 1_763_784_000_000_000_000 + n,
        "end_time_ns": 1_763_784_000_900_000_000 + n,
        "status_code": "OK",
        "status_message": "",
        "attributes": {
            "mlflow.traceRequestId": json.dumps(trace_id),
            "mlflow.spanType": '"CHAT_MODEL"',
            "mlflow.spanInputs": json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "You are a support assistant for an online shop."},
                        {"role": "user", "content": f"Where is my order {n}? It was due on Monday."},
                    ]
                }
            ),
            "mlflow.spanOutputs": json.dumps(
                {
                    "role": "assistant",
                    "content": "Your order left our warehouse yesterday and should arrive within two days.",
                }
            ),
            "mlflow.chat.tokenUsage": '{"input_tokens": 58, "output_tokens": 21, "total_tokens": 79}',
            "temperature": "0.2",
        },
        "events": [],
        "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "1"},
    }


def produce_throughput(config: ProducerConfig, spans: int) -> dict[str, float]:
    from confluent_kafka import Producer

    codec = schemas.events_codec()
    records = [("io.tracestream.SpanEnded", realistic_span(n)) for n in range(1_000)]
    producer = Producer(producer_config(config))
    encode, produce, poll = codec.encode_union, producer.produce, producer.poll
    size = len(encode(*records[0]))

    started = time.perf_counter()
    for n in range(spans):
        event = records[n % 1_000]
        produce(config.events_topic, encode(*event), event[1]["trace_id"])
        if n % 1_000 == 0:
            poll(0)
    accepted = time.perf_counter() - started
    remaining = producer.flush(60)
    delivered = time.perf_counter() - started

    encode_only = time.perf_counter()
    for n in range(spans):
        encode(*records[n % 1_000])
    encode_only = time.perf_counter() - encode_only
    return {
        "accepted_per_s": spans / accepted,
        "delivered_per_s": spans / delivered,
        "encode_per_s": spans / encode_only,
        "bytes": size,
        "undelivered": remaining,
    }


MLFLOW_TRACING = "mlflow-tracing==3.17.2"
# Left out of the copy the wheel is built from (not source; build/ would leak stale files).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", ".stack", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".ruff_cache", ".hypothesis", ".tracestream-stream", "mlruns", "bench", "tests", "docs",
)  # fmt: skip


def sdk_wheel(workdir: Path) -> Path:
    source = workdir / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    wheel_command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(workdir / "dist")]
    subprocess.run([*wheel_command, str(source / "sdk")], check=True, capture_output=True)
    (wheel,) = (workdir / "dist").glob("tracestream_sdk-*.whl")
    return wheel


def install_footprint(requirement: str, module: str, workdir: Path, runs: int = 5) -> dict[str, float]:
    """What installing ``requirement`` adds to an empty virtualenv (no pip, no setuptools), and
    the median ``import module`` time over ``runs`` (after one import that writes the .pyc files)."""
    venv = workdir / f"venv-{module}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip())  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", requirement],
        check=True, capture_output=True,
    )  # fmt: skip
    packages = len(list(purelib.glob("*.dist-info")))
    size = sum(path.stat().st_size for path in purelib.rglob("*") if path.is_file() and not path.is_symlink())

    def import_ms() -> float:
        done = subprocess.run(
            [python, "-X", "importtime", "-c", f"import {module}"],
            check=True, capture_output=True, text=True, cwd=workdir,
        )  # fmt: skip
        # The last line is the module itself: "import time: self | cumulative | name", in µs.
        return int(done.stderr.strip().splitlines()[-1].split("|")[1]) / 1000

    import_ms()
    return {
        "packages": packages,
        "mb": size / 1e6,
        "import_ms": statistics.median(import_ms() for _ in range(runs)),
    }


def install_figures() -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="tracestream-bench-install-") as tmp:
        workdir = Path(tmp)
        return {
            "tracestream": install_footprint(str(sdk_wheel(workdir)), "tracestream.producers", workdir),
            "mlflow": install_footprint(MLFLOW_TRACING, "mlflow", workdir),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description="tracestream SDK benchmark")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--mlflow-calls", type=int, default=5_000)
    parser.add_argument("--produce-spans", type=int, default=300_000)
    parser.add_argument("--mlflow-python", type=Path, default=ROOT / ".venv-mlflow" / "bin" / "python")
    parser.add_argument("--runs", type=int, default=3, help="repetitions per figure (median reported)")
    parser.add_argument("--skip-install", action="store_true", help="leave out the install footprint")
    args = parser.parse_args()
    # The unreachable-broker run would print librdkafka's connection errors into the table.
    logging.getLogger("tracestream.producers").setLevel(logging.CRITICAL)

    base = Settings()
    if not kafka_health(base).healthy:
        sys.exit(f"Kafka at {base.kafka.bootstrap_servers} is not reachable: start it with infra/up")
    topic = f"tracestream.bench.sdk-{int(time.time())}"
    ensure_topics(base, [TopicSpec(topic, 6, 1, {"max.message.bytes": str(MAX_RECORD_BYTES)})])
    reachable = ProducerConfig(kafka=base.kafka.connection(), events_topic=topic)
    unreachable = ProducerConfig(
        kafka=KafkaConnection(bootstrap_servers="127.0.0.1:1"), sdk=SdkOptions(delivery_timeout_ms=1_000)
    )
    try:
        floor = median_run(
            lambda: dict(zip(("wall", "cpu"), time_calls(noop, args.calls), strict=True)), args.runs
        )
        floor_wall, floor_cpu = floor["wall"], floor["cpu"]
        root = median_run(lambda: traced_root_spans(reachable, args.calls), args.runs)
        child = median_run(lambda: traced_child_spans(reachable, args.calls), args.runs)
        down = median_run(lambda: traced_root_spans(unreachable, args.calls), args.runs)
        throughput = median_run(lambda: produce_throughput(reachable, args.produce_spans), args.runs)
    finally:
        delete_topics(base, [topic])
    mlflow = mlflow_baseline(args.mlflow_python, args.mlflow_calls)
    footprint = None if args.skip_install else install_figures()

    rows = [
        ("undecorated no-op (floor)", floor_wall, floor_cpu, ""),
        (
            "tracestream @trace, 1-span traces, Kafka up",
            root["wall"],
            root["cpu"],
            f"{root['delivered']}/{root['emitted']} events delivered",
        ),
        ("tracestream @trace, child spans, Kafka up", child["wall"], child["cpu"], ""),
        (
            "tracestream @trace, 1-span traces, Kafka down",
            down["wall"],
            down["cpu"],
            f"{down['undelivered']}/{down['emitted']} counted undelivered",
        ),
    ]
    if mlflow:
        rows.append(
            (
                f"mlflow {mlflow['mlflow_version']} @mlflow.trace (async export, sqlite)",
                mlflow["wall_us_per_span"],
                mlflow["thread_cpu_us_per_span"],
                f"{mlflow['traces_stored']}/{mlflow['calls']} traces stored",
            )
        )
    print(f"median of {args.runs} runs; {args.calls} calls each")
    print(f"{'application thread, per decorated call':<58}{'wall µs':>10}{'cpu µs':>10}  notes")
    for label, wall, cpu, note in rows:
        print(f"{label:<58}{wall:>10.2f}{cpu:>10.2f}  {note}")
    added_cpu = root["cpu"] - floor_cpu
    added_wall = root["wall"] - floor_wall
    print()
    print(
        f"{'encode + produce on one core (realistic LLM span, ' + str(throughput['bytes']) + ' B)':<58}"
        f"{'spans/s':>10}"
    )
    print(f"{'  Avro encode only':<58}{throughput['encode_per_s']:>10.0f}")
    print(f"{'  encode + produce (accepted by the client)':<58}{throughput['accepted_per_s']:>10.0f}")
    print(f"{'  encode + produce + flush (acknowledged by Kafka)':<58}{throughput['delivered_per_s']:>10.0f}")

    figures = {
        "added_thread_cpu_us_per_span": round(added_cpu, 2),
        "added_wall_us_per_span": round(added_wall, 2),
        "child_span_thread_cpu_us": round(child["cpu"] - floor_cpu, 2),
        "kafka_down_thread_cpu_us_per_span": round(down["cpu"] - floor_cpu, 2),
        "kafka_down_undelivered_events": int(down["undelivered"]),
        "kafka_down_emitted_events": int(down["emitted"]),
        "encode_spans_per_s": round(throughput["encode_per_s"]),
        "encode_produce_spans_per_s": round(throughput["accepted_per_s"]),
        "encode_produce_acked_spans_per_s": round(throughput["delivered_per_s"]),
    }
    if mlflow:
        mlflow_added_cpu = mlflow["thread_cpu_us_per_span"] - floor_cpu
        mlflow_added_wall = mlflow["wall_us_per_span"] - floor_wall
        figures.update(
            {
                "mlflow_added_thread_cpu_us_per_span": round(mlflow_added_cpu, 2),
                "mlflow_added_wall_us_per_span": round(mlflow_added_wall, 2),
                "mlflow_traces_stored_ratio": round(mlflow["traces_stored"] / mlflow["calls"], 3),
                "thread_cpu_ratio_vs_mlflow": round(mlflow_added_cpu / added_cpu, 1),
                "wall_ratio_vs_mlflow": round(mlflow_added_wall / added_wall, 1),
            }
        )
        print(
            f"\nadded application-thread CPU per span: tracestream {added_cpu:.2f} µs, "
            f"mlflow {mlflow_added_cpu:.2f} µs ({figures['thread_cpu_ratio_vs_mlflow']}x less)"
        )
    else:
        print(f"\nmlflow baseline not measured: {args.mlflow_python} not found (make bench-sdk creates it)")
    if footprint:
        ours, theirs = footprint["tracestream"], footprint["mlflow"]
        print(f"\n{'install into an empty virtualenv':<58}{'packages':>10}{'MB':>10}{'import ms':>11}")
        print(f"{'pip install tracestream-sdk':<58}{ours['packages']:>10}{ours['mb']:>10.1f}"
              f"{ours['import_ms']:>11.1f}")  # fmt: skip
        print(f"{'pip install ' + MLFLOW_TRACING:<58}{theirs['packages']:>10}{theirs['mb']:>10.1f}"
              f"{theirs['import_ms']:>11.1f}")  # fmt: skip
        figures.update(
            {
                "sdk_install_packages": ours["packages"],
                "sdk_install_mb": round(ours["mb"], 1),
                "sdk_import_ms": round(ours["import_ms"], 1),
                "mlflow_tracing_install_packages": theirs["packages"],
                "mlflow_tracing_install_mb": round(theirs["mb"], 1),
                "mlflow_tracing_import_ms": round(theirs["import_ms"], 1),
                "sdk_packages_ratio_vs_mlflow_tracing": round(ours["packages"] / theirs["packages"], 3),
                "sdk_mb_ratio_vs_mlflow_tracing": round(ours["mb"] / theirs["mb"], 3),
            }
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
