"""The trace assembler's transition function (stream/assembler.py), driven without a broker: each
test feeds records and ticks to :func:`step` and checks the outputs a worker would carry out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from stream_harness import rag_trace, span

from tracestream import schemas
from tracestream.schemas import (
    ASSESSMENT_LOGGED,
    SPAN_ENDED,
    TRACE_DELETED,
    TRACE_ENDED,
    TRACE_LINKED,
    TRACE_TAGS_CHANGED,
    new_trace_id,
)
from tracestream.stream.assembler import (
    Config,
    DeadLetterEvent,
    DeadLetterHeld,
    DeadLetterReason,
    DeadLetterRecord,
    DropChunks,
    EmitRevision,
    EmitTombstone,
    IgnoreDeleted,
    InvalidRecord,
    Output,
    Received,
    State,
    StoreChunk,
    Tick,
    TickAction,
    Timer,
    WriteState,
    completed_trace,
    step,
    trace_id_of,
)
from tracestream.stream.state import Deleted, Purged, TraceState

CONFIG = Config(idle_timeout_ms=30_000, late_window_ms=600_000, marker_retention_ms=86_400_000)
START_MS = 1_760_000_000_000
CODEC = schemas.events_codec()


class Trace:
    """One trace's state, stepped the way the worker steps it, with the outputs of each step."""

    def __init__(self, trace_id: str) -> None:
        self.trace_id = trace_id
        self.state: State = None
        self.offset = 100

    def receive(self, at_ms: int, *events: tuple[str, dict[str, Any]]) -> list[Output]:
        value = CODEC.encode_union(SPAN_ENDED, events[0][1]) if events[0][0] == SPAN_ENDED else b"record"
        self.offset += 1
        record = Received(self.trace_id, 2, self.offset, value, list(events))  # type: ignore[arg-type]
        self.state, outputs = step(self.state, record, at_ms, CONFIG)
        return outputs

    def tick(self, at_ms: int, action: TickAction) -> list[Output]:
        self.state, outputs = step(self.state, Tick(self.trace_id, action), at_ms, CONFIG)
        return outputs

    @property
    def assembled(self) -> TraceState:
        assert isinstance(self.state, TraceState)
        return self.state


def emissions(outputs: Sequence[Output]) -> list[EmitRevision]:
    return [o for o in outputs if isinstance(o, EmitRevision)]


def of_type(outputs: Sequence[Output], kind: type) -> list[Any]:
    return [o for o in outputs if isinstance(o, kind)]


def feedback(trace_id: str, name: str = "helpfulness") -> dict[str, Any]:
    return {
        "assessment_id": schemas.new_assessment_id(),
        "trace_id": trace_id,
        "name": name,
        "kind": "FEEDBACK",
        "value_json": "0.8",
        "error": None,
        "source_type": "HUMAN",
        "source_id": "reviewer-7",
        "rationale": "cited the order page",
        "metadata": {},
        "span_id": None,
        "create_time_ms": int(time.time() * 1000),
        "last_update_time_ms": None,
        "overrides": None,
        "valid": True,
    }


def tag_change(trace_id: str, deleted: Sequence[str] = (), **tags: str) -> dict[str, Any]:
    return {"trace_id": trace_id, "set": tags, "deleted": list(deleted), "time_ms": int(time.time() * 1000)}


def link(trace_id: str, run_ids: Sequence[str] = (), prompts: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "run_ids": list(run_ids),
        "prompt_versions": list(prompts),
        "time_ms": int(time.time() * 1000),
    }


def deletion(trace_id: str) -> dict[str, Any]:
    return {"trace_id": trace_id, "time_ms": int(time.time() * 1000), "reason": "DeleteTraces by u-77"}


@pytest.fixture
def completed() -> tuple[Trace, list[dict[str, Any]], dict[str, Any]]:
    """A RAG trace emitted complete at START_MS, as revision 1."""
    trace_id, spans, ended = rag_trace()
    trace = Trace(trace_id)
    trace.receive(START_MS, *((SPAN_ENDED, s) for s in spans), (TRACE_ENDED, ended))
    assert trace.assembled.revision == 1
    return trace, spans, ended


