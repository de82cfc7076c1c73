"""The trace assembler as a pure state machine: :func:`step` takes a trace's state and an input
(a record of the events topic, or a timer's tick) and returns the new state and what to do.

No clock, Faust or Kafka in here: the time comes with the call, and the worker
(stream/agents.py) reads and writes the tables and topics as the outputs say. Timers are outputs
too (:class:`Timer`: when the trace wants its next tick), and the ticks come back as inputs.

A deleted trace (TraceDeleted) is final: its state becomes a :class:`Deleted` marker, a
tombstone goes to the completed topic, and the trace's later events are ignored while the
marker lives (``Config.deleted_retention_ms``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from tracestream.schemas import (
    ASSESSMENT_LOGGED,
    SPAN_ENDED,
    TRACE_DELETED,
    TRACE_ENDED,
    TRACE_LINKED,
    TRACE_TAGS_CHANGED,
)
from tracestream.schemas.records import AssessmentLogged, CompletedTrace, EventRecord, SpanEnded, TraceEnded
from tracestream.stream.derive import assemble, failed_spans
from tracestream.stream.prices import PriceTable
from tracestream.stream.state import Deleted, Emitted, HeldRecord, Purged, TraceState

Event = tuple[str, EventRecord]
State = TraceState | Purged | Deleted | None

DELETED_RETENTION_MS = 7 * 86_400_000


@dataclass(frozen=True, slots=True)
class Config:
    idle_timeout_ms: int
    late_window_ms: int
    marker_retention_ms: int
    # How long a deleted trace's marker is kept (its later events ignored meanwhile).
    deleted_retention_ms: int = DELETED_RETENTION_MS


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Received:
    """A record of the events topic: one event, or a batch of one trace's events."""

    trace_id: str
    partition: int
    offset: int
    value: bytes  # as received: stored as a chunk, or held, or dead-lettered
    events: Sequence[Event]


class TickAction(Enum):
    EXPIRE = b"expire"  # emit an idle trace incomplete, or dead-letter what was held for it
    PURGE = b"purge"  # the late window is over: drop the trace, keep a marker
    FORGET = b"forget"  # the marker (purged or deleted) is old enough to forget


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer went off. Ticks may come again or late: each action checks its own deadline."""

    trace_id: str
    action: TickAction


Input = Received | Tick


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class StoreChunk:
    """Write the record to the spans table as the trace's chunk ``index``."""

    index: int
    value: bytes
    events: Sequence[Event]


@dataclass(frozen=True, slots=True)
class DropChunks:
    """Delete the trace's chunks 0 .. ``count`` - 1 from the spans table."""

    count: int


@dataclass(frozen=True, slots=True)
class WriteState:
    """Write the new state's record to the traces table (delete it when the new state is None)."""


@dataclass(frozen=True, slots=True)
class EmitRevision:
    """Send a CompletedTrace of this revision, built from these fields and the trace's spans
    (:func:`completed_trace`), and with it an alert when ``alert``."""

    revision: int
    incomplete: bool
    ended: TraceEnded | None
    assessments: tuple[AssessmentLogged, ...]
    tags_set: Mapping[str, str]
    tags_deleted: tuple[str, ...]
    first_seen_ms: int  # the header the indexer places a skewed-clock trace by
    alert: bool
    # The revision already out, sent once more (see the replay rule in _after_record).
    again: bool = False
    linked_run_ids: tuple[str, ...] = ()
    linked_prompts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EmitTombstone:
    """Send the trace's tombstone (its id with no value) to the completed topic: it was deleted.
    ``first_seen_ms``: the header the indexer finds the trace's document by, when known."""

    first_seen_ms: int | None


@dataclass(frozen=True, slots=True)
class IgnoreDeleted:
    """Events of a deleted trace, ignored: count them, and log when ``first`` (once per trace)."""

    events: int
    first: bool


class DeadLetterReason(Enum):
    DUPLICATE_TRACE_ID = "duplicate_trace_id"
    LATE_AFTER_RETENTION = "late_after_retention"
    UNKNOWN_TRACE = "unknown_trace"


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """Dead-letter the record being processed, as received."""

    reason: DeadLetterReason
    detail: str


@dataclass(frozen=True, slots=True)
class DeadLetterEvent:
    """Dead-letter one event of the record alone (the record's other events were used)."""

    reason: DeadLetterReason
    detail: str
    kind: str
    record: EventRecord


@dataclass(frozen=True, slots=True)
class DeadLetterHeld:
    """Dead-letter a record held earlier, as received at ``partition``/``offset``."""

    reason: DeadLetterReason
    detail: str
    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class Timer:
    """When the trace wants its next tick; ``action`` None cancels its timer."""

    action: TickAction | None
    at_ms: int = 0


