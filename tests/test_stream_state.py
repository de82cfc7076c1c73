"""The stream's per-trace state machine (stream/state.py), without a broker."""

from __future__ import annotations

import time
from typing import Any

from stream_harness import rag_trace, span

from tracestream import schemas
from tracestream.schemas import ASSESSMENT_LOGGED, SPAN_ENDED, TRACE_ENDED, TRACE_TAGS_CHANGED, new_span_id
from tracestream.stream.state import (
    Expiry,
    Next,
    after_record,
    apply_events,
    incomplete,
    mark_emitted,
    new_state,
    on_idle,
)

IDLE_S = 30.0
LATE_WINDOW_S = 600.0


class Trace:
    """One trace's state and received span ids, as the worker keeps them."""

    def __init__(self, now_s: float) -> None:
        self.state: dict[str, Any] = new_state(partition=0, now_ms=int(now_s * 1000))
        self.span_ids: set[str] = set()
        self.stored = False

    def receive(self, *events: tuple[str, dict[str, Any]]) -> Next:
        applied = apply_events(self.state, self.span_ids, list(events))
        applied.changed |= not self.stored  # a new state is written whatever the record
        self.stored = True
        return after_record(self.state, len(self.span_ids), applied)

    def idle(self, now_s: float, last_activity_s: float) -> Expiry:
        return on_idle(self.state, len(self.span_ids), now_s, last_activity_s, IDLE_S, LATE_WINDOW_S)

    def emit(self) -> bool:
        """What the worker does to the state when it emits: returns the revision's flag."""
        flag = incomplete(self.state, len(self.span_ids))
        mark_emitted(self.state, self.state["revision"] + 1, 0, flag, len(self.span_ids))
        return flag


def feedback(trace_id: str) -> dict[str, Any]:
    return {
        "assessment_id": schemas.new_assessment_id(),
        "trace_id": trace_id,
        "name": "helpfulness",
        "kind": "FEEDBACK",
        "value_json": "0.8",
        "error": None,
        "source_type": "HUMAN",
        "source_id": "reviewer-7",
        "rationale": None,
        "metadata": {},
        "span_id": None,
        "create_time_ms": int(time.time() * 1000),
        "last_update_time_ms": None,
        "overrides": None,
        "valid": True,
    }


def tag(trace_id: str, **tags: str) -> dict[str, Any]:
    return {"trace_id": trace_id, "set": tags, "deleted": [], "time_ms": int(time.time() * 1000)}


def test_a_root_quiet_past_the_idle_timeout_is_emitted_incomplete_then_complete_when_it_ends() -> None:
    _, (root, retriever, llm), ended = rag_trace()
    trace = Trace(now_s=1000.0)
    assert trace.receive((SPAN_ENDED, retriever)) is Next.STORE
    # The LLM call takes 40 s: nothing arrives meanwhile.
    assert trace.idle(now_s=1031.0, last_activity_s=1000.0) is Expiry.EMIT_INCOMPLETE
    assert trace.emit() is True

    assert trace.receive((SPAN_ENDED, llm), (SPAN_ENDED, root), (TRACE_ENDED, ended)) is Next.EMIT
    assert trace.emit() is False


def test_a_revision_still_missing_spans_keeps_the_incomplete_flag() -> None:
    trace_id, (root, retriever, _), ended = rag_trace()
    trace = Trace(now_s=1000.0)
    trace.receive((SPAN_ENDED, retriever), (SPAN_ENDED, root), (TRACE_ENDED, ended))  # span_count 3
    assert trace.idle(now_s=1031.0, last_activity_s=1000.0) is Expiry.EMIT_INCOMPLETE
    assert trace.emit() is True

    assert trace.receive((TRACE_TAGS_CHANGED, tag(trace_id, reviewed="yes"))) is Next.EMIT
    assert trace.emit() is True


def test_a_span_started_after_its_root_ended_makes_a_complete_new_revision() -> None:
    trace_id, (root, _, _), ended = rag_trace()
    ended = {**ended, "span_count": 1}  # the root returned at once; its task runs on
    trace = Trace(now_s=1000.0)
    assert trace.receive((SPAN_ENDED, root), (TRACE_ENDED, ended)) is Next.EMIT
    assert trace.emit() is False
    task = span(trace_id, "background_summary", root["span_id"], 1_000_950, 1_004_000)

    assert trace.receive((SPAN_ENDED, task)) is Next.EMIT
    assert trace.emit() is False
    assert trace.state["emitted_spans"] == 2


