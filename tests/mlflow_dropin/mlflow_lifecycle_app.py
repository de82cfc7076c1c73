"""The rest of a trace's life with the unmodified MLflow client, pointed at tracestream by
``MLFLOW_TRACKING_URI`` only: traces linked to a run and to prompt versions and found by them
(also with ``mlflow traces search --run-id``), a session-level rating that applies to every trace
of its conversation, and traces deleted by id and by age.

Runs under MLflow's interpreter (tests/mlflow_oracle.py::run_in_mlflow). Reads
``{"tracking_uri", "experiment", "run_id"}`` on stdin; prints, as its last line, a JSON report of
what the MLflow client returned.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

payload = json.load(sys.stdin)
os.environ["MLFLOW_TRACKING_URI"] = payload["tracking_uri"]

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import SpanType  # noqa: E402
from mlflow.entities.model_registry import PromptVersion  # noqa: E402

experiment_id = mlflow.set_experiment(payload["experiment"]).experiment_id
client = MlflowClient()
run_id = payload["run_id"]


@mlflow.trace(span_type=SpanType.AGENT)
def support_turn(question: str, session: str | None) -> str:
    if session is not None:
        mlflow.update_current_trace(session_id=session, user="user-12")
    with mlflow.start_span("generate", span_type=SpanType.LLM) as span:
        span.set_inputs({"question": question})
        span.set_outputs(f"answer to {question}")
    return f"answer to {question}"


# Six turns: three of conversation s-A, two of s-B, one without a session; a little apart so
# their request times order them.
turns = [
    ("refund", "s-A"),
    ("carrier", "s-A"),
    ("label", "s-A"),
    ("invoice", "s-B"),
    ("vat", "s-B"),
    ("hello", None),
]
trace_ids = []
for question, session in turns:
    support_turn(question, session)
    trace_ids.append(mlflow.get_last_active_trace_id())
    time.sleep(0.02)


def wait_for(condition, timeout_s: float = 90) -> float:
    started = time.monotonic()
    while not condition() and time.monotonic() - started < timeout_s:
        time.sleep(0.3)
    return time.monotonic() - started


def found(filter_string: str | None = None) -> list[str]:
    traces = mlflow.search_traces(
        locations=[experiment_id],
        filter_string=filter_string,
        order_by=["timestamp_ms ASC"],
        return_type="list",
    )
    return [t.info.trace_id for t in traces]


wait_for(lambda: len(found()) == len(trace_ids))
infos = {t.info.trace_id: t.info for t in mlflow.search_traces(locations=[experiment_id], return_type="list")}
report: dict = {"trace_ids": trace_ids, "request_times": [infos[t].request_time for t in trace_ids]}

# ---------------------------------------------------------------- run links
client.link_traces_to_run(trace_ids=trace_ids[:2], run_id=run_id)
run_filter = f"run_id = '{run_id}'"
wait_for(lambda: found(run_filter) == trace_ids[:2])
report["run_linked"] = found(run_filter)
report["run_linked_by_client"] = [
    t.info.trace_id for t in client.search_traces(locations=[experiment_id], run_id=run_id, max_results=100)
]
cli = subprocess.run(
    [sys.executable, "-m", "mlflow", "traces", "search", "--experiment-id", experiment_id, "--run-id", run_id,
     "--output", "json", "--extract-fields", "info.trace_id"],
    capture_output=True, text=True, timeout=120, env=os.environ,
)  # fmt: skip
report["cli_returncode"] = cli.returncode
report["cli_trace_ids"] = sorted(set(re.findall(r"tr-[0-9a-f]{32}", cli.stdout)))
try:
    report["unknown_run"] = repr(client.get_run("0" * 32))
except Exception as exc:
    report["unknown_run"] = str(exc)
try:
    client.link_traces_to_run(trace_ids=[f"tr-{n:032x}" for n in range(101)], run_id=run_id)
    report["too_many_links"] = None
except Exception as exc:  # MLflow's client raises MlflowException with the server's message
    report["too_many_links"] = str(exc)

# ---------------------------------------------------------------- prompt links
prompt = PromptVersion(name="support-answer", version=3, template="Answer {{question}} politely.")
client.link_prompt_versions_to_trace(prompt_versions=[prompt], trace_id=trace_ids[2])
wait_for(lambda: found("prompt = 'support-answer/3'") == [trace_ids[2]])
report["prompt_linked"] = found("prompt = 'support-answer/3'")
report["other_prompt_version"] = found("prompt = 'support-answer/2'")

# ---------------------------------------------------------------- a session-level rating
mlflow.log_feedback(
    trace_id=trace_ids[0],
    name="conversation_resolved",
    value="yes",
    metadata={"mlflow.trace.session": "s-A"},
)
resolved = "feedback.conversation_resolved = 'yes'"
wait_for(lambda: found(resolved) == trace_ids[:3])
report["session_rated"] = found(resolved)
report["session_unrated"] = found("feedback.conversation_resolved IS NULL")

# ---------------------------------------------------------------- deletion
report["deleted_by_id"] = client.delete_traces(experiment_id, trace_ids=[trace_ids[3], "tr-" + "0" * 32])
wait_for(lambda: trace_ids[3] not in found())
report["after_delete_by_id"] = found()
# The oldest two of those up to the fifth trace's request time (inclusive), as MLflow deletes them.
report["deleted_by_age"] = client.delete_traces(
    experiment_id, max_timestamp_millis=infos[trace_ids[4]].request_time, max_traces=2
)
wait_for(lambda: trace_ids[0] not in found() and trace_ids[1] not in found())
report["after_delete_by_age"] = found()
report["run_linked_after_delete"] = found(run_filter)
print(json.dumps(report))
