"""MLflow's wire shapes: protobuf JSON (snake_case field names, Timestamp and Duration strings,
enum names) for what the tracking server answers, and the parsing of what its client sends.

Stored traces are MLflow's ``Trace.to_dict()`` (see ``schemas.mlflow_format``); the server's
protocol differs from that in a few places, all handled here:

* ``TraceInfoV3.execution_duration`` is a Duration (``"0.071s"``), not ``execution_duration_ms``;
* spans are OpenTelemetry's ``Span`` message: attributes are a list of ``{key, value: AnyValue}``
  holding the decoded values (MLflow keeps them as JSON text), ids are base64 bytes, the status
  code is an enum name and is omitted when UNSET.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from tracestream.schemas.assessments import DELETES_ASSESSMENT, UPDATES_ASSESSMENT
from tracestream.search_api.search import SearchError

# The trace tag that tells MLflow's client its spans are served by the tracking store
# (batchGet / get), so it never uploads or downloads them as artifacts.
SPANS_LOCATION_TAG = "mlflow.trace.spansLocation"
TRACKING_STORE = "TRACKING_STORE"
# Tags the server manages: a client cannot set them.
SERVER_MANAGED_TAGS = frozenset(
    {
        SPANS_LOCATION_TAG,
        "mlflow.artifactLocation",
        "mlflow.trace.archiveLocation",
        "mlflow.trace.archivalFailure",
    }
)

SPAN_KIND_INTERNAL = "SPAN_KIND_INTERNAL"


def invalid_parameter(message: str) -> SearchError:
    return SearchError(400, "INVALID_PARAMETER_VALUE", message)


def wrong_type(name: str, value: Any) -> SearchError:
    """MLflow's handlers' answer to a parameter of the wrong JSON type (its ``invalid_value``)."""
    shown = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return invalid_parameter(
        f"Invalid value {shown} for parameter '{name}' supplied:  Hint: Value was of "
        f"type '{type(value).__name__}'. See the API docs for more information about request parameters."
    )


def int_parameter(value: Any, name: str) -> int:
    """An integer request parameter, refused with MLflow's message when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise wrong_type(name, value) from exc


def not_found(message: str) -> SearchError:
    return SearchError(404, "RESOURCE_DOES_NOT_EXIST", message)


def missing_parameter(name: str) -> SearchError:
    return invalid_parameter(
        f"Missing value for required parameter '{name}'. "
        "See the API docs for more information about request parameters."
    )


def field(message: dict[str, Any], name: str) -> Any:
    """A field of a protobuf JSON object, by its proto name or its lowerCamelCase JSON name."""
    if name in message:
        return message[name]
    head, *rest = name.split("_")
    return message.get(head + "".join(part.capitalize() for part in rest))


# ---------------------------------------------------------------- well-known types


def duration_json(ms: int) -> str:
    """A Duration of ``ms`` milliseconds in protobuf JSON: ``"0.071s"``, ``"2s"``."""
    seconds, millis = divmod(ms, 1000)
    return f"{seconds}.{millis:03d}s" if millis else f"{seconds}s"


def timestamp_json(ms: int) -> str:
    """A Timestamp at millisecond precision in protobuf JSON, as MessageToDict writes it."""
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp.ToJsonString()


def parse_timestamp_ms(value: Any, name: str) -> int:
    if isinstance(value, str):
        stamp = Timestamp()
        try:
            stamp.FromJsonString(value)
        except ValueError as exc:
            raise invalid_parameter(f"Invalid value {value!r} for parameter '{name}': {exc}") from exc
        return stamp.ToMilliseconds()
    raise invalid_parameter(f"Invalid value {value!r} for parameter '{name}': expected a Timestamp string")


def parse_duration_ms(value: Any, name: str) -> int:
    if isinstance(value, str):
        duration = Duration()
        try:
            duration.FromJsonString(value)
        except ValueError as exc:
            raise invalid_parameter(f"Invalid value {value!r} for parameter '{name}': {exc}") from exc
        return duration.ToMilliseconds()
    raise invalid_parameter(f"Invalid value {value!r} for parameter '{name}': expected a Duration string")


# ---------------------------------------------------------------- OpenTelemetry values


