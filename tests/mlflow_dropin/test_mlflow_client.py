"""The unmodified MLflow client (3.17.2, its own environment) against tracestream: the traced
application and the analysis code in mlflow_app.py run with only ``MLFLOW_TRACKING_URI``
pointing at our API; spans, trace info, tags and feedback go through Kafka, the stream and the
indexer, and MLflow's search and get functions return what the code produced."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from mlflow_oracle import run_in_mlflow

from mlflow_dropin.support import Pipeline

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def report(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    started = time.monotonic()
    payload = {"tracking_uri": pipeline.url, "experiment": f"support-agent-{uuid.uuid4().hex[:6]}"}
    try:
        answer = run_in_mlflow(HERE / "mlflow_app.py", payload, tmp_path_factory.mktemp("app"), timeout_s=240)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pipeline.log_tails()}") from exc
    elapsed = time.monotonic() - started
    print(f"mlflow_app.py ran {elapsed:.1f} s; all searchable after {answer['searchable_after_s']:.1f} s")
    return answer


def _listed(report: dict[str, Any], trace_id: str) -> dict[str, Any]:
    return next(trace for trace in report["listed"] if trace["trace_id"] == trace_id)


def test_every_traced_call_becomes_a_trace_in_the_experiment(report: dict[str, Any]) -> None:
    expected = [*report["trace_ids"], report["failed_id"]]
    assert [t["trace_id"] for t in report["listed"]] == expected
    assert {t["experiment_id"] for t in report["listed"]} == {report["experiment_id"]}
    assert report["experiment_id"] not in ("", "0")


def test_search_traces_returns_mlflows_dataframe(report: dict[str, Any]) -> None:
    frame = report["frame"]
    assert frame["columns"][:12] == [
        "trace_id",
        "trace",
        "client_request_id",
        "state",
        "request_time",
        "execution_duration",
        "request",
        "response",
        "trace_metadata",
        "tags",
        "spans",
        "assessments",
    ]
    assert frame["trace_ids"] == [*report["trace_ids"], report["failed_id"]]
    assert frame["requests"][:3] == [
        {"question": "refunds", "user": "user-1"},
        {"question": "shipping", "user": "user-2"},
        {"question": "returns", "user": "user-1"},
    ]
    assert frame["responses"][:3] == ["answer to refunds", "answer to shipping", "answer to returns"]
    assert frame["span_counts"] == [3, 3, 3, 1]
    assert frame["states"] == ["OK", "OK", "OK", "ERROR"]


def test_spans_keep_their_tree_types_inputs_outputs_and_attributes(report: dict[str, Any]) -> None:
    trace = _listed(report, report["trace_ids"][0])
    spans = {span["name"]: span for span in trace["spans"]}
    assert trace["spans"][0]["name"] == "answer"  # the root first
    assert {name: (s["span_type"], s["parent"]) for name, s in spans.items()} == {
        "answer": ("AGENT", None),
        "retrieve": ("RETRIEVER", "answer"),
        "generate": ("LLM", "answer"),
    }
    assert spans["retrieve"]["inputs"] == {"query": "refunds"}
    assert spans["retrieve"]["outputs"] == ["doc about refunds"]
    assert spans["generate"]["inputs"] == {"question": "refunds", "docs": ["doc about refunds"]}
    assert spans["generate"]["outputs"] == "answer to refunds"
    assert spans["generate"]["model"] == "gpt-x"
    assert spans["generate"]["token_usage"] == {"input_tokens": 310, "output_tokens": 42, "total_tokens": 352}
    assert {span["trace_id"] for span in trace["spans"]} == {trace["trace_id"]}


def test_trace_info_has_the_tags_metadata_and_token_usage_the_code_set(report: dict[str, Any]) -> None:
    trace = _listed(report, report["trace_ids"][0])
    assert trace["state"] == "OK"
    assert trace["client_request_id"] == "req-refunds"
    assert trace["request_preview"] == '{"question": "refunds", "user": "user-1"}'
    assert trace["response_preview"] == '"answer to refunds"'
    assert trace["execution_duration"] >= 0
    assert trace["tags"]["team"] == "care"
    assert trace["tags"]["mlflow.traceName"] == "answer"
    # The client was told the spans live in the tracking store: it never uploads artifacts.
    assert trace["tags"]["mlflow.trace.spansLocation"] == "TRACKING_STORE"
    assert trace["metadata"]["app.version"] == "1.4"
    assert trace["metadata"]["mlflow.trace.user"] == "user-1"
    assert trace["metadata"]["mlflow.trace.session"] == "s-31"
    assert trace["token_usage"] == {"input_tokens": 310, "output_tokens": 42, "total_tokens": 352}


def test_tags_and_feedback_logged_after_the_trace_ended_are_returned(report: dict[str, Any]) -> None:
    first, second = _listed(report, report["trace_ids"][0]), _listed(report, report["trace_ids"][1])
    (feedback,) = first["assessments"]
    assert feedback["id"].startswith("a-")
    assert {k: v for k, v in feedback.items() if k != "id"} == {
        "name": "helpfulness",
        "value": 0.8,
        "source": ["HUMAN", "reviewer-7"],
        "rationale": "cites the doc",
        "valid": True,
        "overrides": None,
    }
    assert second["tags"]["reviewed"] == "yes"
    assert "reviewed" not in first["tags"]
    assert "draft" not in report["revisions"]["tags"]  # set, then deleted
    assert report["revisions"]["tags"]["team"] == "care"


def test_assessments_logged_during_the_trace_overridden_updated_and_deleted(report: dict[str, Any]) -> None:
    revisions = report["revisions"]
    overriding_id, overridden_id = revisions["overridden"]
    assert overridden_id == revisions["judged"] != overriding_id
    updated_id, _, updated_value = revisions["updated"]
    assert (updated_id, updated_value) == (revisions["in_trace"], "refund policy")  # updated in place
    assessments = sorted(
        (a["name"], a["value"], a["source"][0], a["valid"])
        for a in revisions["assessments"]
        if a["name"] == "accuracy"
    )
    assert assessments == [("accuracy", 0.4, "LLM_JUDGE", False), ("accuracy", 0.9, "HUMAN", True)]
    (expectation,) = [a for a in revisions["assessments"] if a["name"] == "expected_topic"]
    assert (expectation["id"], expectation["value"]) == (revisions["in_trace"], "refund policy")
    assert {a["name"] for a in revisions["assessments"]} == {"accuracy", "expected_topic"}  # "tone" deleted


def test_a_failed_call_is_an_error_trace_with_the_exception(report: dict[str, Any]) -> None:
    failed = _listed(report, report["failed_id"])
    assert failed["state"] == "ERROR"
    (span,) = failed["spans"]
    assert (span["name"], span["span_type"], span["status"]) == ("lookup_order", "TOOL", "ERROR")
    assert span["events"] == ["exception"]


def test_mlflow_client_pages_through_search_results_with_page_tokens(report: dict[str, Any]) -> None:
    assert report["pages"] == [report["trace_ids"][:2], [report["trace_ids"][2], report["failed_id"]]]


def test_get_trace_returns_the_whole_trace(report: dict[str, Any]) -> None:
    assert report["got"] == _listed(report, report["trace_ids"][0])


def test_mlflow_filter_strings_select_the_traces(report: dict[str, Any]) -> None:
    first, second, third = report["trace_ids"]
    assert report["filters"] == {
        "failed": [report["failed_id"]],
        "team": [third, second, first],  # newest first: MLflow's default order
        "reviewed": [second],
        "user": [third, first],
        "llm_span": [third, second, first],
        "helpful": [first],
    }
