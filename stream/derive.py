"""Assembling a CompletedTrace from its events, with MLflow's derived trace fields.

Pure functions (no Kafka, no Faust), so they are tested directly, and against MLflow itself
on a shared fixture (tests/fixtures/mlflow_parity).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from tracestream.schemas import SpanAttributeKey, TraceMetadataKey, TraceTagKey
from tracestream.schemas.mlflow_format import derive_from_root, mlflow_info_dict, mlflow_span_dict
from tracestream.schemas.records import (
    AssessmentLogged,
    CompletedTrace,
    SpanEnded,
    TraceEnded,
    TraceInfo,
    TraceLocation,
)
from tracestream.stream.prices import PriceTable

TOKEN_KEYS = ("input_tokens", "output_tokens", "total_tokens")
CACHE_TOKEN_KEYS = (
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_input_tokens_above_1hr",
)
COST_KEYS = ("input_cost", "output_cost", "total_cost")
DEFAULT_LOCATION: TraceLocation = {"type": "MLFLOW_EXPERIMENT", "experiment_id": None}


# ---------------------------------------------------------------- usage and cost


def _attribute(span: SpanEnded, key: str) -> Any:
    raw = span["attributes"].get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def aggregate_over_tree(
    spans: list[SpanEnded],
    key: str,
    keys: tuple[str, ...],
    default: float,
    optional_keys: tuple[str, ...] = (),
    parsed: dict[str, dict[str, Any]] | None = None,
) -> dict[str, float] | None:
    """MLflow's aggregation: sum ``key`` over the span tree, counting a span only when no
    ancestor has it (so roll-ups are not counted twice). None when no span has it. ``parsed``:
    values already at hand by span id (not read from the attribute again)."""
    if parsed:
        data = {
            span["span_id"]: parsed[span["span_id"]] if span["span_id"] in parsed else _attribute(span, key)
            for span in spans
        }
    else:
        data = {span["span_id"]: _attribute(span, key) for span in spans}
    children: defaultdict[str, list[str]] = defaultdict(list)
    roots = []
    for span in spans:
        parent = span["parent_span_id"]
        if parent and parent in data:
            children[parent].append(span["span_id"])
        else:
            roots.append(span["span_id"])
    totals: dict[str, float] = dict.fromkeys(keys, default)
    found = False
    stack = [(span_id, False) for span_id in roots]
    while stack:
        span_id, ancestor_has = stack.pop()
        value = data[span_id]
        if value is not None and not ancestor_has:
            for k in keys:
                totals[k] += value.get(k, default)
            for k in optional_keys:
                if k in value:
                    totals[k] = totals.get(k, default) + value[k]
            found = True
        stack.extend((child, ancestor_has or value is not None) for child in children.get(span_id, ()))
    return totals if found else None


def token_usage(spans: list[SpanEnded]) -> str | None:
    """``mlflow.trace.tokenUsage``, as MLflow writes it (``json.dumps`` of the totals)."""
    totals = aggregate_over_tree(spans, SpanAttributeKey.CHAT_USAGE, TOKEN_KEYS, 0, CACHE_TOKEN_KEYS)
    return None if totals is None else json.dumps(totals)


def cost(spans: list[SpanEnded], priced: dict[str, dict[str, float]] | None = None) -> str | None:
    """``mlflow.trace.cost``, aggregated like token usage (``priced``: the costs :func:`price_spans`
    derived, by span id)."""
    totals = aggregate_over_tree(spans, SpanAttributeKey.LLM_COST, COST_KEYS, 0.0, parsed=priced)
    return None if totals is None else json.dumps(totals)


def _json(attributes: dict[str, Any], key: str) -> Any:
    return json.loads(attributes[key])


def price_spans(
    spans: list[SpanEnded], prices: PriceTable
) -> tuple[list[SpanEnded], dict[str, dict[str, float]]]:
    """The spans with ``mlflow.llm.cost`` where MLflow's server adds it when storing them (a
    span with ``mlflow.llm.model`` and ``mlflow.chat.tokenUsage`` and no ``mlflow.llm.cost``
    key), and those costs by span id. Other spans, and the list when nothing is priced, are
    the very objects given."""
    priced: dict[str, dict[str, float]] = {}
    result = spans
    for index, span in enumerate(spans):
        attributes = span["attributes"]
        if (
            SpanAttributeKey.LLM_MODEL not in attributes
            or SpanAttributeKey.CHAT_USAGE not in attributes
            or SpanAttributeKey.LLM_COST in attributes
        ):
            continue
        try:  # MLflow sets no cost when any of them is not JSON
            usage = _json(attributes, SpanAttributeKey.CHAT_USAGE)
            model = _json(attributes, SpanAttributeKey.LLM_MODEL)
            provider = (
                _json(attributes, SpanAttributeKey.LLM_PROVIDER)
                if SpanAttributeKey.LLM_PROVIDER in attributes
                else None
            )
        except (TypeError, ValueError):
            continue
        span_cost = prices.span_cost(model, usage, provider)
        if span_cost is None:
            continue
        if result is spans:
            result = list(spans)
        # As MLflow's dump_span_attribute_value writes it, after the span's own attributes.
        result[index] = {
            **span,
            "attributes": {**attributes, SpanAttributeKey.LLM_COST: json.dumps(span_cost)},
        }
        priced[span["span_id"]] = span_cost
    return result, priced


# ---------------------------------------------------------------- sizes


def _percentile(sorted_sizes: list[int], q: float) -> float:
    index = q * (len(sorted_sizes) - 1)
    lower = int(index)
    upper = lower + 1
    if upper >= len(sorted_sizes):
        return sorted_sizes[-1]
    weight = index - lower
    return sorted_sizes[lower] * (1 - weight) + sorted_sizes[upper] * weight


def size_stats(spans: list[SpanEnded], info: TraceInfo) -> tuple[str, str] | None:
    """``mlflow.trace.sizeStats`` and ``mlflow.trace.sizeBytes`` by MLflow's formula: the JSON size
    of each span, plus the trace without spans, plus the ", " between spans."""
    if not spans:
        return None
    sizes = [len(json.dumps(mlflow_span_dict(span)).encode()) for span in spans]
    empty_trace = json.dumps({"info": mlflow_info_dict(info), "data": {"spans": []}})
    total = sum(sizes) + len(empty_trace.encode()) + 2 * (len(sizes) - 1)
    ordered = sorted(sizes)
    stats = {
        "total_size_bytes": total,
        "num_spans": len(sizes),
        "max": ordered[-1],
        "p25": int(_percentile(ordered, 0.25)),
        "p50": int(_percentile(ordered, 0.50)),
        "p75": int(_percentile(ordered, 0.75)),
    }
    return json.dumps(stats), str(total)


# ---------------------------------------------------------------- assessments


def resolve_assessments(assessments: Iterable[AssessmentLogged]) -> list[AssessmentLogged]:
    """Deduplicated by id (delivery is at least once), ordered by creation; an assessment that
    another overrides is marked invalid, and an override without a name takes the old one's."""
    by_id: dict[str, AssessmentLogged] = {}
    for assessment in assessments:
        by_id.setdefault(assessment["assessment_id"], assessment)
    overridden = {a["overrides"] for a in by_id.values() if a["overrides"]}
    resolved = []
    for assessment in sorted(by_id.values(), key=lambda a: (a["create_time_ms"], a["assessment_id"])):
        changes: dict[str, Any] = {}
        if assessment["assessment_id"] in overridden:
            changes["valid"] = False
        if not assessment["name"] and assessment["overrides"] in by_id:
            changes["name"] = by_id[assessment["overrides"]]["name"]
        resolved.append({**assessment, **changes} if changes else assessment)  # type: ignore[arg-type]
    return resolved


