"""Traces made in forked processes (os.fork, multiprocessing pools, prefork servers) reach Kafka.

Each scenario runs as a real program against the real broker, with its own events topic; the
topic is then read back to find every trace the program says it made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer

from tracestream import schemas
from tracestream.settings import Settings

REPO = Path(__file__).resolve().parents[2]

PRELUDE = """
import json, multiprocessing, os, sys, time
from tracestream import producers as mlflow

@mlflow.trace
def answer(question):
    return {"trace_id": mlflow.get_active_trace_id(), "pid": os.getpid(), "answer": question.upper()}

def report(**fields):
    stats = mlflow.get_stats()
    fields.update(emitted=stats.emitted, delivered=stats.delivered, dropped=stats.dropped,
                  failed=stats.failed, pid=os.getpid())
    print(json.dumps(fields), flush=True)
"""


def run_program(body: str, topic: str, tmp_path: Path) -> tuple[list[dict], str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRACESTREAM_")}
    environment["PYTHONPATH"] = str(REPO)
    environment["TRACESTREAM_TOPICS__EVENTS"] = topic
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")], done.stderr


def traces_in(topic: str, kafka: Settings, expected: int, timeout_s: float = 30.0) -> dict[str, int]:
    """Events per trace id in ``topic``, read until ``expected`` traces are there (or the time is up)."""
    codec = schemas.events_codec()
    group = f"fork-test-{uuid.uuid4().hex}"
    consumer = Consumer(kafka.kafka.confluent_config({"group.id": group, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    events: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(events) < expected:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            for _, record in schemas.events_of(codec.decode(message.value())["event"]):
                events[record["trace_id"]] = events.get(record["trace_id"], 0) + 1
    finally:
        consumer.close()
    return events


def test_a_forked_child_sends_its_own_traces_with_counters_of_its_own(
    kafka_settings: Settings, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = unique_topic(partitions=2)
    reports, _ = run_program(
        """
        parent_trace = answer("before the fork")["trace_id"]
        child = os.fork()
        if child == 0:
            trace_id = answer("in the child")["trace_id"]
            started = time.monotonic()
            flushed = mlflow.flush(5)
            report(who="child", trace_id=trace_id, flushed=flushed, flush_s=time.monotonic() - started)
            os._exit(0)
        os.waitpid(child, 0)
        report(who="parent", trace_id=parent_trace, flushed=mlflow.flush(5))
        """,
        topic,
        tmp_path,
    )
    child, parent = reports

    assert child["flushed"] and child["flush_s"] < 2.0
    # Each process counts its own trace (a span and a TraceEnded), and each adds up.
    for process in (child, parent):
        counts = (process["emitted"], process["delivered"], process["dropped"], process["failed"])
        assert counts == (2, 2, 0, 0)
    assert traces_in(topic, kafka_settings, expected=2) == {child["trace_id"]: 2, parent["trace_id"]: 2}


def test_a_child_that_exits_without_flushing_sends_its_traces_at_once(
    kafka_settings: Settings, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = unique_topic()
    reports, stderr = run_program(
        """
        answer("warm up")
        child = os.fork()
        if child == 0:
            report(who="child", trace_id=answer("in the child")["trace_id"])
            sys.exit(0)
        started = time.monotonic()
        os.waitpid(child, 0)
        report(who="parent", child_exit_s=time.monotonic() - started)
        """,
        topic,
        tmp_path,
    )
    child, parent = reports

    assert parent["child_exit_s"] < 3.0
    assert "unsent at exit" not in stderr
    assert child["trace_id"] in traces_in(topic, kafka_settings, expected=2)


def test_pool_workers_traces_arrive_when_the_pool_ends_them(
    kafka_settings: Settings, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A Pool used as a context manager terminates its workers (SIGTERM) as soon as map returns."""
    topic = unique_topic(partitions=3)
    reports, _ = run_program(
        """
        answer("the parent traces first")
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(answer, [f"question {n}" for n in range(8)])
        report(traces=[r["trace_id"] for r in results], pids=sorted({r["pid"] for r in results}),
               flushed=mlflow.flush(5))
        """,
        topic,
        tmp_path,
    )
    [parent] = reports

    assert len(parent["pids"]) >= 1 and parent["pid"] not in parent["pids"]
    arrived = traces_in(topic, kafka_settings, expected=9)
    assert set(parent["traces"]) <= set(arrived), "every worker's trace reached Kafka"
    assert all(arrived[trace_id] == 2 for trace_id in parent["traces"])


def test_pool_workers_of_a_parent_that_never_traced_send_their_traces(
    kafka_settings: Settings, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = unique_topic(partitions=3)
    reports, _ = run_program(
        """
        pool = multiprocessing.get_context("fork").Pool(2)
        results = pool.map(answer, [f"question {n}" for n in range(6)])
        pool.close()
        pool.join()
        report(traces=[r["trace_id"] for r in results])
        """,
        topic,
        tmp_path,
    )
    [parent] = reports

    assert parent["emitted"] == 0, "the parent made no trace of its own"
    assert set(traces_in(topic, kafka_settings, expected=6)) == set(parent["traces"])


def test_sigterm_while_the_child_holds_the_processors_lock_still_flushes_and_terminates(
    kafka_settings: Settings, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The handler runs between two bytecodes of the main thread, here one inside the processor's
    wake-up lock (as when a Pool ends a worker that is flushing at its exit)."""
    topic = unique_topic()
    reports, _ = run_program(
        """
        import signal
        from tracestream.producers import provider
        answer("warm up")
        child = os.fork()
        if child == 0:
            trace_id = answer("in the child")["trace_id"]
            report(who="child", trace_id=trace_id)
            with provider._provider.processor._wake._cond:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
            time.sleep(30)  # the flush ends the process long before this
            os._exit(0)
        started = time.monotonic()
        _, status = os.waitpid(child, 0)
        report(who="parent", signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
               waited_s=time.monotonic() - started)
        """,
        topic,
        tmp_path,
    )
    child, parent = reports

    assert parent["signal"] == 15, "the child ended by its SIGTERM, after the flush"
    assert parent["waited_s"] < 10
    assert child["trace_id"] in traces_in(topic, kafka_settings, expected=2)
