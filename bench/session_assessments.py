"""Session-scoped assessments at search time: what a session of 1,000 traces costs a filter.

    .venv/bin/python bench/session_assessments.py [--others 10000] [--reps 30]      (needs infra/up)

Data: one session of 1,000 traces with one session-scoped feedback ``conversation = 'resolved'``
logged on one of them, and ``--others`` traces in sessions of 10, a tenth of those sessions with a
session-scoped ``conversation = 'escalated'``, every trace also a plain feedback ``direct``.
Written through the indexer's write path into a private index prefix, dropped at the end.

Each filter runs ``--reps`` times after a warm-up through ``TraceSearch.search`` (100 traces a page,
spans not included): the session lookup (one composite aggregation) and the main query. The
baseline is a plain feedback filter over the same traces.

Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracestream.indexer import IndexNames, build_document, ensure_index_template, opensearch_client  # noqa: E402
from tracestream.indexer.store import TraceWriter  # noqa: E402
from tracestream.schemas.mlflow_keys import TraceMetadataKey  # noqa: E402
from tracestream.schemas.records import CompletedTrace  # noqa: E402
from tracestream.schemas.samples import completed_trace  # noqa: E402
from tracestream.search_api.search import TraceSearch  # noqa: E402
from tracestream.settings import Settings  # noqa: E402

START_MS = 1_763_424_000_000


def _feedback(trace: CompletedTrace, name: str, value: str, session: str | None) -> None:
    trace["assessments"].append(
        {
            "assessment_id": f"a-{uuid.uuid4().hex}",
            "trace_id": trace["trace_id"],
            "name": name,
            "kind": "FEEDBACK",
            "value_json": json.dumps(value),
            "error": None,
            "source_type": "HUMAN",
            "source_id": "bench",
            "rationale": None,
            "metadata": {} if session is None else {TraceMetadataKey.TRACE_SESSION: session},
            "span_id": None,
            "create_time_ms": trace["info"]["request_time_ms"] + 1,
            "last_update_time_ms": None,
            "overrides": None,
            "valid": True,
        }  # type: ignore[typeddict-item]
    )


def dataset(others: int) -> list[CompletedTrace]:
    rng = random.Random(21)
    traces = []
    for n in range(1_000 + others):
        trace = completed_trace(rng, request_time_ms=START_MS + n * 1_000, min_spans=1, max_spans=2)
        session = "big" if n < 1_000 else f"s-{(n - 1_000) // 10}"
        trace["info"]["metadata"][TraceMetadataKey.TRACE_SESSION] = session
        _feedback(trace, "direct", "yes" if n % 2 else "no", None)
        if n == 500:
            _feedback(trace, "conversation", "resolved", "big")
        elif n >= 1_000 and (n - 1_000) % 100 == 0:
            _feedback(trace, "conversation", "escalated", session)
        traces.append(trace)
    return traces


FILTERS = [
    ("plain feedback (baseline)", "feedback.direct = 'yes'"),
    ("session feedback =, 1,000-trace session", "feedback.conversation = 'resolved'"),
    ("session feedback !=", "feedback.conversation != 'escalated'"),
    ("session feedback IS NULL", "feedback.conversation IS NULL"),
    ("session feedback IS NOT NULL", "feedback.conversation IS NOT NULL"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--others", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    base = Settings()
    settings = base.model_copy(
        update={
            "opensearch": base.opensearch.model_copy(
                update={"index_prefix": f"bench-sess-{uuid.uuid4().hex[:8]}"}
            )
        }
    )
    client = opensearch_client(settings)
    names = IndexNames.from_settings(settings)
    ensure_index_template(client, settings)
    try:
        traces = dataset(args.others)
        limit = settings.indexer.max_indexed_span_content_bytes
        started = time.perf_counter()
        report = TraceWriter(client, settings).write(
            [build_document(t, names, limit) for t in traces], wait=lambda _s: False
        )
        assert report.written == len(traces), report
        client.indices.refresh(index=names.read_alias)
        print(f"{len(traces):,} traces loaded in {time.perf_counter() - started:.1f} s")
        search = TraceSearch(client, settings)
        rows = []
        for label, text in FILTERS:
            page = search.search(text, None, 100, None, None, False)
            found = len(page.traces)
            times = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                search.search(text, None, 100, None, None, False)
                times.append((time.perf_counter() - t0) * 1000)
            rows.append((label, text, found, statistics.median(times), max(times)))
        header = f"{'filter':42} {'first page':>10} {'median ms':>10} {'max ms':>8}"
        print()
        print(header)
        print("-" * len(header))
        for label, _text, found, median, worst in rows:
            print(f"{label:42} {found:>10} {median:>10.1f} {worst:>8.1f}")
        print()
        figures = {
            "traces": len(traces),
            "session_traces": 1_000,
            "reps": args.reps,
            "baseline_median_ms": round(rows[0][3], 2),
            "session_eq_median_ms": round(rows[1][3], 2),
            "session_ne_median_ms": round(rows[2][3], 2),
            "session_is_null_median_ms": round(rows[3][3], 2),
            "session_is_not_null_median_ms": round(rows[4][3], 2),
        }
        print(json.dumps(figures))
    finally:
        client.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
        client.indices.delete_index_template(name=names.template, ignore=[404])


if __name__ == "__main__":
    main()
