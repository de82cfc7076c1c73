"""MLflow's fluent API: inputs, trace updates, tags, assessments and automatic metadata."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from tracestream import producers as mlflow
from tracestream.schemas import ASSESSMENT_LOGGED, SPAN_ENDED, TRACE_ENDED, TRACE_TAGS_CHANGED


def only_span(exporter, name: str) -> dict:
    [span] = [s for s in exporter.records(SPAN_ENDED) if s["name"] == name]
    return span


def inputs_of(exporter, name: str) -> object:
    return json.loads(only_span(exporter, name)["attributes"]["mlflow.spanInputs"])


def test_inputs_are_the_bound_arguments_with_defaults(flushed) -> None:
    @mlflow.trace
    def complete(prompt: str, model: str = "gpt-4o-mini", *, temperature: float = 0.0) -> str:
        return prompt

    complete("Hi", temperature=0.7)

    assert inputs_of(flushed(), "complete") == {"prompt": "Hi", "model": "gpt-4o-mini", "temperature": 0.7}


def test_self_is_not_an_input_of_a_method(flushed) -> None:
    class Retriever:
        @mlflow.trace(name="Retriever.search", span_type=mlflow.SpanType.RETRIEVER)
        def search(self, query: str, k: int = 3) -> list[str]:
            return []

    Retriever().search("refund policy")

    assert inputs_of(flushed(), "Retriever.search") == {"query": "refund policy", "k": 3}


def test_variadic_arguments_are_captured_by_their_names(flushed) -> None:
    @mlflow.trace
    def tool_call(name: str, *args: int, **options: str) -> None:
        return None

    tool_call("add", 1, 2, unit="cm")

    assert inputs_of(flushed(), "tool_call") == {"name": "add", "args": [1, 2], "options": {"unit": "cm"}}


def test_update_current_trace_sets_what_the_trace_ended_event_carries(flushed) -> None:
    @mlflow.trace
    def handle(question: str) -> str:
        mlflow.update_current_trace(
            tags={"team": "support", "priority": 1},
            metadata={"mlflow.trace.user": "user-8812", "mlflow.trace.session": "session-31"},
            client_request_id="req-9f2c",
            request_preview="Where is my parcel?",
        )
        return "It ships tomorrow."

    handle("Where is my parcel? Order 5531")

    [trace_end] = flushed().records(TRACE_ENDED)
    assert trace_end["tags"] == {"mlflow.traceName": "handle", "team": "support", "priority": "1"}
    assert trace_end["metadata"]["mlflow.trace.user"] == "user-8812"
    assert trace_end["metadata"]["mlflow.trace.session"] == "session-31"
    assert trace_end["client_request_id"] == "req-9f2c"
    assert trace_end["request_preview"] == "Where is my parcel?"
    assert trace_end["response_preview"] == '"It ships tomorrow."'


def test_previews_and_trace_io_metadata_are_truncated_like_mlflow(flushed) -> None:
    @mlflow.trace
    def summarize(document: str) -> str:
        return "short"

    summarize("x" * 5000)

    [trace_end] = flushed().records(TRACE_ENDED)
    assert len(trace_end["request_preview"]) == 1000
    assert trace_end["request_preview"].endswith("...")
    assert trace_end["request_preview"].startswith('{"document": "xxx')
    assert len(trace_end["metadata"]["mlflow.traceInputs"]) == 250
    assert trace_end["metadata"]["mlflow.traceOutputs"] == '"short"'


def test_automatic_metadata_names_the_schema_version_and_source(flushed) -> None:
    @mlflow.trace
    def job() -> None:
        return None

    job()

    [trace_end] = flushed().records(TRACE_ENDED)
    metadata = trace_end["metadata"]
    assert metadata["mlflow.trace_schema.version"] == "3"
    assert metadata["mlflow.source.type"] == "LOCAL"
    assert metadata["mlflow.source.name"]
    # This test runs inside the project's git checkout.
    assert len(metadata["mlflow.source.git.commit"]) == 40


def test_token_usage_is_recorded_in_mlflows_attribute(flushed) -> None:
    @mlflow.trace(span_type=mlflow.SpanType.CHAT_MODEL)
    def chat(messages: list[dict]) -> str:
        mlflow.get_current_active_span().set_attribute(
            "mlflow.chat.tokenUsage", {"input_tokens": 120, "output_tokens": 35, "total_tokens": 155}
        )
        return "ok"

    chat([{"role": "user", "content": "hello"}])

    span = only_span(flushed(), "chat")
    assert json.loads(span["attributes"]["mlflow.chat.tokenUsage"]) == {
        "input_tokens": 120,
        "output_tokens": 35,
        "total_tokens": 155,
    }


def test_a_tag_set_while_the_trace_runs_goes_into_its_trace_ended_event(flushed) -> None:
    @mlflow.trace
    def run() -> None:
        trace_id = mlflow.get_active_trace_id()
        mlflow.set_trace_tag(trace_id, "experiment_arm", "B")
        mlflow.set_trace_tag(trace_id, "draft", "yes")
        mlflow.delete_trace_tag(trace_id, "draft")

    run()

    exporter = flushed()
    [trace_end] = exporter.records(TRACE_ENDED)
    assert trace_end["tags"] == {"mlflow.traceName": "run", "experiment_arm": "B"}
    assert exporter.records(TRACE_TAGS_CHANGED) == []


def test_a_tag_change_after_the_trace_ended_is_its_own_event(flushed) -> None:
    @mlflow.trace
    def run() -> str:
        return mlflow.get_active_trace_id()

    trace_id = run()
    mlflow.set_trace_tag(trace_id, "reviewed", "true")
    mlflow.delete_trace_tag(trace_id, "needs_review")

    changes = flushed().records(TRACE_TAGS_CHANGED)
    assert [(c["trace_id"], c["set"], c["deleted"]) for c in changes] == [
        (trace_id, {"reviewed": "true"}, []),
        (trace_id, {}, ["needs_review"]),
    ]


def test_feedback_and_expectation_are_logged_as_assessments(flushed) -> None:
    @mlflow.trace
    def answer() -> str:
        return "42"

    answer()
    exporter = flushed()
    [trace_end] = exporter.records(TRACE_ENDED)
    trace_id = trace_end["trace_id"]

    feedback = mlflow.log_feedback(
        trace_id=trace_id,
        name="correctness",
        value=True,
        source=mlflow.AssessmentSource(source_type="LLM_JUDGE", source_id="judge-gpt-4o"),
        rationale="Matches the reference.",
        metadata={"judge_version": 3},
    )
    mlflow.log_expectation(trace_id=trace_id, name="expected_answer", value={"answer": "42"})
    correction = mlflow.override_feedback(
        trace_id=trace_id, assessment_id=feedback.assessment_id, value=False, rationale="Off by one."
    )

    assessments = {
        a["name"] + ("/override" if a["overrides"] else ""): a for a in flushed().records(ASSESSMENT_LOGGED)
    }
    logged = assessments["correctness"]
    assert logged["assessment_id"] == feedback.assessment_id
    assert logged["assessment_id"].startswith("a-")
    assert (logged["kind"], logged["value_json"], logged["source_type"], logged["source_id"]) == (
        "FEEDBACK",
        "true",
        "LLM_JUDGE",
        "judge-gpt-4o",
    )
    assert logged["metadata"] == {"judge_version": "3"}
    expectation = assessments["expected_answer"]
    assert (expectation["kind"], json.loads(expectation["value_json"])) == ("EXPECTATION", {"answer": "42"})
    assert (expectation["source_type"], expectation["source_id"]) == ("HUMAN", "default")
    override = assessments["correctness/override"]
    assert override["overrides"] == feedback.assessment_id
    assert override["assessment_id"] == correction.assessment_id


def test_feedback_can_carry_an_error_instead_of_a_value(flushed) -> None:
    mlflow.log_feedback(trace_id="tr-" + "0" * 32, name="toxicity", error=TimeoutError("judge timed out"))

    [logged] = flushed().records(ASSESSMENT_LOGGED)
    assert logged["value_json"] is None
    assert logged["error"] == {"error_code": "TimeoutError", "error_message": "judge timed out"}


@dataclass
class Invoice:
    number: str
    total: float


class Opaque:
    def __str__(self) -> str:
        return "<Opaque handle>"


def test_inputs_json_cannot_encode_are_converted_or_stringified_as_mlflow_does(flushed) -> None:
    @mlflow.trace
    def process(invoice: Invoice, tags: set[str], handle: Opaque, raw: bytes) -> None:
        return None

    process(Invoice("INV-7", 99.5), {"urgent"}, Opaque(), b"\x00\x01")

    assert inputs_of(flushed(), "process") == {
        "invoice": {"number": "INV-7", "total": 99.5},
        "tags": "{'urgent'}",
        "handle": "<Opaque handle>",
        "raw": "b'\\x00\\x01'",
    }


def test_a_circular_structure_is_stringified(flushed) -> None:
    loop: dict = {"name": "loop"}
    loop["self"] = loop

    with mlflow.start_span("cyclic") as span:
        span.set_inputs(loop)

    assert inputs_of(flushed(), "cyclic").startswith("{'name': 'loop'")


def test_an_oversized_attribute_is_truncated_with_a_marker() -> None:
    from tracestream.producers.config import ProducerConfig, SdkOptions
    from tracestream.producers.testing import InMemoryEventExporter

    exporter = InMemoryEventExporter()
    mlflow.configure(ProducerConfig(sdk=SdkOptions(max_attribute_length=1000)), exporter=exporter)
    try:
        with mlflow.start_span("upload") as span:
            span.set_inputs({"document": "lorem ipsum " * 1000})
            span.set_outputs("ok")
        assert mlflow.flush(5)
    finally:
        mlflow.shutdown()

    attributes = only_span(exporter, "upload")["attributes"]
    cut = json.loads(attributes["mlflow.spanInputs"])
    assert isinstance(cut, str)
    assert cut.startswith('{"document": "lorem ipsum')
    assert len(attributes["mlflow.spanInputs"]) <= 1000
    marker = re.search(r"\.\.\.\[truncated by tracestream: (\d+) of (\d+) characters\]$", cut)
    assert marker is not None
    dropped, total = int(marker.group(1)), int(marker.group(2))
    assert total == len(json.dumps({"document": "lorem ipsum " * 1000}))
    assert dropped + marker.start() == total
    assert json.loads(attributes["tracestream.span.truncatedAttributes"]) == ["mlflow.spanInputs"]
    assert attributes["mlflow.spanOutputs"] == '"ok"'


def test_a_span_still_open_when_the_root_ends_is_closed_and_flagged(flushed) -> None:
    with mlflow.start_span("request") as root:
        forgotten = mlflow.start_span_no_context("background_fetch", parent_span=root)

    exporter = flushed()
    fetch = only_span(exporter, "background_fetch")
    assert fetch["attributes"]["tracestream.span.autoClosed"] == "true"
    assert fetch["end_time_ns"] == only_span(exporter, "request")["end_time_ns"]
    [trace_end] = exporter.records(TRACE_ENDED)
    assert trace_end["span_count"] == 2
    forgotten.end()  # a late end is ignored, not emitted twice
    assert len(flushed().records(SPAN_ENDED)) == 2


def test_update_current_trace_outside_a_trace_is_ignored(flushed, caplog: pytest.LogCaptureFixture) -> None:
    mlflow.update_current_trace(tags={"orphan": "1"})

    assert "no active trace" in caplog.text
    assert flushed().events == []


def test_chat_previews_show_the_last_user_and_assistant_messages(flushed) -> None:
    @mlflow.trace(span_type=mlflow.SpanType.CHAT_MODEL)
    def chat(messages: list[dict]) -> dict:
        return {"choices": [{"message": {"role": "assistant", "content": "Try restarting the router."}}]}

    chat(
        [
            {"role": "system", "content": "You are a helpful support agent."},
            {"role": "user", "content": [{"type": "text", "text": "My wifi keeps dropping."}]},
        ]
    )

    [trace_end] = flushed().records(TRACE_ENDED)
    assert trace_end["request_preview"] == "My wifi keeps dropping."
    assert trace_end["response_preview"] == "Try restarting the router."


def test_a_root_without_inputs_has_no_request_preview(flushed) -> None:
    with mlflow.start_span("scheduled_job"):
        pass

    [trace_end] = flushed().records(TRACE_ENDED)
    assert trace_end["request_preview"] is None
    assert trace_end["metadata"]["mlflow.traceInputs"] == ""


def test_function_spans_name_their_function_and_user_and_session_become_metadata(flushed) -> None:
    @mlflow.trace(name="Answer question")
    def answer_question() -> str:
        mlflow.update_current_trace(user="user-51", session_id="session-9")
        return "done"

    answer_question()

    exporter = flushed()
    span = only_span(exporter, "Answer question")
    assert span["attributes"]["mlflow.spanFunctionName"] == '"answer_question"'
    [trace_end] = exporter.records(TRACE_ENDED)
    assert (trace_end["metadata"]["mlflow.trace.user"], trace_end["metadata"]["mlflow.trace.session"]) == (
        "user-51",
        "session-9",
    )
