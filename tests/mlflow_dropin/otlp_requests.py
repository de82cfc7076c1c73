"""OTLP export requests and StartTraceV3 bodies as MLflow's client and OpenTelemetry SDKs send them,
for the drop-in's tests (built with the OTLP protobuf classes, not captured)."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tracestream.search_api.mlflow_rest.protojson import duration_json, timestamp_json

TRACE_HEX = "c50a7c35abb3e8787098ebcc6fbd6900"
TRACE_ID = f"tr-{TRACE_HEX}"
ROOT_HEX = "6dfe7aa87a1a203a"
CHILD_HEX = "953f2163aedcec7e"
START_NS = 1_795_321_886_716_149_535


def any_value(value: Any) -> AnyValue:
    result = AnyValue()
    if isinstance(value, bool):
        result.bool_value = value
    elif isinstance(value, str):
        result.string_value = value
    elif isinstance(value, int):
        result.int_value = value
    elif isinstance(value, float):
        result.double_value = value
    elif isinstance(value, list):
        result.array_value.values.extend(any_value(v) for v in value)
    elif isinstance(value, dict):
        result.kvlist_value.values.extend(KeyValue(key=k, value=any_value(v)) for k, v in value.items())
    return result


def span(
    span_hex: str,
    parent_hex: str | None,
    name: str,
    attributes: dict[str, Any],
    start_offset_ms: int = 0,
    duration_ms: int = 10,
    error: str | None = None,
    trace_hex: str = TRACE_HEX,
) -> Span:
    result = Span(
        trace_id=bytes.fromhex(trace_hex),
        span_id=bytes.fromhex(span_hex),
        name=name,
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=START_NS + start_offset_ms * 1_000_000,
        end_time_unix_nano=START_NS + (start_offset_ms + duration_ms) * 1_000_000,
        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()],
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_OK, message=error or ""),
    )
    if parent_hex:
        result.parent_span_id = bytes.fromhex(parent_hex)
    return result


def export_request(*spans: Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="telemetry.sdk.name", value=any_value("mlflow")))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def mlflow_spans(trace_hex: str = TRACE_HEX) -> list[Span]:
    """An agent span and its LLM child, with the attributes MLflow's SDK sets (decoded values)."""
    trace_id = f"tr-{trace_hex}"
    return [
        span(
            CHILD_HEX,
            ROOT_HEX,
            "llm_call",
            {
                "mlflow.traceRequestId": trace_id,
                "mlflow.spanType": "LLM",
                "mlflow.spanInputs": {"q": "hello"},
                "mlflow.chat.tokenUsage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
                "model": "gpt-4",
                "mlflow.spanOutputs": "answer to hello",
                "mlflow.spanLogLevel": 20,
            },
            start_offset_ms=30,
            duration_ms=5,
            trace_hex=trace_hex,
        ),
        span(
            ROOT_HEX,
            None,
            "agent",
            {
                "mlflow.traceRequestId": trace_id,
                "mlflow.spanType": "AGENT",
                "mlflow.spanInputs": {"q": "hello"},
                "mlflow.spanOutputs": "answer to hello",
            },
            duration_ms=71,
            trace_hex=trace_hex,
        ),
    ]


def start_trace_body(
    trace_id: str = TRACE_ID, experiment_id: str = "2", num_spans: int = 2, request_offset_ms: int = 0
) -> dict[str, Any]:
    """StartTraceV3 as MLflow's client sends it when the root span ends."""
    return {
        "trace": {
            "trace_info": {
                "trace_id": trace_id,
                "client_request_id": "req-1",
                "trace_location": {
                    "type": "MLFLOW_EXPERIMENT",
                    "mlflow_experiment": {"experiment_id": experiment_id},
                },
                "request_time": timestamp_json(START_NS // 1_000_000 + request_offset_ms),
                "execution_duration": duration_json(71),
                "state": "OK",
                "trace_metadata": {
                    "mlflow.user": "root",
                    "mlflow.trace.user": "u1",
                    "mlflow.trace.session": "s1",
                    "mlflow.trace_schema.version": "3",
                    "mlflow.trace.tokenUsage": json.dumps(
                        {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
                    ),
                    "mlflow.trace.sizeStats": json.dumps(
                        {"total_size_bytes": 2228, "num_spans": num_spans, "max": 711}
                    ),
                    "custom": "x",
                },
                "tags": {
                    "mlflow.traceName": "agent",
                    "env": "prod",
                    "mlflow.artifactLocation": "s3://client/sent/this",
                },
                "request_preview": '{"q": "hello"}',
                "response_preview": '"answer to hello"',
            }
        }
    }
