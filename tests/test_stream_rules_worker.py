"""Alert rules in a real stream worker against the broker (issue 20): each condition fires (and a
windowed one resolves) as RuleAlert records on the alerts topic beside the built-in TraceAlerts,
and a rules file with a bad filter stops the worker at start with the rule's name."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from stream_harness import (
    EventSender,
    WorkerProcess,
    create_topics,
    delete_all_topics,
    rag_trace,
    send_trace,
    settings_env,
    stream_settings,
)

from tracestream import schemas
from tracestream.settings import Settings

RULES = """
[[rule]]
name = "every-error"
filter = "attributes.status = 'ERROR'"

[[rule]]
name = "error-burst"
filter = "attributes.status = 'ERROR'"
condition = "count"
threshold = 3
window = "6s"
cooldown = "1h"

[[rule]]
name = "error-ratio"
filter = "span.type = 'CHAT_MODEL' AND span.status = 'ERROR'"
condition = "ratio"
threshold = 40
min_count = 5
window = "1m"
group_by = "name"

[[rule]]
name = "slow"
filter = "trace.name = 'support_agent'"
condition = "percentile"
percentile = 95
threshold = 500
window = "1m"

[[rule]]
name = "user-tokens"
filter = ""
condition = "sum"
field = "tokens"
threshold = 2000
window = "1m"
group_by = "metadata.mlflow.trace.user"
"""


class RuleAlerts:
    """Reads the alerts topic from the start; keeps the RuleAlerts and counts the TraceAlerts."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topics.alerts
        self.consumer = Consumer(
            settings.kafka.confluent_config(
                {"group.id": f"rules-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
            )
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
        self.rules = schemas.rule_alerts_codec()
        self.errors = schemas.alerts_codec()
        self.alerts: list[dict[str, Any]] = []
        self.keys: list[bytes] = []
        self.trace_alerts = 0

    def wait_for(self, rule: str, state: str, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for alert in self.alerts:
                if alert["rule"] == rule and alert["state"] == state:
                    return alert
            for message in self.consumer.consume(num_messages=500, timeout=0.5):
                if message.error() is not None:
                    continue
                try:
                    self.alerts.append(self.rules.decode(message.value()))
                    self.keys.append(message.key())
                except schemas.DecodeError as exc:
                    assert exc.reason == schemas.DecodeReason.WRONG_TYPE
                    self.errors.decode(message.value())  # the built-in alert, unchanged
                    self.trace_alerts += 1
        raise AssertionError(f"no {state} alert of {rule} within {timeout_s}s; read {self.alerts}")

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture(scope="module")
def rules_pipeline(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, WorkerProcess]]:
    name = f"rules-{uuid.uuid4().hex[:8]}"
    rules_file = tmp_path_factory.mktemp("rules") / "rules.toml"
    rules_file.write_text(RULES)
    settings = stream_settings(
        kafka_settings, name, tmp_path_factory.mktemp("stream"), rules_file=str(rules_file)
    )
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path_factory.mktemp("logs") / "worker.log")
    try:
        yield settings, worker
    finally:
        worker.stop()
        delete_all_topics(settings)


def test_each_condition_fires_and_a_window_resolves(rules_pipeline: tuple[Settings, WorkerProcess]) -> None:
    settings, worker = rules_pipeline
    sender = EventSender(settings)
    reader = RuleAlerts(settings)
    try:
        # Three failing and two fine traces of user u-77 (457 tokens and 900 ms each).
        for error in (True, True, True, False, False):
            _, spans, ended = rag_trace(error=error)
            send_trace(sender, spans, ended)
        sender.flush()

        every = reader.wait_for("every-error", "FIRING", 120)
        assert every["condition"] == "every matching trace" and len(every["sample_trace_ids"]) == 1
        burst = reader.wait_for("error-burst", "FIRING")
        assert (burst["value"], burst["threshold"], burst["window_ms"]) == (3.0, 3.0, 6000)
        assert len(burst["sample_trace_ids"]) == 3
        ratio = reader.wait_for("error-ratio", "FIRING")
        assert ratio["group"] == "name=support_agent" and ratio["value"] >= 40
        slow = reader.wait_for("slow", "FIRING")
        assert slow["value"] == pytest.approx(900, rel=0.05)
        tokens = reader.wait_for("user-tokens", "FIRING")
        assert tokens["group"] == "mlflow.trace.user=u-77" and tokens["value"] > 2000
        # No more errors: the 6 s window slides past them and the burst resolves, once.
        resolved = reader.wait_for("error-burst", "RESOLVED", 30)
        assert resolved["value"] < 3
        assert b"error-burst|" in reader.keys and b"user-tokens|mlflow.trace.user=u-77" in reader.keys
        assert reader.trace_alerts == 3  # today's TraceAlert for each ERROR trace stays
        time.sleep(3)
        reader.wait_for("slow", "FIRING")
        assert [a["state"] for a in reader.alerts if a["rule"] == "error-burst"] == ["FIRING", "RESOLVED"]
    except AssertionError:
        print(worker.log_tail())
        raise
    finally:
        reader.close()


def test_a_bad_rule_stops_the_worker_at_start_with_its_name(kafka_settings: Settings, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        '[[rule]]\nname = "fine"\nfilter = ""\n\n'
        '[[rule]]\nname = "typo-in-filter"\nfilter = "attributes.status = ERROR"\n'
    )
    settings = stream_settings(
        kafka_settings, f"badrules-{uuid.uuid4().hex[:8]}", tmp_path, rules_file=str(rules_file)
    )
    done = subprocess.run(
        [sys.executable, "-m", "tracestream", "stream", "worker"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert "rule 'typo-in-filter': filter: " in done.stderr
    assert "attributes.status = ERROR\n" in done.stderr and "^^^^^" in done.stderr
    assert "Traceback" not in done.stderr
