"""`tracestream health` and `tracestream run` report on the servers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from commands import run_tracestream
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from tracestream.cli import app
from tracestream.settings import KafkaSettings, Settings


def test_health_reports_both_servers_healthy(
    kafka_settings: Settings, opensearch: OpenSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tracestream.cli.get_settings", lambda: kafka_settings)

    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["health"])

    assert result.exit_code == 0, result.output
    assert "cluster_id=" in result.output
    assert "version=2." in result.output
    assert "no" not in result.output.split()


def test_health_exits_1_and_names_the_unreachable_server(
    opensearch: OpenSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 1 of the loopback address.
    unreachable = Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    monkeypatch.setattr("tracestream.cli.get_settings", lambda: unreachable)

    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["health"])

    assert result.exit_code == 1
    kafka_line = next(line for line in result.output.splitlines() if "kafka" in line)
    assert "unreachable" in kafka_line
    assert "127.0.0.1:1" in kafka_line


# ---------------------------------------------------------------- failures told in a line or two
# Run as a real process: librdkafka and logging write to the process's stderr, which CliRunner
# does not see.

NOBODY = "127.0.0.1:1"  # nothing listens on port 1 of the loopback address


def _tracestream(*args: str, timeout_s: float = 60.0, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRACESTREAM_")}
    environment.update({"COLUMNS": "200", **env})
    return run_tracestream(*args, env=environment, timeout_s=timeout_s)


@pytest.mark.parametrize(
    "command", [["indexer", "get", "tr-" + "0" * 32], ["indexer", "retention", "--days", "3"]]
)
def test_a_command_needing_opensearch_says_it_is_unreachable_in_two_lines(command: list[str]) -> None:
    result = _tracestream(*command, TRACESTREAM_OPENSEARCH__URL=f"http://{NOBODY}")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) <= 2, result.stderr
    assert f"OpenSearch is unreachable at http://{NOBODY}" in result.stderr
    assert "TRACESTREAM_OPENSEARCH__URL" in result.stderr


@pytest.mark.parametrize("command", [["admin", "init"], ["stream", "worker"], ["indexer", "run"]])
def test_a_command_needing_kafka_says_it_is_unreachable_within_the_request_timeout(
    command: list[str], tmp_path: Path
) -> None:
    started = time.monotonic()

    result = _tracestream(
        *command,
        TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS=NOBODY,
        TRACESTREAM_KAFKA__REQUEST_TIMEOUT_S="2",
        TRACESTREAM_STREAM__DATA_DIR=str(tmp_path),
    )

    assert result.returncode == 1
    # 2 s for Kafka, the rest is the interpreter starting and importing.
    assert time.monotonic() - started < 15
    # The worker may log its start first; the failure is the last two lines.
    lines = result.stderr.splitlines()
    assert lines[-2].startswith(f"error: Kafka is unreachable at {NOBODY}"), result.stderr
    assert "TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS" in lines[-1]
    # Neither a traceback nor librdkafka's own log lines ("%3|…|FAIL|…").
    assert not any("|FAIL|" in line for line in lines)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRACESTREAM_API__PORT", "abc"),
        ("TRACESTREAM_STREAM__IDLE_TIMEOUT_S", "-5"),
        ("TRACESTREAM_KAFKA__SECURITY_PROTOCOL", "bogus"),
    ],
)
def test_an_invalid_setting_is_named_by_its_environment_variable(variable: str, value: str) -> None:
    result = _tracestream("health", **{variable: value})

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) <= 2, result.stderr
    assert variable in result.stderr
    assert repr(value) in result.stderr
    assert result.stdout == ""


def test_health_with_opensearch_down_prints_only_its_table() -> None:
    result = _tracestream("health", TRACESTREAM_OPENSEARCH__URL=f"http://{NOBODY}")

    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr
    assert result.stdout.lstrip().startswith("Servers")


@pytest.mark.parametrize(("args", "env"), [(["--debug"], {}), ([], {"TRACESTREAM_DEBUG": "1"})])
def test_debug_shows_the_traceback(args: list[str], env: dict[str, str]) -> None:
    result = _tracestream(
        *args, "indexer", "get", "tr-" + "0" * 32, TRACESTREAM_OPENSEARCH__URL=f"http://{NOBODY}", **env
    )

    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("opensearchpy.exceptions.ConnectionError")


def test_an_unknown_option_is_a_usage_error_with_the_usage_line() -> None:
    done = _tracestream("indexer", "get", "--trace-id", "tr-1")

    assert done.returncode == 2
    assert "tracestream indexer get [OPTIONS]" in done.stderr
    assert "No such option: --trace-id" in done.stderr
    assert "unexpected error" not in done.stderr
