"""An application instrumented with MLflow and the analysis code its team runs, both unmodified,
pointed at tracestream by ``MLFLOW_TRACKING_URI`` and nothing else.

Runs under MLflow's interpreter (tests/mlflow_oracle.py::run_in_mlflow). Reads
``{"tracking_uri", "experiment"}`` on stdin; prints, as its last line, a JSON report of what the
MLflow client returned.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

payload = json.load(sys.stdin)
os.environ["MLFLOW_TRACKING_URI"] = payload["tracking_uri"]
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "true"  # the client's default
os.environ["MLFLOW_TRACKING_INSECURE_TLS"] = "true"

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import AssessmentSource, Expectation, SpanType  # noqa: E402

# ---------------------------------------------------------------- the application

experiment_id = mlflow.set_experiment(payload["experiment"]).experiment_id


@mlflow.trace(span_type=SpanType.RETRIEVER)
def retrieve(query: str) -> list[str]:
    return [f"doc about {query}"]


@mlflow.trace(span_type=SpanType.AGENT)
def answer(question: str, user: str) -> str:
    mlflow.update_current_trace(
        tags={"team": "care"},
        metadata={"app.version": "1.4"},
        client_request_id=f"req-{question}",
        user=user,
        session_id="s-31",
    )
    if question == "returns":  # an assessment logged while the trace is active
        mlflow.log_expectation(
            trace_id=mlflow.get_active_trace_id(), name="expected_topic", value="returns policy"
        )
    docs = retrieve(question)
    with mlflow.start_span("generate", span_type=SpanType.LLM) as span:
        span.set_inputs({"question": question, "docs": docs})
        span.set_attribute(
            "mlflow.chat.tokenUsage", {"input_tokens": 310, "output_tokens": 42, "total_tokens": 352}
        )
        span.set_attribute("model", "gpt-x")
        text = f"answer to {question}"
        span.set_outputs(text)
    return text


@mlflow.trace(span_type=SpanType.TOOL)
def lookup_order(order_id: str) -> str:
    raise ValueError(f"order {order_id} not found")


trace_ids = []
for question, user in (("refunds", "user-1"), ("shipping", "user-2"), ("returns", "user-1")):
    answer(question, user)
    trace_ids.append(mlflow.get_last_active_trace_id())
with contextlib.suppress(ValueError):
    lookup_order("A-17")
failed_id = mlflow.get_last_active_trace_id()
mlflow.flush_trace_async_logging()

mlflow.log_feedback(
    trace_id=trace_ids[0],
    name="helpfulness",
    value=0.8,
    source=AssessmentSource(source_type="HUMAN", source_id="reviewer-7"),
    rationale="cites the doc",
)
mlflow.set_trace_tag(trace_ids[1], "reviewed", "yes")

# ---------------------------------------------------------------- the analysis code


def settled() -> bool:
    traces = mlflow.search_traces(return_type="list")
    by_id = {t.info.trace_id: t for t in traces}
    return (
        len(by_id) == 4
        and bool(by_id.get(trace_ids[0]) and by_id[trace_ids[0]].info.assessments)
        and by_id.get(trace_ids[1]) is not None
        and by_id[trace_ids[1]].info.tags.get("reviewed") == "yes"
    )


def wait_for(condition) -> float:
    started = time.monotonic()
    while not condition() and time.monotonic() - started < 90:
        time.sleep(0.5)
    return time.monotonic() - started


searchable_after_s = wait_for(settled)

# Feedback revised by a human, an expectation corrected, a feedback withdrawn (on the third trace).
judged = mlflow.log_feedback(
    trace_id=trace_ids[2], name="accuracy", value=0.4, source=AssessmentSource("LLM_JUDGE", "judge-1")
)
tone = mlflow.log_feedback(trace_id=trace_ids[2], name="tone", value="curt")
in_trace = next(a for a in mlflow.get_trace(trace_ids[2]).info.assessments if a.name == "expected_topic")


def assessed() -> bool:
    return {a.name for a in mlflow.get_trace(trace_ids[2]).info.assessments} >= {"accuracy", "tone"}


wait_for(assessed)
mlflow.set_trace_tag(trace_ids[2], "draft", "yes")
mlflow.delete_trace_tag(trace_ids[2], "draft")
overridden = mlflow.override_feedback(
    trace_id=trace_ids[2],
    assessment_id=judged.assessment_id,
    value=0.9,
    rationale="human review",
    source=AssessmentSource("HUMAN", "reviewer-2"),
)
updated = mlflow.update_assessment(
    trace_id=trace_ids[2],
    assessment_id=in_trace.assessment_id,
    assessment=Expectation(name="expected_topic", value="refund policy"),
)
mlflow.delete_assessment(trace_id=trace_ids[2], assessment_id=tone.assessment_id)


def revised() -> bool:
    assessments = mlflow.get_trace(trace_ids[2]).info.assessments
    names = [a.name for a in assessments]
    topic = [a.value for a in assessments if a.name == "expected_topic"]
    return "tone" not in names and names.count("accuracy") == 2 and topic == ["refund policy"]


wait_for(revised)


def span_report(span: mlflow.entities.Span, by_id: dict) -> dict:
    parent = by_id.get(span.parent_id)
    return {
        "name": span.name,
        "span_type": span.span_type,
        "parent": parent.name if parent else None,
        "inputs": span.inputs,
        "outputs": span.outputs,
        "status": span.status.status_code.value,
        "model": span.get_attribute("model"),
        "token_usage": span.get_attribute("mlflow.chat.tokenUsage"),
        "events": [event.name for event in span.events],
        "trace_id": span.trace_id,
    }


def trace_report(trace: mlflow.entities.Trace) -> dict:
    info = trace.info
    by_id = {span.span_id: span for span in trace.data.spans}
    return {
        "trace_id": info.trace_id,
        "experiment_id": info.experiment_id,
        "state": str(info.state),
        "client_request_id": info.client_request_id,
        "request_preview": info.request_preview,
        "response_preview": info.response_preview,
        "execution_duration": info.execution_duration,
        "tags": info.tags,
        "metadata": info.trace_metadata,
        "token_usage": info.token_usage,
        "assessments": [
            {
                "name": a.name,
                "value": a.value,
                "source": [a.source.source_type, a.source.source_id],
                "rationale": a.rationale,
                "valid": a.valid,
                "overrides": a.overrides,
                "id": a.assessment_id,
            }
            for a in info.assessments
        ],
        "spans": [span_report(span, by_id) for span in trace.data.spans],
    }


frame = mlflow.search_traces(order_by=["timestamp_ms ASC"])
listed = mlflow.search_traces(order_by=["timestamp_ms ASC"], return_type="list")

client = MlflowClient()
pages = []
token = None
while True:
    page = client.search_traces(
        locations=[experiment_id], max_results=2, order_by=["timestamp_ms ASC"], page_token=token
    )
    pages.append([trace.info.trace_id for trace in page])
    token = page.token
    if not token:
        break

filters = {
    name: [t.info.trace_id for t in mlflow.search_traces(filter_string=text, return_type="list")]
    for name, text in {
        "failed": "status = 'ERROR'",
        "team": "tags.team = 'care'",
        "reviewed": "tags.reviewed = 'yes'",
        "user": "metadata.`mlflow.trace.user` = 'user-1'",
        "llm_span": "span.type = 'LLM'",
        "helpful": "feedback.helpfulness > 0.5",
    }.items()
}

print(
    json.dumps(
        {
            "experiment_id": experiment_id,
            "trace_ids": trace_ids,
            "failed_id": failed_id,
            "searchable_after_s": searchable_after_s,
            "frame": {
                "columns": list(frame.columns),
                "trace_ids": list(frame["trace_id"]),
                "requests": list(frame["request"]),
                "responses": list(frame["response"]),
                "span_counts": [len(spans) for spans in frame["spans"]],
                "states": [str(state) for state in frame["state"]],
            },
            "listed": [trace_report(trace) for trace in listed],
            "pages": pages,
            "got": trace_report(mlflow.get_trace(trace_ids[0])),
            "revisions": {
                "judged": judged.assessment_id,
                "overridden": [overridden.assessment_id, overridden.overrides],
                "in_trace": in_trace.assessment_id,
                "updated": [updated.assessment_id, updated.overrides, updated.value],
                "assessments": trace_report(mlflow.get_trace(trace_ids[2]))["assessments"],
                "tags": mlflow.get_trace(trace_ids[2]).info.tags,
            },
            "filters": filters,
        },
        default=str,
    )
)
