"""The differential suite's dataset: ~100 traces built deterministically, loaded both into real
MLflow and into OpenSearch, shaped to reach the corners of the filter language.

Everything is derived from one seed, so a failing case names the same traces on every run.
What the traces cover:

* experiments 1, 2, 3 and 11 (11 sorts before 2 as a string), states OK / ERROR / IN_PROGRESS
  (in-progress traces have no root span and no duration), two traces without any span;
* distinct timestamps over three UTC days (three daily indices) and groups of tied timestamps
  (the trace id breaks the tie);
* tags and metadata with unicode, both quote kinds, backslashes, ``%`` and ``_``, mixed case,
  dotted and non-ASCII keys, empty values, and keys missing from some traces;
* spans of several names, types and statuses with attributes (strings, numbers, booleans,
  dotted keys, unicode), token usage on LLM spans, exception events on failed spans;
* assessments: numeric, float, boolean, string, unicode and error-only feedback, NaN, string and
  structured expectations, overridden (invalid) ratings, and session-scoped feedback and expectations
  (``_add_session_assessments``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from tracestream.schemas.mlflow_keys import SpanAttributeKey, TraceMetadataKey, TraceTagKey
from tracestream.schemas.records import (
    AssessmentLogged,
    CompletedTrace,
    SpanEnded,
    SpanStatusCode,
    TraceState,
)
from tracestream.stream.derive import cost, price_spans
from tracestream.stream.prices import PriceTable

SEED = 20261122
TRACE_COUNT = 100
# 2026-11-22T08:13:32.365Z; the traces spread over this day and the next two.
START_MS = 1_795_335_212_365
DAY_MS = 86_400_000
# Experiments as MLflow numbers them in a fresh store (0 is its default experiment).
EXPERIMENTS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")
USED_EXPERIMENTS = ("1", "2", "3", "11")
LOCATIONS = ["0", *EXPERIMENTS]

TEAMS = (
    "care",
    "Care",
    "CARE",
    "billing",
    "équipe-ü",
    "Équipe-Ü",
    "naïve café",
    "日本語チーム",
    "ops_1",
    "opsX1",
)
NOTES = (
    "it's fine",
    'say "hi"',
    "C:\\temp\\new",
    "100%",
    "50% off",
    "a_b",
    "aXb",
    "tab\there",
    "line1\nline2",
    "",
    "trailing space ",
    "Grüße aus Köln",
    "pattern [a-z]+ (x|y)",
    "star * and ? mark",
    "<a@b.c> & #1 ~x",
    "ends with newline\n",
    "form\x0cfeed",
)
TRACE_NAMES = ("support_agent", "Support_Agent", "billing-flow", "résumé_builder", "chat.pipeline", None)
MODELS = ("gpt-4o", "gpt-4o-mini", "GPT-4O", "claude-3-5-sonnet", "llama-3-70b", "mistral-ü")
TIERS = ("gold", "Gold", "silver", "bronze", "plätinum")
QUALITIES = ("high", "low", "High", "médiocre", 'so "so"', "it's ok")
TOOLS = ("lookup_order", "issue_refund", "search_kb", "update_address")
# mlflow.llm.provider on LLM spans whose mlflow.llm.model is their "model" (the same text, so
# MLflow's loose span.attributes.model LIKE matches the same spans): priced by the stream as
# MLflow's server prices them (issue 21, item 4) by provider (any case), without one, with an
# unknown provider (found without it); "GPT-4O" and the others are not in MLflow's catalog (no cost).
PROVIDERS = ("openai", None, "OpenAI", "no-such-provider")
CLIENT_COST = {"input_cost": 0.001, "output_cost": 0.002, "total_cost": 0.003}
REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")


@dataclass(frozen=True)
class Ids:
    """Deterministic MLflow-shaped ids from one generator."""

    rng: random.Random

    def trace(self) -> str:
        return f"tr-{self.rng.getrandbits(128):032x}"

    def span(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def assessment(self) -> str:
        return f"a-{self.rng.getrandbits(128):032x}"


def _dump(value: Any) -> str:
    # As the SDK encodes attribute and assessment values: JSON, non-ASCII unescaped.
    return json.dumps(value, ensure_ascii=False)


def _span(
    trace_id: str,
    span_id: str,
    parent: str | None,
    name: str,
    span_type: str,
    start_ns: int,
    duration_ms: int,
    status: SpanStatusCode,
    attributes: dict[str, Any],
    experiment_id: str,
) -> SpanEnded:
    encoded = {
        SpanAttributeKey.TRACE_ID: _dump(trace_id),
        SpanAttributeKey.SPAN_TYPE: _dump(span_type),
        **{key: _dump(value) for key, value in attributes.items()},
    }
    end_ns = start_ns + duration_ms * 1_000_000
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "span_type": span_type,
        "start_time_ns": start_ns,
        "end_time_ns": end_ns,
        "status_code": status,
        "status_message": "provider failed: 429" if status == "ERROR" else "",
        "attributes": encoded,
        "events": [
            {
                "name": "exception",
                "time_ns": end_ns,
                "attributes": {"exception.type": "RateLimitError", "exception.message": "429 Too Many"},
            }
        ]
        if status == "ERROR"
        else [],
        "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": experiment_id},
    }


def _assessment(
    ids: Ids,
    trace_id: str,
    name: str,
    kind: str,
    value: Any,
    create_ms: int,
    **fields: Any,
) -> AssessmentLogged:
    logged: dict[str, Any] = {
        "assessment_id": ids.assessment(),
        "trace_id": trace_id,
        "name": name,
        "kind": kind,
        "value_json": None if value is None else _dump(value),
        "error": None,
        "source_type": "HUMAN",
        "source_id": "reviewer-1",
        "rationale": None,
        "metadata": {},
        "span_id": None,
        "create_time_ms": create_ms,
        "last_update_time_ms": None,
        "overrides": None,
        "valid": True,
    }
    logged.update(fields)
    return logged  # type: ignore[return-value]


def _timestamp(n: int) -> int:
    # Every fifth trace shares its timestamp with the one before (ties); the rest spread over
    # three days.
    if n % 5 == 4:
        n -= 1
    return START_MS + (n * 3 * DAY_MS) // TRACE_COUNT + (n % 7) * 1_000


def _state(n: int) -> TraceState:
    if n % 12 == 7:
        return "IN_PROGRESS"
    if n % 5 == 2:
        return "ERROR"
    return "OK"


def _children(
    ids: Ids, n: int, trace_id: str, root_id: str, start_ns: int, state: TraceState, exp: str
) -> tuple[list[SpanEnded], dict[str, int]]:
    spans: list[SpanEnded] = []
    usage_total = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    clock = start_ns + 1_000_000
    kinds = ("RETRIEVER", "LLM", "TOOL", "CHAT_MODEL")
    for index in range(1 + n % 4):
        kind = kinds[(n + index) % 4]
        duration = 5 + (n * 37 + index * 101) % 900
        attributes: dict[str, Any] = {}
        status: SpanStatusCode = "OK"
        if kind == "RETRIEVER":
            name = "retrieve" if n % 3 else "Retrieve"
            attributes[SpanAttributeKey.INPUTS] = {"query": f"where is order {n}? {TEAMS[n % len(TEAMS)]}"}
            attributes[SpanAttributeKey.OUTPUTS] = [{"page_content": f"doc {n} réponse 100% sûr"}]
            attributes["top_k"] = 3 + n % 3
            attributes["db.region"] = REGIONS[n % 3]
        elif kind in ("LLM", "CHAT_MODEL"):
            name = "chat" if (n + index) % 5 else "Chat"
            model = MODELS[(n // 2 + index) % len(MODELS)]
            prompt, completion = 50 + (n * 13) % 900, 10 + (n * 7) % 300
            usage = {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion}
            for key in usage_total:
                usage_total[key] += usage[key]
            attributes[SpanAttributeKey.INPUTS] = {
                "messages": [{"role": "user", "content": f'q{n}: it\'s "x"'}]
            }
            attributes[SpanAttributeKey.OUTPUTS] = {
                "choices": [{"message": {"content": f"answer_{n} 50% done"}}]
            }
            attributes[SpanAttributeKey.CHAT_USAGE] = usage
            attributes["model"] = model
            if n % 3 != 1:
                provider = PROVIDERS[(n + index) % len(PROVIDERS)]
                attributes[SpanAttributeKey.LLM_MODEL] = model
                if provider is not None:
                    attributes[SpanAttributeKey.LLM_PROVIDER] = provider
                if n % 10 == 3 and index == 0:
                    attributes[SpanAttributeKey.LLM_COST] = CLIENT_COST  # the client's: kept
            attributes["temperature"] = [0.2, 0.7, 1][n % 3]
            attributes["stream"] = n % 2 == 0
            if n % 6 == 1:
                # A later attribute mentioning another model: MLflow's loose span.attributes LIKE
                # matches it under "model".
                attributes["note"] = "fallback llama-3-70b"
            if n % 5 == 2 and index == 0:
                status = "ERROR"
            elif n % 9 == 4:
                status = "UNSET"
        else:
            name = TOOLS[(n // 4 + index) % len(TOOLS)]
            attributes[SpanAttributeKey.INPUTS] = {"order_id": f"A{1000 + n}", "path": "C:\\orders\\new"}
            attributes[SpanAttributeKey.OUTPUTS] = {"status": "ok" if n % 3 else "Ok", "detail": "naïve_tool"}
            attributes["tool.name"] = name
            attributes["retries"] = n % 4
            attributes["région"] = ["Zürich", "Genève", "Paris"][n % 3]
            if n % 7 == 3:
                status = "ERROR"
        if n % 8 == 5 and index == 0:
            name = "générer"
        spans.append(
            _span(trace_id, ids.span(), root_id, name, kind, clock, duration, status, attributes, exp)
        )
        clock += (duration + 1) * 1_000_000
    if state == "IN_PROGRESS":
        spans = [s for s in spans if s["status_code"] != "ERROR"]
    return spans, usage_total


def _tags(n: int, name: str | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    if name is not None:
        tags[TraceTagKey.TRACE_NAME] = name
    if n % 9 != 8:
        tags["env"] = ("prod", "prod", "staging", "dev", "Prod", "PROD")[n % 6]
    if n % 4 != 3:
        tags["team"] = TEAMS[n % len(TEAMS)]
    if n % 2 == 0:
        tags["note"] = NOTES[(n // 2) % len(NOTES)]
    if n % 3 == 0:
        tags["version"] = ("1.2.0", "1.10.3", "v2", "1.2.0-rc1")[(n // 3) % 4]
    if n % 5 == 1:
        tags["app.region"] = REGIONS[n % 3]
    if n % 6 == 5:
        tags["clé"] = "valeur" if n % 12 == 5 else "Valeur"
    if n % 10 == 3:
        tags["Env"] = "prod"
    if n % 11 == 4:
        tags["weird key"] = "x y"
    return tags


def _metadata(n: int, inputs: str, outputs: str, usage: dict[str, int]) -> dict[str, str]:
    metadata = {
        TraceMetadataKey.SCHEMA_VERSION: "3",
        TraceMetadataKey.INPUTS: inputs,
        TraceMetadataKey.OUTPUTS: outputs,
    }
    if n % 7 != 6:
        metadata[TraceMetadataKey.TRACE_USER] = f"user-{n % 9}"
    if n % 3 != 2:
        metadata[TraceMetadataKey.TRACE_SESSION] = f"session-{n % 8}"
    if n % 4 == 1:
        metadata[TraceMetadataKey.SOURCE_RUN] = f"run{n % 3}"
    if n % 2 == 1:
        metadata["customer_tier"] = TIERS[n % len(TIERS)]
    if n % 7 == 2:
        metadata["ticket"] = ("T-100%", "T_200", "t-300", "T\\400")[n % 4]
    if usage["total_tokens"]:
        metadata[TraceMetadataKey.TOKEN_USAGE] = json.dumps(usage)
    return metadata


def _assessments(
    ids: Ids, n: int, trace_id: str, end_ms: int, spans: list[SpanEnded]
) -> list[AssessmentLogged]:
    made: list[AssessmentLogged] = []
    at = end_ms + 1_000

    def add(name: str, kind: str, value: Any, **fields: Any) -> AssessmentLogged:
        assessment = _assessment(ids, trace_id, name, kind, value, at + len(made), **fields)
        made.append(assessment)
        return assessment

    if n % 3 == 0:
        if n % 9 == 0:
            old = add("rating", "FEEDBACK", 1 + (n + 2) % 5, valid=False)
            add("rating", "FEEDBACK", 1 + n % 5, overrides=old["assessment_id"], rationale="re-rated")
        else:
            add("rating", "FEEDBACK", 1 + n % 5)
    if n % 10 == 4:
        add("rating", "FEEDBACK", 3.5)
    if n % 4 == 1:
        add("correct", "FEEDBACK", n % 8 == 1)
    if n % 5 == 3:
        add("quality", "FEEDBACK", QUALITIES[n % len(QUALITIES)], source_type="LLM_JUDGE", source_id="judge")
    if n % 11 == 6:
        add(
            "judge",
            "FEEDBACK",
            None,
            error={"error_code": "RATE_LIMIT", "error_message": "judge busy"},
            source_type="LLM_JUDGE",
        )
    if n % 13 == 5:
        add("score", "FEEDBACK", float("nan"))
    if n % 6 == 2:
        add("expected_answer", "EXPECTATION", f"refund {n}% issued")
    if n % 8 == 3:
        add("expected_facts", "EXPECTATION", ["refund", f"order A{1000 + n}"])
    if n % 7 == 5:
        add("expected_score", "EXPECTATION", n % 4)
    if n % 10 == 9 and spans:
        add("grounded", "FEEDBACK", True, span_id=spans[-1]["span_id"])
    if n == 21:
        # Session-scoped: MLflow applies it to every trace of the session.
        add("session_quality", "FEEDBACK", "good", metadata={TraceMetadataKey.TRACE_SESSION: "session-5"})
    return made


def build_dataset(priced: bool = True) -> list[CompletedTrace]:
    """The traces as the stream completes them; with ``priced=False`` as the client sent them
    (MLflow's input): without the span costs and the trace cost the stream derives."""
    rng = random.Random(SEED)
    ids = Ids(rng)
    traces: list[CompletedTrace] = []
    for n in range(TRACE_COUNT):
        trace_id = ids.trace()
        exp = USED_EXPERIMENTS[n % len(USED_EXPERIMENTS)] if n % 10 else "11"
        state = _state(n)
        start_ms = _timestamp(n)
        start_ns = start_ms * 1_000_000
        root_id = ids.span()
        name = TRACE_NAMES[n % len(TRACE_NAMES)]
        spanless = n in (13, 58)
        children, usage = ([], {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0})
        if not spanless:
            children, usage = _children(ids, n, trace_id, root_id, start_ns, state, exp)
        question = {"question": f"where is my order {n}? «{TEAMS[n % len(TEAMS)]}»"}
        answer = {"answer": f"shipped_{n} 100%"}
        end_ns = max((s["end_time_ns"] for s in children), default=start_ns) + 2_000_000
        spans = list(children)
        duration_ms: int | None = (end_ns - start_ns) // 1_000_000
        if state == "IN_PROGRESS" or spanless:
            duration_ms = None if state == "IN_PROGRESS" else 0
        else:
            root_type = "AGENT" if n % 3 else "CHAIN"
            root = _span(
                trace_id,
                root_id,
                None,
                name or "anonymous",
                root_type,
                start_ns,
                duration_ms or 0,
                "ERROR" if state == "ERROR" else "OK",
                {
                    SpanAttributeKey.INPUTS: question,
                    SpanAttributeKey.OUTPUTS: answer,
                    # An ancestor with a cost: its priced children do not count in the trace's.
                    **({SpanAttributeKey.LLM_COST: CLIENT_COST} if n % 8 == 6 else {}),
                },
                exp,
            )
            spans = [root, *children]
        inputs, outputs = _dump(question), _dump(answer)
        end_ms = start_ms + (duration_ms or 0)
        metadata = _metadata(n, inputs, outputs, usage)
        if priced:
            spans, costs = price_spans(spans, PriceTable.bundled())
            if (trace_cost := cost(spans, costs)) is not None:
                metadata[TraceMetadataKey.COST] = trace_cost
        traces.append(
            {
                "trace_id": trace_id,
                "revision": 1,
                "info": {
                    "trace_id": trace_id,
                    "client_request_id": None if n % 4 == 2 else f"req-{n:03d}",
                    "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": exp},
                    "request_time_ms": start_ms,
                    "execution_duration_ms": duration_ms,
                    "state": state,
                    "request_preview": inputs,
                    "response_preview": None if state == "IN_PROGRESS" else outputs,
                    "tags": _tags(n, name),
                    "metadata": metadata,
                },
                "spans": spans,
                "assessments": _assessments(ids, n, trace_id, end_ms, children),
                "completed_time_ms": end_ms + 50,
            }
        )
    _add_session_assessments(traces)
    _add_links(traces)
    return traces


