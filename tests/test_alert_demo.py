"""The alerting demo of the main job (issue 20, item 6): the example rules file it ships, and the
two commands it runs, `tracestream alerts deliver` and `tracestream alerts receiver`, as
processes against the broker: a RuleAlert on the alerts topic is printed, verified, by the
receiver."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from rich.console import Console
from waiting import wait_until

from tracestream import schemas
from tracestream.main_job import DEMO_RULES_FILE, DEMO_SECRET_ENV, MainJob
from tracestream.search_api.dsl import parse_filter
from tracestream.settings import Settings
from tracestream.stream.rules import load_rules
from tracestream.stream.webhooks import load_webhooks

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_rules_file_has_a_tool_error_rate_a_latency_and_a_token_budget_rule() -> None:
    data = tomllib.loads(DEMO_RULES_FILE.read_text())
    rules = {rule["name"]: rule for rule in data["rule"]}

    assert [rule["condition"] for rule in rules.values()] == ["ratio", "percentile", "sum"]
    assert "span.type = 'TOOL'" in rules["tool-error-rate"]["filter"]
    assert rules["user-token-budget"]["group_by"] == "metadata.mlflow.trace.user"
    for rule in rules.values():
        parse_filter(rule["filter"])  # raises on a filter the search API would refuse
    assert [rule.name for rule in load_rules(DEMO_RULES_FILE).rules] == list(rules)  # the worker's parser
    webhooks = load_webhooks(DEMO_RULES_FILE, {DEMO_SECRET_ENV: "x"})
    assert {name for rule in rules.values() for name in rule["webhooks"]} <= set(webhooks)
    assert webhooks["local"].url == "http://127.0.0.1:9099/alerts" and webhooks["local"].allow_private


def test_the_main_job_runs_the_demo_rules_with_a_deliverer_unless_rules_are_configured(
    tmp_path: Path,
) -> None:
    console = Console(file=io.StringIO())
    demo = MainJob(Settings(), 3, 4.0, None, tmp_path, console)
    own_settings = Settings().model_copy(
        update={"stream": Settings().stream.model_copy(update={"rules_file": "/etc/rules.toml"})}
    )
    own = MainJob(own_settings, 3, 4.0, None, tmp_path, console)
    bare = MainJob(Settings(), 0, 4.0, None, tmp_path, console)

    assert demo.demo_rules and demo.rules_file == str(DEMO_RULES_FILE)
    assert not own.demo_rules and own.rules_file == "/etc/rules.toml"
    assert [c.args for c in demo.services][-1] == ["alerts", "deliver"]
    assert [c.args for c in own.services][-1] == ["alerts", "deliver"]
    assert ["alerts", "deliver"] not in [c.args for c in bare.services]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Lines:
    """A process's stdout lines, read in a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: self.lines.extend(iter(stdout.readline, "")), daemon=True).start()

    def having(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []

    def run(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tracestream", *args],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / f"{args[1]}.err").open("w"),
            text=True,
        )
        processes.append(process)
        return process

    yield run
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_rule_alert_goes_from_the_alerts_topic_through_deliver_to_the_receiver(
    kafka_settings: Settings,
    unique_topic: Callable[..., str],
    tmp_path: Path,
    start: Callable[..., subprocess.Popen[str]],
) -> None:
    port = _free_port()
    rules = tmp_path / "rules.toml"
    rules.write_text(DEMO_RULES_FILE.read_text().replace("127.0.0.1:9099", f"127.0.0.1:{port}"))
    alerts, dead_letters = unique_topic(), unique_topic()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        DEMO_SECRET_ENV: uuid.uuid4().hex,
        "TRACESTREAM_TOPICS__ALERTS": alerts,
        "TRACESTREAM_TOPICS__DEAD_LETTERS": dead_letters,
        "TRACESTREAM_STREAM__RULES_FILE": str(rules),
        "TRACESTREAM_WEBHOOKS__GROUP_ID": f"{alerts}-webhooks",
        "TRACESTREAM_WEBHOOKS__START_AT": "earliest",
    }
    receiver = Lines(start("alerts", "receiver", "--port", str(port), env=env))
    wait_until(lambda: receiver.having("receiving webhooks on"), 30, "the receiver to listen")
    start("alerts", "deliver", env=env)
    alert = {
        "alert_id": uuid.uuid4().hex,
        "rule": "tool-error-rate",
        "severity": "page",
        "state": "FIRING",
        "group": "support_agent",
        "condition": "ratio >= 3% of >= 50 traces over 1m",
        "value": 6.2,
        "threshold": 3.0,
        "window_ms": 60_000,
        "sample_trace_ids": [f"tr-{42:032x}"],
        "at_ms": 1_760_000_000_000,
        "webhooks": ["local"],
    }
    producer = Producer(kafka_settings.kafka.confluent_config())
    producer.produce(
        alerts, key=b"tool-error-rate|support_agent", value=schemas.rule_alerts_codec().encode(alert)
    )
    assert producer.flush(10) == 0

    [line] = wait_until(lambda: receiver.having("WEBHOOK"), 60, "the receiver to print the alert")

    assert "FIRING tool-error-rate [support_agent] (page)" in line
    assert "value 6.2, threshold 3 over 1m" in line and f"tr-{42:032x}" in line
    assert not receiver.having("REJECTED")