Output = (
    StoreChunk
    | DropChunks
    | WriteState
    | EmitRevision
    | EmitTombstone
    | IgnoreDeleted
    | DeadLetterRecord
    | DeadLetterEvent
    | DeadLetterHeld
    | Timer
)


class InvalidRecord(Exception):
    """A record that decodes but cannot be used (a batch mixing trace ids)."""


def trace_id_of(events: Sequence[Event]) -> str:
    """The one trace a record's events belong to."""
    trace_id: str = events[0][1]["trace_id"]
    if any(record["trace_id"] != trace_id for _, record in events):
        raise InvalidRecord(f"a batch of {len(events)} events mixes trace ids (first: {trace_id})")
    return trace_id


# ---------------------------------------------------------------- the transition


def step(state: State, event: Input, now_ms: int, config: Config) -> tuple[State, list[Output]]:
    """The new state of one trace and what to do, for a record or a tick."""
    if isinstance(event, Received):
        return _received(state, event, now_ms, config)
    return _ticked(state, event, now_ms, config)


def timer_of(state: TraceState, config: Config) -> Timer:
    """When a trace wants its next tick: idle, or (held for a trace not seen) the late window
    after its first record, or once emitted the late window after the last revision."""
    if state.emitted is not None:
        return Timer(TickAction.PURGE, state.emitted.at_ms + config.late_window_ms)
    if state.unseen:
        return Timer(TickAction.EXPIRE, state.first_ms + config.late_window_ms)
    return Timer(TickAction.EXPIRE, state.last_activity_ms + config.idle_timeout_ms)


@dataclass(slots=True)
class _Applied:
    state: TraceState
    # Span ids new to the state, added to it once at the end (not a copy of the set per span).
    new_span_ids: set[str] = field(default_factory=set)
    # A trace-level fact changed: its end, a tag, an assessment.
    changed: bool = False


def _received(state: State, record: Received, now_ms: int, config: Config) -> tuple[State, list[Output]]:
    kinds = [kind for kind, _ in record.events]
    if TRACE_DELETED in kinds:
        # Events before the deletion in the same record are deleted with the trace.
        return _delete(state, record, len(kinds) - 1 - kinds.index(TRACE_DELETED), now_ms)
    if isinstance(state, Deleted):
        return _ignore(state, len(kinds))
    if isinstance(state, Purged):
        detail = f"{record.events[0][0]} for {record.trace_id}, whose state was purged after the late window"
        return state, [DeadLetterRecord(DeadLetterReason.LATE_AFTER_RETENTION, detail)]
    created = state is None
    if state is None:
        state = TraceState(partition=record.partition, first_ms=now_ms)
    applied = _Applied(state, changed=created)
    outputs: list[Output] = []
    for kind, fact in record.events:
        if kind == TRACE_ENDED:
            outputs.extend(_end(applied, record.trace_id, fact))  # type: ignore[arg-type]
        else:
            _apply(applied, kind, fact)
    state = applied.state
    # One copy of the state per record (dataclasses.replace is the costliest step of a span).
    changes: dict[str, Any] = {"last_activity_ms": now_ms}
    if applied.new_span_ids:
        outputs.append(StoreChunk(state.chunks, record.value, record.events))
        changes["span_ids"] = state.span_ids | applied.new_span_ids
        changes["chunks"] = state.chunks + 1
    if state.held and (applied.new_span_ids or not state.unseen):
        # The trace arrived: the held tags and assessments are in its state, applied.
        changes["held"] = ()
        applied.changed = True
    state = replace(state, **changes)
    state, more = _after_record(state, applied, record, now_ms)
    outputs.extend(more)
    outputs.append(timer_of(state, config))
    return state, outputs


def _apply(applied: _Applied, kind: str, fact: Any) -> None:
    state = applied.state
    if kind == SPAN_ENDED:
        if fact["span_id"] not in state.span_ids:  # else a duplicate (at-least-once delivery)
            applied.new_span_ids.add(fact["span_id"])
    elif kind == TRACE_TAGS_CHANGED:
        tags = dict(state.tags_set)
        deleted = set(state.tags_deleted)
        for tag, value in fact["set"].items():
            tags[tag] = value
            deleted.discard(tag)
        for tag in fact["deleted"]:
            tags.pop(tag, None)
            deleted.add(tag)
        if tags != state.tags_set or deleted != set(state.tags_deleted):  # else a replay
            applied.state = replace(state, tags_set=tags, tags_deleted=tuple(sorted(deleted)))
            applied.changed = True
    elif kind == TRACE_LINKED:
        run_ids = _merged(state.linked_run_ids, fact["run_ids"])
        prompts = _merged(state.linked_prompts, fact["prompt_versions"])
        if run_ids != state.linked_run_ids or prompts != state.linked_prompts:  # else a replay
            applied.state = replace(state, linked_run_ids=run_ids, linked_prompts=prompts)
            applied.changed = True
    elif kind == ASSESSMENT_LOGGED and all(
        a["assessment_id"] != fact["assessment_id"] for a in state.assessments
    ):
        # Assessments are few and small: they live in the state, deduplicated by id.
        applied.state = replace(state, assessments=(*state.assessments, fact))
        applied.changed = True