# ---------------------------------------------------------------- the trace


def _root(spans: list[SpanEnded], ended: TraceEnded | None) -> SpanEnded | None:
    if ended is not None and ended["root_span_id"]:
        for span in spans:
            if span["span_id"] == ended["root_span_id"]:
                return span
    ids = {span["span_id"] for span in spans}
    roots = [s for s in spans if s["parent_span_id"] is None or s["parent_span_id"] not in ids]
    true_roots = [s for s in roots if s["parent_span_id"] is None]
    candidates = true_roots or roots
    return min(candidates, key=lambda s: s["start_time_ns"]) if candidates else None


def assemble(
    trace_id: str,
    revision: int,
    spans: list[SpanEnded],
    ended: TraceEnded | None,
    assessments: Iterable[AssessmentLogged] = (),
    tags_set: dict[str, str] | None = None,
    tags_deleted: Iterable[str] = (),
    incomplete: bool = False,
    now_ms: int = 0,
    prices: PriceTable | None = None,
    linked_run_ids: Sequence[str] = (),
    linked_prompts: Sequence[str] = (),
) -> CompletedTrace:
    """The completed trace, with MLflow's trace-level fields derived from its spans, and the
    cost of spans that have a model and token usage but no cost, priced from ``prices`` (the
    shipped table when None), as MLflow's server prices the spans it stores."""
    spans = sorted(spans, key=lambda s: (s["start_time_ns"], s["span_id"]))
    root = _root(spans, ended)

    if ended is not None:
        state = ended["state"]
        request_time_ms = ended["request_time_ms"]
        duration = ended["execution_duration_ms"]
        location = ended["location"]
        tags = dict(ended["tags"])
        metadata = dict(ended["metadata"])
        request_preview = ended["request_preview"]
        response_preview = ended["response_preview"]
        client_request_id = ended["client_request_id"]
    else:
        # The root never reported its end: the trace is still in progress as far as we know.
        state = "IN_PROGRESS"
        request_time_ms = (root or spans[0])["start_time_ns"] // 1_000_000 if spans else now_ms
        duration = None
        location = spans[0]["location"] if spans else DEFAULT_LOCATION
        tags, metadata = {}, {}
        request_preview = response_preview = client_request_id = None
    if root is not None:
        tags.setdefault(TraceTagKey.TRACE_NAME, root["name"])
        request_preview, response_preview = derive_from_root(
            root["attributes"], metadata, request_preview, response_preview
        )
    tags.update(tags_set or {})
    for key in tags_deleted:
        tags.pop(key, None)

    usage = token_usage(spans)
    if usage is not None:
        metadata[TraceMetadataKey.TOKEN_USAGE] = usage

    info: TraceInfo = {
        "trace_id": trace_id,
        "client_request_id": client_request_id,
        "location": location,
        "request_time_ms": request_time_ms,
        "execution_duration_ms": duration,
        "state": state,
        "request_preview": request_preview,
        "response_preview": response_preview,
        "tags": tags,
        "metadata": metadata,
    }
    # Sizes first, as MLflow computes them: before the cost (added by its store, to the spans
    # too) and the size keys themselves are in the metadata.
    sizes = size_stats(spans, info)
    if sizes is not None:
        metadata[TraceMetadataKey.SIZE_STATS], metadata[TraceMetadataKey.SIZE_BYTES] = sizes
    spans, priced = price_spans(spans, PriceTable.bundled() if prices is None else prices)
    total_cost = cost(spans, priced)
    if total_cost is not None:
        metadata[TraceMetadataKey.COST] = total_cost
    if incomplete:
        metadata[TraceMetadataKey.INCOMPLETE] = "true"
    return {
        "trace_id": trace_id,
        "revision": revision,
        "info": info,
        "spans": spans,
        "assessments": resolve_assessments(assessments),
        "completed_time_ms": now_ms,
        "linked_run_ids": list(linked_run_ids),
        "linked_prompts": list(linked_prompts),
    }


def failed_spans(trace: CompletedTrace) -> list[dict[str, Any]]:
    """The spans of a trace that ended in ERROR, for its alert."""
    failed = []
    for span in trace["spans"]:
        if span["status_code"] != "ERROR":
            continue
        types = [
            str(e["attributes"].get("exception.type"))
            for e in span["events"]
            if e["name"] == "exception" and "exception.type" in e["attributes"]
        ]
        failed.append(
            {
                "span_id": span["span_id"],
                "name": span["name"],
                "status_message": span["status_message"],
                "exception_types": types,
            }
        )
    return failed
