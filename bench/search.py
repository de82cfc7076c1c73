"""Search latency through the HTTP API at 100,000 and 1,000,000 traces, against MLflow's own
search_traces on its SQLite store at 3,000 traces, in the same run.

    .venv/bin/python bench/search.py [--sizes 100000,1000000] [--mlflow-traces 10000] [--reps 30]
                                     [--reload] [--drop]                        (needs infra/up)

Data: agent traces from schemas.samples (3-6 spans, 100-800 B inputs/outputs: lighter than
production traces so that a million load in minutes), spread over 10 days, so over 10 daily
indices. They are written through the indexer's write path (build_document + external versions)
with opensearch-py's parallel bulk rather than through Kafka, to save time; the load time is
printed. The indices are kept under the prefix ``bench-search-<size>`` so that a later run reuses
them (``--reload`` rebuilds, ``--drop`` deletes them at the end).

Queries (each ``--reps`` times after a warm-up, 100 traces a page, spans not included, through a
real ``tracestream api serve`` process with keep-alive): status, time range, tag, metadata,
LIKE on a tag, ``trace.text LIKE``, ``span.name``, a same-span pair, feedback, order by latency,
and the 20th page of a search reached with page tokens. MLflow gets the same filters on 3,000
of the same traces by default (``mlflow.search_traces``, sqlite, include_spans=False; its page
token is an offset; a query is repeated until it has used a minute).

Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from opensearchpy import OpenSearch, helpers

from tracestream.indexer import IndexNames, build_document, ensure_index_template, opensearch_client
from tracestream.schemas.mlflow_format import mlflow_assessment_dict, mlflow_info_dict, mlflow_span_dict
from tracestream.schemas.records import CompletedTrace
from tracestream.schemas.samples import completed_trace
from tracestream.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from searching.support import running_api  # noqa: E402

MLFLOW_PYTHON = ROOT / ".venv-mlflow" / "bin" / "python"
DAY_MS = 86_400_000
START_MS = 1_763_424_000_000  # 2025-11-18 00:00 UTC
SPREAD_MS = 10 * DAY_MS
CHUNK = 2_000
DEEP_PAGE = 20


def sample_trace(rng: random.Random, n: int, total: int) -> CompletedTrace:
    return completed_trace(
        rng,
        request_time_ms=START_MS + n * SPREAD_MS // total,
        min_spans=3,
        max_spans=6,
        min_io_bytes=100,
        max_io_bytes=800,
    )


def queries(total: int) -> list[dict[str, Any]]:
    """The query mix; the time range is one hour in the middle of the data."""
    middle = START_MS + SPREAD_MS // 2
    return [
        {"name": "status", "filter": "attributes.status = 'ERROR'"},
        {"name": "time range", "filter": f"timestamp_ms >= {middle} AND timestamp_ms < {middle + 3_600_000}"},
        {"name": "tag", "filter": "tags.version = '1.3.0'"},
        {"name": "metadata", "filter": "metadata.`mlflow.trace.user` = 'user-7'"},
        {"name": "tag LIKE", "filter": "tags.env LIKE 'stag%'"},
        {"name": "trace.text LIKE", "filter": "trace.text LIKE '%A1234%'"},
        {"name": "span.name", "filter": "span.name = 'issue_refund'"},
        {"name": "same-span pair", "filter": "span.name = 'chat' AND span.status = 'ERROR'"},
        {"name": "feedback", "filter": "feedback.rating >= 4"},
        {"name": "order by latency", "filter": "", "order_by": ["execution_time_ms DESC"]},
        {"name": f"page {DEEP_PAGE} via token", "filter": "tags.env = 'prod'", "pages": DEEP_PAGE},
    ]


# ---------------------------------------------------------------- loading


def _documents(args: tuple[int, int, int, str]) -> list[tuple[str, str, int, str]]:
    """Documents of traces [first, first + count) of ``total`` (in a worker process)."""
    first, count, total, prefix = args
    settings = Settings()
    settings = settings.model_copy(
        update={"opensearch": settings.opensearch.model_copy(update={"index_prefix": prefix})}
    )
    names = IndexNames.from_settings(settings)
    limit = settings.indexer.max_indexed_span_content_bytes
    rng = random.Random(first)
    out = []
    for n in range(first, first + count):
        document = build_document(sample_trace(rng, n, total), names, limit)
        out.append((document.index, document.trace_id, document.revision, document.source))
    return out


def _actions(total: int, prefix: str) -> Iterator[dict[str, Any]]:
    work = iter([(first, min(CHUNK, total - first), total, prefix) for first in range(0, total, CHUNK)])
    with multiprocessing.Pool(2) as pool:
        # A few chunks in flight, no more: Pool.imap would run ahead and hold every document.
        pending = deque(pool.apply_async(_documents, (args,)) for args in itertools.islice(work, 4))
        while pending:
            chunk = pending.popleft().get()
            pending.extend(pool.apply_async(_documents, (args,)) for args in itertools.islice(work, 1))
            for index, trace_id, revision, source in chunk:
                yield {
                    "_index": index,
                    "_id": trace_id,
                    "version": revision,
                    "version_type": "external",
                    "_source": source,
                }


def bench_settings(base: Settings, total: int) -> Settings:
    return base.model_copy(
        update={"opensearch": base.opensearch.model_copy(update={"index_prefix": f"bench-search-{total}"})}
    )


def count(client: OpenSearch, settings: Settings) -> int:
    names = IndexNames.from_settings(settings)
    if not client.indices.exists_alias(name=names.read_alias):
        return 0
    client.indices.refresh(index=names.read_alias)
    return client.count(index=names.read_alias)["count"]


def load(client: OpenSearch, settings: Settings, total: int) -> float:
    """Writes ``total`` traces; returns the seconds it took."""
    names = IndexNames.from_settings(settings)
    client.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
    # Refreshing every second while loading a million documents only costs; searchable at the end.
    loading_settings = settings.model_copy(
        update={"indexer": settings.indexer.model_copy(update={"refresh_interval": "60s"})}
    )
    ensure_index_template(client, loading_settings)
    started = time.monotonic()
    actions = helpers.parallel_bulk(
        client,
        _actions(total, settings.opensearch.index_prefix),
        thread_count=2,
        chunk_size=1_000,
        max_chunk_bytes=20 * 1024 * 1024,
        request_timeout=300,
        raise_on_error=False,
    )
    for done, (ok, item) in enumerate(actions, start=1):
        if not ok and item.get("index", {}).get("status") != 409:
            raise RuntimeError(f"bulk item failed: {item}")
        if done % 100_000 == 0:
            rate = done / (time.monotonic() - started)
            print(f"  loaded {done:,} of {total:,} ({rate:,.0f} traces/s)", flush=True)
    ensure_index_template(client, settings)
    client.indices.put_settings(index=names.pattern, body={"index": {"refresh_interval": "1s"}})
    client.indices.refresh(index=names.read_alias)
    return time.monotonic() - started


# ---------------------------------------------------------------- measuring


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


def run_query(http: httpx.Client, query: dict[str, Any]) -> tuple[float, int]:
    """One timed execution (of its last page when the query pages)."""
    token = None
    took = 0.0
    hits = 0
    for _ in range(query.get("pages", 1)):
        body = {
            "filter": query["filter"] or None,
            "order_by": query.get("order_by"),
            "max_results": 100,
            "page_token": token,
            "include_spans": False,
        }
        started = time.perf_counter()
        response = http.post("/api/v1/traces/search", json=body)
        took = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        page = response.json()
        hits, token = len(page["traces"]), page["next_page_token"]
    return took, hits


def measure_api(settings: Settings, mix: list[dict[str, Any]], reps: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with running_api(settings) as api, httpx.Client(base_url=api.base_url, timeout=60) as http:
        for query in mix:
            for _ in range(3):
                run_query(http, query)
            times, hits = [], 0
            for _ in range(reps):
                took, hits = run_query(http, query)
                times.append(took)
            times.sort()
            results[query["name"]] = {
                "p50_ms": statistics.median(times),
                "p99_ms": percentile(times, 0.99),
                "hits": hits,
                "samples": times,
            }
    return results


def measure_mlflow(total: int, mix: list[dict[str, Any]], reps: int) -> dict[str, Any] | None:
    if not MLFLOW_PYTHON.exists():
        print(f"MLflow baseline skipped: {MLFLOW_PYTHON} is missing (make .venv-mlflow/.installed)")
        return None
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench-search-mlflow-") as workdir:
        traces_path = Path(workdir, "traces.jsonl")
        with traces_path.open("w") as out:
            for n in range(total):
                trace = sample_trace(rng, n, total)
                record = {
                    "info": mlflow_info_dict({**trace["info"], "assessments": []}),
                    "spans": [mlflow_span_dict(span) for span in trace["spans"]],
                    "assessments": [mlflow_assessment_dict(a) for a in trace["assessments"]],
                }
                out.write(json.dumps(record) + "\n")
        queries_path = Path(workdir, "queries.json")
        queries_path.write_text(json.dumps(mix))
        completed = subprocess.run(
            [str(MLFLOW_PYTHON), str(ROOT / "bench" / "_mlflow_search.py"), str(traces_path), workdir,
             str(queries_path), str(reps)],
            capture_output=True,
            text=True,
            check=False,
            cwd=workdir,  # MLflow writes trace artifacts under ./mlruns
        )  # fmt: skip
        if completed.returncode != 0:
            raise RuntimeError(f"MLflow baseline failed:\n{completed.stderr[-4000:]}")
        return json.loads(completed.stdout.strip().splitlines()[-1])


def overall(results: dict[str, dict[str, Any]]) -> tuple[float, float]:
    samples = sorted(t for r in results.values() for t in r["samples"])
    return statistics.median(samples), percentile(samples, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="Comma-separated index sizes (traces).")
    # At 10,000 of these traces one `trace.text LIKE` search on MLflow's SQLite store ran for more
    # than 20 minutes without finishing; 3,000 keeps the baseline to minutes.
    parser.add_argument("--mlflow-traces", type=int, default=3_000, help="MLflow store size (0: skip).")
    parser.add_argument("--reps", type=int, default=30, help="Timed runs of each query.")
    parser.add_argument("--mlflow-reps", type=int, default=5, help="Timed runs of each query on MLflow.")
    parser.add_argument("--reload", action="store_true", help="Rebuild indices even if already loaded.")
    parser.add_argument("--drop", action="store_true", help="Delete the benchmark indices at the end.")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size]

    base = Settings()
    client = opensearch_client(base)
    figures: dict[str, float | int | str] = {}
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    mix = queries(0)
    for total in sizes:
        settings = bench_settings(base, total)
        present = count(client, settings)
        if present == total and not args.reload:
            print(f"{total:,} traces: reusing the loaded indices (prefix {settings.opensearch.index_prefix})")
        else:
            print(f"{total:,} traces: loading ...", flush=True)
            took = load(client, settings, total)
            present = count(client, settings)
            figures[f"load_{total}_s"] = round(took, 1)
            figures[f"load_{total}_traces_per_s"] = round(total / took)
            print(f"  {present:,} traces loaded in {took:.0f} s ({total / took:,.0f} traces/s)")
        if present != total:
            raise SystemExit(f"expected {total} traces in the index, found {present}")
        stats = client.indices.stats(index=IndexNames.from_settings(settings).pattern, metric="store")
        figures[f"index_{total}_mb"] = round(stats["_all"]["primaries"]["store"]["size_in_bytes"] / 2**20)
        tables[f"{total:,}"] = results = measure_api(settings, mix, args.reps)
        p50, p99 = overall(results)
        figures[f"api_{total}_p50_ms"] = round(p50, 1)
        figures[f"api_{total}_p99_ms"] = round(p99, 1)
        if args.drop:
            names = IndexNames.from_settings(settings)
            client.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
            client.indices.delete_index_template(name=names.template, ignore=[404])

    mlflow = measure_mlflow(args.mlflow_traces, mix, args.mlflow_reps) if args.mlflow_traces else None
    if mlflow:
        tables[f"MLflow {mlflow['mlflow_version']} sqlite, {mlflow['loaded']:,}"] = mlflow["queries"]
        p50, p99 = overall(mlflow["queries"])
        figures[f"mlflow_{args.mlflow_traces}_p50_ms"] = round(p50, 1)
        figures[f"mlflow_{args.mlflow_traces}_p99_ms"] = round(p99, 1)
        figures[f"mlflow_load_{args.mlflow_traces}_s"] = round(mlflow["load_s"], 1)
        largest = max(sizes) if sizes else None
        if largest:
            figures[f"mlflow_{args.mlflow_traces}_over_api_{largest}_p50_ratio"] = round(
                p50 / figures[f"api_{largest}_p50_ms"], 1
            )

    columns = list(tables)
    print()
    header = f"{'query':<22}" + "".join(f"{c + ' p50/p99 ms (hits)':>40}" for c in columns)
    print(header)
    print("-" * len(header))
    for query in mix:
        row = f"{query['name']:<22}"
        for column in columns:
            r = tables[column][query["name"]]
            row += f"{r['p50_ms']:>18.1f} / {r['p99_ms']:>8.1f} ({r['hits']:>4})   "
        print(row)
    print()
    print(json.dumps(figures))


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()