def _merged(linked: tuple[str, ...], more: Sequence[str]) -> tuple[str, ...]:
    """Links only add: the new ones after the old, each once."""
    return tuple(dict.fromkeys((*linked, *more)))


def _delete(state: State, record: Received, after: int, now_ms: int) -> tuple[State, list[Output]]:
    """The trace goes, whatever its stage: its chunks and state (held records included) are
    dropped for a marker, and a tombstone tells the indexer. ``after``: events that followed
    the deletion in its record, ignored as later events are."""
    if isinstance(state, Deleted):
        # Deleted again (a retried request): the tombstone again, harmless downstream.
        outputs: list[Output] = [EmitTombstone(state.first_ms or None)]
    else:
        first_ms = state.first_ms if isinstance(state, TraceState | Purged) else 0
        outputs = [DropChunks(state.chunks)] if isinstance(state, TraceState) and state.chunks else []
        outputs.append(EmitTombstone(first_ms or None))
        partition = state.partition if state is not None else record.partition
        state = Deleted(partition=partition, deleted_ms=now_ms, first_ms=first_ms)
        outputs += [WriteState(), Timer(None)]
    if after:
        state, ignored = _ignore(state, after)
        outputs.extend(ignored)
    return state, outputs


def _ignore(marker: Deleted, events: int) -> tuple[Deleted, list[Output]]:
    if marker.reported:
        return marker, [IgnoreDeleted(events, first=False)]
    # Recorded, so a restarted worker does not log the trace again.
    return replace(marker, reported=True), [IgnoreDeleted(events, first=True), WriteState()]


def _end(applied: _Applied, trace_id: str, ended: TraceEnded) -> list[Output]:
    first = applied.state.ended
    if first is None:
        applied.state = replace(applied.state, ended=ended)
        applied.changed = True
        return []
    if (first["root_span_id"] or None) == (ended["root_span_id"] or None):
        return []  # the same end delivered again
    # Another root under the same trace id (a broken client): reported, rather than merged
    # into or silently dropped from the first trace.
    detail = (
        f"TraceEnded of root span {ended['root_span_id']} for {trace_id}, which already ended "
        f"with root span {first['root_span_id']}: two traces share the id"
    )
    return [DeadLetterEvent(DeadLetterReason.DUPLICATE_TRACE_ID, detail, TRACE_ENDED, ended)]


def _after_record(
    state: TraceState, applied: _Applied, record: Received, now_ms: int
) -> tuple[TraceState, list[Output]]:
    if state.emitted is not None:
        # Spans the emitted revision already had are a replay whose chunk was lost with a
        # killed worker (the tables' changelogs are not written atomically): not news.
        if (applied.new_span_ids and state.spans > state.emitted.spans) or applied.changed:
            return _emit(state, now_ms)
        if state.restored and not state.reemitted:
            # Nothing new for a trace restored from the tables: its revision goes out again,
            # once. The changelog and the outputs are separate records, so a worker that died
            # right after emitting may have recorded "revision n emitted" without the
            # CompletedTrace being written; the records after the committed offset, replayed
            # now, include the one that completed it. Downstream is idempotent per revision.
            return _emit(replace(state, reemitted=True), now_ms, again=True)
        return state, []
    if state.unseen:
        # Never a trace of its own (MLflow answers 404 for an unknown trace): held until the
        # trace arrives, or dead-lettered after the late window.
        if not applied.changed:
            return state, []
        return replace(state, held=(*state.held, HeldRecord(record.offset, record.value))), [WriteState()]
    if state.complete:
        return _emit(state, now_ms)
    # New spans alone are in their chunk: the state is written only when it changed.
    return state, [WriteState()] if applied.changed else []


