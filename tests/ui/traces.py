"""Traces the browser tests look at: one hand-made trace whose span tree, failing span, chat
inputs and HTML output the tests know, and a span-heavy trace for the bench."""

from __future__ import annotations

import json
import random
from typing import Any

from tracestream.schemas.records import CompletedTrace
from tracestream.schemas.samples import completed_trace

HTML_OUTPUT = "<script>window.__injected = 1</script><b id='injected'>bold</b> & <img src=x onerror=alert(1)>"
STACK = "Traceback (most recent call last):\n  File \"tools.py\", line 12, in lookup_order\nKeyError: 'A1'"


def _dump(value: Any) -> str:
    return json.dumps(value)


def _span(
    trace_id: str,
    span_id: str,
    parent: str | None,
    name: str,
    span_type: str,
    start_ms: int,
    end_ms: int,
    inputs: Any,
    outputs: Any,
    error: str | None = None,
    events: list[dict[str, Any]] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "span_type": span_type,
        "start_time_ns": start_ms * 1_000_000,
        "end_time_ns": end_ms * 1_000_000,
        "status_code": "ERROR" if error else "OK",
        "status_message": error or "",
        "attributes": {
            "mlflow.spanType": _dump(span_type),
            "mlflow.traceRequestId": _dump(trace_id),
            "mlflow.spanInputs": _dump(inputs),
            "mlflow.spanOutputs": _dump(outputs),
            **(extra or {}),
        },
        "events": events or [],
        "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "7"},
    }


def designed_trace(request_time_ms: int) -> CompletedTrace:
    """agent_turn (AGENT) > plan (CHAT_MODEL), lookup_order (TOOL, fails) > db_query (RETRIEVER),
    then render (CHAT_MODEL, whose output is HTML)."""
    trace_id = "tr-0000000000000000000000000000ab19"
    t = request_time_ms
    usage = {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}
    spans = [
        _span(
            trace_id,
            "a000000000000001",
            None,
            "agent_turn",
            "AGENT",
            t,
            t + 900,
            {"question": "where is order A1?"},
            {"answer": "sorry"},
            error="tool failed",
        ),
        _span(
            trace_id,
            "a000000000000002",
            "a000000000000001",
            "plan",
            "CHAT_MODEL",
            t + 10,
            t + 200,
            {
                "messages": [
                    {"role": "system", "content": "You are a support agent."},
                    {"role": "user", "content": "where is order A1?"},
                ]
            },
            {"choices": [{"message": {"role": "assistant", "content": "call lookup_order"}}]},
            extra={"mlflow.chat.tokenUsage": _dump(usage)},
        ),
        _span(
            trace_id,
            "a000000000000003",
            "a000000000000001",
            "lookup_order",
            "TOOL",
            t + 210,
            t + 600,
            {"order_id": "A1"},
            None,
            error="KeyError: 'A1'",
            events=[
                {
                    "name": "exception",
                    "time_ns": (t + 600) * 1_000_000,
                    "attributes": {
                        "exception.type": "KeyError",
                        "exception.message": "'A1'",
                        "exception.stacktrace": STACK,
                    },
                }
            ],
        ),
        _span(
            trace_id,
            "a000000000000004",
            "a000000000000003",
            "db_query",
            "RETRIEVER",
            t + 220,
            t + 500,
            {"sql": "select * from orders where id = 'A1'"},
            [],
        ),
        _span(
            trace_id,
            "a000000000000005",
            "a000000000000001",
            "render",
            "CHAT_MODEL",
            t + 610,
            t + 890,
            {"messages": [{"role": "user", "content": "render the answer"}]},
            HTML_OUTPUT,
        ),
    ]
    return {
        "trace_id": trace_id,
        "revision": 1,
        "info": {
            "trace_id": trace_id,
            "client_request_id": "req-ui-test",
            "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "7"},
            "request_time_ms": t,
            "execution_duration_ms": 900,
            "state": "ERROR",
            "request_preview": "where is order A1?",
            "response_preview": "sorry",
            "tags": {"mlflow.traceName": "agent_turn", "env": "designed", "team": "care"},
            "metadata": {
                "mlflow.trace.user": "user-ui",
                "mlflow.trace.session": "session-ui",
                "mlflow.trace_schema.version": "3",
                "mlflow.trace.tokenUsage": _dump(usage),
            },
        },
        "spans": spans,  # type: ignore[typeddict-item]
        "assessments": [
            {
                "assessment_id": "a-ui-1",
                "trace_id": trace_id,
                "name": "helpfulness",
                "kind": "FEEDBACK",
                "value_json": _dump(2),
                "error": None,
                "source_type": "HUMAN",
                "source_id": "reviewer-9",
                "rationale": "did not find the order",
                "metadata": {},
                "span_id": None,
                "create_time_ms": t + 5000,
                "last_update_time_ms": None,
                "overrides": None,
                "valid": True,
            }
        ],
        "completed_time_ms": t + 950,
    }


def wide_trace(request_time_ms: int, span_count: int, seed: int = 5) -> CompletedTrace:
    """A sample trace with ``span_count`` spans: the root and tool calls nested four deep."""
    trace = completed_trace(
        random.Random(seed),
        request_time_ms=request_time_ms,
        min_spans=3,
        max_spans=3,
        min_io_bytes=100,
        max_io_bytes=300,
    )
    root = trace["spans"][0]
    trace_id = trace["trace_id"]
    spans = [root]
    start = request_time_ms
    for n in range(1, span_count):
        # Chains four deep: every fourth span is a child of the root, the others of the one before.
        parent = root["span_id"] if n % 4 == 1 else spans[n - 1]["span_id"]
        s = start + n
        spans.append(
            _span(trace_id, f"{n:016x}", parent, f"step_{n}", "TOOL", s, s + 3, {"n": n}, {"ok": True})
        )
    root["end_time_ns"] = (start + span_count + 10) * 1_000_000
    trace["spans"] = spans  # type: ignore[typeddict-item]
    trace["info"]["execution_duration_ms"] = span_count + 10
    return trace
