"""The in-memory filter backend: microseconds per evaluation of a compiled filter against one
completed trace, and for 100 rules against one trace (what the stream's alert rules will cost).

    .venv/bin/python bench/predicate.py [--traces 200] [--rounds 20]          (no servers needed)

Traces are the search benchmark's agent traces (3-6 spans, 100-800 bytes of inputs/outputs each,
``schemas.samples.completed_trace``). Each trace's searched fields are built once
(``indexer.document.searched_fields``: the per-trace cost, shared by every rule, measured as its
own row); each filter is compiled once (``indexer.predicate.compile_filter``) and then timed call
by call over every trace, ``--rounds`` times. "100 rules" is 100 compiled filters (the typical
filters below with varied values, as a team's rule file would hold) evaluated against one trace,
timed as a whole per trace. Prints a table, then as its last line one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracestream.indexer.document import searched_fields  # noqa: E402
from tracestream.indexer.predicate import Predicate, compile_filter  # noqa: E402
from tracestream.schemas.samples import completed_trace  # noqa: E402
from tracestream.search_api.dsl import parse_filter  # noqa: E402

MAX_CONTENT_BYTES = 131_072
START_MS = 1_763_424_000_000
TYPICAL_FILTERS: list[tuple[str, str]] = [
    ("status", "attributes.status = 'ERROR'"),
    ("tag + status", "tags.env = 'prod' AND status = 'OK'"),
    ("metadata", "metadata.`mlflow.trace.user` = 'user-7'"),
    ("LIKE tag", "tags.version LIKE '1.%'"),
    ("ILIKE name", "name ILIKE '%SUPPORT%'"),
    ("RLIKE tag", "tags.version RLIKE '^1\\.[0-9]+\\.0$'"),
    ("full text", "trace.text LIKE '%A1234%'"),
    ("same span", "span.type = 'TOOL' AND span.status = 'ERROR'"),
    ("slow LLM span", "span.type = 'CHAT_MODEL' AND span.duration_ms > 300"),
    ("span attribute", "span.attributes.model LIKE '%sonnet%'"),
    ("feedback", "feedback.rating <= 2"),
    ("token usage", "total_tokens > 2000 AND execution_time_ms > 300"),
    ("OR / NOT", "(tags.env = 'prod' OR tags.env = 'staging') AND NOT status = 'OK'"),
    (
        "realistic mix",
        "tags.env = 'prod' AND span.type = 'CHAT_MODEL' AND span.attributes.model ILIKE '%mini%' "
        "AND timestamp_ms > 1763424000000 AND feedback.rating < 3",
    ),
]


def rules(count: int, rng: random.Random) -> list[str]:
    """``count`` rule filters: the typical filters with other values, as a rule file holds them."""
    variants = [
        lambda: (
            f"span.name = '{rng.choice(['search_kb', 'issue_refund', 'lookup_order'])}' "
            "AND span.status = 'ERROR'"
        ),
        lambda: f"tags.service = 'support-bot' AND execution_time_ms > {rng.randrange(200, 2000)}",
        lambda: (
            f"metadata.`mlflow.trace.user` = 'user-{rng.randrange(100)}' "
            f"AND total_tokens > {rng.randrange(1000, 5000)}"
        ),
        lambda: f"status = 'ERROR' OR feedback.rating <= {rng.randrange(1, 3)}",
        lambda: f"span.type = 'CHAT_MODEL' AND span.duration_ms > {rng.randrange(100, 1000)}",
        lambda: (
            f"tags.env = '{rng.choice(['prod', 'staging'])}' "
            f"AND name LIKE '%{rng.choice(['agent', 'flow'])}%'"
        ),
        lambda: f"span.attributes.model ILIKE '%{rng.choice(['gpt', 'claude', 'mini'])}%'",
        lambda: "NOT tags.env = 'prod' AND span.status = 'ERROR'",
    ]
    return [rng.choice(variants)() for _ in range(count)]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_calls(predicate: Predicate, documents: list[dict[str, object]], rounds: int) -> list[float]:
    """Microseconds per call, call by call, minus the timer's own cost."""
    clock = time.perf_counter_ns
    overhead = min(-(clock() - clock()) for _ in range(1000))
    samples = []
    for _ in range(rounds):
        for document in documents:
            start = clock()
            predicate(document)
            samples.append((clock() - start - overhead) / 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rules", type=int, default=100)
    args = parser.parse_args()

    rng = random.Random(20)
    traces = [
        completed_trace(
            rng,
            request_time_ms=START_MS + n * 1000,
            min_spans=3,
            max_spans=6,
            min_io_bytes=100,
            max_io_bytes=800,
        )
        for n in range(args.traces)
    ]
    build_samples = []
    documents = []
    for trace in traces:
        start = time.perf_counter_ns()
        documents.append(searched_fields(trace, MAX_CONTENT_BYTES))
        build_samples.append((time.perf_counter_ns() - start) / 1000)

    gc.collect()
    gc.disable()  # a collection inside a timed call is not the predicate's cost
    print(f"python {platform.python_version()}, {args.traces} traces of 3-6 spans, {args.rounds} rounds")
    print(f"  {'filter':<16}  compile     eval p50   eval p99   matched")
    per_filter: dict[str, list[float]] = {}
    for label, text in TYPICAL_FILTERS:
        node = parse_filter(text)
        start = time.perf_counter_ns()
        predicate = compile_filter(node)
        compile_us = (time.perf_counter_ns() - start) / 1000
        samples = time_calls(predicate, documents, args.rounds)
        per_filter[label] = samples
        matched = sum(predicate(d) for d in documents) / len(documents)
        print(
            f"  {label:<16}  {compile_us:6.1f} us  {percentile(samples, 0.5):6.2f} us  "
            f"{percentile(samples, 0.99):6.2f} us  {matched:6.0%}"
        )

    rule_predicates = [compile_filter(parse_filter(text)) for text in rules(args.rules, rng)]

    def all_rules(document: dict[str, object]) -> bool:
        fired = False
        for predicate in rule_predicates:
            fired |= predicate(document)
        return fired

    rule_samples = time_calls(all_rules, documents, args.rounds)
    gc.enable()
    every = [s for samples in per_filter.values() for s in samples]
    rules_p50, rules_p99 = percentile(rule_samples, 0.5), percentile(rule_samples, 0.99)
    print(
        f"  {args.rules} rules, one trace: p50 {rules_p50:.1f} us, p99 {rules_p99:.1f} us "
        f"({rules_p50 / args.rules:.2f} us a rule)"
    )
    print(
        f"  searched fields of a trace (once per trace, shared by every rule): "
        f"p50 {percentile(build_samples, 0.5):.1f} us, p99 {percentile(build_samples, 0.99):.1f} us"
    )
    slowest = max(per_filter, key=lambda label: percentile(per_filter[label], 0.5))
    figures = {
        "filters": len(TYPICAL_FILTERS),
        "traces": args.traces,
        "us_per_eval_p50": round(percentile(every, 0.5), 2),
        "us_per_eval_p99": round(percentile(every, 0.99), 2),
        "slowest_filter": slowest,
        "slowest_filter_us_per_eval_p50": round(percentile(per_filter[slowest], 0.5), 2),
        "rules": args.rules,
        "us_per_trace_all_rules_p50": round(rules_p50, 1),
        "us_per_trace_all_rules_p99": round(rules_p99, 1),
        "us_per_rule_p50": round(rules_p50 / args.rules, 2),
        "us_per_trace_searched_fields_p50": round(percentile(build_samples, 0.5), 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
