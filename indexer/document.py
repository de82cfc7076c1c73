"""A CompletedTrace as the document the traces index stores (see ``indexer.mapping``)."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

import orjson

from tracestream.indexer.mapping import (
    DEFAULT_MAX_CLOCK_SKEW_MS,
    ENTRY_SEPARATOR,
    MAX_ATTRIBUTE_ENTRY_BYTES,
    MAX_TERM_BYTES,
    F,
    IndexNames,
    is_clock_skewed,
    trace_order,
)
from tracestream.schemas import TraceMetadataKey, TraceTagKey
from tracestream.schemas.mlflow_format import mlflow_assessment_dict, mlflow_info_dict, mlflow_span_dict
from tracestream.schemas.records import AssessmentLogged, CompletedTrace, SpanEnded, TraceInfo

# Consecutive chunks of a long span text share this many bytes, so that a search string of up
# to this length is found even where the text was cut.
CHUNK_OVERLAP_BYTES = 1024


def _dumps(document: dict[str, Any]) -> str:
    # orjson writes UTF-8 without escaping non-ASCII, like ensure_ascii=False, at twice the speed.
    return orjson.dumps(document).decode()


# MLflow stores span content with json.dumps defaults (", " / ": ") and ensure_ascii=False;
# trace.text LIKE patterns are written against that exact text.
_dumps_mlflow = json.JSONEncoder(ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class TraceDocument:
    """One bulk index action: where, under which id and version, and the JSON source."""

    index: str
    trace_id: str
    revision: int
    source: str
    # Its request time was too far from when the stream first saw it (see IndexNames.for_trace).
    clock_skewed: bool = False


def _utf8_start(data: bytes, position: int) -> int:
    """The nearest position at or before ``position`` where a UTF-8 character starts."""
    while position > 0 and position < len(data) and (data[position] & 0xC0) == 0x80:
        position -= 1
    return position


def _cut(text: str, limit: int = MAX_TERM_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    if len(text) * 4 <= limit:
        return text
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: _utf8_start(data, limit)].decode()


def chunks(text: str, max_total_bytes: int) -> list[str]:
    """``text`` as pieces of at most MAX_TERM_BYTES each (a doc-values term limit), overlapping
    by CHUNK_OVERLAP_BYTES, covering at most its first ``max_total_bytes``."""
    if len(text) * 4 <= MAX_TERM_BYTES:
        return [text]
    data = text.encode()
    if len(data) <= MAX_TERM_BYTES:
        return [text]
    data = data[: _utf8_start(data, max_total_bytes)] if len(data) > max_total_bytes else data
    pieces = []
    start = 0
    while True:
        end = _utf8_start(data, min(start + MAX_TERM_BYTES, len(data)))
        pieces.append(data[start:end].decode())
        if end >= len(data):
            return pieces
        start = _utf8_start(data, end - CHUNK_OVERLAP_BYTES)


def _attribute_text(raw: str) -> str:
    """A span attribute's value as a user writes it in a filter: JSON strings decoded (so
    ``span.attributes.model = 'gpt-4'`` matches ``"gpt-4"``), anything else as its JSON."""
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        if "\\" not in raw:
            return raw[1:-1]
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        return value if isinstance(value, str) else raw
    return raw


def _entries(mapping: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": _cut(value)} for key, value in mapping.items()]


def _span_fields(span: SpanEnded, content: str, max_content_bytes: int) -> dict[str, Any]:
    return {
        "span_id": span["span_id"],
        "parent_span_id": span["parent_span_id"],
        "name": _cut(span["name"]),
        "type": span["span_type"],
        "status": span["status_code"],
        "start_time_ns": span["start_time_ns"],
        "duration_ms": (span["end_time_ns"] - span["start_time_ns"]) // 1_000_000,
        "content": chunks(content, max_content_bytes),
        "attributes": [
            _cut(f"{key}{ENTRY_SEPARATOR}{_attribute_text(raw)}", MAX_ATTRIBUTE_ENTRY_BYTES)
            for key, raw in span["attributes"].items()
        ],
    }


def _numeric(value_json: str | None) -> float | None:
    """MLflow's numeric assessment value: a finite int or float (booleans are not numbers)."""
    if value_json is None:
        return None
    try:
        value = json.loads(value_json)
    except ValueError:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _assessment_fields(assessment: AssessmentLogged) -> dict[str, Any]:
    return {
        "assessment_id": assessment["assessment_id"],
        "kind": assessment["kind"].lower(),
        "name": assessment["name"],
        "valid": assessment["valid"],
        "value": None if assessment["value_json"] is None else _cut(assessment["value_json"]),
        "numeric_value": _numeric(assessment["value_json"]),
        "session_id": assessment["metadata"].get(TraceMetadataKey.TRACE_SESSION),
    }


def _token_usage(metadata: dict[str, str]) -> dict[str, Any] | None:
    raw = metadata.get(TraceMetadataKey.TOKEN_USAGE)
    if raw is None:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(usage, dict):
        return None
    return {
        key: usage[key]
        for key in ("input_tokens", "output_tokens", "total_tokens")
        if isinstance(usage.get(key), int | float) and not isinstance(usage.get(key), bool)
    }


def _size_bytes(metadata: dict[str, str]) -> int | None:
    raw = metadata.get(TraceMetadataKey.SIZE_BYTES)
    return int(raw) if raw is not None and raw.isdigit() else None


def _linked(trace: CompletedTrace, field: str) -> list[str]:
    """A v4 link list of ``trace`` (runs, or prompt versions as ``name/version``); a trace
    decoded from an older record, or built without links, has none."""
    links: list[str] = trace.get(field, [])  # type: ignore[misc]  # v4 fields, default []
    return list(links)