# ---------------------------------------------------------------- run and prompt links
# (issue 21, item 1.) MLflow's ``run_id =`` also matches a trace linked to the run
# (LinkTracesToRun), and ``prompt = 'name/version'`` matches the prompt versions linked to a trace
# (LinkPromptsToTrace). MLflow names the run it creates itself, so the filters say
# ``<<linked_run>>``: MLflow's side puts its run's id there, ours ``LINKED_RUN``.
#
# Traces 0, 7, 14, 28 and 35 (no source run) and 21 (source run run0) are linked to the run;
# prompt versions are linked as ``LINKED_PROMPTS`` says. Traces 0 and 7 also have the tag
# ``mlflow.linkedPrompts`` that MLflow's client writes beside each link; 16 and 33 were linked
# through the API alone, so only the link finds them. Trace 50 has the tag naming ``legacy/1``
# and no link (a deviation: MLflow searches links only).
LINKED_RUN = "5e1f0c2d9a8b4c7e8f6a1b2c3d4e5f60"
LINKED_TO_RUN = (0, 7, 14, 21, 28, 35)
LINKED_PROMPTS = {0: ["qa/1"], 7: ["qa/2", "summarize/1"], 16: ["qa/1"], 33: ["summarize/1"]}
TAGGED_PROMPT_LINKS = (0, 7)


