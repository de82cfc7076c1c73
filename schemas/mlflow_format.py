"""MLflow's conventions for trace-level fields, shared by the SDK, the MLflow drop-in and the stream:
request/response previews, ``mlflow.traceInputs`` / ``mlflow.traceOutputs``, a trace's state from
its root span, span event attribute values, and MLflow's JSON renderings."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from tracestream.schemas.mlflow_keys import SpanAttributeKey, TraceMetadataKey
from tracestream.schemas.records import AssessmentLogged, SpanEnded, TraceInfo

REQUEST_PREVIEW_LENGTH = 1000
TRACE_IO_METADATA_LENGTH = 250


def truncate_preview(text: str, limit: int) -> str:
    # MLflow's truncation: keep limit-3 characters and add "...".
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message_text(message: Any) -> str | None:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                return part
            if isinstance(part, dict) and part.get("type") in ("text", "output_text", "input_text"):
                text = part.get("text")
                if isinstance(text, str):
                    return text
    return None


def _chat_messages(payload: Any) -> list[Any] | None:
    """The chat messages in MLflow's usual shapes: messages, choices[0].message, input, output,
    or any of those under "request"."""
    if not isinstance(payload, dict):
        return None
    messages = payload.get("messages")
    if isinstance(messages, list):
        return messages
    choices = payload.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict) and "message" in choices[0]:
        return [choices[0]["message"]]
    for key in ("input", "output"):
        if isinstance(payload.get(key), list):
            return payload[key]
    return _chat_messages(payload.get("request"))


def preview(serialized: str | None, role: str) -> str | None:
    """MLflow's request/response preview of the root span's JSON inputs or outputs: the last
    ``role`` (user/assistant) chat message when there is one, else the JSON, cut to 1000."""
    if serialized is None:
        return None
    text = None
    if serialized.startswith("{"):
        try:
            messages = _chat_messages(json.loads(serialized))
        except ValueError:
            messages = None
        if messages:
            chosen = next(
                (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == role), messages[-1]
            )
            text = _message_text(chosen)
    return truncate_preview(text or serialized, REQUEST_PREVIEW_LENGTH)


def derive_from_root(
    root_attributes: Mapping[str, str],
    metadata: dict[str, str],
    request_preview: str | None = None,
    response_preview: str | None = None,
) -> tuple[str | None, str | None]:
    """What MLflow derives from the root span's JSON inputs and outputs: sets
    ``mlflow.traceInputs`` / ``mlflow.traceOutputs`` in ``metadata`` (cut to 250 characters) unless
    already there, and returns the request and response previews, those given winning."""
    inputs = root_attributes.get(SpanAttributeKey.INPUTS)
    outputs = root_attributes.get(SpanAttributeKey.OUTPUTS)
    if TraceMetadataKey.INPUTS not in metadata:
        metadata[TraceMetadataKey.INPUTS] = truncate_preview(inputs or "", TRACE_IO_METADATA_LENGTH)
    if TraceMetadataKey.OUTPUTS not in metadata:
        metadata[TraceMetadataKey.OUTPUTS] = truncate_preview(outputs or "", TRACE_IO_METADATA_LENGTH)
    return (
        request_preview if request_preview is not None else preview(inputs, "user"),
        response_preview if response_preview is not None else preview(outputs, "assistant"),
    )


def trace_state(root_status_code: str) -> Literal["OK", "ERROR"]:
    """A finished trace's state when nobody set one: its root span's outcome."""
    return "ERROR" if root_status_code == "ERROR" else "OK"


_EVENT_SCALARS = (str, bool, int, float)
_INT64 = 2**63


def event_attribute_value(value: Any, dump: Callable[[Any], str]) -> Any:
    """A span event attribute value the Avro schema accepts: OpenTelemetry's scalars and lists of
    them as they are, an integer beyond int64 (Avro's long) as its digits, anything else as
    JSON text by ``dump``."""
    if isinstance(value, _EVENT_SCALARS):
        if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
            return str(value)
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(item, _EVENT_SCALARS) for item in value):
        return [event_attribute_value(item, dump) for item in value]
    return dump(value)


# ---------------------------------------------------------------- MLflow's JSON renderings


def _b64_hex(hex_id: str | None) -> str | None:
    return None if hex_id is None else base64.b64encode(bytes.fromhex(hex_id)).decode()


def mlflow_span_dict(span: SpanEnded) -> dict[str, Any]:
    """The span as MLflow's ``Span.to_dict()`` renders it (OTel ids in base64)."""
    return {
        "trace_id": _b64_hex(span["trace_id"].removeprefix("tr-")),
        "span_id": _b64_hex(span["span_id"]),
        "parent_span_id": _b64_hex(span["parent_span_id"]),
        "name": span["name"],
        "start_time_unix_nano": span["start_time_ns"],
        "end_time_unix_nano": span["end_time_ns"],
        "events": [
            {"name": e["name"], "time_unix_nano": e["time_ns"], "attributes": e["attributes"]}
            for e in span["events"]
        ],
        "status": {"code": f"STATUS_CODE_{span['status_code']}", "message": span["status_message"]},
        "attributes": span["attributes"],
        "links": [],
    }


def proto_timestamp(ms: int) -> str:
    """A protobuf Timestamp in JSON, as MessageToDict writes it at millisecond precision."""
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{ms % 1000:03d}Z" if ms % 1000 else f"{moment}Z"


_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def parse_proto_timestamp(value: str | int) -> int:
    """Milliseconds since the epoch of a protobuf Timestamp in JSON (``2026-11-22T04:12:33.286Z``),
    truncated like ``Timestamp.ToMilliseconds``. Integers are taken as milliseconds already."""
    if isinstance(value, int):
        return value
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"Invalid timestamp: {value!r}")
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(moment.timestamp())
    return seconds * 1000 + int((fraction or "0")[:3].ljust(3, "0"))


