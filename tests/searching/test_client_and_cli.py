"""The Python client and the `tracestream traces` commands against a real API process over real
OpenSearch: what a user at a notebook or a terminal gets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from searching.support import ApiProcess, running_api, small_traces, write_traces
from tracestream import search_api
from tracestream.cli import app
from tracestream.schemas.records import CompletedTrace
from tracestream.search_api.client import TraceClient, TraceSearchError
from tracestream.settings import Settings, get_settings

START_MS = 1_763_800_000_000  # 2025-11-22
PROD, STAGING = 9, 6


@pytest.fixture(scope="module")
def traces(opensearch: OpenSearch, settings: Settings) -> list[CompletedTrace]:
    written = small_traces(PROD, seed=11, start_ms=START_MS, error=False, tags={"env": "prod"})
    written += small_traces(STAGING, seed=12, start_ms=START_MS + 500, error=True, tags={"env": "staging"})
    write_traces(opensearch, settings, written)
    return written


@pytest.fixture(scope="module")
def api(settings: Settings, traces: list[CompletedTrace]) -> Iterator[ApiProcess]:
    with running_api(settings) as process:
        yield process


@pytest.fixture
def api_env(api: ApiProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment of a user whose settings point at the API (MLflow-style module functions)."""
    port = api.base_url.rsplit(":", 1)[1]
    monkeypatch.setenv("TRACESTREAM_API__HOST", "127.0.0.1")
    monkeypatch.setenv("TRACESTREAM_API__PORT", port)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _newest_first(traces: list[CompletedTrace]) -> list[str]:
    ordered = sorted(traces, key=lambda t: (-t["info"]["request_time_ms"], t["trace_id"]))
    return [t["trace_id"] for t in ordered]


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


# ---------------------------------------------------------------- Python client


def test_search_traces_pages_through_every_match_into_mlflows_dataframe(
    api_env: None, traces: list[CompletedTrace]
) -> None:
    frame = search_api.search_traces(filter_string="tags.env = 'prod'", max_results=None)

    assert isinstance(frame, pd.DataFrame)
    assert list(frame["trace_id"]) == _newest_first([t for t in traces if t["info"]["tags"]["env"] == "prod"])
    assert set(frame["state"]) == {"OK"}
    assert (frame["tags.env"] == "prod").all()


def test_search_traces_stops_at_max_results_across_pages(
    api: ApiProcess, traces: list[CompletedTrace]
) -> None:
    with TraceClient(api.base_url) as client:
        first = client.search_traces(max_results=10)
        second = client.search_traces(max_results=10, page_token=first.token)

    assert [t.info.trace_id for t in first + second] == _newest_first(traces)
    assert second.token is None


def test_the_client_raises_the_dsl_error_with_its_position(
    api: ApiProcess, traces: list[CompletedTrace]
) -> None:
    with TraceClient(api.base_url) as client, pytest.raises(TraceSearchError) as raised:
        client.search_traces(filter_string="tags.env = 'prod' AND status ~ 'x'")

    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert raised.value.position is not None
    assert raised.value.position > len("tags.env = 'prod' AND ")


def test_get_trace_returns_spans_and_none_for_an_unknown_id(
    api: ApiProcess, traces: list[CompletedTrace]
) -> None:
    wanted = traces[3]
    with TraceClient(api.base_url) as client:
        trace = client.get_trace(wanted["trace_id"])
        missing = client.get_trace("tr-" + "0" * 32)

    assert trace is not None
    assert trace.info.trace_id == wanted["trace_id"]
    assert {span.span_id for span in trace.data.spans} == {span["span_id"] for span in wanted["spans"]}
    assert missing is None


@pytest.mark.parametrize("max_results", [0, -1])
def test_search_traces_below_one_result_raises_the_apis_400_error(
    api: ApiProcess, api_env: None, max_results: int
) -> None:
    with TraceClient(api.base_url) as client, pytest.raises(TraceSearchError) as answered:
        client.search_traces(max_results=max_results)

    with pytest.raises(TraceSearchError) as raised:
        search_api.search_traces(max_results=max_results)

    assert answered.value.status_code == 400
    assert raised.value.error_code == answered.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "max_results" in raised.value.message


def test_get_trace_of_an_id_with_slashes_is_none(api: ApiProcess, traces: list[CompletedTrace]) -> None:
    with TraceClient(api.base_url) as client:
        assert client.get_trace("a/b/../c") is None


def test_get_trace_of_an_empty_id_is_an_invalid_parameter() -> None:
    with TraceClient("http://127.0.0.1:1") as client, pytest.raises(TraceSearchError) as raised:
        client.get_trace("")

    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert raised.value.is_usage_error


def test_a_url_without_a_scheme_is_a_configuration_error_not_an_unreachable_server() -> None:
    with pytest.raises(TraceSearchError) as raised:
        TraceClient("127.0.0.1:8080")

    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "needs a scheme, e.g. http://127.0.0.1:8080" in raised.value.message


def test_export_traces_streams_every_match_in_order(api: ApiProcess, traces: list[CompletedTrace]) -> None:
    with TraceClient(api.base_url) as client:
        exported = [t.info.trace_id for t in client.export_traces(filter_string="status = 'ERROR'")]

    assert exported == _newest_first([t for t in traces if t["info"]["state"] == "ERROR"])


def test_an_unreachable_api_is_a_typed_error() -> None:
    with TraceClient("http://127.0.0.1:1", timeout_s=2) as client, pytest.raises(TraceSearchError) as raised:
        client.search_traces()

    assert raised.value.error_code == "TEMPORARILY_UNAVAILABLE"


