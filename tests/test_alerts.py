"""Reading the alerts topic (stream/alerts.py): `tracestream alerts tail` and the main job's
`ALERT` lines read every alert through one consumer, and say so at once when Kafka is down."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from commands import run_tracestream
from confluent_kafka import Producer
from rich.console import Console
from waiting import wait_until

from tracestream import schemas
from tracestream.main_job import MainJob
from tracestream.settings import Settings
from tracestream.stream.alerts import AlertTail


def _alert(n: int) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return {
        "trace_id": f"tr-{n:032x}",
        "revision": 1,
        "trace_name": "support_agent",
        "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "0"},
        "request_time_ms": now_ms - 1500,
        "execution_duration_ms": 1400,
        "failed_spans": [
            {
                "span_id": f"{n:016x}",
                "name": "refund_lookup",
                "status_message": "TimeoutError: billing service timed out",
                "exception_types": ["TimeoutError"],
            }
        ],
        "tags": {"env": "demo"},
        "metadata": {"mlflow.user": "agent-0"},
        "alert_time_ms": now_ms,
    }


def _produce_spaced(settings: Settings, count: int, spacing_s: float) -> list[str]:
    """``count`` alerts, one every ``spacing_s``, as the stream worker writes them."""
    codec = schemas.alerts_codec(None, settings.topics.alerts)
    producer = Producer(settings.kafka.confluent_config())
    ids = []
    for n in range(count):
        alert = _alert(1000 + n)
        producer.produce(settings.topics.alerts, key=alert["trace_id"].encode(), value=codec.encode(alert))
        producer.flush(10)
        ids.append(alert["trace_id"])
        time.sleep(spacing_s)
    return ids


@pytest.fixture
def alerts_settings(kafka_settings: Settings, unique_topic: Callable[..., str]) -> Settings:
    topics = kafka_settings.topics.model_copy(update={"alerts": unique_topic()})
    return kafka_settings.model_copy(update={"topics": topics})


def test_a_tail_reads_every_alert_produced_after_it_opens(alerts_settings: Settings) -> None:
    with AlertTail(alerts_settings) as tail:
        produced = _produce_spaced(alerts_settings, 5, 0.2)
        read = [alert["trace_id"] for alert in tail.follow(max_alerts=5, timeout_s=30)]

    assert read == produced


def test_a_tail_from_the_beginning_reads_the_alerts_kept(alerts_settings: Settings) -> None:
    produced = _produce_spaced(alerts_settings, 3, 0)

    with AlertTail(alerts_settings, from_beginning=True) as tail:
        read = [alert["trace_id"] for alert in tail.follow(max_alerts=3, timeout_s=30)]

    assert read == produced


def test_the_main_job_counts_every_alert_produced_over_several_seconds(
    alerts_settings: Settings, tmp_path: Path
) -> None:
    output = io.StringIO()
    job = MainJob(alerts_settings, 0, 1.0, None, tmp_path, Console(file=output, width=200))
    follower = job.start_alerts_tail()
    try:
        produced = _produce_spaced(alerts_settings, 12, 0.5)  # six seconds of alerts
        wait_until(lambda: job.alerts_seen >= len(produced), 30, "the job to count every alert")
    finally:
        job.stop.set()
        follower.join(10)

    assert job.alerts_seen == len(produced)
    lines = [line for line in output.getvalue().splitlines() if line.startswith("ALERT ")]
    assert [line.split()[1] for line in lines] == produced
    assert lines[0].endswith("failed in refund_lookup: TimeoutError: billing service timed out")
    assert not follower.is_alive()


def test_the_job_stops_following_alerts_when_told_to(alerts_settings: Settings, tmp_path: Path) -> None:
    job = MainJob(alerts_settings, 0, 1.0, None, tmp_path, Console(file=io.StringIO()))
    follower = job.start_alerts_tail()

    job.stop.set()
    follower.join(10)

    assert not follower.is_alive()


def test_alerts_tail_with_kafka_down_exits_1_with_one_message_and_no_client_log_lines() -> None:
    env = {
        **os.environ,
        # Nothing listens on port 1 of the loopback address.
        "TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "TRACESTREAM_KAFKA__REQUEST_TIMEOUT_S": "2",
    }

    # Before the fix it never gave up: the timeout here only bounds a regression.
    tail = run_tracestream("alerts", "tail", "--max", "1", env=env, timeout_s=90)

    assert tail.returncode == 1
    assert tail.stdout == ""
    assert "unreachable" in tail.stderr and "127.0.0.1:1" in tail.stderr
    assert "Connection refused" not in tail.stderr  # librdkafka's own lines stay in the logger
    assert len(tail.stderr.strip().splitlines()) <= 2, tail.stderr


def test_alerts_tail_with_kafka_down_and_a_timeout_is_an_error_too() -> None:
    env = {
        **os.environ,
        "TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "TRACESTREAM_KAFKA__REQUEST_TIMEOUT_S": "2",
    }

    tail = run_tracestream("alerts", "tail", "--timeout", "5", env=env, timeout_s=90)

    assert tail.returncode == 1, tail.stderr
    assert "unreachable" in tail.stderr