# ---------------------------------------------------------------- completion by count


def test_a_trace_is_emitted_once_its_end_and_every_span_it_counted_have_arrived() -> None:
    trace_id, (root, retriever, llm), ended = rag_trace()
    trace = Trace(trace_id)

    # The end may overtake spans: completion counts distinct spans, whatever the order.
    assert emissions(trace.receive(START_MS, (SPAN_ENDED, root), (TRACE_ENDED, ended))) == []
    assert emissions(trace.receive(START_MS + 5, (SPAN_ENDED, retriever))) == []
    outputs = trace.receive(START_MS + 9, (SPAN_ENDED, llm))

    [emission] = emissions(outputs)
    assert (emission.revision, emission.incomplete, emission.again) == (1, False, False)
    assert emission.ended == ended
    assert outputs.index(emission) < outputs.index(WriteState())  # emitted before it is recorded


def test_a_span_delivered_twice_is_counted_once() -> None:
    trace_id, (root, retriever, _), ended = rag_trace()
    trace = Trace(trace_id)
    trace.receive(START_MS, (SPAN_ENDED, root), (TRACE_ENDED, ended))
    trace.receive(START_MS + 5, (SPAN_ENDED, retriever))

    outputs = trace.receive(START_MS + 9, (SPAN_ENDED, dict(retriever)))

    assert emissions(outputs) == []
    assert of_type(outputs, StoreChunk) == []  # nothing new to store either
    assert trace.assembled.spans == 2


def test_each_record_bringing_a_new_span_is_stored_as_the_next_chunk() -> None:
    trace_id, (root, retriever, llm), _ = rag_trace()
    trace = Trace(trace_id)

    first = of_type(trace.receive(START_MS, (SPAN_ENDED, root), (SPAN_ENDED, retriever)), StoreChunk)
    second = of_type(trace.receive(START_MS + 5, (SPAN_ENDED, llm)), StoreChunk)

    assert [c.index for c in first + second] == [0, 1]
    assert trace.assembled.chunks == 2


def test_a_batch_mixing_trace_ids_is_refused_whole() -> None:
    _, (root, _, _), _ = rag_trace()
    _, (other_root, _, _), _ = rag_trace()

    with pytest.raises(InvalidRecord, match="mixes trace ids"):
        trace_id_of([(SPAN_ENDED, root), (SPAN_ENDED, other_root)])  # type: ignore[list-item]


# ---------------------------------------------------------------- completion by idle timeout


def test_a_trace_whose_root_never_ends_is_emitted_incomplete_at_the_idle_timeout() -> None:
    trace_id, (_, retriever, _), _ = rag_trace()
    trace = Trace(trace_id)
    outputs = trace.receive(START_MS, (SPAN_ENDED, retriever))
    assert Timer(TickAction.EXPIRE, START_MS + 30_000) in outputs

    [emission] = emissions(trace.tick(START_MS + 30_000, TickAction.EXPIRE))

    assert (emission.revision, emission.incomplete, emission.ended) == (1, True, None)
    spans = [retriever]
    built = completed_trace(trace_id, emission, spans, START_MS + 30_000)  # type: ignore[arg-type]
    assert built["info"]["state"] == "IN_PROGRESS"
    assert built["info"]["metadata"]["tracestream.trace.incomplete"] == "true"


def test_an_early_tick_emits_nothing_and_sets_the_timer_from_the_last_activity() -> None:
    trace_id, (root, retriever, _), ended = rag_trace()
    trace = Trace(trace_id)
    trace.receive(START_MS, (SPAN_ENDED, retriever))
    trace.receive(START_MS + 20_000, (SPAN_ENDED, root), (TRACE_ENDED, ended))

    # The timer set by the first record went off; the trace has been active since.
    outputs = trace.tick(START_MS + 30_000, TickAction.EXPIRE)

    assert outputs == [Timer(TickAction.EXPIRE, START_MS + 50_000)]


