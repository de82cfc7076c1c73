"""MLflow-compatible trace entities built from the search API's TraceJSON (MLflow's ``Trace.to_dict()``).

They mirror the MLflow 3 classes users already know (``Trace``, ``TraceInfo``, ``TraceData``,
``Span``, ``Assessment``), with the same properties, deprecated aliases and ``to_dict`` renderings,
without depending on MLflow, OpenTelemetry or protobuf.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

# One definition of MLflow's shared entity types, with the SDK: re-exported here.
from tracestream.schemas.entities import Assessment as Assessment
from tracestream.schemas.entities import AssessmentError as AssessmentError
from tracestream.schemas.entities import AssessmentSource as AssessmentSource
from tracestream.schemas.entities import SpanEvent as SpanEvent
from tracestream.schemas.entities import SpanStatus as SpanStatus
from tracestream.schemas.entities import SpanStatusCode as SpanStatusCode
from tracestream.schemas.entities import TraceState as TraceState
from tracestream.schemas.entities import TraceStatus as TraceStatus
from tracestream.schemas.mlflow_format import parse_proto_timestamp as parse_proto_timestamp
from tracestream.schemas.mlflow_format import proto_timestamp
from tracestream.schemas.mlflow_keys import SpanAttributeKey, SpanType, TraceMetadataKey

__all__ = [
    "Assessment",
    "AssessmentError",
    "AssessmentSource",
    "Experiment",
    "MlflowExperimentLocation",
    "Span",
    "SpanEvent",
    "SpanStatus",
    "SpanStatusCode",
    "SpanType",
    "Trace",
    "TraceData",
    "TraceInfo",
    "TraceLocation",
    "TraceState",
    "TraceStatus",
]

# MLflow's TraceInfo.to_dict truncates these through its proto conversion.
_MAX_METADATA_CHARS = 250
_MAX_TAG_KEY_CHARS = 250
_MAX_TAG_VALUE_CHARS = 4096
_INTERMEDIATE_OUTPUTS = "mlflow.trace.intermediate_outputs"
_TRACE_ID_PREFIX = "tr-"


# ---------------------------------------------------------------- spans


def _decode_id(encoded: str | None, size: int) -> str | None:
    """A span or trace id from Span.to_dict (base64 of the OTel bytes) as lowercase hex.
    Hex ids (MLflow 3.5 wrote ``tr-<hex>`` and bare hex) are accepted too."""
    if not encoded:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == size:
        return raw.hex()
    hex_id = encoded.removeprefix(_TRACE_ID_PREFIX).lower()
    if len(hex_id) == size * 2 and all(c in "0123456789abcdef" for c in hex_id):
        return hex_id
    raise ValueError(f"Invalid {size}-byte id: {encoded!r}")


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


class Span:
    """A finished span, read-only. Attribute values are kept as the JSON strings MLflow stores and
    decoded on access, as MLflow's Span does."""

    __slots__ = (
        "_decoded",
        "_otel_trace_id",
        "_parent_id",
        "_raw_attributes",
        "_span_id",
        "end_time_ns",
        "events",
        "links",
        "name",
        "start_time_ns",
        "status",
    )

    def __init__(
        self,
        *,
        otel_trace_id: str,
        span_id: str,
        parent_id: str | None,
        name: str,
        start_time_ns: int,
        end_time_ns: int | None,
        status: SpanStatus,
        attributes: dict[str, Any],
        events: list[SpanEvent] | None = None,
        links: list[dict[str, Any]] | None = None,
    ) -> None:
        self._otel_trace_id = otel_trace_id
        self._span_id = span_id
        self._parent_id = parent_id
        self.name = name
        self.start_time_ns = start_time_ns
        self.end_time_ns = end_time_ns
        self.status = status
        self._raw_attributes = attributes
        self.events = events or []
        self.links = links or []
        self._decoded: dict[str, Any] = {}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        code = data["status"]["code"]
        status_code = SpanStatusCode(code.removeprefix("STATUS_CODE_"))
        end = data.get("end_time_unix_nano")
        return cls(
            otel_trace_id=_decode_id(data["trace_id"], 16) or "",
            span_id=_decode_id(data["span_id"], 8) or "",
            parent_id=_decode_id(data.get("parent_span_id"), 8),
            name=data["name"],
            start_time_ns=int(data["start_time_unix_nano"]),
            end_time_ns=int(end) if end else None,
            status=SpanStatus(status_code, data["status"].get("message") or ""),
            attributes=dict(data.get("attributes") or {}),
            events=[
                SpanEvent(e["name"], int(e["time_unix_nano"]), dict(e.get("attributes") or {}))
                for e in data.get("events") or []
            ],
            links=[
                {
                    "trace_id": link["trace_id"],
                    "span_id": link["span_id"],
                    "attributes": link.get("attributes"),
                }
                for link in data.get("links") or []
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": _b64(self._otel_trace_id),
            "span_id": _b64(self._span_id),
            "parent_span_id": _b64(self._parent_id) if self._parent_id else None,
            "name": self.name,
            "start_time_unix_nano": self.start_time_ns,
            "end_time_unix_nano": self.end_time_ns,
            "events": [
                {"name": e.name, "time_unix_nano": e.timestamp, "attributes": e.attributes}
                for e in self.events
            ],
            "status": {
                "code": f"STATUS_CODE_{self.status.status_code.value}",
                # OpenTelemetry keeps a status description only on errors, so MLflow drops the rest.
                "message": self.status.description if self.status.status_code == SpanStatusCode.ERROR else "",
            },
            "attributes": dict(self._raw_attributes),
            "links": [dict(link) for link in self.links],
        }

    @property
    def trace_id(self) -> str:
        """``tr-<32 hex>``: the trace id the span was recorded under."""
        return self.get_attribute(SpanAttributeKey.TRACE_ID) or _TRACE_ID_PREFIX + self._otel_trace_id

    @property
    def request_id(self) -> str:
        """Deprecated alias of ``trace_id``."""
        return self.trace_id

    @property
    def span_id(self) -> str:
        return self._span_id

    @property
    def parent_id(self) -> str | None:
        return self._parent_id

    @property
    def span_type(self) -> str | None:
        return self.get_attribute(SpanAttributeKey.SPAN_TYPE)

    @property
    def inputs(self) -> Any:
        return self.get_attribute(SpanAttributeKey.INPUTS)

    @property
    def outputs(self) -> Any:
        return self.get_attribute(SpanAttributeKey.OUTPUTS)

    @property
    def attributes(self) -> dict[str, Any]:
        return {key: self.get_attribute(key) for key in self._raw_attributes}

    @property
    def raw_attributes(self) -> dict[str, Any]:
        """The attribute values as stored (JSON strings)."""
        return dict(self._raw_attributes)

    def get_attribute(self, key: str) -> Any | None:
        """The attribute's JSON-decoded value; a value that is not JSON is returned as stored,
        an absent or empty one as None (MLflow's behaviour)."""
        if key not in self._decoded:
            raw = self._raw_attributes.get(key)
            if not raw:
                value = None
            else:
                try:
                    value = json.loads(raw)
                except (TypeError, ValueError):
                    value = raw
            self._decoded[key] = value
        return self._decoded[key]

    def __repr__(self) -> str:
        return (
            f"Span(name={self.name!r}, trace_id={self.trace_id!r}, "
            f"span_id={self.span_id!r}, parent_id={self.parent_id!r})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Span) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


# ---------------------------------------------------------------- experiments


@dataclass
class Experiment:
    """MLflow's ``Experiment``, from the ``Experiment`` JSON of its REST API."""

    experiment_id: str
    name: str
    artifact_location: str = ""
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        def millis(value: Any) -> int | None:
            return int(value) if value is not None else None

        return cls(
            experiment_id=str(data["experiment_id"]),
            name=data["name"],
            artifact_location=data.get("artifact_location") or "",
            lifecycle_stage=data.get("lifecycle_stage") or "active",
            tags={t["key"]: t.get("value", "") for t in data.get("tags") or []},
            creation_time=millis(data.get("creation_time")),
            last_update_time=millis(data.get("last_update_time")),
        )

    def to_dict(self) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "artifact_location": self.artifact_location,
            "lifecycle_stage": self.lifecycle_stage,
            "last_update_time": self.last_update_time,
            "creation_time": self.creation_time,
        }
        if self.tags:
            rendered["tags"] = [{"key": k, "value": v} for k, v in self.tags.items()]
        return rendered


# ---------------------------------------------------------------- trace info


@dataclass
class MlflowExperimentLocation:
    experiment_id: str


@dataclass
class TraceLocation:
    type: str
    mlflow_experiment: MlflowExperimentLocation | None = None
    # Other location kinds (Databricks tables, UC schemas), kept as received.
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceLocation:
        experiment = data.get("mlflow_experiment")
        return cls(
            type=data.get("type", "TRACE_LOCATION_TYPE_UNSPECIFIED"),
            mlflow_experiment=MlflowExperimentLocation(experiment["experiment_id"]) if experiment else None,
            other={k: v for k, v in data.items() if k not in ("type", "mlflow_experiment")},
        )

    def to_dict(self) -> dict[str, Any]:
        rendered: dict[str, Any] = {"type": self.type}
        if self.mlflow_experiment is not None:
            rendered["mlflow_experiment"] = {"experiment_id": self.mlflow_experiment.experiment_id}
        rendered.update(self.other)
        return rendered


@dataclass
class TraceInfo:
    trace_id: str
    trace_location: TraceLocation
    request_time: int
    state: TraceState
    request_preview: str | None = None
    response_preview: str | None = None
    client_request_id: str | None = None
    execution_duration: int | None = None
    trace_metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    assessments: list[Assessment] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceInfo:
        duration = data.get("execution_duration_ms")
        return cls(
            trace_id=data["trace_id"],
            trace_location=TraceLocation.from_dict(data.get("trace_location") or {}),
            request_time=parse_proto_timestamp(data["request_time"]),
            state=TraceState(data.get("state") or TraceState.STATE_UNSPECIFIED),
            request_preview=data.get("request_preview"),
            response_preview=data.get("response_preview"),
            client_request_id=data.get("client_request_id"),
            execution_duration=int(duration) if duration is not None else None,
            trace_metadata=dict(data.get("trace_metadata") or {}),
            tags=dict(data.get("tags") or {}),
            assessments=[Assessment.from_dictionary(a) for a in data.get("assessments") or []],
        )

    def to_dict(self) -> dict[str, Any]:
        """MLflow's ``TraceInfo.to_dict()``, keys in its order, absent fields omitted."""
        rendered: dict[str, Any] = {"trace_id": self.trace_id}
        if self.client_request_id is not None:
            rendered["client_request_id"] = self.client_request_id
        rendered["trace_location"] = self.trace_location.to_dict()
        rendered["request_time"] = proto_timestamp(self.request_time)
        rendered["state"] = self.state.value
        if self.trace_metadata:
            rendered["trace_metadata"] = {
                key[:_MAX_METADATA_CHARS]: str(value)[:_MAX_METADATA_CHARS]
                for key, value in self.trace_metadata.items()
            }
        if self.assessments:
            rendered["assessments"] = [a.to_dictionary() for a in self.assessments]
        if self.tags:
            rendered["tags"] = {
                key[:_MAX_TAG_KEY_CHARS]: str(value)[:_MAX_TAG_VALUE_CHARS]
                for key, value in self.tags.items()
            }
        if self.request_preview is not None:
            rendered["request_preview"] = self.request_preview
        if self.response_preview is not None:
            rendered["response_preview"] = self.response_preview
        if self.execution_duration is not None:
            rendered["execution_duration_ms"] = self.execution_duration
        return rendered

    @property
    def request_id(self) -> str:
        """Deprecated alias of ``trace_id``."""
        return self.trace_id

    @property
    def experiment_id(self) -> str | None:
        experiment = self.trace_location.mlflow_experiment
        return experiment.experiment_id if experiment else None

    @property
    def timestamp_ms(self) -> int:
        """Deprecated alias of ``request_time``."""
        return self.request_time

    @property
    def execution_time_ms(self) -> int | None:
        """Deprecated alias of ``execution_duration``."""
        return self.execution_duration

    @property
    def status(self) -> TraceStatus:
        """Deprecated: ``state`` under its MLflow 2 name."""
        return TraceStatus.from_state(self.state)

    @property
    def request_metadata(self) -> dict[str, str]:
        """Deprecated alias of ``trace_metadata``."""
        return self.trace_metadata

    @property
    def token_usage(self) -> dict[str, int] | None:
        """The trace's aggregated token usage (``input_tokens``, ``output_tokens``, ``total_tokens``)."""
        if raw := self.trace_metadata.get(TraceMetadataKey.TOKEN_USAGE):
            return json.loads(raw)
        return None

    @property
    def cost(self) -> dict[str, float] | None:
        if raw := self.trace_metadata.get(TraceMetadataKey.COST):
            return json.loads(raw)
        return None


# ---------------------------------------------------------------- trace


@dataclass
class TraceData:
    spans: list[Span] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceData:
        return cls(spans=[Span.from_dict(span) for span in data.get("spans") or []])

    def to_dict(self) -> dict[str, Any]:
        return {"spans": [span.to_dict() for span in self.spans]}

    def _root_span(self) -> Span | None:
        return next((span for span in self.spans if span.parent_id is None), None)

    @property
    def request(self) -> str | None:
        """The root span's inputs as stored (a JSON string), None without a root span."""
        root = self._root_span()
        return root.raw_attributes.get(SpanAttributeKey.INPUTS) if root else None

    @property
    def response(self) -> str | None:
        root = self._root_span()
        return root.raw_attributes.get(SpanAttributeKey.OUTPUTS) if root else None

    @property
    def intermediate_outputs(self) -> dict[str, Any] | None:
        """The outputs of the non-root spans by span name (repeated names numbered ``name_1``,
        ``name_2``...), or the root's ``mlflow.trace.intermediate_outputs`` attribute when set."""
        root = self._root_span()
        if root is not None and (explicit := root.get_attribute(_INTERMEDIATE_OUTPUTS)):
            return explicit
        if len(self.spans) <= 1:
            return None
        repeated = {name: 1 for name, count in Counter(s.name for s in self.spans).items() if count > 1}
        result: dict[str, Any] = {}
        for span in self.spans:
            name = span.name
            if number := repeated.get(name):
                repeated[name] += 1
                name = f"{name}_{number}"
            if span.parent_id and span.outputs is not None:
                result[name] = span.outputs
        return result


def _loads_or_raw(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


@dataclass
class Trace:
    info: TraceInfo
    data: TraceData

    def __repr__(self) -> str:
        return f"Trace(trace_id={self.info.trace_id!r})"

    @property
    def trace_id(self) -> str:
        return self.info.trace_id

    @classmethod
    def from_dict(cls, trace_dict: dict[str, Any]) -> Trace:
        info, data = trace_dict.get("info"), trace_dict.get("data")
        if info is None or data is None:
            raise ValueError(
                "Unable to parse Trace from dictionary. Expected keys: 'info' and 'data'. "
                f"Received keys: {list(trace_dict)}"
            )
        return cls(info=TraceInfo.from_dict(info), data=TraceData.from_dict(data))

    @classmethod
    def from_json(cls, trace_json: str | bytes) -> Trace:
        return cls.from_dict(json.loads(trace_json))

    def to_dict(self) -> dict[str, Any]:
        return {"info": self.info.to_dict(), "data": self.data.to_dict()}

    def to_json(self, pretty: bool = False) -> str:
        return json.dumps(self.to_dict(), indent=2 if pretty else None, default=str)

    def to_pandas_dataframe_row(self) -> dict[str, Any]:
        """The row of MLflow 3's ``search_traces`` DataFrame for this trace."""
        return {
            "trace_id": self.info.trace_id,
            "trace": self.to_json(),
            "client_request_id": self.info.client_request_id,
            "state": self.info.state,
            "request_time": self.info.request_time,
            "execution_duration": self.info.execution_duration,
            "request": _loads_or_raw(self.data.request),
            "response": _loads_or_raw(self.data.response),
            "trace_metadata": self.info.trace_metadata,
            "tags": self.info.tags,
            "spans": [span.to_dict() for span in self.data.spans],
            "assessments": [assessment.to_dictionary() for assessment in self.info.assessments],
        }

    def search_spans(
        self,
        span_type: str | None = None,
        name: str | re.Pattern[str] | None = None,
        span_id: str | None = None,
    ) -> list[Span]:
        """Spans matching all given criteria: ``name`` exactly (a string) or by ``re.search`` (a
        pattern), ``span_type``, ``span_id`` (16 hex). Positional order is MLflow's."""
        if name is not None and not isinstance(name, str | re.Pattern):
            raise TypeError(f"Invalid type for 'name'. Expected str or re.Pattern. Got: {type(name)}")
        if span_type is not None and not isinstance(span_type, str):
            raise TypeError(f"Invalid type for 'span_type'. Expected str. Got: {type(span_type)}")

        def matches(span: Span) -> bool:
            if isinstance(name, str) and span.name != name:
                return False
            if isinstance(name, re.Pattern) and name.search(span.name) is None:
                return False
            if span_type is not None and span.span_type != span_type:
                return False
            return span_id is None or span.span_id == span_id

        return [span for span in self.data.spans if matches(span)]

    def search_assessments(
        self,
        name: str | None = None,
        *,
        span_id: str | None = None,
        all: bool = False,
        type: Literal["expectation", "feedback"] | None = None,
    ) -> list[Assessment]:
        """Assessments matching all given criteria; only valid ones (not overridden) unless ``all``."""
        return [
            a
            for a in self.info.assessments
            if (name is None or a.name == name)
            and (span_id is None or a.span_id == span_id)
            and (all or a.is_valid)
            and (type is None or a.kind == type)
        ]

    @property
    def intermediate_outputs(self) -> dict[str, Any] | None:
        return self.data.intermediate_outputs