def _flag_skew(info: TraceInfo, skewed: bool) -> TraceInfo:
    if not skewed:
        return info
    # Flagged where users see and filter metadata; the client's times are kept as sent.
    return {**info, "metadata": {**info["metadata"], TraceMetadataKey.CLOCK_SKEWED: "true"}}


def _searched_fields(
    trace: CompletedTrace, info: TraceInfo, span_contents: list[str], max_content_bytes: int
) -> dict[str, Any]:
    """Every field of the document that filters look at, as the index stores them."""
    tags = info["tags"]
    metadata = info["metadata"]
    duration = info["execution_duration_ms"]
    return {
        "trace_id": trace["trace_id"],
        "revision": trace["revision"],
        "experiment_id": info["location"]["experiment_id"],
        "location_type": info["location"]["type"],
        "client_request_id": info["client_request_id"],
        "timestamp_ms": info["request_time_ms"],
        "execution_time_ms": duration,
        "end_time_ms": info["request_time_ms"] + (duration or 0),
        "state": info["state"],
        "name": tags.get(TraceTagKey.TRACE_NAME),
        "run_id": metadata.get(TraceMetadataKey.SOURCE_RUN),
        "linked_run_ids": _linked(trace, "linked_run_ids"),
        "linked_prompts": _linked(trace, "linked_prompts"),
        "session_id": metadata.get(TraceMetadataKey.TRACE_SESSION),
        "user": metadata.get(TraceMetadataKey.TRACE_USER),
        "request_preview": info["request_preview"],
        "response_preview": info["response_preview"],
        "token_usage": _token_usage(metadata),
        "size_bytes": _size_bytes(metadata),
        "num_spans": len(trace["spans"]),
        "completed_time_ms": trace["completed_time_ms"],
        "tags": _entries(tags),
        "metadata": _entries(metadata),
        "spans": [
            _span_fields(span, content, max_content_bytes)
            for span, content in zip(trace["spans"], span_contents, strict=True)
        ],
        "assessments": [_assessment_fields(a) for a in trace["assessments"]],
    }


def _span_contents(trace: CompletedTrace) -> list[str]:
    return [_dumps_mlflow(mlflow_span_dict(span)) for span in trace["spans"]]


def searched_fields(
    trace: CompletedTrace,
    max_content_bytes: int,
    first_seen_ms: int | None = None,
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS,
) -> dict[str, Any]:
    """The fields of ``trace``'s document that filters search, exactly as ``build_document``
    indexes them (the same cuts, chunks and skew flag), without the parts only reads use. The
    in-memory filter backend (``indexer.predicate``) evaluates filters against this."""
    info = trace["info"]
    first_seen = trace["completed_time_ms"] if first_seen_ms is None else first_seen_ms
    info = _flag_skew(info, is_clock_skewed(info["request_time_ms"], first_seen, max_clock_skew_ms))
    return _searched_fields(trace, info, _span_contents(trace), max_content_bytes)


def build_document(
    trace: CompletedTrace,
    names: IndexNames,
    max_content_bytes: int,
    first_seen_ms: int | None = None,
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS,
) -> TraceDocument:
    """The index action for one revision of a trace. The source is serialized once, here.

    ``first_seen_ms`` is when the stream first saw the trace (the record's FIRST_SEEN_HEADER);
    without it (a record of an older stream) the revision's completed time stands in."""
    info = trace["info"]
    index, skewed = names.for_trace(
        info["request_time_ms"],
        trace["completed_time_ms"] if first_seen_ms is None else first_seen_ms,
        max_clock_skew_ms,
    )
    info = _flag_skew(info, skewed)
    span_contents = _span_contents(trace)
    info_dict = mlflow_info_dict(info)
    if trace["assessments"]:
        info_dict["assessments"] = [mlflow_assessment_dict(a) for a in trace["assessments"]]
    order_high, order_low = trace_order(trace["trace_id"])
    document = {
        **_searched_fields(trace, info, span_contents, max_content_bytes),
        "trace_order_high": order_high,
        "trace_order_low": order_low,
        "info_json": base64.b64encode(orjson.dumps(info_dict)).decode(),
        # Span JSON kept as the text already serialized above, not as objects to encode again.
        "trace": {"info": info_dict, "spans_json": span_contents},
    }
    return TraceDocument(
        index=index,
        trace_id=trace["trace_id"],
        revision=trace["revision"],
        source=_dumps(document),
        clock_skewed=skewed,
    )


def trace_from_source(source: dict[str, Any]) -> dict[str, Any]:
    """The stored trace as MLflow's ``Trace.to_dict()``: ``{"info": ..., "data": {"spans": [...]}}``."""
    stored = source["trace"]
    return {"info": stored["info"], "data": {"spans": [orjson.loads(s) for s in stored["spans_json"]]}}


def hit_fetch(include_spans: bool) -> dict[str, Any]:
    """What a search request asks OpenSearch to return per hit, for :func:`trace_from_hit`."""
    if include_spans:
        return {"_source": [F.TRACE]}
    return {"_source": False, "stored_fields": "_none_", "docvalue_fields": [F.INFO_JSON]}


def trace_from_hit(hit: dict[str, Any], include_spans: bool) -> dict[str, Any]:
    """A search hit fetched with :func:`hit_fetch` as MLflow's ``Trace.to_dict()`` (``spans``
    empty when they were not asked for)."""
    if include_spans:
        return trace_from_source(hit["_source"])
    encoded: str = hit["fields"][F.INFO_JSON][0]
    # OpenSearch returns binary doc values in base64 without its padding.
    info = orjson.loads(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    return {"info": info, "data": {"spans": []}}