def test_a_root_quiet_past_the_idle_timeout_is_emitted_incomplete_then_complete_when_it_ends() -> None:
    trace_id, (root, retriever, llm), ended = rag_trace()
    trace = Trace(trace_id)
    trace.receive(START_MS, (SPAN_ENDED, retriever))
    # The LLM call takes 40 s: nothing arrives meanwhile.
    [first] = emissions(trace.tick(START_MS + 31_000, TickAction.EXPIRE))

    [second] = emissions(
        trace.receive(START_MS + 40_000, (SPAN_ENDED, llm), (SPAN_ENDED, root), (TRACE_ENDED, ended))
    )

    assert (first.revision, first.incomplete) == (1, True)
    assert (second.revision, second.incomplete) == (2, False)


def test_a_revision_still_missing_spans_keeps_the_incomplete_flag() -> None:
    trace_id, (root, retriever, _), ended = rag_trace()  # span_count 3; the LLM span never comes
    trace = Trace(trace_id)
    trace.receive(START_MS, (SPAN_ENDED, retriever), (SPAN_ENDED, root), (TRACE_ENDED, ended))
    [first] = emissions(trace.tick(START_MS + 30_000, TickAction.EXPIRE))

    [second] = emissions(
        trace.receive(START_MS + 45_000, (TRACE_TAGS_CHANGED, tag_change(trace_id, reviewed="yes")))
    )

    assert (first.incomplete, second.incomplete) == (True, True)
    assert second.revision == 2


