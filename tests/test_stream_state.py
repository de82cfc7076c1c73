"""A trace's state and its record in the stream's ``traces`` table (stream/state.py): the record
keeps the keys the table held before the state was typed, so a worker restarts on an existing
changelog."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from stream_harness import rag_trace

from tracestream import schemas
from tracestream.schemas import TRACE_ENDED
from tracestream.stream.state import Deleted, Emitted, HeldRecord, Purged, TraceState, state_from_record


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


def test_a_record_written_before_the_state_was_typed_loads_with_every_field() -> None:
    trace_id, _, ended = rag_trace(error=True)
    assessment = feedback(trace_id)
    record = {
        "first_ms": 1_760_000_000_000,
        "partition": 4,
        "revision": 2,
        "ended": ended,
        "tags_set": {"reviewed": "yes"},
        "tags_deleted": ["team"],
        "assessments": [assessment],
        "finalized": True,
        "finalized_ms": 1_760_000_031_000,
        "incomplete": False,
        "emitted_spans": 3,
        "alerted": True,
    }

    state = state_from_record(json.loads(json.dumps(record)))  # as the JSON changelog gives it back

    assert state == TraceState(
        partition=4,
        first_ms=1_760_000_000_000,
        revision=2,
        ended=ended,  # type: ignore[arg-type]
        tags_set={"reviewed": "yes"},
        tags_deleted=("team",),
        assessments=(assessment,),  # type: ignore[arg-type]
        emitted=Emitted(at_ms=1_760_000_031_000, incomplete=False, spans=3),
        alerted=True,
    )


def test_a_state_writes_the_record_it_loads_from() -> None:
    trace_id, _, ended = rag_trace()
    state = TraceState(
        partition=1,
        first_ms=1_760_000_000_000,
        revision=1,
        ended=ended,  # type: ignore[arg-type]
        assessments=(feedback(trace_id),),  # type: ignore[arg-type]
        emitted=Emitted(at_ms=1_760_000_031_000, incomplete=True, spans=2),
    )

    record = json.loads(json.dumps(state.to_record()))

    assert record["finalized"] is True and record["emitted_spans"] == 2
    assert TraceState.from_record(record) == state


def test_memory_only_fields_stay_out_of_the_record() -> None:
    state = TraceState(partition=0, first_ms=5, span_ids=frozenset({"a1", "b2"}), chunks=2, restored=True)

    assert state.to_record() == {"first_ms": 5, "partition": 0, "revision": 0}


def test_held_records_keep_their_bytes_through_the_json_record() -> None:
    value = schemas.events_codec().encode_union(schemas.ASSESSMENT_LOGGED, feedback("tr-" + "ab" * 16))
    state = TraceState(partition=0, first_ms=5, held=(HeldRecord(offset=41, value=value),))

    record = json.loads(json.dumps(state.to_record()))

    assert record["held"] == [{"offset": 41, "value": base64.b64encode(value).decode()}]
    assert TraceState.from_record(record).held == (HeldRecord(offset=41, value=value),)


def test_an_end_kept_encoded_by_a_worker_before_trace_event_v2_is_decoded() -> None:
    _, _, ended = rag_trace()
    encoded = base64.b64encode(schemas.events_codec().encode_union(TRACE_ENDED, ended)).decode()

    state = state_from_record({"first_ms": 5, "partition": 0, "revision": 0, "ended": encoded})

    assert isinstance(state, TraceState)
    assert state.ended == ended


def test_a_purge_marker_round_trips() -> None:
    marker = Purged(partition=2, revision=3, purged_ms=1_760_000_600_000)

    record = marker.to_record()

    assert record == {"purged": True, "revision": 3, "purged_ms": 1_760_000_600_000, "partition": 2}
    assert state_from_record(record) == marker


def test_a_purge_marker_written_before_v4_loads_without_a_first_seen_time() -> None:
    record = {"purged": True, "revision": 3, "purged_ms": 1_760_000_600_000, "partition": 2}

    assert state_from_record(record) == Purged(
        partition=2, revision=3, purged_ms=1_760_000_600_000, first_ms=0
    )


def test_a_purge_marker_keeps_the_first_seen_time_for_a_later_tombstone() -> None:
    marker = Purged(partition=2, revision=3, purged_ms=1_760_000_600_000, first_ms=1_760_000_000_000)

    assert state_from_record(json.loads(json.dumps(marker.to_record()))) == marker


def test_links_round_trip_in_first_linked_order() -> None:
    state = TraceState(
        partition=1,
        first_ms=1_760_000_000_000,
        linked_run_ids=("run-b", "run-a"),
        linked_prompts=("support-prompt/3",),
    )

    record = json.loads(json.dumps(state.to_record()))

    assert record["linked_run_ids"] == ["run-b", "run-a"]
    assert TraceState.from_record(record) == state


def test_a_delete_marker_round_trips() -> None:
    marker = Deleted(partition=2, deleted_ms=1_760_000_900_000, first_ms=1_760_000_000_000, reported=True)

    record = json.loads(json.dumps(marker.to_record()))

    assert record == {
        "deleted": True,
        "deleted_ms": 1_760_000_900_000,
        "partition": 2,
        "first_ms": 1_760_000_000_000,
        "reported": True,
    }
    assert state_from_record(record) == marker


def test_a_delete_marker_of_a_trace_never_seen_has_no_first_seen_time() -> None:
    marker = Deleted(partition=0, deleted_ms=1_760_000_900_000)

    assert marker.to_record() == {"deleted": True, "deleted_ms": 1_760_000_900_000, "partition": 0}
    assert state_from_record(marker.to_record()) == marker


def test_no_record_is_no_state() -> None:
    assert state_from_record(None) is None
