"""Parse + translate time of the filter DSL per filter: MLflow filter string -> AST -> OpenSearch query.

    .venv/bin/python bench/dsl.py [--reps 2000] [--rounds 5]          (no servers needed)

Each typical filter (a mix of what users write: status, time ranges, tags, metadata, LIKE/ILIKE/
RLIKE, full text, same-span pairs, assessments, OR/NOT, token usage) is parsed and translated
``--reps`` times per round, in ``--rounds`` rounds interleaved across filters, with the order_by
clauses the API adds (MLflow's default tie-breakers). The parser's result cache is bypassed:
every measured parse is a cold parse, as for a filter the service has not seen before.

Columns: parse only (the baseline), parse + translate (``to_query`` and ``to_sort``), and the
translation's share. Times are per filter, in microseconds, p50 and p99 over all repetitions.
The target is < 200 us per typical filter (p50). Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracestream.indexer.query import to_query, to_sort  # noqa: E402
from tracestream.search_api.dsl import parse_order_by, with_default_order  # noqa: E402
from tracestream.search_api.dsl.parser import _parse_filter_cached  # noqa: E402

# The parser's uncached entry point: parse_filter memoizes strings it has seen.
parse_uncached: Callable[[str], object] = _parse_filter_cached.__wrapped__  # type: ignore[attr-defined]

TARGET_US = 200.0
TYPICAL_FILTERS: list[tuple[str, str]] = [
    ("status", "attributes.status = 'ERROR'"),
    ("time range", "timestamp_ms >= 1795335212365 AND timestamp_ms < 1795421612365"),
    ("tag + status", "tags.env = 'prod' AND status = 'OK'"),
    ("metadata", "metadata.`mlflow.trace.user` = 'user-8812'"),
    ("LIKE tag", "tags.version LIKE '1.2%'"),
    ("ILIKE name", "name ILIKE '%support%'"),
    ("RLIKE tag", "tags.version RLIKE '^1\\.[0-9]+\\.0$'"),
    ("full text", "trace.text LIKE '%refund%'"),
    ("same span", "span.type = 'LLM' AND span.status = 'ERROR'"),
    ("span attribute", "span.attributes.model LIKE '%gpt-4o%'"),
    ("feedback", "feedback.rating >= 4 AND feedback.correct = 'true'"),
    ("token usage", "total_tokens > 1000 AND execution_time_ms > 2000"),
    ("OR / NOT", "(tags.env = 'prod' OR tags.env = 'staging') AND NOT status = 'OK'"),
    (
        "realistic mix",
        "tags.env = 'prod' AND span.type = 'CHAT_MODEL' AND span.attributes.model ILIKE '%mini%' "
        "AND timestamp_ms > 1795335212365 AND feedback.rating < 3",
    ),
]
ORDER_BY = ["timestamp_ms DESC"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def parse_only(text: str) -> None:
    parse_uncached(text)
    parse_order_by(ORDER_BY)


def parse_and_translate(text: str) -> None:
    node = parse_uncached(text)
    to_query(node)  # type: ignore[arg-type]
    to_sort(with_default_order(parse_order_by(ORDER_BY)))


def timed(work: Callable[[str], None], text: str, reps: int) -> list[float]:
    """Microseconds per call, one sample per call."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(reps):
        start = clock()
        work(text)
        samples.append((clock() - start) / 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=2000, help="calls per filter and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    for _, text in TYPICAL_FILTERS:  # warm up (imports, regex caches) and check every filter works
        parse_and_translate(text)
    parse_samples: dict[str, list[float]] = {label: [] for label, _ in TYPICAL_FILTERS}
    full_samples: dict[str, list[float]] = {label: [] for label, _ in TYPICAL_FILTERS}
    gc.disable()  # collections would land on random filters; each round collects once instead
    try:
        for _ in range(args.rounds):
            for label, text in TYPICAL_FILTERS:
                parse_samples[label] += timed(parse_only, text, args.reps)
                full_samples[label] += timed(parse_and_translate, text, args.reps)
            gc.collect()
    finally:
        gc.enable()

    width = max(len(label) for label, _ in TYPICAL_FILTERS)
    print(
        f"bench/dsl.py: {len(TYPICAL_FILTERS)} typical filters, {args.rounds} x {args.reps} cold "
        f"parses each, Python {platform.python_version()}"
    )
    print(f"  {'filter':<{width}}  parse p50  parse p99  +translate p50  +translate p99  translate share")
    for label, _ in TYPICAL_FILTERS:
        p50, p99 = percentile(parse_samples[label], 0.5), percentile(parse_samples[label], 0.99)
        f50, f99 = percentile(full_samples[label], 0.5), percentile(full_samples[label], 0.99)
        share = (f50 - p50) / f50 if f50 else 0.0
        print(
            f"  {label:<{width}}  {p50:7.1f} us {p99:7.1f} us  {f50:11.1f} us  {f99:11.1f} us  {share:14.0%}"
        )
    every_parse = [s for samples in parse_samples.values() for s in samples]
    every_full = [s for samples in full_samples.values() for s in samples]
    per_filter_p50 = {label: percentile(samples, 0.5) for label, samples in full_samples.items()}
    slowest = max(per_filter_p50, key=per_filter_p50.__getitem__)
    figures = {
        "filters": len(TYPICAL_FILTERS),
        "samples_per_filter": args.reps * args.rounds,
        "parse_p50_us": round(percentile(every_parse, 0.5), 1),
        "parse_p99_us": round(percentile(every_parse, 0.99), 1),
        "parse_translate_p50_us": round(percentile(every_full, 0.5), 1),
        "parse_translate_p99_us": round(percentile(every_full, 0.99), 1),
        "slowest_filter_parse_translate_p50_us": round(per_filter_p50[slowest], 1),
        "slowest_filter": slowest,
        "target_p50_us": TARGET_US,
        "filters_over_target": sum(1 for v in per_filter_p50.values() if v >= TARGET_US),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
