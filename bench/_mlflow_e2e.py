"""MLflow's side of bench/e2e.py: run with a Python that has mlflow installed.

    python bench/_mlflow_e2e.py sync|async TRACES SPANS_PER_TRACE WORKDIR

Logs TRACES traces shaped like bench/_e2e_producer.py's (an agent root, retrieval, chat-model
spans with token usage, tools; one in ten failing) with ``mlflow.start_span`` to a SQLite tracking
store, as fast as the application thread can, synchronously or with MLflow's default asynchronous
export; then counts what was stored. Prints one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time

mode, traces, spans_per_trace, workdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir}/mlflow.db"
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "true" if mode == "async" else "false"

import mlflow  # noqa: E402
from mlflow.entities import SpanType  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.ERROR)
experiment_id = mlflow.set_experiment("tracestream-e2e").experiment_id
rng = random.Random(7)
KINDS = (SpanType.RETRIEVER, SpanType.CHAT_MODEL, SpanType.TOOL)


class ToolFailure(RuntimeError):
    pass


def one_trace(error: bool) -> None:
    with mlflow.start_span("agent", span_type=SpanType.AGENT) as root:
        root.set_inputs({"question": f"Where is order A{rng.randint(10000, 99999)}?"})
        mlflow.update_current_trace(tags={"env": "bench"})
        try:
            for n in range(spans_per_trace - 1):
                kind = KINDS[n % 3]
                with mlflow.start_span(f"{kind.lower()}_{n}", span_type=kind) as span:
                    span.set_inputs({"query": "order status", "n": n})
                    if kind == SpanType.CHAT_MODEL:
                        span.set_attribute(
                            "mlflow.chat.tokenUsage",
                            {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150},
                        )
                    if error and n == spans_per_trace - 2:
                        raise ToolFailure("backend timed out")
                    span.set_outputs({"status": "shipped"})
            root.set_outputs("Your order has shipped.")
        except ToolFailure:
            root.set_status("ERROR")


started = time.perf_counter()
for _ in range(traces):
    one_trace(rng.random() < 0.1)
elapsed = time.perf_counter() - started
mlflow.flush_trace_async_logging()
stored = len(mlflow.search_traces(locations=[experiment_id], return_type="list", include_spans=False))
print(
    json.dumps(
        {
            "mode": mode,
            "traces": traces,
            "spans_per_s": traces * spans_per_trace / elapsed,
            "stored": stored,
        }
    )
)
