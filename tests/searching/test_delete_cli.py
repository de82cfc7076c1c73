"""`tracestream traces delete` and ``TraceClient.delete_traces`` against a real API process over a
private index, publishing to a private events topic: what a user at a terminal gets."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from searching.support import (
    ApiProcess,
    deleted_trace_ids,
    published_events,
    running_api,
    small_traces,
    write_traces,
)
from tracestream.cli import app
from tracestream.schemas.records import CompletedTrace
from tracestream.search_api.client import TraceClient
from tracestream.settings import Settings

START_MS = 1_763_800_000_000  # 2025-11-22
FAILED = "status = 'ERROR'"


@pytest.fixture
def traces(opensearch: OpenSearch, write_settings: Settings) -> list[CompletedTrace]:
    written = small_traces(4, seed=21, start_ms=START_MS, error=True, experiment_id="1")
    written += small_traces(3, seed=22, start_ms=START_MS + 500, error=False, experiment_id="1")
    written += small_traces(2, seed=23, start_ms=START_MS + 700, error=True, experiment_id="2")
    write_traces(opensearch, write_settings, written)
    return written


@pytest.fixture
def api(write_settings: Settings, traces: list[CompletedTrace]) -> Iterator[ApiProcess]:
    with running_api(write_settings) as process:
        yield process


def failed_oldest_first(traces: list[CompletedTrace], experiment_id: str | None = None) -> list[str]:
    chosen = [
        t
        for t in traces
        if t["info"]["state"] == "ERROR" and experiment_id in (None, t["info"]["location"]["experiment_id"])
    ]
    return [
        t["trace_id"] for t in sorted(chosen, key=lambda t: (t["info"]["request_time_ms"], t["trace_id"]))
    ]


def cli(api: ApiProcess, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["traces", "delete", "--url", api.base_url, *args], input=input
    )
    return result.exit_code, result.stdout, result.stderr


def test_a_dry_run_lists_the_traces_that_would_go_and_deletes_nothing(
    api: ApiProcess, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    code, out, _ = cli(api, "--filter-string", FAILED, "--dry-run")

    assert code == 0
    assert "Would delete 6 of 6 matching traces" in out
    assert [line for line in out.splitlines() if line.startswith("tr-")] == failed_oldest_first(traces)
    assert published_events(write_settings) == []


def test_yes_deletes_the_matches_in_the_experiment(
    api: ApiProcess, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    code, out, _ = cli(api, "--filter-string", FAILED, "--experiment-id", "1", "--yes", "--output", "json")

    assert code == 0
    answer = json.loads(out)
    assert (answer["traces_deleted"], answer["traces_matched"], answer["dry_run"]) == (4, 4, False)
    assert deleted_trace_ids(write_settings) == failed_oldest_first(traces, "1")


def test_without_yes_and_without_a_terminal_it_refuses(
    api: ApiProcess, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    code, _, err = cli(api, "--filter-string", FAILED)

    assert code == 2
    assert "--yes" in err
    assert published_events(write_settings) == []


def test_at_a_terminal_it_asks_and_deletes_no_more_than_it_showed(
    api: ApiProcess, write_settings: Settings, traces: list[CompletedTrace], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tracestream.search_api.cli._interactive", lambda: True)

    code, out, err = cli(api, "--filter-string", FAILED, "--max-traces", "2", input="y\n")

    assert code == 0, err
    assert "Delete 2 of 6 matching traces, for good?" in err
    assert "Deleted 2 of 6 matching traces" in out
    assert deleted_trace_ids(write_settings) == failed_oldest_first(traces)[:2]


def test_answering_no_deletes_nothing(
    api: ApiProcess, write_settings: Settings, traces: list[CompletedTrace], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tracestream.search_api.cli._interactive", lambda: True)

    code, _, err = cli(api, "--filter-string", FAILED, input="n\n")

    assert code == 1
    assert "Nothing deleted" in err
    assert published_events(write_settings) == []


def test_the_client_deletes_by_filter_and_says_what_it_deleted(
    api: ApiProcess, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    with TraceClient(api.base_url) as client:
        deletion = client.delete_traces(FAILED, locations=["2"])

    expected = failed_oldest_first(traces, "2")
    assert (deletion.traces_deleted, deletion.traces_matched, deletion.trace_ids) == (2, 2, expected)
    assert deleted_trace_ids(write_settings) == expected