def linked_trace_ids(traces: list[CompletedTrace]) -> list[str]:
    """The traces linked to the run (LinkTracesToRun)."""
    return [traces[n]["trace_id"] for n in LINKED_TO_RUN]


def linked_prompts(traces: list[CompletedTrace]) -> dict[str, list[str]]:
    """The prompt versions (``name/version``) linked to each trace that has some."""
    return {traces[n]["trace_id"]: versions for n, versions in LINKED_PROMPTS.items()}


def _add_links(traces: list[CompletedTrace]) -> None:
    for n in LINKED_TO_RUN:
        traces[n]["linked_run_ids"] = [LINKED_RUN]  # type: ignore[typeddict-unknown-key]  # v4
    for n, versions in LINKED_PROMPTS.items():
        traces[n]["linked_prompts"] = versions  # type: ignore[typeddict-unknown-key]  # v4
    for n in TAGGED_PROMPT_LINKS:
        named = (version.partition("/") for version in LINKED_PROMPTS[n])
        tag = [{"name": name, "version": number} for name, _, number in named]
        traces[n]["info"]["tags"][TraceTagKey.LINKED_PROMPTS] = json.dumps(tag)
    traces[50]["info"]["tags"][TraceTagKey.LINKED_PROMPTS] = json.dumps([{"name": "legacy", "version": "1"}])


