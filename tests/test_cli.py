"""`tracestream health` and `tracestream run` report on the servers."""

from __future__ import annotations

import pytest
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