def test_an_idle_tick_for_an_emitted_trace_emits_nothing(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed

    outputs = trace.tick(START_MS + 30_000, TickAction.EXPIRE)

    assert outputs == [Timer(TickAction.PURGE, START_MS + 600_000)]


# ---------------------------------------------------------------- late spans and revisions


def test_a_late_span_makes_a_new_complete_revision(completed: tuple[Trace, Any, Any]) -> None:
    trace, (root, _, _), _ = completed
    task = span(trace.trace_id, "background_summary", root["span_id"], 1_000_950, 1_004_000)

    outputs = trace.receive(START_MS + 5_000, (SPAN_ENDED, task))

    [emission] = emissions(outputs)
    assert (emission.revision, emission.incomplete) == (2, False)
    assert of_type(outputs, StoreChunk)[0].index == 1  # the first record was chunk 0
    assert trace.assembled.emitted is not None and trace.assembled.emitted.spans == 4
    # The late window counts from the last revision.
    assert Timer(TickAction.PURGE, START_MS + 605_000) in outputs


def test_a_span_the_emitted_revision_already_had_makes_no_revision(completed: tuple[Trace, Any, Any]) -> None:
    trace, spans, _ = completed
    # Its chunk was lost with a killed worker, so it counts as new to the restored state.
    trace.state = replace(trace.assembled, span_ids=frozenset(s["span_id"] for s in spans[:2]), chunks=2)

    outputs = trace.receive(START_MS + 5_000, (SPAN_ENDED, spans[2]))

    assert emissions(outputs) == []


def test_a_trace_restored_from_the_tables_emits_its_revision_again_once_on_a_replay(
    completed: tuple[Trace, Any, Any],
) -> None:
    trace, spans, ended = completed
    trace.state = replace(trace.assembled, restored=True)  # as the tables give it after a restart

    [again] = emissions(trace.receive(START_MS + 5_000, (SPAN_ENDED, spans[0])))
    replayed_once_more = emissions(trace.receive(START_MS + 6_000, (TRACE_ENDED, ended)))

    assert (again.revision, again.again) == (1, True)
    assert replayed_once_more == []


def test_the_first_seen_time_goes_with_every_revision(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed

    [later] = emissions(
        trace.receive(START_MS + 90_000, (TRACE_TAGS_CHANGED, tag_change(trace.trace_id, x="1")))
    )

    assert later.first_seen_ms == START_MS


# ---------------------------------------------------------------- tags and assessments after completion


def test_a_tag_change_after_completion_makes_a_revision_with_it(completed: tuple[Trace, Any, Any]) -> None:
    trace, spans, _ = completed

    change = tag_change(trace.trace_id, deleted=["team"], reviewed="yes")
    [emission] = emissions(trace.receive(START_MS + 5_000, (TRACE_TAGS_CHANGED, change)))

    assert emission.revision == 2
    tags = completed_trace(trace.trace_id, emission, spans, START_MS + 5_000)["info"]["tags"]
    assert tags["reviewed"] == "yes"
    assert "team" not in tags  # set by the TraceEnded, deleted since


def test_a_tag_change_that_changes_nothing_makes_no_revision(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed
    trace.receive(START_MS + 5_000, (TRACE_TAGS_CHANGED, tag_change(trace.trace_id, reviewed="yes")))

    outputs = trace.receive(
        START_MS + 6_000, (TRACE_TAGS_CHANGED, tag_change(trace.trace_id, reviewed="yes"))
    )

    assert emissions(outputs) == []
    assert trace.assembled.revision == 2


def test_feedback_after_completion_makes_a_revision_with_it(completed: tuple[Trace, Any, Any]) -> None:
    trace, spans, _ = completed
    assessment = feedback(trace.trace_id)

    [emission] = emissions(trace.receive(START_MS + 5_000, (ASSESSMENT_LOGGED, assessment)))

    assert emission.revision == 2
    built = completed_trace(trace.trace_id, emission, spans, START_MS + 5_000)
    assert [a["assessment_id"] for a in built["assessments"]] == [assessment["assessment_id"]]


def test_feedback_delivered_again_makes_no_revision(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed
    assessment = feedback(trace.trace_id)
    trace.receive(START_MS + 5_000, (ASSESSMENT_LOGGED, assessment))

    assert emissions(trace.receive(START_MS + 6_000, (ASSESSMENT_LOGGED, dict(assessment)))) == []


# ---------------------------------------------------------------- alerts


def test_an_error_trace_is_alerted_with_its_first_revision_only() -> None:
    trace_id, spans, ended = rag_trace(error=True)
    trace = Trace(trace_id)

    [first] = emissions(trace.receive(START_MS, *((SPAN_ENDED, s) for s in spans), (TRACE_ENDED, ended)))
    [second] = emissions(trace.receive(START_MS + 5_000, (ASSESSMENT_LOGGED, feedback(trace_id))))

    assert (first.alert, second.alert) == (True, False)


def test_an_ok_trace_is_not_alerted(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed
    assert trace.assembled.alerted is False


# ---------------------------------------------------------------- duplicates


def test_a_second_root_ending_under_the_same_trace_id_is_dead_lettered_not_merged(
    completed: tuple[Trace, Any, Any],
) -> None:
    trace, _, ended = completed
    other_root = span(trace.trace_id, "billing_agent", None, 1_000_000, 1_000_500)
    other_end = {**ended, "root_span_id": other_root["span_id"], "tags": {"team": "billing"}}

    outputs = trace.receive(START_MS + 5_000, (TRACE_ENDED, other_end))

    [dead] = of_type(outputs, DeadLetterEvent)
    assert (dead.reason, dead.kind, dead.record) == (
        DeadLetterReason.DUPLICATE_TRACE_ID,
        TRACE_ENDED,
        other_end,
    )
    assert ended["root_span_id"] in dead.detail and other_root["span_id"] in dead.detail
    assert trace.assembled.ended == ended
    assert emissions(outputs) == []


def test_the_same_end_delivered_again_is_no_conflict(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, ended = completed

    outputs = trace.receive(START_MS + 5_000, (TRACE_ENDED, dict(ended)))

    assert of_type(outputs, DeadLetterEvent) == []
    assert emissions(outputs) == []


# ---------------------------------------------------------------- orphans: tags and feedback, no trace


def test_tags_and_feedback_for_an_unseen_trace_are_held_not_emitted() -> None:
    trace = Trace(new_trace_id())

    tagged = trace.receive(START_MS, (TRACE_TAGS_CHANGED, tag_change(trace.trace_id, reviewed="yes")))
    rated = trace.receive(START_MS + 1_000, (ASSESSMENT_LOGGED, feedback(trace.trace_id)))

    assert emissions(tagged + rated) == []
    assert [h.offset for h in trace.assembled.held] == [101, 102]
    assert WriteState() in tagged and WriteState() in rated
    # Waited for over the late window from the first of them, not the idle timeout.
    assert Timer(TickAction.EXPIRE, START_MS + 600_000) in rated
    assert emissions(trace.tick(START_MS + 31_000, TickAction.EXPIRE)) == []


def test_held_records_of_a_trace_that_never_comes_are_dead_lettered_after_the_late_window() -> None:
    trace = Trace(new_trace_id())
    trace.receive(START_MS, (ASSESSMENT_LOGGED, feedback(trace.trace_id)))
    held = trace.assembled.held[0]

    assert trace.tick(START_MS + 599_999, TickAction.EXPIRE) == [Timer(TickAction.EXPIRE, START_MS + 600_000)]
    outputs = trace.tick(START_MS + 600_000, TickAction.EXPIRE)

    [dead] = of_type(outputs, DeadLetterHeld)
    assert (dead.reason, dead.partition, dead.offset, dead.value) == (
        DeadLetterReason.UNKNOWN_TRACE,
        2,
        held.offset,
        held.value,
    )
    assert trace.trace_id in dead.detail
    # Forgotten: a trace of that id arriving later starts afresh.
    assert trace.state is None
    assert WriteState() in outputs


def test_held_tags_and_feedback_apply_when_the_trace_arrives() -> None:
    trace_id, spans, ended = rag_trace()
    trace = Trace(trace_id)
    trace.receive(START_MS, (TRACE_TAGS_CHANGED, tag_change(trace_id, reviewed="yes")))
    assessment = feedback(trace_id)
    trace.receive(START_MS + 1_000, (ASSESSMENT_LOGGED, assessment))

    [emission] = emissions(
        trace.receive(START_MS + 2_000, *((SPAN_ENDED, s) for s in spans), (TRACE_ENDED, ended))
    )

    assert emission.revision == 1  # no phantom revision for the held records
    assert emission.tags_set == {"reviewed": "yes"}
    assert emission.assessments == (assessment,)
    assert trace.assembled.held == ()


def test_feedback_delivered_again_for_an_unseen_trace_is_not_held_twice() -> None:
    trace = Trace(new_trace_id())
    assessment = feedback(trace.trace_id)
    trace.receive(START_MS, (ASSESSMENT_LOGGED, assessment))

    outputs = trace.receive(START_MS + 1_000, (ASSESSMENT_LOGGED, assessment))

    assert WriteState() not in outputs
    assert len(trace.assembled.held) == 1


# ---------------------------------------------------------------- after the late window


def test_the_late_window_over_drops_the_chunks_and_keeps_a_marker(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed
    assert trace.tick(START_MS + 599_999, TickAction.PURGE) == [Timer(TickAction.PURGE, START_MS + 600_000)]

    outputs = trace.tick(START_MS + 600_000, TickAction.PURGE)

    assert trace.state == Purged(partition=2, revision=1, purged_ms=START_MS + 600_000, first_ms=START_MS)
    assert outputs == [DropChunks(1), WriteState(), Timer(None)]


def test_a_span_after_the_late_window_is_dead_lettered_late_after_retention(
    completed: tuple[Trace, Any, Any],
) -> None:
    trace, (root, _, _), _ = completed
    trace.tick(START_MS + 600_000, TickAction.PURGE)
    task = span(trace.trace_id, "background_summary", root["span_id"], 1_000_950, 1_004_000)

    outputs = trace.receive(START_MS + 700_000, (SPAN_ENDED, task))

    [dead] = of_type(outputs, DeadLetterRecord)
    assert dead.reason is DeadLetterReason.LATE_AFTER_RETENTION
    assert emissions(outputs) == [] and of_type(outputs, StoreChunk) == []
    assert isinstance(trace.state, Purged)


def test_a_purge_marker_is_forgotten_after_the_marker_retention(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed
    trace.tick(START_MS + 600_000, TickAction.PURGE)

    kept = trace.tick(START_MS + 600_000 + 86_400_000, TickAction.FORGET)
    assert isinstance(trace.state, Purged) and WriteState() not in kept
    forgotten = trace.tick(START_MS + 600_001 + 86_400_000, TickAction.FORGET)

    assert trace.state is None
    assert forgotten == [WriteState()]


# ---------------------------------------------------------------- run and prompt links


def test_runs_and_prompts_linked_before_the_end_show_on_the_first_revision() -> None:
    trace_id, (root, retriever, llm), ended = rag_trace()
    trace = Trace(trace_id)
    trace.receive(START_MS, (SPAN_ENDED, retriever))
    trace.receive(START_MS + 100, (TRACE_LINKED, link(trace_id, ["run-eval-1"], ["support-prompt/3"])))

    [emission] = emissions(
        trace.receive(START_MS + 900, (SPAN_ENDED, llm), (SPAN_ENDED, root), (TRACE_ENDED, ended))
    )

    assert emission.revision == 1
    built = completed_trace(trace_id, emission, [root, retriever, llm], START_MS + 900)  # type: ignore[list-item]
    assert built["linked_run_ids"] == ["run-eval-1"]
    assert built["linked_prompts"] == ["support-prompt/3"]


def test_a_link_after_completion_makes_a_revision_with_every_link_in_first_linked_order(
    completed: tuple[Trace, Any, Any],
) -> None:
    trace, spans, _ = completed
    trace.receive(START_MS + 5_000, (TRACE_LINKED, link(trace.trace_id, ["run-b"], ["support-prompt/3"])))

    outputs = trace.receive(
        START_MS + 6_000, (TRACE_LINKED, link(trace.trace_id, ["run-a", "run-b"], ["support-prompt/4"]))
    )

    [emission] = emissions(outputs)
    assert emission.revision == 3
    built = completed_trace(trace.trace_id, emission, spans, START_MS + 6_000)
    assert built["linked_run_ids"] == ["run-b", "run-a"]
    assert built["linked_prompts"] == ["support-prompt/3", "support-prompt/4"]
    assert WriteState() in outputs  # kept in the trace's record, for a restarted worker


def test_a_link_that_adds_nothing_makes_no_revision(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed
    trace.receive(START_MS + 5_000, (TRACE_LINKED, link(trace.trace_id, ["run-a"], ["support-prompt/3"])))

    outputs = trace.receive(
        START_MS + 6_000, (TRACE_LINKED, link(trace.trace_id, ["run-a"], ["support-prompt/3"]))
    )

    assert emissions(outputs) == [] and WriteState() not in outputs
    assert trace.assembled.revision == 2


def test_a_revision_for_another_reason_keeps_the_links(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed
    trace.receive(START_MS + 5_000, (TRACE_LINKED, link(trace.trace_id, ["run-a"])))

    [emission] = emissions(trace.receive(START_MS + 6_000, (ASSESSMENT_LOGGED, feedback(trace.trace_id))))

    assert emission.linked_run_ids == ("run-a",)


def test_a_link_after_the_late_window_is_dead_lettered_as_a_late_tag_is(
    completed: tuple[Trace, Any, Any],
) -> None:
    trace, _, _ = completed
    trace.tick(START_MS + 600_000, TickAction.PURGE)

    outputs = trace.receive(START_MS + 700_000, (TRACE_LINKED, link(trace.trace_id, ["run-a"])))

    [dead] = of_type(outputs, DeadLetterRecord)
    assert dead.reason is DeadLetterReason.LATE_AFTER_RETENTION
    assert emissions(outputs) == []


def test_a_link_for_a_trace_never_seen_is_held_then_dead_lettered_as_an_unknown_trace() -> None:
    trace = Trace(new_trace_id())
    held = trace.receive(START_MS, (TRACE_LINKED, link(trace.trace_id, ["run-a"])))
    assert emissions(held) == [] and len(trace.assembled.held) == 1

    [dead] = of_type(trace.tick(START_MS + 600_000, TickAction.EXPIRE), DeadLetterHeld)

    assert dead.reason is DeadLetterReason.UNKNOWN_TRACE


# ---------------------------------------------------------------- deletion


def test_deleting_a_trace_in_progress_drops_its_chunks_for_a_marker_and_sends_a_tombstone() -> None:
    trace_id, (_, retriever, llm), _ = rag_trace()
    trace = Trace(trace_id)
    trace.receive(START_MS, (SPAN_ENDED, retriever))
    trace.receive(START_MS + 100, (SPAN_ENDED, llm))

    outputs = trace.receive(START_MS + 200, (TRACE_DELETED, deletion(trace_id)))

    assert outputs == [DropChunks(2), EmitTombstone(first_seen_ms=START_MS), WriteState(), Timer(None)]
    assert trace.state == Deleted(partition=2, deleted_ms=START_MS + 200, first_ms=START_MS)


def test_deleting_an_emitted_trace_sends_a_tombstone_with_its_first_seen_time(
    completed: tuple[Trace, Any, Any],
) -> None:
    trace, _, _ = completed

    outputs = trace.receive(START_MS + 5_000, (TRACE_DELETED, deletion(trace.trace_id)))

    assert outputs == [DropChunks(1), EmitTombstone(first_seen_ms=START_MS), WriteState(), Timer(None)]
    assert isinstance(trace.state, Deleted)


def test_deleting_a_trace_never_seen_sends_a_tombstone_without_a_first_seen_time_and_keeps_a_marker() -> None:
    trace = Trace(new_trace_id())

    outputs = trace.receive(START_MS, (TRACE_DELETED, deletion(trace.trace_id)))

    # The indexer may hold a document from before this stream's state (a purge marker forgotten).
    assert outputs == [EmitTombstone(first_seen_ms=None), WriteState(), Timer(None)]
    assert trace.state == Deleted(partition=2, deleted_ms=START_MS)


def test_deleting_a_purged_trace_sends_a_tombstone_with_the_first_seen_time_the_marker_kept(
    completed: tuple[Trace, Any, Any],
) -> None:
    trace, _, _ = completed
    trace.tick(START_MS + 600_000, TickAction.PURGE)

    outputs = trace.receive(START_MS + 700_000, (TRACE_DELETED, deletion(trace.trace_id)))

    assert outputs == [EmitTombstone(first_seen_ms=START_MS), WriteState(), Timer(None)]
    assert of_type(outputs, DeadLetterRecord) == []


def test_deleting_a_trace_whose_tags_were_held_drops_them_without_dead_letters() -> None:
    trace = Trace(new_trace_id())
    trace.receive(START_MS, (TRACE_TAGS_CHANGED, tag_change(trace.trace_id, reviewed="yes")))

    trace.receive(START_MS + 1_000, (TRACE_DELETED, deletion(trace.trace_id)))
    expired = trace.tick(START_MS + 600_000, TickAction.EXPIRE)

    assert expired == [Timer(None)]
    assert isinstance(trace.state, Deleted)


@pytest.mark.parametrize(
    "kind", [SPAN_ENDED, TRACE_ENDED, TRACE_TAGS_CHANGED, ASSESSMENT_LOGGED, TRACE_LINKED]
)
def test_an_event_after_the_delete_is_ignored(completed: tuple[Trace, Any, Any], kind: str) -> None:
    trace, (root, _, _), ended = completed
    trace.receive(START_MS + 5_000, (TRACE_DELETED, deletion(trace.trace_id)))
    late = {
        SPAN_ENDED: span(
            trace.trace_id, "background_summary", root["span_id"], START_MS + 950, START_MS + 6_000
        ),
        TRACE_ENDED: ended,
        TRACE_TAGS_CHANGED: tag_change(trace.trace_id, reviewed="yes"),
        ASSESSMENT_LOGGED: feedback(trace.trace_id),
        TRACE_LINKED: link(trace.trace_id, ["run-a"]),
    }[kind]

    outputs = trace.receive(START_MS + 6_000, (kind, late))

    assert outputs == [IgnoreDeleted(events=1, first=True), WriteState()]
    assert isinstance(trace.state, Deleted)


def test_events_after_the_delete_are_logged_once_then_only_counted(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed
    trace.receive(START_MS + 5_000, (TRACE_DELETED, deletion(trace.trace_id)))
    trace.receive(START_MS + 6_000, (TRACE_TAGS_CHANGED, tag_change(trace.trace_id, reviewed="yes")))

    outputs = trace.receive(
        START_MS + 7_000,
        (ASSESSMENT_LOGGED, feedback(trace.trace_id)),
        (TRACE_LINKED, link(trace.trace_id, ["r"])),
    )

    assert outputs == [IgnoreDeleted(events=2, first=False)]


def test_events_after_the_deletion_in_its_own_batch_are_ignored(completed: tuple[Trace, Any, Any]) -> None:
    trace, _, _ = completed

    outputs = trace.receive(
        START_MS + 5_000,
        (TRACE_DELETED, deletion(trace.trace_id)),
        (TRACE_TAGS_CHANGED, tag_change(trace.trace_id, reviewed="yes")),
    )

    assert emissions(outputs) == []
    assert IgnoreDeleted(events=1, first=True) in outputs
    assert of_type(outputs, EmitTombstone) == [EmitTombstone(first_seen_ms=START_MS)]


def test_a_timer_set_before_the_delete_does_nothing() -> None:
    trace_id, (_, retriever, _), _ = rag_trace()
    trace = Trace(trace_id)
    trace.receive(START_MS, (SPAN_ENDED, retriever))
    trace.receive(START_MS + 100, (TRACE_DELETED, deletion(trace_id)))

    # The idle timeout that would have emitted the trace incomplete.
    outputs = trace.tick(START_MS + 60_000, TickAction.EXPIRE)

    assert outputs == [Timer(None)]
    assert isinstance(trace.state, Deleted)


def test_deleting_a_trace_again_sends_the_tombstone_again_and_keeps_the_marker(
    completed: tuple[Trace, Any, Any],
) -> None:
    trace, _, _ = completed
    trace.receive(START_MS + 5_000, (TRACE_DELETED, deletion(trace.trace_id)))
    marker = trace.state

    outputs = trace.receive(START_MS + 9_000, (TRACE_DELETED, deletion(trace.trace_id)))

    assert outputs == [EmitTombstone(first_seen_ms=START_MS)]
    assert trace.state == marker


def test_a_delete_marker_is_forgotten_after_its_retention_of_seven_days(
    completed: tuple[Trace, Any, Any],
) -> None:
    trace, _, _ = completed
    trace.receive(START_MS + 5_000, (TRACE_DELETED, deletion(trace.trace_id)))
    seven_days_ms = 7 * 86_400_000

    # The purge marker's retention (one day) does not apply.
    assert trace.tick(START_MS + 5_001 + 86_400_000, TickAction.FORGET) == [Timer(None)]
    assert trace.tick(START_MS + 5_000 + seven_days_ms, TickAction.FORGET) == [Timer(None)]
    forgotten = trace.tick(START_MS + 5_001 + seven_days_ms, TickAction.FORGET)

    assert trace.state is None
    assert forgotten == [WriteState()]
