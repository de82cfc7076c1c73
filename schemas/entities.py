"""MLflow's entity types that both sides of tracestream hand to users: the SDK returns them
(``log_feedback`` gives a ``Feedback``, ``span.status`` a ``SpanStatus``), the client reads them
back (``Trace.info.assessments``, ``Span.status``). One definition, so that what the SDK logs and
what the client reads are the same classes, as in MLflow.

The records that cross Kafka are not these classes but the TypedDicts of ``schemas.records``
(plain dicts: no object per event on the hot path). The SDK's running span (``LiveSpan``) and the
client's read-only ``Span``/``Trace``/``TraceInfo`` stay apart: one is mutable write-side state,
the other a parse of the search API's JSON, and they share no fields' behaviour.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from tracestream.schemas.mlflow_format import parse_proto_timestamp, proto_timestamp

# ---------------------------------------------------------------- enums


class TraceState(StrEnum):
    # In protobuf's order: the MLflow REST API may send the numbers.
    STATE_UNSPECIFIED = "STATE_UNSPECIFIED"
    OK = "OK"
    ERROR = "ERROR"
    IN_PROGRESS = "IN_PROGRESS"


class TraceStatus(StrEnum):
    """The state under its MLflow 2 name (``TraceInfo.status``), kept for older analysis code."""

    UNSPECIFIED = "TRACE_STATUS_UNSPECIFIED"
    OK = "OK"
    ERROR = "ERROR"
    IN_PROGRESS = "IN_PROGRESS"

    @classmethod
    def from_state(cls, state: TraceState) -> TraceStatus:
        return cls.UNSPECIFIED if state == TraceState.STATE_UNSPECIFIED else cls(state.value)

    def to_state(self) -> TraceState:
        return TraceState.STATE_UNSPECIFIED if self == TraceStatus.UNSPECIFIED else TraceState(self.value)


class SpanStatusCode(StrEnum):
    UNSET = "UNSET"
    OK = "OK"
    ERROR = "ERROR"


class AssessmentSourceType(StrEnum):
    # In protobuf's order: the MLflow REST API may send the numbers.
    SOURCE_TYPE_UNSPECIFIED = "SOURCE_TYPE_UNSPECIFIED"
    HUMAN = "HUMAN"
    LLM_JUDGE = "LLM_JUDGE"
    CODE = "CODE"


# ---------------------------------------------------------------- spans


@dataclass
class SpanStatus:
    status_code: SpanStatusCode | str
    description: str = ""


@dataclass
class SpanEvent:
    name: str
    timestamp: int = field(default_factory=time.time_ns)
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_exception(cls, exception: BaseException) -> SpanEvent:
        """The OpenTelemetry ``exception`` event, as MLflow records it."""
        return cls(
            name="exception",
            attributes={
                "exception.type": type(exception).__name__,
                "exception.message": str(exception),
                "exception.stacktrace": "".join(
                    traceback.format_exception(type(exception), exception, exception.__traceback__)
                ).strip(),
            },
        )


# ---------------------------------------------------------------- assessments


@dataclass
class AssessmentSource:
    # CODE, as MLflow's log_feedback assumes when no source is given.
    source_type: str = AssessmentSourceType.CODE.value
    source_id: str = "default"


@dataclass
class AssessmentError:
    error_code: str
    error_message: str | None = None
    stack_trace: str | None = None

    def to_dictionary(self) -> dict[str, Any]:
        rendered: dict[str, Any] = {"error_code": self.error_code}
        if self.error_message is not None:
            rendered["error_message"] = self.error_message
        if self.stack_trace is not None:
            rendered["stack_trace"] = self.stack_trace
        return rendered


def _proto_value(value: Any) -> Any:
    """A value as protobuf's ``Value`` gives it back: every number is a double."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {str(key): _proto_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_proto_value(item) for item in value]
    return value


def _is_primitive(value: Any) -> bool:
    return isinstance(value, int | float | bool | str)


def _unspecified_source() -> AssessmentSource:
    return AssessmentSource(AssessmentSourceType.SOURCE_TYPE_UNSPECIFIED.value)


