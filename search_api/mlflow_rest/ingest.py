"""What MLflow's client (and any OpenTelemetry SDK) writes, as events of our data contract.

Every write becomes events on the events topic, keyed by trace id, so these traces go through
the stream and the indexer exactly like the SDK's:

* OTLP spans (``POST /v1/traces``) -> one ``SpanEnded`` each. MLflow's attribute values arrive
  decoded (a dict is a kvlist) and are stored JSON-encoded, as MLflow's server stores them; the
  span type comes from ``mlflow.spanType``, else from OpenTelemetry's GenAI conventions.
* The trace info (``StartTraceV3``, which MLflow's client sends when the root span ends) ->
  a ``TraceEnded`` whose ``span_count`` is ``num_spans`` of the ``mlflow.trace.sizeStats``
  metadata the client computes: the stream completes the trace once it has that many spans,
  whichever of spans and info arrives first.
* A root span from an OpenTelemetry SDK (no ``mlflow.traceRequestId`` attribute: no trace info
  will follow) -> also a ``TraceEnded`` derived from it, with the spans of that request as
  ``span_count``; its children usually end, and are exported, before it. A span of the trace
  that arrives later adds a revision of the trace (the stream's late-span rule).
* Tag set/delete -> ``TraceTagsChanged``; assessments -> ``AssessmentLogged``. Events are never
  changed, so an update or a deletion is a new assessment that overrides the current version,
  and the drop-in's reads show MLflow's view (``protojson.current_versions``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tracestream.schemas import (
    ASSESSMENT_LOGGED,
    SPAN_ENDED,
    TRACE_ENDED,
    TRACE_SCHEMA_VERSION,
    TRACE_TAGS_CHANGED,
    SpanAttributeKey,
    TraceMetadataKey,
    is_trace_id,
    new_assessment_id,
)
from tracestream.schemas.assessments import UPDATES_ASSESSMENT
from tracestream.schemas.assessments import assessment_deletion as _deletion_marker
from tracestream.schemas.entities import AssessmentSourceType, TraceState
from tracestream.schemas.mlflow_format import event_attribute_value, trace_state
from tracestream.schemas.records import AssessmentLogged, SpanEnded, SpanEvent, TraceEnded, TraceLocation
from tracestream.search_api.mlflow_rest.protojson import (
    SERVER_MANAGED_TAGS,
    field,
    invalid_parameter,
    missing_parameter,
    parse_duration_ms,
    parse_timestamp_ms,
    timestamp_json,
)
from tracestream.search_api.mlflow_rest.publisher import Event

DEFAULT_EXPERIMENT_ID = "0"
TRACE_TAG_ATTRIBUTE_PREFIX = "mlflow.traceTag."
# In protobuf's order: a request may send an enum's number.
TRACE_STATES = tuple(state.value for state in TraceState)
SOURCE_TYPES = tuple(source.value for source in AssessmentSourceType)
_STATUS_NAMES = {Status.STATUS_CODE_OK: "OK", Status.STATUS_CODE_ERROR: "ERROR"}

TraceEvents = list[tuple[str, Event]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _location(experiment_id: str | None) -> TraceLocation:
    return {"type": "MLFLOW_EXPERIMENT", "experiment_id": experiment_id or DEFAULT_EXPERIMENT_ID}


def _dump(value: Any) -> str:
    """A span attribute value as MLflow stores it (``json.dumps``, non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False, default=str)


# ---------------------------------------------------------------- OTLP


class OtlpError(Exception):
    """An OTLP request that cannot be read (answered 400, as MLflow's server does)."""


class OtlpTooLarge(OtlpError):
    """A compressed OTLP body that inflates beyond the limit (answered 413)."""


# Inflated at most this much per step, so a step never holds more than the limit allows.
_INFLATE_STEP_BYTES = 1024 * 1024