# ---------------------------------------------------------------- tracestream traces …


def test_cli_search_prints_a_table_and_the_next_page_token(
    api: ApiProcess, traces: list[CompletedTrace]
) -> None:
    code, out, _ = _cli("traces", "search", "--url", api.base_url, "--max-results", "4")

    assert code == 0, out
    newest = _newest_first(traces)
    assert all(trace_id in out for trace_id in newest[:4])
    assert newest[4] not in out
    assert "Next page token: " in out


def test_cli_json_pages_through_every_trace_with_page_tokens(
    api: ApiProcess, traces: list[CompletedTrace]
) -> None:
    seen: list[str] = []
    token: str | None = None
    while True:
        args = ["traces", "search", "--url", api.base_url, "--max-results", "5", "--output", "json"]
        code, out, err = _cli(*args, *(["--page-token", token] if token else []))
        assert code == 0, err
        page = json.loads(out)
        seen += [trace["info"]["trace_id"] for trace in page["traces"]]
        token = page["next_page_token"]
        if token is None:
            break

    assert seen == _newest_first(traces)


def test_cli_search_filters_and_orders_like_mlflow(api: ApiProcess, traces: list[CompletedTrace]) -> None:
    code, out, err = _cli(
        "traces", "search", "--url", api.base_url, "--output", "json", "--no-include-spans",
        "--filter-string", "status = 'ERROR'", "--order-by", "timestamp_ms ASC, request_id",
    )  # fmt: skip

    assert code == 0, err
    page = json.loads(out)
    errors = _newest_first([t for t in traces if t["info"]["state"] == "ERROR"])
    assert [trace["info"]["trace_id"] for trace in page["traces"]] == errors[::-1]
    assert all(trace["data"]["spans"] == [] for trace in page["traces"])


def test_cli_reports_an_invalid_filter_and_exits_1(api: ApiProcess, traces: list[CompletedTrace]) -> None:
    code, out, err = _cli("traces", "search", "--url", api.base_url, "--filter-string", "tags.env == 'prod'")

    assert code == 1
    assert "INVALID_PARAMETER_VALUE" in err
    assert out == ""


def test_cli_shows_where_in_the_filter_the_error_is(api: ApiProcess, traces: list[CompletedTrace]) -> None:
    code, _, err = _cli("traces", "search", "--url", api.base_url, "--filter-string", "tags.env == 'prod'")

    assert code == 1
    lines = err.splitlines()
    filter_line = lines.index("tags.env == 'prod'")
    caret = lines[filter_line + 1]
    assert caret.strip().startswith("^") and caret.index("^") == "tags.env == 'prod'".index("==")


def test_cli_get_prints_mlflow_trace_json(api: ApiProcess, traces: list[CompletedTrace]) -> None:
    wanted = traces[0]

    code, out, err = _cli("traces", "get", "--url", api.base_url, "--trace-id", wanted["trace_id"])

    assert code == 0, err
    trace = json.loads(out)
    assert trace["info"]["trace_id"] == wanted["trace_id"]
    assert len(trace["data"]["spans"]) == len(wanted["spans"])


def test_cli_get_of_an_unknown_trace_exits_1(api: ApiProcess, traces: list[CompletedTrace]) -> None:
    code, _, err = _cli("traces", "get", "--url", api.base_url, "--trace-id", "tr-" + "f" * 32)

    assert code == 1
    assert "not found" in err


def test_cli_export_writes_one_trace_per_line(
    api: ApiProcess, traces: list[CompletedTrace], tmp_path: Path
) -> None:
    target = tmp_path / "prod.ndjson"

    code, _, err = _cli(
        "traces", "export", "--url", api.base_url, "--filter-string", "tags.env = 'prod'", "-o", str(target)
    )

    assert code == 0, err
    lines = target.read_text().splitlines()
    assert [json.loads(line)["info"]["trace_id"] for line in lines] == _newest_first(
        [t for t in traces if t["info"]["tags"]["env"] == "prod"]
    )
    assert f"{PROD} traces written" in err


def test_cli_get_of_an_empty_trace_id_is_a_usage_error(api: ApiProcess) -> None:
    code, out, err = _cli("traces", "get", "--url", api.base_url, "--trace-id", "")

    assert code == 2
    assert "must not be empty" in err
    assert "ENDPOINT_NOT_FOUND" not in err
    assert out == ""


def test_cli_get_of_an_id_with_slashes_is_not_found(api: ApiProcess, traces: list[CompletedTrace]) -> None:
    code, _, err = _cli("traces", "get", "--url", api.base_url, "--trace-id", "a/b/../c")

    assert code == 1
    assert "not found" in err
    assert "ENDPOINT_NOT_FOUND" not in err


def test_cli_url_without_a_scheme_is_a_configuration_error() -> None:
    code, _, err = _cli("traces", "search", "--url", "127.0.0.1:8080")

    assert code == 2
    assert "needs a scheme" in err
    assert "unreachable" not in err


def test_cli_error_message_is_one_line_on_a_narrow_pipe() -> None:
    result = CliRunner(env={"COLUMNS": "40"}).invoke(app, ["traces", "search", "--url", "127.0.0.1:8080"])

    assert result.exit_code == 2
    [message] = result.stderr.splitlines()
    assert "needs a scheme, e.g. http://127.0.0.1:8080" in message


def test_cli_export_to_a_missing_directory_says_so_in_a_line(api: ApiProcess, tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "x.ndjson"

    code, _, err = _cli("traces", "export", "--url", api.base_url, "-o", str(target))

    assert code == 1
    assert err.splitlines() == [f"error: {target}: No such file or directory"]
