"""Realistic sample records for tests, benchmarks and demos: LLM agent traces as the stream
emits them (a root agent span, retrieval, chat-model calls with token usage, tool calls)."""

from __future__ import annotations

import json
import random
import time

from tracestream.schemas.ids import new_assessment_id, new_span_id, new_trace_id
from tracestream.schemas.mlflow_keys import SpanAttributeKey, SpanType, TraceMetadataKey, TraceTagKey
from tracestream.schemas.records import AssessmentLogged, CompletedTrace, SpanEnded, TraceLocation

_WORDS = tuple(
    [
        "refund",
        "order",
        "shipping",
        "invoice",
        "account",
        "password",
        "delivery",
        "warranty",
        "return",
        "policy",
        "customer",
        "billing",
        "payment",
        "card",
        "subscription",
        "upgrade",
        "cancel",
        "discount",
        "coupon",
        "address",
        "tracking",
        "package",
        "damaged",
        "replacement",
        "support",
        "agent",
        "escalate",
        "manager",
        "ticket",
        "priority",
        "urgent",
        "thanks",
        "please",
    ]
)
_MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "llama-3-70b")
_TOOLS = ("lookup_order", "issue_refund", "search_kb", "update_address", "create_ticket")


def _text(rng: random.Random, size: int) -> str:
    words = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def completed_trace(
    rng: random.Random | None = None,
    *,
    experiment_id: str = "0",
    request_time_ms: int | None = None,
    min_spans: int = 5,
    max_spans: int = 20,
    min_io_bytes: int = 2_000,
    max_io_bytes: int = 20_000,
    error: bool | None = None,
    revision: int = 1,
    tags: dict[str, str] | None = None,
) -> CompletedTrace:
    """One completed agent trace with ``min_spans``-``max_spans`` spans whose inputs and outputs
    are ``min_io_bytes``-``max_io_bytes`` of text."""
    rng = rng or random.Random()
    trace_id = new_trace_id()
    location: TraceLocation = {"type": "MLFLOW_EXPERIMENT", "experiment_id": experiment_id}
    start_ms = request_time_ms if request_time_ms is not None else int(time.time() * 1000)
    start_ns = start_ms * 1_000_000
    failed = rng.random() < 0.1 if error is None else error
    question = _text(rng, rng.randint(min_io_bytes, max_io_bytes) // 4)
    answer = _text(rng, rng.randint(min_io_bytes, max_io_bytes) // 4)

    root_id = new_span_id()
    spans: list[SpanEnded] = []
    clock = start_ns + 1_000_000
    usage_total = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    for index in range(rng.randint(min_spans, max_spans) - 1):
        kind = (SpanType.RETRIEVER, SpanType.CHAT_MODEL, SpanType.TOOL)[index % 3]
        duration_ns = rng.randint(5, 900) * 1_000_000
        attributes = {SpanAttributeKey.SPAN_TYPE: _dump(kind), SpanAttributeKey.TRACE_ID: _dump(trace_id)}
        if kind == SpanType.RETRIEVER:
            name = "retrieve"
            attributes[SpanAttributeKey.INPUTS] = _dump({"query": _text(rng, 80)})
            attributes[SpanAttributeKey.OUTPUTS] = _dump(
                [{"page_content": _text(rng, rng.randint(min_io_bytes, max_io_bytes) // 3)} for _ in range(3)]
            )
        elif kind == SpanType.CHAT_MODEL:
            name = "chat"
            model = rng.choice(_MODELS)
            prompt_tokens, completion_tokens = rng.randint(200, 4000), rng.randint(20, 800)
            usage = {
                "input_tokens": prompt_tokens,
                "output_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            for key in usage_total:
                usage_total[key] += usage[key]
            prompt = _text(rng, rng.randint(min_io_bytes, max_io_bytes))
            attributes[SpanAttributeKey.INPUTS] = _dump({"messages": [{"role": "user", "content": prompt}]})
            attributes[SpanAttributeKey.OUTPUTS] = _dump(
                {"choices": [{"message": {"role": "assistant", "content": _text(rng, 400)}}]}
            )
            attributes[SpanAttributeKey.CHAT_USAGE] = _dump(usage)
            attributes[SpanAttributeKey.LLM_MODEL] = _dump(model)
            attributes["model"] = _dump(model)
            attributes["temperature"] = _dump(0.2)
        else:
            name = rng.choice(_TOOLS)
            attributes[SpanAttributeKey.INPUTS] = _dump({"order_id": f"A{rng.randint(10000, 99999)}"})
            attributes[SpanAttributeKey.OUTPUTS] = _dump({"status": "ok", "detail": _text(rng, 200)})
        span_failed = failed and index == 1
        spans.append(
            {
                "trace_id": trace_id,
                "span_id": new_span_id(),
                "parent_span_id": root_id,
                "name": name,
                "span_type": kind,
                "start_time_ns": clock,
                "end_time_ns": clock + duration_ns,
                "status_code": "ERROR" if span_failed else "OK",
                "status_message": "rate limited by provider" if span_failed else "",
                "attributes": attributes,
                "events": [
                    {
                        "name": "exception",
                        "time_ns": clock + duration_ns,
                        "attributes": {"exception.type": "RateLimitError", "exception.message": "429"},
                    }
                ]
                if span_failed
                else [],
                "location": location,
            }
        )
        clock += duration_ns + 1_000_000
    inputs = _dump({"messages": [{"role": "user", "content": question}]})
    outputs = _dump({"choices": [{"message": {"role": "assistant", "content": answer}}]})
    root: SpanEnded = {
        "trace_id": trace_id,
        "span_id": root_id,
        "parent_span_id": None,
        "name": "support_agent",
        "span_type": SpanType.AGENT,
        "start_time_ns": start_ns,
        "end_time_ns": clock,
        "status_code": "ERROR" if failed else "OK",
        "status_message": "upstream model failed" if failed else "",
        "attributes": {
            SpanAttributeKey.SPAN_TYPE: _dump(SpanType.AGENT),
            SpanAttributeKey.TRACE_ID: _dump(trace_id),
            SpanAttributeKey.INPUTS: inputs,
            SpanAttributeKey.OUTPUTS: outputs,
        },
        "events": [],
        "location": location,
    }
    duration_ms = (clock - start_ns) // 1_000_000
    session = f"session-{rng.randint(1, 500)}"
    assessments: list[AssessmentLogged] = []
    if rng.random() < 0.3:
        assessments.append(
            {
                "assessment_id": new_assessment_id(),
                "trace_id": trace_id,
                "name": "rating",
                "kind": "FEEDBACK",
                "value_json": _dump(rng.randint(1, 5)),
                "error": None,
                "source_type": "HUMAN",
                "source_id": f"user-{rng.randint(1, 50)}",
                "rationale": None,
                "metadata": {},
                "span_id": None,
                "create_time_ms": start_ms + duration_ms + 1000,
                "last_update_time_ms": None,
                "overrides": None,
                "valid": True,
            }
        )
    metadata = {
        TraceMetadataKey.TRACE_USER: f"user-{rng.randint(1, 50)}",
        TraceMetadataKey.TRACE_SESSION: session,
        TraceMetadataKey.SCHEMA_VERSION: "3",
        TraceMetadataKey.INPUTS: inputs[:247] + "..." if len(inputs) > 250 else inputs,
        TraceMetadataKey.OUTPUTS: outputs[:247] + "..." if len(outputs) > 250 else outputs,
    }
    if usage_total["total_tokens"]:
        metadata[TraceMetadataKey.TOKEN_USAGE] = json.dumps(usage_total)
    all_tags = {
        TraceTagKey.TRACE_NAME: "support_agent",
        "env": rng.choice(("prod", "prod", "prod", "staging")),
        "service": "support-bot",
        "version": f"1.{rng.randint(0, 9)}.0",
    }
    all_tags.update(tags or {})
    return {
        "trace_id": trace_id,
        "revision": revision,
        "info": {
            "trace_id": trace_id,
            "client_request_id": f"req-{rng.getrandbits(48):012x}",
            "location": location,
            "request_time_ms": start_ms,
            "execution_duration_ms": duration_ms,
            "state": "ERROR" if failed else "OK",
            "request_preview": question[:1000],
            "response_preview": answer[:1000],
            "tags": all_tags,
            "metadata": metadata,
        },
        "spans": [root, *spans],
        "assessments": assessments,
        "completed_time_ms": start_ms + duration_ms + 50,
    }