def _inflate(body: bytes, wbits: int, max_bytes: int) -> bytes:
    """The inflated body, stopped as soon as it passes ``max_bytes``: a bomb (a few MB inflating
    to GiB) costs at most the limit in memory and its inflation in time, never the whole."""
    inflated = bytearray()
    pending = body
    while pending:
        inflater = zlib.decompressobj(wbits)
        while pending and not inflater.eof:
            inflated += inflater.decompress(pending, _INFLATE_STEP_BYTES)
            if len(inflated) > max_bytes:
                raise OtlpTooLarge(f"The request body inflates beyond the limit of {max_bytes} bytes")
            pending = inflater.unconsumed_tail
        if not inflater.eof:
            raise zlib.error("truncated stream")
        # gzip allows several members one after the other (as gzip.decompress reads them).
        pending = inflater.unused_data if wbits > zlib.MAX_WBITS else b""
    return bytes(inflated)


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding == "gzip":
            return _inflate(body, 16 + zlib.MAX_WBITS, max_bytes)
        if encoding == "deflate":
            try:
                return _inflate(body, zlib.MAX_WBITS, max_bytes)
            except zlib.error:
                return _inflate(body, -zlib.MAX_WBITS, max_bytes)  # a raw deflate stream
    except zlib.error as exc:
        raise OtlpError(f"Failed to decompress {encoding} payload") from exc
    raise OtlpError(f"Unsupported Content-Encoding: {content_encoding}")