def _emit(state: TraceState, now_ms: int, again: bool = False) -> tuple[TraceState, list[Output]]:
    """The next revision (the flag decided anew each time, so a trace emitted at the idle
    timeout loses it once the rest arrives), or with ``again`` the current one once more."""
    if again:
        assert state.emitted is not None
        incomplete = state.emitted.incomplete
        revision = state.revision
    else:
        incomplete = not state.complete
        revision = state.revision + 1
    error = state.ended is not None and state.ended["state"] == "ERROR"
    alert = error and (again or not state.alerted)
    emission = EmitRevision(
        revision=revision,
        incomplete=incomplete,
        ended=state.ended,
        assessments=state.assessments,
        tags_set=state.tags_set,
        tags_deleted=state.tags_deleted,
        first_seen_ms=state.first_ms,
        alert=alert,
        again=again,
        linked_run_ids=state.linked_run_ids,
        linked_prompts=state.linked_prompts,
    )
    if again:
        return replace(state, alerted=state.alerted or alert), [emission]
    state = replace(
        state,
        revision=revision,
        emitted=Emitted(at_ms=now_ms, incomplete=incomplete, spans=state.spans),
        alerted=state.alerted or alert,
    )
    return state, [emission, WriteState()]


def _ticked(state: State, tick: Tick, now_ms: int, config: Config) -> tuple[State, list[Output]]:
    action = tick.action
    if isinstance(state, Deleted):
        # A timer of the trace before its deletion has no effect.
        if action is TickAction.FORGET and state.deleted_ms < now_ms - config.deleted_retention_ms:
            return None, [WriteState()]
        return state, [Timer(None)]
    if isinstance(state, Purged):
        if action is TickAction.FORGET and state.purged_ms < now_ms - config.marker_retention_ms:
            return None, [WriteState()]
        return state, [Timer(None)]
    if state is None:
        return None, [Timer(None)]
    if action is TickAction.EXPIRE and state.emitted is None:
        if state.unseen:
            if now_ms - state.first_ms >= config.late_window_ms:
                return _dead_letter_held(tick.trace_id, state, config)
        elif now_ms - state.last_activity_ms >= config.idle_timeout_ms:
            state, outputs = _emit(state, now_ms)
            return state, [*outputs, timer_of(state, config)]
    elif (
        action is TickAction.PURGE
        and state.emitted is not None
        and now_ms - state.emitted.at_ms >= config.late_window_ms
    ):
        purged = Purged(
            partition=state.partition, revision=state.revision, purged_ms=now_ms, first_ms=state.first_ms
        )
        return purged, [DropChunks(state.chunks), WriteState(), Timer(None)]
    return state, [timer_of(state, config)]


def _dead_letter_held(trace_id: str, state: TraceState, config: Config) -> tuple[State, list[Output]]:
    """The trace never came: each held record is dead-lettered as received, and the state is
    forgotten, so a trace of that id arriving later starts afresh."""
    detail = (
        f"tags or assessments for {trace_id}: no span or end of that trace arrived within the late window "
        f"({config.late_window_ms / 1000:g} s)"
    )
    outputs: list[Output] = [
        DeadLetterHeld(DeadLetterReason.UNKNOWN_TRACE, detail, state.partition, held.offset, held.value)
        for held in state.held
    ]
    return None, [*outputs, WriteState(), Timer(None)]


# ---------------------------------------------------------------- what the outputs carry


def completed_trace(
    trace_id: str,
    emission: EmitRevision,
    spans: list[SpanEnded],
    now_ms: int,
    prices: PriceTable | None = None,
) -> CompletedTrace:
    """The CompletedTrace an :class:`EmitRevision` stands for, given the trace's spans (spans
    without a cost priced from ``prices``, the shipped table when None)."""
    return assemble(
        trace_id,
        emission.revision,
        spans,
        emission.ended,
        emission.assessments,
        dict(emission.tags_set),
        emission.tags_deleted,
        incomplete=emission.incomplete,
        now_ms=now_ms,
        prices=prices,
        linked_run_ids=emission.linked_run_ids,
        linked_prompts=emission.linked_prompts,
    )


def alert_of(trace: CompletedTrace, now_ms: int) -> dict[str, Any]:
    """The TraceAlert of an ERROR trace."""
    info = trace["info"]
    return {
        "trace_id": trace["trace_id"],
        "revision": trace["revision"],
        "trace_name": info["tags"].get("mlflow.traceName"),
        "location": info["location"],
        "request_time_ms": info["request_time_ms"],
        "execution_duration_ms": info["execution_duration_ms"],
        "failed_spans": failed_spans(trace),
        "tags": info["tags"],
        "metadata": {k: v for k, v in info["metadata"].items() if not k.startswith("mlflow.trace.size")},
        "alert_time_ms": now_ms,
    }