# ---------------------------------------------------------------- session-scoped assessments
# (issue 21, item 2.) MLflow applies an assessment whose metadata has ``mlflow.trace.session`` to
# every trace, in the searched experiments, of the session of the trace it was logged on. Added
# after the main loop, with ids from a generator of their own, so the traces above keep theirs.
#
# ``conversation`` (feedback): trace 1 (session-1, experiment 2) "resolved"; trace 9 (session-1)
# "escalated", not session-scoped; trace 10 (session-2) "escalated"; trace 3 (session-3)
# "resolved" overridden (invalid) by "unresolved"; trace 4 (session-4) "resolved" with
# metadata naming session-6 (the trace's own session counts); trace 2 (no session) "resolved"
# naming session-2 (its own trace only). ``conversation_score`` (feedback): trace 6 (session-6)
# 4, trace 7 (session-7) 1.5, trace 22 (session-6) 2 not session-scoped.
# ``conversation_goal`` (expectation): trace 12 (session-4) "refund".
SESSION_ASSESSMENT_SEED = SEED + 21


def _add_session_assessments(traces: list[CompletedTrace]) -> None:
    ids = Ids(random.Random(SESSION_ASSESSMENT_SEED))

    def add(n: int, name: str, kind: str, value: Any, session: str | None, **fields: Any) -> AssessmentLogged:
        trace = traces[n]
        at = trace["info"]["request_time_ms"] + (trace["info"]["execution_duration_ms"] or 0) + 5_000
        metadata = {} if session is None else {TraceMetadataKey.TRACE_SESSION: session}
        made = _assessment(
            ids,
            trace["trace_id"],
            name,
            kind,
            value,
            at + len(trace["assessments"]),
            metadata=metadata,
            **fields,
        )
        trace["assessments"].append(made)
        return made

    add(1, "conversation", "FEEDBACK", "resolved", "session-1")
    add(9, "conversation", "FEEDBACK", "escalated", None)
    add(10, "conversation", "FEEDBACK", "escalated", "session-2")
    old = add(3, "conversation", "FEEDBACK", "resolved", "session-3", valid=False)
    add(3, "conversation", "FEEDBACK", "unresolved", "session-3", overrides=old["assessment_id"])
    add(4, "conversation", "FEEDBACK", "resolved", "session-6")
    add(2, "conversation", "FEEDBACK", "resolved", "session-2")
    add(6, "conversation_score", "FEEDBACK", 4, "session-6")
    add(7, "conversation_score", "FEEDBACK", 1.5, "session-7")
    add(22, "conversation_score", "FEEDBACK", 2, None)
    add(12, "conversation_goal", "EXPECTATION", "refund", "session-4")


def default_order(traces: list[CompletedTrace], ids: set[str]) -> list[str]:
    """``ids`` in MLflow's default order: timestamp descending, then trace id ascending."""
    chosen = [t for t in traces if t["trace_id"] in ids]
    chosen.sort(key=lambda t: (-t["info"]["request_time_ms"], t["trace_id"]))
    return [t["trace_id"] for t in chosen]