def any_value_json(value: Any) -> dict[str, Any]:
    """An OTLP ``AnyValue`` in protobuf JSON, as MLflow's server renders span attributes."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"bool_value": value}
    if isinstance(value, str):
        return {"string_value": value}
    if isinstance(value, int):
        return {"int_value": value}
    if isinstance(value, float):
        return {"double_value": value}
    if isinstance(value, list | tuple):
        return {"array_value": {"values": [any_value_json(item) for item in value]}}
    if isinstance(value, dict):
        return {
            "kvlist_value": {
                "values": [{"key": str(k), "value": any_value_json(v)} for k, v in value.items()]
            }
        }
    return {"string_value": str(value)}


def _decoded_attribute(raw: str) -> Any:
    # Attribute values are stored as JSON text; a value that is not JSON is kept as the text.
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _b64_is_set(value: str | None) -> bool:
    return bool(value) and base64.b64decode(value) != b"\x00" * 8


def span_json(span: dict[str, Any]) -> dict[str, Any]:
    """A stored span (MLflow's ``Span.to_dict()``) as OpenTelemetry's ``Span`` in protobuf JSON,
    the shape MLflow's client rebuilds spans from (``Span.from_otel_proto``)."""
    rendered: dict[str, Any] = {"trace_id": span["trace_id"], "span_id": span["span_id"]}
    if _b64_is_set(span.get("parent_span_id")):
        rendered["parent_span_id"] = span["parent_span_id"]
    rendered.update(
        name=span["name"],
        kind=SPAN_KIND_INTERNAL,
        start_time_unix_nano=span["start_time_unix_nano"],
        end_time_unix_nano=span["end_time_unix_nano"],
        attributes=[
            {"key": key, "value": any_value_json(_decoded_attribute(raw))}
            for key, raw in span.get("attributes", {}).items()
        ],
    )
    events = [
        {
            "time_unix_nano": event["time_unix_nano"],
            "name": event["name"],
            "attributes": [
                {"key": key, "value": any_value_json(value)}
                for key, value in (event.get("attributes") or {}).items()
            ],
        }
        for event in span.get("events", [])
    ]
    if events:
        rendered["events"] = events
    status = span.get("status") or {}
    status_json: dict[str, Any] = {}
    if status.get("code") and status["code"] != "STATUS_CODE_UNSET":
        status_json["code"] = status["code"]
    if status.get("message"):
        status_json["message"] = status["message"]
    rendered["status"] = status_json
    return rendered


def ordered_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Root spans first, then by start time, as MLflow's server returns them."""
    return sorted(
        spans, key=lambda s: (_b64_is_set(s.get("parent_span_id")), s["start_time_unix_nano"], s["span_id"])
    )


# ---------------------------------------------------------------- trace info


def _markers(assessment: dict[str, Any]) -> dict[str, str]:
    return assessment.get("metadata") or {}


def current_versions(assessments: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The stored assessment that currently stands for each assessment id MLflow's client knows.

    Events are never changed in place, so an update is stored as a new assessment that overrides
    the previous version and names the original id (``UPDATES_ASSESSMENT``), and a deletion as
    an invalid marker (``DELETES_ASSESSMENT``). The current version of an id is its valid
    version, else (all overridden, e.g. by ``override_feedback``) the latest."""
    deleted = {_markers(a)[DELETES_ASSESSMENT] for a in assessments if DELETES_ASSESSMENT in _markers(a)}
    current: dict[str, dict[str, Any]] = {}
    for assessment in assessments:
        markers = _markers(assessment)
        if DELETES_ASSESSMENT in markers:
            continue
        origin = markers.get(UPDATES_ASSESSMENT, assessment["assessment_id"])
        if origin in deleted:
            continue
        standing = current.get(origin)
        rank = (bool(assessment.get("valid", True)), assessment.get("last_update_time", ""))
        if standing is None or rank >= (
            bool(standing.get("valid", True)),
            standing.get("last_update_time", ""),
        ):
            current[origin] = assessment
    return current


def shown_as(version: dict[str, Any], assessment_id: str, overrides: str | None) -> dict[str, Any]:
    """A stored version of an assessment as MLflow's client should see it: under the id it knows,
    overriding what the original overrode, without tracestream's markers."""
    rendered = {**version, "assessment_id": assessment_id}
    metadata = {k: v for k, v in _markers(version).items() if k != UPDATES_ASSESSMENT}
    rendered.pop("metadata", None)
    if metadata:
        rendered["metadata"] = metadata
    rendered.pop("overrides", None)
    if overrides:
        rendered["overrides"] = overrides
    return rendered


def visible_assessments(assessments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The assessments as MLflow's client should see them: one per id, updated in place,
    deleted ones gone."""
    originals = {a["assessment_id"]: a for a in assessments}
    return [
        shown_as(version, origin, originals.get(origin, version).get("overrides"))
        for origin, version in current_versions(assessments).items()
    ]


def trace_info_json(info: dict[str, Any]) -> dict[str, Any]:
    """A stored trace info (MLflow's ``TraceInfo.to_dict()``) as ``TraceInfoV3`` protobuf JSON."""
    rendered: dict[str, Any] = {"trace_id": info["trace_id"]}
    if info.get("client_request_id") is not None:
        rendered["client_request_id"] = info["client_request_id"]
    rendered["trace_location"] = info["trace_location"]
    rendered["request_time"] = info["request_time"]
    if info.get("execution_duration_ms") is not None:
        rendered["execution_duration"] = duration_json(info["execution_duration_ms"])
    rendered["state"] = info["state"]
    if info.get("trace_metadata"):
        rendered["trace_metadata"] = info["trace_metadata"]
    assessments = visible_assessments(info.get("assessments") or [])
    if assessments:
        rendered["assessments"] = assessments
    rendered["tags"] = {**(info.get("tags") or {}), SPANS_LOCATION_TAG: TRACKING_STORE}
    for key in ("request_preview", "response_preview"):
        if info.get(key) is not None:
            rendered[key] = info[key]
    return rendered


def trace_json(trace: dict[str, Any]) -> dict[str, Any]:
    """A stored trace (``{"info", "data": {"spans"}}``) as MLflow's ``Trace`` protobuf JSON."""
    return {
        "trace_info": trace_info_json(trace["info"]),
        "spans": [span_json(span) for span in ordered_spans(trace["data"]["spans"])],
    }
