"""An agent instrumented with the OpenTelemetry SDK alone (GenAI semantic conventions), exporting
OTLP/HTTP (protobuf, gzip) to tracestream's ``/v1/traces``; then MLflow's client finds its traces.

Runs under MLflow's interpreter, which also has opentelemetry-sdk and the OTLP/HTTP exporter
(Makefile: .venv-mlflow). Reads ``{"tracking_uri"}`` on stdin; prints, as its last line, a JSON
report.
"""

from __future__ import annotations

import json
import os
import sys
import time

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

payload = json.load(sys.stdin)

# ---------------------------------------------------------------- the application

provider = TracerProvider(resource=Resource.create({"service.name": "billing-agent"}))
exporter = OTLPSpanExporter(endpoint=f"{payload['tracking_uri']}/v1/traces", compression=Compression.Gzip)
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("billing-agent")


def handle(question: str, tool_fails: bool) -> str:
    with tracer.start_as_current_span("invoke_agent billing") as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("user.id", "user-9")
        agent.set_attribute("session.id", "session-9")
        with tracer.start_as_current_span("chat gpt-4o") as chat:
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.request.model", "gpt-4o")
            chat.set_attribute("gen_ai.provider.name", "openai")
            chat.set_attribute("gen_ai.usage.input_tokens", 120)
            chat.set_attribute("gen_ai.usage.output_tokens", 30)
            chat.set_attribute("gen_ai.input.messages", json.dumps([{"role": "user", "content": question}]))
            chat.set_attribute(
                "gen_ai.output.messages",
                json.dumps([{"role": "assistant", "content": "calling get_balance"}]),
            )
        with tracer.start_as_current_span("execute_tool get_balance") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.call.arguments", json.dumps({"account": "A-1"}))
            if tool_fails:
                tool.set_status(Status(StatusCode.ERROR, "ledger timeout"))
                agent.set_status(Status(StatusCode.ERROR, "tool failed"))
        return format(agent.get_span_context().trace_id, "032x")


trace_ids = ["tr-" + handle("what is my balance?", False), "tr-" + handle("and yesterday's?", True)]
provider.shutdown()  # flushes the batch processor

# ---------------------------------------------------------------- MLflow's client finds them

os.environ["MLFLOW_TRACKING_URI"] = payload["tracking_uri"]
import mlflow  # noqa: E402


def found() -> dict[str, mlflow.entities.Trace]:
    traces = mlflow.search_traces(locations=["0"], return_type="list")
    return {t.info.trace_id: t for t in traces if t.info.trace_id in trace_ids}


waited_from = time.monotonic()
traces = found()
while len(traces) < len(trace_ids) and time.monotonic() - waited_from < 60:
    time.sleep(0.5)
    traces = found()


def report(trace: mlflow.entities.Trace) -> dict:
    by_id = {span.span_id: span for span in trace.data.spans}
    return {
        "state": str(trace.info.state),
        "name": trace.info.tags.get("mlflow.traceName"),
        "user": trace.info.trace_metadata.get("mlflow.trace.user"),
        "session": trace.info.trace_metadata.get("mlflow.trace.session"),
        "token_usage": trace.info.token_usage,
        "spans": {
            span.name: {
                "span_type": span.span_type,
                "parent": by_id[span.parent_id].name if span.parent_id in by_id else None,
                "status": span.status.status_code.value,
                "inputs": span.inputs,
                "outputs": span.outputs,
                "model": span.get_attribute("mlflow.llm.model"),
                "token_usage": span.get_attribute("mlflow.chat.tokenUsage"),
            }
            for span in trace.data.spans
        },
    }


filtered = mlflow.search_traces(locations=["0"], filter_string="status = 'ERROR'", return_type="list")
print(
    json.dumps(
        {
            "trace_ids": trace_ids,
            "traces": {trace_id: report(trace) for trace_id, trace in traces.items()},
            "failed": [t.info.trace_id for t in filtered if t.info.trace_id in trace_ids],
            "searchable_after_s": time.monotonic() - waited_from,
        },
        default=str,
    )
)