def mlflow_info_dict(info: TraceInfo) -> dict[str, Any]:
    """The trace info as MLflow's ``TraceInfo.to_dict()`` renders it (absent fields omitted)."""
    location = info["location"]
    rendered: dict[str, Any] = {"trace_id": info["trace_id"]}
    if info["client_request_id"] is not None:
        rendered["client_request_id"] = info["client_request_id"]
    rendered["trace_location"] = {
        "type": location["type"],
        "mlflow_experiment": {"experiment_id": location["experiment_id"]}
        if location["experiment_id"]
        else {},
    }
    rendered["request_time"] = proto_timestamp(info["request_time_ms"])
    rendered["state"] = info["state"]
    if info["metadata"]:
        rendered["trace_metadata"] = info["metadata"]
    if info["tags"]:
        rendered["tags"] = info["tags"]
    if info["request_preview"] is not None:
        rendered["request_preview"] = info["request_preview"]
    if info["response_preview"] is not None:
        rendered["response_preview"] = info["response_preview"]
    if info["execution_duration_ms"] is not None:
        rendered["execution_duration_ms"] = info["execution_duration_ms"]
    return rendered


def mlflow_assessment_dict(assessment: AssessmentLogged) -> dict[str, Any]:
    """The assessment as MLflow's ``Assessment.to_dictionary()`` renders it."""
    rendered: dict[str, Any] = {
        "assessment_id": assessment["assessment_id"],
        "assessment_name": assessment["name"],
        "trace_id": assessment["trace_id"],
    }
    if assessment["span_id"]:
        rendered["span_id"] = assessment["span_id"]
    rendered["source"] = {"source_type": assessment["source_type"], "source_id": assessment["source_id"]}
    rendered["create_time"] = proto_timestamp(assessment["create_time_ms"])
    updated = assessment["last_update_time_ms"]
    if updated is None:
        updated = assessment["create_time_ms"]
    rendered["last_update_time"] = proto_timestamp(updated)
    value = None if assessment["value_json"] is None else json.loads(assessment["value_json"])
    body: dict[str, Any] = {}
    if assessment["kind"] == "EXPECTATION" and value is not None and not isinstance(value, int | float | str):
        # MLflow keeps structured expectations as JSON text (ExpectationValue.to_proto).
        body["serialized_value"] = {"serialization_format": "JSON_FORMAT", "value": json.dumps(value)}
    else:
        # Always present, null for an error-only feedback: Assessment.from_dictionary requires it.
        body["value"] = value
    if assessment["error"] is not None:
        error = {"error_code": assessment["error"]["error_code"]}
        if assessment["error"]["error_message"] is not None:
            error["error_message"] = assessment["error"]["error_message"]
        body["error"] = error
    rendered["feedback" if assessment["kind"] == "FEEDBACK" else "expectation"] = body
    if assessment["rationale"] is not None:
        rendered["rationale"] = assessment["rationale"]
    if assessment["metadata"]:
        rendered["metadata"] = assessment["metadata"]
    if assessment["overrides"]:
        rendered["overrides"] = assessment["overrides"]
    rendered["valid"] = assessment["valid"]
    return rendered
