"""The client's search_traces DataFrame against the one real MLflow builds from the same traces."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from mlflow_oracle import run_in_mlflow
from test_client_entities import agent_trace, reviewed_trace, trace_json

from tracestream.search_api.client import TraceSearchError
from tracestream.search_api.dataframe import LEGACY_COLUMNS, MLFLOW_COLUMNS, traces_to_dataframe
from tracestream.search_api.entities import Trace

ORACLE = Path(__file__).parent / "fixtures" / "mlflow_dataframe" / "oracle.py"
EXTRACT_FIELDS = [
    "chat.inputs.messages",
    "retrieve.inputs.query",
    "retrieve.outputs",
    "`support_agent`.outputs.`choices`",
    "support_agent.inputs.no_such_field",
    "moderation.inputs",
]


def _load_describe() -> Any:
    spec = importlib.util.spec_from_file_location("mlflow_dataframe_oracle", ORACLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.describe


describe = _load_describe()


def fleet_traces() -> list[dict[str, Any]]:
    """TraceJSON as the API serves it, covering what changes a DataFrame's types and values."""
    reviewed = reviewed_trace()
    reviewed["info"]["metadata"]["mlflow.source.git.repoURL"] = "https://git.example.com/" + "support/" * 40
    # OpenTelemetry drops a status description on a span that did not fail, so MLflow does too.
    reviewed["spans"][2]["status_message"] = "served from cache"

    failed = agent_trace(5, error=True, experiment_id="7", tags={"customer_tier": "gold"})

    unfinished = agent_trace(9)
    unfinished["info"]["execution_duration_ms"] = None
    unfinished["info"]["client_request_id"] = None
    unfinished["spans"][0]["attributes"]["mlflow.spanInputs"] = "plain text, not JSON"
    del unfinished["spans"][0]["attributes"]["mlflow.spanOutputs"]

    without_spans = trace_json(agent_trace(11))
    without_spans["data"]["spans"] = []  # include_spans=False

    return [trace_json(reviewed), trace_json(failed), trace_json(unfinished), without_spans]


@pytest.fixture(scope="module")
def traces_json() -> list[dict[str, Any]]:
    return fleet_traces()


@pytest.fixture(scope="module")
def mlflow_frames(
    traces_json: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    payload = {"traces": traces_json, "extract_fields": EXTRACT_FIELDS}
    return run_in_mlflow(ORACLE, payload, tmp_path_factory.mktemp("mlflow_dataframe"))


def _ours(traces_json: list[dict[str, Any]], extract_fields: list[str] | None = None) -> dict[str, Any]:
    frame = traces_to_dataframe([Trace.from_dict(t) for t in traces_json], extract_fields=extract_fields)
    return describe(frame)


def _columns_equal(ours: dict[str, Any], theirs: dict[str, Any], columns: list[str]) -> None:
    for column in columns:
        assert ours["dtypes"][column] == theirs["dtypes"][column], column
        assert ours["types"][column] == theirs["types"][column], column
        # Serialized, so that 4 and 4.0 differ.
        assert json.dumps(ours["values"][column], sort_keys=True) == json.dumps(
            theirs["values"][column], sort_keys=True
        ), column


def test_the_first_twelve_columns_are_mlflows_names_types_and_values(
    traces_json: list[dict[str, Any]], mlflow_frames: dict[str, Any]
) -> None:
    ours, theirs = _ours(traces_json), mlflow_frames["plain"]

    assert theirs["columns"] == MLFLOW_COLUMNS
    assert ours["columns"][:12] == MLFLOW_COLUMNS
    _columns_equal(ours, theirs, MLFLOW_COLUMNS)


def test_extract_fields_columns_are_mlflows(
    traces_json: list[dict[str, Any]], mlflow_frames: dict[str, Any]
) -> None:
    ours, theirs = _ours(traces_json, EXTRACT_FIELDS), mlflow_frames["extracted"]
    extracted = theirs["columns"][12:]

    assert ours["columns"][: len(theirs["columns"])] == theirs["columns"]
    assert extracted == [*EXTRACT_FIELDS[:3], "support_agent.outputs.choices", *EXTRACT_FIELDS[4:]]
    _columns_equal(ours, theirs, theirs["columns"])
    assert ours["values"]["retrieve.inputs.query"][0] is not None


def test_legacy_columns_follow_with_mlflow_2_names_and_values(traces_json: list[dict[str, Any]]) -> None:
    traces = [Trace.from_dict(t) for t in traces_json]
    frame = traces_to_dataframe(traces)
    failed = frame.iloc[1]

    assert list(frame.columns[12 : 12 + len(LEGACY_COLUMNS)]) == LEGACY_COLUMNS
    assert list(frame["request_id"]) == list(frame["trace_id"])
    assert list(frame["timestamp_ms"]) == list(frame["request_time"])
    assert failed["status"] == "ERROR"
    assert type(failed["status"]) is str
    assert failed["execution_time_ms"] == traces[1].info.execution_duration
    assert failed["request_metadata"] == traces[1].info.trace_metadata
    assert failed["request_preview"] == traces[1].info.request_preview
    assert failed["response_preview"] == traces[1].info.response_preview


def test_one_tag_column_per_tag_key_with_none_where_a_trace_lacks_it(
    traces_json: list[dict[str, Any]],
) -> None:
    frame = traces_to_dataframe([Trace.from_dict(t) for t in traces_json])
    tag_columns = list(frame.columns[12 + len(LEGACY_COLUMNS) :])

    assert tag_columns == [
        "tags.customer_tier",
        "tags.env",
        "tags.mlflow.traceName",
        "tags.service",
        "tags.version",
    ]
    assert list(frame["tags.customer_tier"]) == [None, "gold", None, None]
    assert list(frame["tags.mlflow.traceName"]) == ["support_agent"] * 4


def test_no_traces_still_give_every_column() -> None:
    frame = traces_to_dataframe([], extract_fields=["chat.outputs"])

    assert list(frame.columns) == [*MLFLOW_COLUMNS, "chat.outputs", *LEGACY_COLUMNS]
    assert len(frame) == 0


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("chat", "Expected dot after span name: 'chat'"),
        ("`chat.inputs", "Expected closing backtick: '`chat.inputs'"),
        ("chat.params.x", "Invalid field type: 'params'. Expected 'inputs' or 'outputs'."),
        ("chat.inputs.`a.b`c", "Unexpected characters after closing backtick: 'chat.inputs.`a.b`c'"),
    ],
)
def test_malformed_extract_fields_are_rejected_with_mlflows_message(field: str, message: str) -> None:
    with pytest.raises(TraceSearchError) as raised:
        traces_to_dataframe([], extract_fields=[field])

    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert raised.value.message == message
