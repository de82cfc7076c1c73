"""Run links, prompt links, a session-level rating and deletion with the unmodified MLflow
client (mlflow_lifecycle_app.py) through the whole private pipeline; then spans and a tag sent
for the deleted traces after their deletion, which must not bring them back."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from mlflow_oracle import run_in_mlflow
from stream_harness import EventSender, rag_trace, send_trace, span
from waiting import wait_until

from mlflow_dropin.support import Pipeline
from tracestream.schemas import SPAN_ENDED, TRACE_TAGS_CHANGED
from tracestream.search_api import TraceClient

HERE = Path(__file__).resolve().parent
RUN_ID = uuid.uuid4().hex


@pytest.fixture(scope="module")
def report(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    payload = {
        "tracking_uri": pipeline.url,
        "experiment": f"support-lifecycle-{uuid.uuid4().hex[:6]}",
        "run_id": RUN_ID,
    }
    try:
        return run_in_mlflow(
            HERE / "mlflow_lifecycle_app.py", payload, tmp_path_factory.mktemp("app"), timeout_s=400
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pipeline.log_tails()}") from exc


def test_traces_linked_to_a_run_are_found_by_run_id(report: dict[str, Any]) -> None:
    assert report["run_linked"] == report["trace_ids"][:2]
    assert sorted(report["run_linked_by_client"]) == sorted(report["trace_ids"][:2])


def test_mlflow_traces_search_run_id_lists_the_linked_traces(report: dict[str, Any]) -> None:
    assert report["cli_returncode"] == 0
    assert report["cli_trace_ids"] == sorted(report["trace_ids"][:2])


def test_linking_more_than_100_traces_is_refused_as_mlflow_refuses_it(report: dict[str, Any]) -> None:
    assert "Cannot link more than 100 traces to a run in a single request. Provided 101 traces." in (
        report["too_many_links"] or ""
    )


def test_a_linked_prompt_version_finds_its_trace_and_no_other_version(report: dict[str, Any]) -> None:
    assert report["prompt_linked"] == [report["trace_ids"][2]]
    assert report["other_prompt_version"] == []


def test_a_session_rating_applies_to_every_trace_of_the_session(report: dict[str, Any]) -> None:
    ids = report["trace_ids"]
    assert report["session_rated"] == ids[:3]
    assert report["session_unrated"] == ids[3:]


def test_a_run_no_trace_names_is_not_found(report: dict[str, Any]) -> None:
    assert "RESOURCE_DOES_NOT_EXIST" in report["unknown_run"]


def test_delete_by_ids_counts_only_traces_that_existed(report: dict[str, Any]) -> None:
    ids = report["trace_ids"]
    assert report["deleted_by_id"] == 1
    assert report["after_delete_by_id"] == [t for t in ids if t != ids[3]]


def test_delete_by_age_removes_the_oldest_first_up_to_max_traces(report: dict[str, Any]) -> None:
    ids = report["trace_ids"]
    assert report["deleted_by_age"] == 2
    assert report["after_delete_by_age"] == [ids[2], ids[4], ids[5]]
    assert report["run_linked_after_delete"] == []


def test_deleted_traces_stay_deleted_when_late_spans_and_tags_arrive(
    report: dict[str, Any], pipeline: Pipeline
) -> None:
    ids = report["trace_ids"]
    deleted = [ids[0], ids[1], ids[3]]
    sender = EventSender(pipeline.settings)
    now = int(time.time() * 1000)
    for trace_id in deleted:
        sender.send(
            SPAN_ENDED,
            span(trace_id, "late_tool_call", None, now - 500, now, span_type="TOOL"),
        )
        tag = {"trace_id": trace_id, "set": {"reviewed": "late"}, "deleted": [], "time_ms": now}
        sender.send(TRACE_TAGS_CHANGED, tag)
    # A trace sent after them: once it is searchable, the late events were processed too.
    sentinel, spans, ended = rag_trace()
    send_trace(sender, spans, ended)
    sender.flush()

    with TraceClient(base_url=pipeline.url) as client:
        wait_until(lambda: client.get_trace(sentinel) is not None, 60, "the sentinel trace indexed")
        # A late span without its trace's end would be emitted at the idle timeout (3 s here).
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert [t for t in deleted if client.get_trace(t) is not None] == []
            time.sleep(1)
