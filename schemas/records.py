"""The records of the data contract as Python types.

Records are plain dicts on the hot path (no per-record object construction); these
TypedDicts mirror the Avro schemas in avro/ for type checkers and readers.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

SpanStatusCode = Literal["UNSET", "OK", "ERROR"]
TraceState = Literal["STATE_UNSPECIFIED", "OK", "ERROR", "IN_PROGRESS"]
AssessmentKind = Literal["FEEDBACK", "EXPECTATION"]
AssessmentSourceType = Literal["SOURCE_TYPE_UNSPECIFIED", "HUMAN", "LLM_JUDGE", "CODE"]
EventAttributeValue = str | bool | int | float | list[str | bool | int | float]

# Full names of the union branches of TraceEvent.event.
SPAN_ENDED = "io.tracestream.SpanEnded"
TRACE_ENDED = "io.tracestream.TraceEnded"
TRACE_TAGS_CHANGED = "io.tracestream.TraceTagsChanged"
ASSESSMENT_LOGGED = "io.tracestream.AssessmentLogged"
TRACE_LINKED = "io.tracestream.TraceLinked"  # v4
TRACE_DELETED = "io.tracestream.TraceDeleted"  # v4
# Several events of one trace in one record (TraceEvent v2).
EVENT_BATCH = "io.tracestream.EventBatch"


class TraceLocation(TypedDict):
    type: str
    experiment_id: str | None


class SpanEvent(TypedDict):
    name: str
    time_ns: int
    attributes: dict[str, EventAttributeValue]


class SpanEnded(TypedDict):
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    span_type: str
    start_time_ns: int
    end_time_ns: int
    status_code: SpanStatusCode
    status_message: str
    attributes: dict[str, str]  # JSON-encoded values
    events: list[SpanEvent]
    location: TraceLocation


class TraceEnded(TypedDict):
    trace_id: str
    client_request_id: str | None
    location: TraceLocation
    request_time_ms: int
    execution_duration_ms: int | None
    state: TraceState
    tags: dict[str, str]
    metadata: dict[str, str]
    request_preview: str | None
    response_preview: str | None
    root_span_id: str | None
    span_count: int


class TraceTagsChanged(TypedDict):
    trace_id: str
    set: dict[str, str]
    deleted: list[str]
    time_ms: int


class AssessmentError(TypedDict):
    error_code: str
    error_message: str | None


class AssessmentLogged(TypedDict):
    assessment_id: str
    trace_id: str
    name: str
    kind: AssessmentKind
    value_json: str | None
    error: AssessmentError | None
    source_type: AssessmentSourceType
    source_id: str
    rationale: str | None
    metadata: dict[str, str]
    span_id: str | None
    create_time_ms: int
    last_update_time_ms: int | None
    overrides: str | None
    valid: bool


class TraceLinked(TypedDict):  # v4
    trace_id: str
    run_ids: list[str]
    prompt_versions: list[str]  # name/version
    time_ms: int


class TraceDeleted(TypedDict):  # v4
    trace_id: str
    time_ms: int
    reason: str | None


EventRecord = SpanEnded | TraceEnded | TraceTagsChanged | AssessmentLogged | TraceLinked | TraceDeleted


class EventBatch(TypedDict):
    trace_id: str
    # (full record name, record) of each event, in order; never another batch.
    events: list[tuple[str, EventRecord]]


class TraceEvent(TypedDict):
    # (full record name, record), e.g. (SPAN_ENDED, {...}) or (EVENT_BATCH, {...})
    event: tuple[str, EventRecord | EventBatch]


def events_of(event: tuple[str, EventRecord | EventBatch]) -> list[tuple[str, EventRecord]]:
    """The events a TraceEvent carries, in order: itself, or each event of its batch."""
    kind, record = event
    if kind == EVENT_BATCH:
        return record["events"]  # type: ignore[typeddict-item]
    return [event]  # type: ignore[list-item]


class TraceInfo(TypedDict):
    trace_id: str
    client_request_id: str | None
    location: TraceLocation
    request_time_ms: int
    execution_duration_ms: int | None
    state: TraceState
    request_preview: str | None
    response_preview: str | None
    tags: dict[str, str]
    metadata: dict[str, str]


class CompletedTrace(TypedDict):
    trace_id: str
    revision: int
    info: TraceInfo
    spans: list[SpanEnded]
    assessments: list[AssessmentLogged]
    linked_run_ids: NotRequired[list[str]]  # v4
    linked_prompts: NotRequired[list[str]]  # v4
    completed_time_ms: int


# Kafka record header of every CompletedTrace the stream emits: when the stream first saw the
# trace (epoch ms, ASCII digits, the stream's clock). The same on every revision, so the indexer
# can place a trace whose client clock is wrong in a daily index that never changes. A header,
# not a field: it is about the delivery, not the trace, and needs no schema version.
FIRST_SEEN_HEADER = "tracestream.first_seen_ms"
