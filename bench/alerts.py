"""Alert rules in the stream: microseconds per rule per completed trace in the pure evaluator
(``stream.rules.RuleEngine.observe``), for 20 and 100 rules.

    .venv/bin/python bench/alerts.py [--traces 2000] [--rounds 3]          (no servers needed)

Rules are bench/predicate.py's typical filters with varied values, under the five conditions in
turn (every, count, ratio, p95, token sum; windows of 1-10 minutes) and half of them grouped (by
trace name, a tag or the user). Traces are the search benchmark's agent traces
(``schemas.samples.completed_trace``), each observed once as a first revision at 1 ms intervals,
so windows fill, slide and fire as in a stream. Each trace's searched fields are built once
beforehand (measured in bench/predicate.py: shared by every rule, not a per-rule cost). The
``filters`` column is the part of a rule's cost that is its filter: every distinct filter run once
on each trace, alone (the evaluator runs each once for all rules sharing it, and only as far as
needed). Prints a table, then as its last line one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from predicate import MAX_CONTENT_BYTES, START_MS, rules  # noqa: E402

from tracestream.indexer.document import searched_fields  # noqa: E402
from tracestream.schemas.samples import completed_trace  # noqa: E402
from tracestream.stream.rules import RuleEngine, facts_of, parse_rules  # noqa: E402

CONDITIONS = [
    {"condition": "every"},
    {"condition": "count", "threshold": 50, "window": "5m"},
    {"condition": "ratio", "threshold": 5, "min_count": 20, "window": "5m"},
    {"condition": "percentile", "percentile": 95, "threshold": 8000, "window": "10m"},
    {"condition": "sum", "field": "tokens", "threshold": 200_000, "window": "1m"},
]
GROUPS = [None, "name", None, "tags.env", None, "metadata.mlflow.trace.user"]


def rule_tables(count: int, rng: random.Random) -> list[dict[str, object]]:
    tables = []
    for n, text in enumerate(rules(count, rng)):
        table: dict[str, object] = {"name": f"rule-{n}", "filter": text, **CONDITIONS[n % len(CONDITIONS)]}
        group = GROUPS[n % len(GROUPS)]
        if group is not None:
            table["group_by"] = group
        tables.append(table)
    return tables


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(20)
    traces = [
        completed_trace(
            rng, min_spans=3, max_spans=6, min_io_bytes=100, max_io_bytes=800, request_time_ms=START_MS
        )
        for _ in range(args.traces)
    ]
    inputs = [(facts_of(t), searched_fields(t, MAX_CONTENT_BYTES)) for t in traces]
    print(f"alert rules: {args.traces} traces, {args.rounds} rounds, us per trace for all rules")
    print(f"  {'rules':>5}  {'p50/trace':>10}  {'p99/trace':>10}  {'p50/rule':>9}  ", end="")
    print(f"{'filters':>9}  {'alerts':>7}")
    figures: dict[str, object] = {"traces": args.traces}
    for count in (20, 100):
        tables = rule_tables(count, random.Random(count))
        samples: list[float] = []
        alerts = 0
        # The filters alone: each distinct one (rules with equal filters share it) once a trace.
        parsed = parse_rules({"rule": tables}).rules
        filters = list({id(rule.predicate): rule.predicate for rule in parsed}.values())
        filter_samples: list[float] = []
        for _ in range(args.rounds):
            for _, document in inputs:
                started = time.perf_counter_ns()
                for predicate in filters:
                    predicate(document)
                filter_samples.append((time.perf_counter_ns() - started) / 1000)
        for _ in range(args.rounds):
            engine = RuleEngine(parse_rules({"rule": tables}).rules)
            gc.collect()
            gc.disable()
            now = START_MS
            for facts, document in inputs:
                now += 1
                started = time.perf_counter_ns()
                outcome, _ = engine.observe(facts, document, 0, now)
                samples.append((time.perf_counter_ns() - started) / 1000)
                alerts += len(outcome.alerts)
            gc.enable()
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        filters_p50 = percentile(filter_samples, 0.5)
        print(
            f"  {count:>5}  {p50:>7.1f} us  {p99:>7.1f} us  {p50 / count:>6.2f} us  "
            f"{filters_p50 / count:>6.2f} us  {alerts // args.rounds:>7}"
        )
        figures[f"us_per_trace_{count}_rules_p50"] = round(p50, 1)
        figures[f"us_per_trace_{count}_rules_p99"] = round(p99, 1)
        figures[f"us_per_rule_{count}_rules_p50"] = round(p50 / count, 2)
        figures[f"distinct_filters_{count}_rules"] = len(filters)
        figures[f"us_per_rule_{count}_rules_filters_only_p50"] = round(filters_p50 / count, 2)
        figures[f"alerts_per_round_{count}_rules"] = alerts // args.rounds
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
