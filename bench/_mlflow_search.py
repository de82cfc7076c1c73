"""MLflow's side of bench/search.py: run with a Python that has mlflow installed.

    python bench/_mlflow_search.py TRACES_JSONL WORKDIR QUERIES_JSON REPS

Loads the traces (MLflow trace JSON, one per line) into a fresh SQLite tracking store through
the store's own write path (start_trace, log_spans, create_assessment), then times
``mlflow.search_traces`` on each query of QUERIES_JSON (a list of {name, filter, order_by,
pages}) REPS times, or fewer once a query has used a minute. Prints one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time

traces_path, workdir, queries_path, reps_arg = sys.argv[1:5]
reps = int(reps_arg)
BUDGET_MS = 60_000
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir}/mlflow.db"

import mlflow  # noqa: E402
from mlflow.entities import Assessment, Span, TraceInfo  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.ERROR)
client = MlflowClient()
store = client._tracking_client.store

loading = time.perf_counter()
loaded = 0
with open(traces_path) as lines:
    batch: list[dict] = []

    def flush(batch: list[dict]) -> None:
        spans = []
        for trace in batch:
            store.start_trace(TraceInfo.from_dict(trace["info"]))
            spans += [Span.from_dict(span) for span in trace["spans"]]
        store.log_spans("0", spans)
        for trace in batch:
            for assessment in trace["assessments"]:
                store.create_assessment(Assessment.from_dictionary(assessment))

    for line in lines:
        batch.append(json.loads(line))
        if len(batch) == 200:
            flush(batch)
            loaded += len(batch)
            batch = []
    if batch:
        flush(batch)
        loaded += len(batch)
load_s = time.perf_counter() - loading


def run(query: dict) -> tuple[float, int]:
    """One timed execution: the filter, then as many further pages as the query asks for; the
    time is that of the last page (the deep page when pages > 1)."""
    token = None
    for _ in range(query.get("pages", 1)):
        started = time.perf_counter()
        page = client.search_traces(
            locations=["0"],
            filter_string=query["filter"] or None,
            order_by=query.get("order_by") or None,
            max_results=100,
            page_token=token,
            include_spans=False,
        )
        took = time.perf_counter() - started
        token = page.token
    return took, len(page)


results = {}
with open(queries_path) as source:
    mix = json.load(source)
for query in mix:
    if query.get("pages", 1) == 1:
        run(query)  # warm up (a deep page's first pages warm it up anyway)
    times, hits = [], 0
    for _ in range(reps):
        took, hits = run(query)
        times.append(took * 1000)
        if sum(times) > BUDGET_MS:  # a query this slow is measured fewer times
            break
    times.sort()
    results[query["name"]] = {
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, round(0.99 * (len(times) - 1)))],
        "hits": hits,
        "samples": times,
    }

figures = {"mlflow_version": mlflow.__version__, "loaded": loaded, "load_s": load_s, "queries": results}
print(json.dumps(figures))
