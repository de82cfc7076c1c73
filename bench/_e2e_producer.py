"""One producer process of bench/e2e.py: traces through the SDK at a fixed rate.

    python bench/_e2e_producer.py TRACES_PER_S SECONDS SPANS_PER_TRACE SEED OUT_JSONL

Settings (topics, ...) come from the environment. Each trace is an agent root with retrieval,
chat-model (with token usage) and tool children; one in ten fails in a tool. Every trace is
written to OUT_JSONL as it ends: {"trace_id", "end_ms", "error"}. The last stdout line is one
JSON object: traces and spans emitted, the rate achieved and the SDK's counters after flushing.
"""

from __future__ import annotations

import json
import random
import sys
import time

from tracestream import producers as mlflow

rate, seconds, spans_per_trace, seed = (
    float(sys.argv[1]),
    float(sys.argv[2]),
    int(sys.argv[3]),
    int(sys.argv[4]),
)
out = open(sys.argv[5], "w", buffering=1)  # noqa: SIM115  # line-buffered for the bench to tail
rng = random.Random(seed)
KINDS = (mlflow.SpanType.RETRIEVER, mlflow.SpanType.CHAT_MODEL, mlflow.SpanType.TOOL)


class ToolFailure(RuntimeError):
    pass


def one_trace(error: bool) -> str:
    with mlflow.start_span("agent", span_type=mlflow.SpanType.AGENT) as root:
        root.set_inputs({"question": f"Where is order A{rng.randint(10000, 99999)}?"})
        mlflow.update_current_trace(user=f"user-{rng.randint(1, 500)}", tags={"env": "bench"})
        trace_id = mlflow.get_active_trace_id() or ""
        try:
            for n in range(spans_per_trace - 1):
                kind = KINDS[n % 3]
                with mlflow.start_span(f"{kind.lower()}_{n}", span_type=kind) as span:
                    span.set_inputs({"query": "order status", "n": n})
                    if kind == mlflow.SpanType.CHAT_MODEL:
                        span.set_attribute(
                            "mlflow.chat.tokenUsage",
                            {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150},
                        )
                    if error and n == spans_per_trace - 2:
                        raise ToolFailure("backend timed out")
                    span.set_outputs({"status": "shipped"})
            root.set_outputs("Your order has shipped.")
        except ToolFailure:
            pass  # recorded on the failing span; the root is marked below
        if error:
            root.set_status("ERROR")
    return trace_id


started = time.monotonic()
traces = 0
while time.monotonic() - started < seconds:
    error = rng.random() < 0.1
    trace_id = one_trace(error)
    traces += 1
    out.write(json.dumps({"trace_id": trace_id, "end_ms": time.time() * 1000, "error": error}) + "\n")
    behind = started + traces / rate - time.monotonic()
    if behind > 0:
        time.sleep(behind)
elapsed = time.monotonic() - started
mlflow.flush(120)
stats = mlflow.get_stats()
out.close()
print(
    json.dumps(
        {
            "traces": traces,
            "spans": traces * spans_per_trace,
            "traces_per_s": traces / elapsed,
            "emitted": stats.emitted,
            "delivered": stats.delivered,
            "dropped": stats.dropped,
            "failed": stats.failed,
        }
    )
)
