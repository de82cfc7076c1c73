"""Derived trace fields equal MLflow's, on traces recorded with the real mlflow package
(tests/fixtures/mlflow_parity/make_fixture.py wrote them, with MLflow's own values)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracestream.schemas.mlflow_format import mlflow_span_dict
from tracestream.stream.derive import assemble, resolve_assessments

FIXTURE = Path(__file__).parent / "fixtures" / "mlflow_parity" / "traces.json"
CASES = json.loads(FIXTURE.read_text())
DERIVED_BY_THE_STREAM = {"mlflow.trace.tokenUsage", "mlflow.traceInputs", "mlflow.traceOutputs"}


def _assembled(case: dict) -> dict:
    """Assemble the case as the stream would from the SDK's events: the metadata and tags the
    client had at export time, without what the stream derives itself."""
    info, expected = case["info"], case["expected"]
    ended = {
        "trace_id": info["trace_id"],
        "client_request_id": info["client_request_id"],
        "location": info["location"],
        "request_time_ms": info["request_time_ms"],
        "execution_duration_ms": info["execution_duration_ms"],
        "state": info["state"],
        "tags": {
            k: v
            for k, v in info["tags"].items()
            if k in expected["tag_keys_at_size_time"] and k != "mlflow.traceName"
        },
        "metadata": {
            k: v
            for k, v in info["metadata"].items()
            if k in expected["metadata_keys_at_size_time"] and k not in DERIVED_BY_THE_STREAM
        },
        "request_preview": None,
        "response_preview": None,
        "root_span_id": next(s["span_id"] for s in case["spans"] if s["parent_span_id"] is None),
        "span_count": len(case["spans"]),
    }
    return assemble(info["trace_id"], 1, case["spans"], ended)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_token_usage_equals_mlflows(case: dict) -> None:
    metadata = _assembled(case)["info"]["metadata"]

    assert metadata.get("mlflow.trace.tokenUsage") == case["expected"]["mlflow.trace.tokenUsage"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_cost_equals_mlflows(case: dict) -> None:
    computed = _assembled(case)["info"]["metadata"].get("mlflow.trace.cost")
    expected = case["expected"]["mlflow.trace.cost"]

    if expected is None:
        assert computed is None
    else:
        # MLflow's store sums in database order; floats may differ in the last bit.
        assert json.loads(computed) == pytest.approx(json.loads(expected))
        assert list(json.loads(computed)) == list(json.loads(expected))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_span_sizes_equal_mlflows(case: dict) -> None:
    sizes = [len(json.dumps(mlflow_span_dict(span)).encode()) for span in case["spans"]]

    assert sizes == case["expected"]["span_sizes"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_size_stats_equal_mlflows(case: dict) -> None:
    metadata = _assembled(case)["info"]["metadata"]

    assert metadata["mlflow.trace.sizeBytes"] == case["expected"]["mlflow.trace.sizeBytes"]
    assert metadata["mlflow.trace.sizeStats"] == case["expected"]["mlflow.trace.sizeStats"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_previews_and_trace_io_equal_mlflows(case: dict) -> None:
    info = _assembled(case)["info"]
    expected = case["expected"]

    assert info["request_preview"] == expected["request_preview"]
    assert info["response_preview"] == expected["response_preview"]
    assert info["metadata"]["mlflow.traceInputs"] == expected["mlflow.traceInputs"]
    assert info["metadata"]["mlflow.traceOutputs"] == expected["mlflow.traceOutputs"]
    assert info["tags"]["mlflow.traceName"] == case["info"]["tags"]["mlflow.traceName"]


def test_an_overridden_assessment_is_invalid_and_duplicates_collapse() -> None:
    original = {
        "assessment_id": "a-1",
        "name": "correct",
        "overrides": None,
        "create_time_ms": 1,
        "valid": True,
    }
    correction = {"assessment_id": "a-2", "name": "", "overrides": "a-1", "create_time_ms": 2, "valid": True}

    resolved = resolve_assessments([original, correction, dict(original)])

    assert [(a["assessment_id"], a["name"], a["valid"]) for a in resolved] == [
        ("a-1", "correct", False),
        ("a-2", "correct", True),
    ]
