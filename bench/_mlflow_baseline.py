"""MLflow's side of bench/sdk.py: run with a Python that has mlflow installed.

    python bench/_mlflow_baseline.py CALLS TRACKING_DIR

Times @mlflow.trace on a no-op function with MLflow's default configuration (asynchronous
trace export, a local SQLite tracking store) and prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time

calls = int(sys.argv[1])
tracking_dir = sys.argv[2]
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tracking_dir}/mlflow.db"
os.environ.pop("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", None)

import logging  # noqa: E402

import mlflow  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.ERROR)
experiment_id = mlflow.set_experiment("tracestream-bench").experiment_id


def noop() -> None:
    return None


traced = mlflow.trace(noop)
for _ in range(200):
    traced()
mlflow.flush_trace_async_logging()

wall, cpu = time.perf_counter(), time.thread_time()
for _ in range(calls):
    traced()
cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
mlflow.flush_trace_async_logging()
stored = len(mlflow.search_traces(experiment_ids=[experiment_id], return_type="list", include_spans=False))

print(
    json.dumps(
        {
            "mlflow_version": mlflow.__version__,
            "calls": calls,
            "wall_us_per_span": wall / calls * 1e6,
            "thread_cpu_us_per_span": cpu / calls * 1e6,
            "traces_stored": stored - 200,
        }
    )
)
