"""The per-trace state machine of the stream: what a record does to a trace's state, and what
the worker does next. Pure functions over the state record (a JSON-able dict) and the set of
span ids received, so the logic is tested without a broker (tests/test_stream_state.py);
stream/app.py does the I/O (tables, outputs, dead letters).

State keys: ``first_ms``, ``partition``, ``revision``, ``ended`` (the TraceEnded), ``tags_set``,
``tags_deleted``, ``assessments``, ``held`` (records of a trace not seen yet, see
:func:`after_record`), and once emitted ``finalized``, ``finalized_ms``, ``incomplete``,
``emitted_spans``, ``alerted``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tracestream import schemas
from tracestream.schemas import ASSESSMENT_LOGGED, SPAN_ENDED, TRACE_ENDED, TRACE_TAGS_CHANGED, events_of

_LEGACY_CODEC = schemas.events_codec()


class Next(Enum):
    """What the worker does after applying a record to a trace's state."""

    EMIT = "emit"  # a new revision (complete, or news about an emitted trace)
    REPLAYED = "replayed"  # nothing new about an emitted trace (a replay)
    STORE = "store"  # the state changed; the trace is still being assembled
    HOLD = "hold"  # tags or assessments of a trace not seen yet: keep the record, emit nothing
    NOTHING = "nothing"


class Expiry(Enum):
    """What an idle tick does to a trace not emitted yet."""

    WAIT = "wait"
    EMIT_INCOMPLETE = "emit_incomplete"
    DEAD_LETTER_HELD = "dead_letter_held"  # the trace never came within the late window


@dataclass
class Applied:
    """What one record changed."""

    new_spans: int = 0
    # A trace-level fact changed: its end, a tag, an assessment.
    changed: bool = False
    # TraceEnded events of another root under the same trace id (a broken client): they are
    # dead-lettered rather than merged into, or silently dropped from, the first trace.
    conflicting_ends: list[dict[str, Any]] = field(default_factory=list)


def new_state(partition: int, now_ms: int) -> dict[str, Any]:
    return {"first_ms": now_ms, "partition": partition, "revision": 0}


def ended_of(state: dict[str, Any]) -> dict[str, Any] | None:
    ended = state.get("ended")
    if isinstance(ended, str):  # state written before v2 kept the encoded event
        ended = events_of(_LEGACY_CODEC.decode(base64.b64decode(ended))["event"])[0][1]
        state["ended"] = ended
    return ended


def apply_tag_change(state: dict[str, Any], change: dict[str, Any]) -> bool:
    """Apply a TraceTagsChanged to the state; False when it changes nothing (a replay)."""
    tags = state.get("tags_set", {})
    deleted = set(state.get("tags_deleted", []))
    before = (dict(tags), set(deleted))
    for tag, tag_value in change["set"].items():
        tags[tag] = tag_value
        deleted.discard(tag)
    for tag in change["deleted"]:
        tags.pop(tag, None)
        deleted.add(tag)
    if (tags, deleted) == before:
        return False
    state["tags_set"] = tags
    state["tags_deleted"] = sorted(deleted)
    return True


def apply_events(state: dict[str, Any], span_ids: set[str], events: list[tuple[str, Any]]) -> Applied:
    """Apply one record's events to ``state`` and ``span_ids`` (both updated in place)."""
    applied = Applied()
    for kind, record in events:
        if kind == SPAN_ENDED:
            span_id = record["span_id"]
            if span_id not in span_ids:  # else a duplicate (at-least-once delivery)
                span_ids.add(span_id)
                applied.new_spans += 1
        elif kind == TRACE_ENDED:
            ended = ended_of(state)
            if ended is None:
                state["ended"] = record
                applied.changed = True
            elif (ended["root_span_id"] or None) != (record["root_span_id"] or None):
                applied.conflicting_ends.append(record)
            # else the same end delivered again
        elif kind == TRACE_TAGS_CHANGED:
            applied.changed |= apply_tag_change(state, record)
        elif kind == ASSESSMENT_LOGGED:
            # Assessments are few and small: they live in the state, deduplicated by id.
            assessments = state.setdefault("assessments", [])
            assessment_id = record["assessment_id"]
            if all(a["assessment_id"] != assessment_id for a in assessments):
                assessments.append(record)
                applied.changed = True
    if "held" in state and not unseen(state, len(span_ids)):
        # The trace arrived: the held tags and assessments are in its state, applied.
        del state["held"]
        applied.changed = True
    return applied


def complete(state: dict[str, Any], spans: int) -> bool:
    """The root ended and the spans it counted are all here. Spans started after the root
    ended (tasks that outlived it) are not in its count, so more spans than counted is complete."""
    ended = ended_of(state)
    return ended is not None and spans >= ended["span_count"]


def unseen(state: dict[str, Any], spans: int) -> bool:
    """No span and no end of the trace yet: only tags or assessments sent for its id."""
    return spans == 0 and state.get("ended") is None


def after_record(state: dict[str, Any], spans: int, applied: Applied) -> Next:
    """What to do once a record was applied (``spans``: the distinct spans now received)."""
    if state.get("finalized"):
        # Spans the emitted revision already had are a replay whose chunk was lost with a
        # killed worker (the tables' changelogs are not written atomically): not news.
        if (applied.new_spans and spans > state.get("emitted_spans", 0)) or applied.changed:
            return Next.EMIT
        return Next.REPLAYED
    if unseen(state, spans):
        # Never a trace of its own (MLflow answers 404 for an unknown trace): held until the
        # trace arrives, or dead-lettered after the late window.
        return Next.HOLD if applied.changed else Next.NOTHING
    if complete(state, spans):
        return Next.EMIT
    # New spans alone are in their chunk: the state is written only when it changed.
    return Next.STORE if applied.changed else Next.NOTHING


def incomplete(state: dict[str, Any], spans: int) -> bool:
    """Whether a revision about to be emitted lacks its end or spans: recomputed for every
    revision, so a trace emitted at the idle timeout loses the flag once the rest arrives."""
    return not complete(state, spans)


def mark_emitted(state: dict[str, Any], revision: int, now_ms: int, incomplete: bool, spans: int) -> None:
    """The state once ``revision`` is out: late data from now on makes further revisions."""
    state.update(
        revision=revision, finalized=True, finalized_ms=now_ms, incomplete=incomplete, emitted_spans=spans
    )


def on_idle(
    state: dict[str, Any],
    spans: int,
    now_s: float,
    last_activity_s: float,
    idle_timeout_s: float,
    late_window_s: float,
) -> Expiry:
    """An idle tick for a trace (ticks come again: each deadline is checked here)."""
    if state.get("finalized"):
        return Expiry.WAIT
    if unseen(state, spans):
        if now_s * 1000 - state.get("first_ms", 0) >= late_window_s * 1000:
            return Expiry.DEAD_LETTER_HELD
        return Expiry.WAIT
    if now_s - last_activity_s >= idle_timeout_s:
        return Expiry.EMIT_INCOMPLETE
    return Expiry.WAIT
