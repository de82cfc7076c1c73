"""`tracestream traces search` as a person uses it: the examples of its --help work, and its table
keeps every column when the output is piped."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import pytest
from commands import run_tracestream
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from searching.support import (
    ApiProcess,
    running_api,
    small_traces,
    write_traces,
)
from tracestream.cli import app
from tracestream.schemas.records import CompletedTrace
from tracestream.search_api.cli import ORDER_BY_OPTION
from tracestream.settings import Settings

START_MS = 1_763_900_000_000


@pytest.fixture(scope="module")
def traces(opensearch: OpenSearch, settings: Settings) -> list[CompletedTrace]:
    written = small_traces(6, seed=21, start_ms=START_MS, error=False, tags={"env": "prod"})
    write_traces(opensearch, settings, written)
    return written


@pytest.fixture(scope="module")
def api(settings: Settings, traces: list[CompletedTrace]) -> Iterator[ApiProcess]:
    with running_api(settings) as process:
        yield process


def test_the_order_by_example_of_the_help_is_accepted(api: ApiProcess, traces: list[CompletedTrace]) -> None:
    example = re.search(r"e\.g\. '([^']+)'", ORDER_BY_OPTION.help or "").group(1)  # type: ignore[union-attr]

    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        app, ["traces", "search", "--url", api.base_url, "--order-by", example, "--output", "json"]
    )

    assert result.exit_code == 0, result.output
    returned = [trace["info"]["trace_id"] for trace in json.loads(result.stdout)["traces"]]
    assert sorted(returned) == sorted(t["trace_id"] for t in traces)


def test_a_piped_search_table_keeps_the_duration_and_preview_columns(
    api: ApiProcess, traces: list[CompletedTrace]
) -> None:
    # As `tracestream traces search | cat` from a script: no terminal anywhere, no COLUMNS.
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    piped = run_tracestream("traces", "search", "--url", api.base_url, "--max-results=3", env=env)

    assert piped.returncode == 0, piped.stderr
    header = next(line for line in piped.stdout.splitlines() if "trace_id" in line)
    assert re.search(r"duration_ms\s*┃\s*request\s*┃\s*response", header), header
    newest = max(traces, key=lambda t: t["info"]["request_time_ms"])
    row = next(line for line in piped.stdout.splitlines() if newest["trace_id"] in line)
    assert str(newest["info"]["execution_duration_ms"]) in row