@dataclass
class Assessment:
    """A feedback or an expectation logged on a trace (MLflow's ``Feedback`` / ``Expectation``)."""

    name: str
    kind: Literal["feedback", "expectation"]
    value: Any
    source: AssessmentSource = field(default_factory=_unspecified_source)
    trace_id: str | None = None
    assessment_id: str | None = None
    span_id: str | None = None
    rationale: str | None = None
    metadata: dict[str, str] | None = None
    error: AssessmentError | None = None
    create_time_ms: int | None = None
    last_update_time_ms: int | None = None
    overrides: str | None = None
    # None counts as valid, as in MLflow.
    valid: bool | None = True

    @property
    def is_valid(self) -> bool:
        return self.valid in (True, None)

    @classmethod
    def from_dictionary(cls, data: dict[str, Any]) -> Assessment:
        if "expectation" in data:
            kind: Literal["feedback", "expectation"] = "expectation"
            body = data["expectation"] or {}
            if "serialized_value" in body:
                value = json.loads(body["serialized_value"]["value"])
            else:
                value = body.get("value")
            error = None
        elif "feedback" in data:
            kind = "feedback"
            body = data["feedback"] or {}
            value = body.get("value")
            raw_error = body.get("error")
            error = (
                AssessmentError(
                    raw_error.get("error_code") or "",
                    raw_error.get("error_message"),
                    raw_error.get("stack_trace"),
                )
                if raw_error
                else None
            )
        else:
            raise ValueError(f"Unknown assessment type: {data.get('assessment_name')}")
        source = data.get("source") or {}
        return cls(
            name=data["assessment_name"],
            kind=kind,
            value=value,
            source=AssessmentSource(
                source.get("source_type", "SOURCE_TYPE_UNSPECIFIED"), source.get("source_id", "default")
            ),
            trace_id=data.get("trace_id"),
            assessment_id=data.get("assessment_id") or None,
            span_id=data.get("span_id") or None,
            rationale=data.get("rationale"),
            metadata=data.get("metadata"),
            error=error,
            create_time_ms=parse_proto_timestamp(data["create_time"]) if data.get("create_time") else None,
            last_update_time_ms=(
                parse_proto_timestamp(data["last_update_time"]) if data.get("last_update_time") else None
            ),
            overrides=data.get("overrides") or None,
            # Absent means valid (MLflow omits the flag on expectations).
            valid=data.get("valid", True),
        )

    def to_dictionary(self) -> dict[str, Any]:
        """MLflow's ``Assessment.to_dictionary()``: protobuf JSON, so numbers come back as floats and
        an expectation that is not a scalar as a JSON ``serialized_value``."""
        rendered: dict[str, Any] = {}
        if self.assessment_id is not None:
            rendered["assessment_id"] = self.assessment_id
        rendered["assessment_name"] = self.name
        rendered["trace_id"] = self.trace_id or ""
        if self.span_id is not None:
            rendered["span_id"] = self.span_id
        rendered["source"] = {"source_type": self.source.source_type, "source_id": self.source.source_id}
        if self.create_time_ms is not None:
            rendered["create_time"] = proto_timestamp(self.create_time_ms)
        if self.last_update_time_ms is not None:
            rendered["last_update_time"] = proto_timestamp(self.last_update_time_ms)
        if self.kind == "expectation":
            if self.value is None or _is_primitive(self.value):
                rendered["expectation"] = {"value": _proto_value(self.value)}
            else:
                rendered["expectation"] = {
                    "serialized_value": {
                        "serialization_format": "JSON_FORMAT",
                        "value": json.dumps(self.value),
                    }
                }
        else:
            body: dict[str, Any] = {"value": _proto_value(self.value)}
            if self.error is not None:
                body["error"] = self.error.to_dictionary()
            rendered["feedback"] = body
        if self.rationale is not None:
            rendered["rationale"] = self.rationale
        if self.metadata:
            rendered["metadata"] = {key: str(value) for key, value in self.metadata.items()}
        if self.overrides:
            rendered["overrides"] = self.overrides
        # MLflow reads expectations without their validity (all of its expectations are valid);
        # an invalid one keeps the flag here rather than silently becoming valid.
        if self.valid is not None and not (self.kind == "expectation" and self.valid):
            rendered["valid"] = self.valid
        return rendered


class Feedback(Assessment):
    """MLflow's ``Feedback``: a score, a label or a judge's verdict, or the error that stopped it;
    without a source, CODE/"default". Other fields (``trace_id``, ``rationale``, ...) by keyword."""

    def __init__(
        self,
        name: str = "feedback",
        value: Any = None,
        error: AssessmentError | None = None,
        source: AssessmentSource | None = None,
        **fields: Any,
    ) -> None:
        source = source or AssessmentSource(AssessmentSourceType.CODE.value)
        super().__init__(name=name, kind="feedback", value=value, error=error, source=source, **fields)


class Expectation(Assessment):
    """MLflow's ``Expectation``: the expected output (ground truth); without a source,
    HUMAN/"default". Other fields (``trace_id``, ``metadata``, ...) by keyword."""

    def __init__(self, name: str, value: Any, source: AssessmentSource | None = None, **fields: Any) -> None:
        source = source or AssessmentSource(AssessmentSourceType.HUMAN.value)
        super().__init__(name=name, kind="expectation", value=value, source=source, **fields)