def test_tags_and_feedback_for_an_unseen_trace_are_held_not_emitted() -> None:
    trace_id = "tr-" + new_span_id() * 2
    trace = Trace(now_s=1000.0)

    assert trace.receive((TRACE_TAGS_CHANGED, tag(trace_id, reviewed="yes"))) is Next.HOLD
    assert trace.receive((ASSESSMENT_LOGGED, feedback(trace_id))) is Next.HOLD
    assert trace.idle(now_s=1031.0, last_activity_s=1000.0) is Expiry.WAIT


def test_held_records_of_a_trace_that_never_comes_are_dead_lettered_after_the_late_window() -> None:
    trace_id = "tr-" + new_span_id() * 2
    trace = Trace(now_s=1000.0)
    trace.receive((ASSESSMENT_LOGGED, feedback(trace_id)))

    assert trace.idle(now_s=1000.0 + LATE_WINDOW_S - 1, last_activity_s=1000.0) is Expiry.WAIT
    assert trace.idle(now_s=1000.0 + LATE_WINDOW_S, last_activity_s=1000.0) is Expiry.DEAD_LETTER_HELD


def test_held_tags_and_feedback_apply_when_the_trace_arrives() -> None:
    trace_id, spans, ended = rag_trace()
    trace = Trace(now_s=1000.0)
    trace.state["held"] = [{"offset": 41, "value": ""}]  # as the worker keeps a held record
    trace.receive((TRACE_TAGS_CHANGED, tag(trace_id, reviewed="yes")))
    trace.receive((ASSESSMENT_LOGGED, feedback(trace_id)))

    step = trace.receive(*((SPAN_ENDED, s) for s in spans), (TRACE_ENDED, ended))

    assert step is Next.EMIT
    assert "held" not in trace.state
    assert trace.state["tags_set"] == {"reviewed": "yes"}
    assert len(trace.state["assessments"]) == 1


def test_an_assessment_delivered_again_for_an_unseen_trace_is_not_held_twice() -> None:
    trace_id = "tr-" + new_span_id() * 2
    assessment = feedback(trace_id)
    trace = Trace(now_s=1000.0)
    trace.receive((ASSESSMENT_LOGGED, assessment))

    assert trace.receive((ASSESSMENT_LOGGED, assessment)) is Next.NOTHING


def test_spans_of_a_trace_whose_root_never_ends_are_not_held() -> None:
    _, (_, retriever, _), _ = rag_trace()
    trace = Trace(now_s=1000.0)

    assert trace.receive((SPAN_ENDED, retriever)) is Next.STORE
    assert trace.idle(now_s=1030.0, last_activity_s=1000.0) is Expiry.EMIT_INCOMPLETE


def test_a_second_root_ending_under_the_same_trace_id_is_reported_not_merged() -> None:
    trace_id, spans, ended = rag_trace()
    other_root = span(trace_id, "billing_agent", None, 1_000_000, 1_000_500)
    other_end = {**ended, "root_span_id": other_root["span_id"], "tags": {"team": "billing"}}
    state = new_state(partition=0, now_ms=0)
    span_ids: set[str] = set()
    apply_events(state, span_ids, [*((SPAN_ENDED, s) for s in spans), (TRACE_ENDED, ended)])

    applied = apply_events(state, span_ids, [(SPAN_ENDED, other_root), (TRACE_ENDED, other_end)])

    assert applied.conflicting_ends == [other_end]
    assert state["ended"] == ended
    assert applied.changed is False


def test_the_same_end_delivered_again_is_not_a_conflict() -> None:
    _, _, ended = rag_trace()
    state = new_state(partition=0, now_ms=0)
    span_ids: set[str] = set()
    apply_events(state, span_ids, [(TRACE_ENDED, ended)])

    applied = apply_events(state, span_ids, [(TRACE_ENDED, dict(ended))])

    assert applied.conflicting_ends == []
    assert applied.changed is False