def _hex_ids_to_base64(data: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping wants base64."""
    for resource_spans in data.get("resourceSpans", data.get("resource_spans", [])) or []:
        for scope_spans in resource_spans.get("scopeSpans", resource_spans.get("scope_spans", [])) or []:
            for span in scope_spans.get("spans", []) or []:
                for name in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"):
                    value = span.get(name)
                    if isinstance(value, str) and value and len(value) in (16, 32):
                        with contextlib.suppress(ValueError):  # not hex: already base64
                            span[name] = base64.b64encode(bytes.fromhex(value)).decode()
    return data


def parse_otlp(
    body: bytes, content_type: str | None, content_encoding: str | None, max_inflated_bytes: int
) -> ExportTraceServiceRequest:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in ("application/x-protobuf", "application/json"):
        raise OtlpError(
            f"Invalid Content-Type: {content_type}. Expected: application/x-protobuf or application/json"
        )
    raw = decompress(body, content_encoding, max_inflated_bytes)
    request = ExportTraceServiceRequest()
    try:
        if media_type == "application/json":
            json_format.ParseDict(_hex_ids_to_base64(json.loads(raw)), request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(raw)
    except (DecodeError, json_format.ParseError, ValueError, AttributeError, TypeError) as exc:
        raise OtlpError("Invalid OpenTelemetry format") from exc
    return request


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


# OpenTelemetry GenAI semantic conventions -> MLflow's span attributes (the subset MLflow's own
# server translates for GenAI spans: span type, inputs/outputs, token usage, model).
GENAI_OPERATION = "gen_ai.operation.name"
GENAI_SPAN_TYPES = {
    "chat": "CHAT_MODEL",
    "create_agent": "AGENT",
    "embeddings": "EMBEDDING",
    "execute_tool": "TOOL",
    "generate_content": "LLM",
    "invoke_agent": "AGENT",
    "text_completion": "LLM",
    "response": "LLM",
}
GENAI_INPUTS = ("gen_ai.input.messages", "gen_ai.tool.call.arguments")
GENAI_OUTPUTS = ("gen_ai.output.messages", "gen_ai.tool.call.result")
GENAI_INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
GENAI_OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
GENAI_CACHE_READ_TOKENS = ("gen_ai.usage.cache_read.input_tokens",)
GENAI_CACHE_WRITE_TOKENS = (
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
)
GENAI_MODEL = ("gen_ai.response.model", "gen_ai.request.model")
GENAI_PROVIDER = ("gen_ai.provider.name", "gen_ai.system")


def _first(attributes: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((attributes[k] for k in keys if attributes.get(k) not in (None, "")), None)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip().strip('"'))
        except ValueError:
            return None
    return None


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def genai_usage(attributes: dict[str, Any]) -> dict[str, int] | None:
    """``mlflow.chat.tokenUsage`` from the GenAI token attributes, as MLflow's translation makes
    it: total = input + output when both are known; cache counts only when reported."""
    input_tokens = _as_int(_first(attributes, GENAI_INPUT_TOKENS))
    output_tokens = _as_int(_first(attributes, GENAI_OUTPUT_TOKENS))
    if input_tokens is None and output_tokens is None:
        return None
    usage: dict[str, int] = {}
    if input_tokens is not None:
        usage["input_tokens"] = input_tokens
    if output_tokens is not None:
        usage["output_tokens"] = output_tokens
    if input_tokens is not None and output_tokens is not None:
        usage["total_tokens"] = input_tokens + output_tokens
    cache_read = _as_int(_first(attributes, GENAI_CACHE_READ_TOKENS))
    if cache_read is not None:
        usage["cache_read_input_tokens"] = cache_read
    cache_write = _as_int(_first(attributes, GENAI_CACHE_WRITE_TOKENS))
    if cache_write is not None:
        usage["cache_creation_input_tokens"] = cache_write
    return usage


def translate_genai(attributes: dict[str, Any]) -> dict[str, Any]:
    """MLflow's reserved attributes a GenAI-instrumented span lacks, from its GenAI attributes."""
    added: dict[str, Any] = {}
    span_type = attributes.get(SpanAttributeKey.SPAN_TYPE)
    operation = attributes.get(GENAI_OPERATION)
    if span_type in (None, "UNKNOWN") and operation in GENAI_SPAN_TYPES:
        added[SpanAttributeKey.SPAN_TYPE] = GENAI_SPAN_TYPES[operation]
    if SpanAttributeKey.INPUTS not in attributes and (inputs := _first(attributes, GENAI_INPUTS)) is not None:
        added[SpanAttributeKey.INPUTS] = _json_value(inputs)
    if (
        SpanAttributeKey.OUTPUTS not in attributes
        and (outputs := _first(attributes, GENAI_OUTPUTS)) is not None
    ):
        added[SpanAttributeKey.OUTPUTS] = _json_value(outputs)
    if SpanAttributeKey.CHAT_USAGE not in attributes and (usage := genai_usage(attributes)):
        added[SpanAttributeKey.CHAT_USAGE] = usage
    if SpanAttributeKey.LLM_MODEL not in attributes and (model := _first(attributes, GENAI_MODEL)):
        added[SpanAttributeKey.LLM_MODEL] = model
    if SpanAttributeKey.LLM_PROVIDER not in attributes and (provider := _first(attributes, GENAI_PROVIDER)):
        added[SpanAttributeKey.LLM_PROVIDER] = provider
    return added


@dataclass(frozen=True)
class IngestedSpan:
    record: SpanEnded
    attributes: dict[str, Any]  # decoded, GenAI translated
    # The span carried mlflow.traceRequestId: MLflow's SDK wrote it and sends the trace info itself.
    from_mlflow: bool


def span_ended(span: Span, experiment_id: str) -> IngestedSpan:
    """The ``SpanEnded`` event of an OTLP span."""
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        raise OtlpError("Invalid OpenTelemetry format: trace ids have 16 bytes and span ids 8")
    trace_id = "tr-" + span.trace_id.hex()
    attributes = {kv.key: any_value(kv.value) for kv in span.attributes}
    from_mlflow = SpanAttributeKey.TRACE_ID in attributes
    attributes.update(translate_genai(attributes))
    # As MLflow's server: the trace id is derived from the OTLP bytes, whatever the client sent.
    attributes[SpanAttributeKey.TRACE_ID] = trace_id
    span_type = attributes.get(SpanAttributeKey.SPAN_TYPE)
    parent = span.parent_span_id.hex() if any(span.parent_span_id) else None
    events: list[SpanEvent] = [
        {
            "name": event.name,
            "time_ns": event.time_unix_nano,
            "attributes": {
                kv.key: event_attribute_value(value, _dump)
                for kv in event.attributes
                if (value := any_value(kv.value)) is not None
            },
        }
        for event in span.events
    ]
    record: SpanEnded = {
        "trace_id": trace_id,
        "span_id": span.span_id.hex(),
        "parent_span_id": parent,
        "name": span.name,
        "span_type": span_type if isinstance(span_type, str) and span_type else "UNKNOWN",
        "start_time_ns": span.start_time_unix_nano,
        "end_time_ns": span.end_time_unix_nano or span.start_time_unix_nano,
        "status_code": _STATUS_NAMES.get(span.status.code, "UNSET"),
        "status_message": span.status.message,
        "attributes": {key: _dump(value) for key, value in attributes.items()},
        "events": events,
        "location": _location(experiment_id),
    }
    return IngestedSpan(record, attributes, from_mlflow)


def _trace_ended_from_root(root: IngestedSpan, spans: list[IngestedSpan]) -> TraceEnded:
    """The trace info MLflow's server derives for a trace known only from its OTLP spans."""
    start_ms = min(s.record["start_time_ns"] for s in spans) // 1_000_000
    end_ms = max(s.record["end_time_ns"] for s in spans) // 1_000_000
    tags = {
        key.removeprefix(TRACE_TAG_ATTRIBUTE_PREFIX): str(value)
        for key, value in root.attributes.items()
        if key.startswith(TRACE_TAG_ATTRIBUTE_PREFIX)
    }
    metadata = {TraceMetadataKey.SCHEMA_VERSION: TRACE_SCHEMA_VERSION}
    for span in spans:
        session = span.attributes.get("session.id") or span.attributes.get("gen_ai.conversation.id")
        if session and TraceMetadataKey.TRACE_SESSION not in metadata:
            metadata[TraceMetadataKey.TRACE_SESSION] = str(session)
        user = span.attributes.get("user.id")
        if user and TraceMetadataKey.TRACE_USER not in metadata:
            metadata[TraceMetadataKey.TRACE_USER] = str(user)
    return {
        "trace_id": root.record["trace_id"],
        "client_request_id": None,
        "location": root.record["location"],
        "request_time_ms": start_ms,
        "execution_duration_ms": end_ms - start_ms,
        "state": trace_state(root.record["status_code"]),
        "tags": tags,
        "metadata": metadata,
        # Left to the stream, which derives them (schemas.mlflow_format.derive_from_root) from
        # this root span, as for every trace: one derivation, whoever wrote the spans.
        "request_preview": None,
        "response_preview": None,
        "root_span_id": root.record["span_id"],
        "span_count": len(spans),
    }


def otlp_events(request: ExportTraceServiceRequest, experiment_id: str | None) -> TraceEvents:
    """The events of an OTLP export: every span's ``SpanEnded``, then a ``TraceEnded`` for each
    root span that no MLflow trace info will follow."""
    experiment = experiment_id or DEFAULT_EXPERIMENT_ID
    by_trace: dict[str, list[IngestedSpan]] = {}
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                ingested = span_ended(span, experiment)
                by_trace.setdefault(ingested.record["trace_id"], []).append(ingested)
    events: TraceEvents = []
    for trace_id, spans in by_trace.items():
        events.extend((trace_id, (SPAN_ENDED, span.record)) for span in spans)
        events.extend(
            (trace_id, (TRACE_ENDED, _trace_ended_from_root(span, spans)))
            for span in spans
            if span.record["parent_span_id"] is None and not span.from_mlflow
        )
    return events


# ---------------------------------------------------------------- trace info (StartTraceV3)


def _string_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_parameter(f"Invalid value for parameter '{name}': expected an object of strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _enum(value: Any, symbols: tuple[str, ...], name: str) -> str:
    if value is None:
        return symbols[0]
    if isinstance(value, int) and 0 <= value < len(symbols):
        return symbols[value]
    if value in symbols:
        return value
    raise invalid_parameter(
        f"Invalid value {value!r} for parameter '{name}': expected one of {list(symbols)}"
    )


def _span_count(metadata: dict[str, str]) -> int:
    """How many spans the trace has, from the size statistics MLflow's client attaches; at least
    the root when they are missing."""
    try:
        count = json.loads(metadata[TraceMetadataKey.SIZE_STATS])["num_spans"]
    except (KeyError, ValueError, TypeError):
        return 1
    return count if isinstance(count, int) and count >= 0 else 1


def trace_info_events(body: dict[str, Any]) -> tuple[TraceEvents, dict[str, Any]]:
    """A StartTraceV3 request as events (its ``TraceEnded``, then any assessments it carries),
    and the trace info to answer with."""
    trace = field(body, "trace")
    if not isinstance(trace, dict):
        raise missing_parameter("trace")
    info = field(trace, "trace_info")
    if not isinstance(info, dict):
        raise missing_parameter("trace_info")
    trace_id = field(info, "trace_id")
    if not isinstance(trace_id, str) or not is_trace_id(trace_id):
        raise invalid_parameter(
            f"Invalid trace_id {trace_id!r}: expected 'tr-' followed by 32 lowercase hex digits"
        )
    location = field(info, "trace_location") or {}
    experiment = field(location, "mlflow_experiment") or {}
    request_time = field(info, "request_time")
    duration = field(info, "execution_duration")
    metadata = _string_map(field(info, "trace_metadata"), "trace_metadata")
    tags = {k: v for k, v in _string_map(field(info, "tags"), "tags").items() if k not in SERVER_MANAGED_TAGS}
    ended: TraceEnded = {
        "trace_id": trace_id,
        "client_request_id": field(info, "client_request_id"),
        "location": _location(field(experiment, "experiment_id")),
        "request_time_ms": parse_timestamp_ms(request_time, "request_time") if request_time else _now_ms(),
        "execution_duration_ms": parse_duration_ms(duration, "execution_duration") if duration else None,
        "state": _enum(field(info, "state"), TRACE_STATES, "state"),  # type: ignore[typeddict-item]
        "tags": tags,
        "metadata": metadata,
        "request_preview": field(info, "request_preview"),
        "response_preview": field(info, "response_preview"),
        "root_span_id": None,
        "span_count": _span_count(metadata),
    }
    events: TraceEvents = [(trace_id, (TRACE_ENDED, ended))]
    for message in field(info, "assessments") or []:
        # Assessments logged while the trace was active come without ids; a retried request
        # must not log them twice, so their ids derive from their content.
        digest = hashlib.sha256(json.dumps([trace_id, message], sort_keys=True).encode()).hexdigest()
        record = assessment_record(message, trace_id, field(message, "assessment_id") or f"a-{digest[:32]}")
        events.append((trace_id, (ASSESSMENT_LOGGED, record)))
    answer = {**info, "tags": {**tags, "mlflow.trace.spansLocation": "TRACKING_STORE"}}
    return events, answer


# ---------------------------------------------------------------- tags


def tag_event(
    trace_id: str, set_tags: dict[str, str] | None = None, deleted: list[str] | None = None
) -> TraceEvents:
    if not is_trace_id(trace_id):
        raise invalid_parameter(f"Invalid trace_id {trace_id!r}")
    for key in [*(set_tags or {}), *(deleted or [])]:
        if not key:
            raise missing_parameter("key")
        if len(key) > 250:
            raise invalid_parameter(f"Tag key '{key[:50]}...' is longer than 250 characters")
    record = {"trace_id": trace_id, "set": set_tags or {}, "deleted": deleted or [], "time_ms": _now_ms()}
    return [(trace_id, (TRACE_TAGS_CHANGED, record))]


# ---------------------------------------------------------------- assessments


def assessment_record(
    message: dict[str, Any], trace_id: str, assessment_id: str | None = None
) -> AssessmentLogged:
    """An MLflow ``Assessment`` (protobuf JSON) as an ``AssessmentLogged`` event."""
    name = field(message, "assessment_name")
    if not name:
        raise missing_parameter("assessment_name")
    source = field(message, "source") or {}
    feedback = field(message, "feedback")
    expectation = field(message, "expectation")
    error = None
    if feedback is not None:
        kind = "FEEDBACK"
        value = feedback.get("value")
        value_json = None if value is None else json.dumps(value, ensure_ascii=False)
        if (raw_error := feedback.get("error")) is not None:
            error = {
                "error_code": field(raw_error, "error_code") or "UNKNOWN",
                "error_message": field(raw_error, "error_message"),
            }
    elif expectation is not None:
        kind = "EXPECTATION"
        serialized = field(expectation, "serialized_value")
        if serialized is not None:
            value_json = serialized.get("value")
        else:
            value = expectation.get("value")
            value_json = None if value is None else json.dumps(value, ensure_ascii=False)
    else:
        raise invalid_parameter("An assessment needs either a feedback or an expectation")
    now = _now_ms()
    created = field(message, "create_time")
    create_ms = parse_timestamp_ms(created, "create_time") if created else now
    updated = field(message, "last_update_time")
    valid = field(message, "valid")
    return {
        "assessment_id": assessment_id or field(message, "assessment_id") or new_assessment_id(),
        "trace_id": trace_id,
        "name": name,
        "kind": kind,  # type: ignore[typeddict-item]
        "value_json": value_json,
        "error": error,  # type: ignore[typeddict-item]
        "source_type": _enum(field(source, "source_type"), SOURCE_TYPES, "source_type"),  # type: ignore[typeddict-item]
        "source_id": field(source, "source_id") or "default",
        "rationale": field(message, "rationale"),
        "metadata": _string_map(field(message, "metadata"), "metadata"),
        "span_id": field(message, "span_id") or None,
        "create_time_ms": create_ms,
        "last_update_time_ms": parse_timestamp_ms(updated, "last_update_time") if updated else create_ms,
        "overrides": field(message, "overrides") or None,
        "valid": True if valid is None else bool(valid),
    }


UPDATABLE_FIELDS = ("assessment_name", "expectation", "feedback", "rationale", "metadata")


def _mask_paths(update_mask: Any) -> list[str]:
    """FieldMask paths: protobuf JSON writes them comma-separated, in lowerCamelCase."""
    if isinstance(update_mask, dict):
        update_mask = update_mask.get("paths", [])
    paths = update_mask.split(",") if isinstance(update_mask, str) else list(update_mask or [])
    snake = []
    for path in paths:
        path = path.strip()
        snake.append("".join("_" + c.lower() if c.isupper() else c for c in path))
    return [p for p in snake if p]


def assessment_update(
    shown: dict[str, Any], version_id: str, trace_id: str, update: dict[str, Any], update_mask: Any
) -> AssessmentLogged:
    """An update of an assessment, as shown to MLflow's client (``shown``, stored as the version
    ``version_id``), as a new version: it overrides the previous version (so searches see only
    the new one) and names the id the client knows (``UPDATES_ASSESSMENT``), under which reads
    show it. The creation time stays, the update time is now."""
    paths = _mask_paths(update_mask) or [name for name in UPDATABLE_FIELDS if field(update, name) is not None]
    merged = {k: v for k, v in shown.items() if k not in ("assessment_id", "overrides", "valid")}
    for path in paths:
        if path not in UPDATABLE_FIELDS:
            raise invalid_parameter(f"Invalid update mask path '{path}'")
        if path in ("feedback", "expectation"):
            merged.pop("feedback", None)
            merged.pop("expectation", None)
        merged[path] = field(update, path)
    merged["last_update_time"] = timestamp_json(_now_ms())
    record = assessment_record(merged, trace_id, new_assessment_id())
    record["overrides"] = version_id
    record["metadata"] = {**record["metadata"], UPDATES_ASSESSMENT: shown["assessment_id"]}
    return record


def assessment_deletion(trace_id: str, assessment_id: str, version_id: str | None = None) -> AssessmentLogged:
    """A marker that deletes an assessment: it overrides its current version ``version_id``
    (so searches no longer see it) and is itself invalid; reads hide both."""
    return _deletion_marker(trace_id, assessment_id, version_id, _now_ms())
