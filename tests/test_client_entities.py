"""The client's MLflow-compatible entities, built from the TraceJSON the search API serves."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from tracestream.schemas.ids import new_assessment_id
from tracestream.schemas.mlflow_format import mlflow_assessment_dict, mlflow_info_dict, mlflow_span_dict
from tracestream.schemas.records import AssessmentLogged, CompletedTrace
from tracestream.schemas.samples import completed_trace
from tracestream.search_api.entities import (
    Assessment,
    SpanStatusCode,
    Trace,
    TraceState,
    TraceStatus,
    parse_proto_timestamp,
)

REQUEST_TIME_MS = 1_795_335_212_365  # 2026-11-22T08:13:32.365Z


def trace_json(record: CompletedTrace) -> dict[str, Any]:
    """The TraceJSON the API serves for ``record`` (as indexer.document stores it)."""
    info = mlflow_info_dict(record["info"])
    if record["assessments"]:
        info["assessments"] = [mlflow_assessment_dict(a) for a in record["assessments"]]
    return {"info": info, "data": {"spans": [mlflow_span_dict(s) for s in record["spans"]]}}


def assessment(record: CompletedTrace, name: str, kind: str, value: Any, **fields: Any) -> AssessmentLogged:
    logged: dict[str, Any] = {
        "assessment_id": new_assessment_id(),
        "trace_id": record["trace_id"],
        "name": name,
        "kind": kind,
        "value_json": None if value is None else json.dumps(value),
        "error": None,
        "source_type": "HUMAN",
        "source_id": "reviewer@example.com",
        "rationale": None,
        "metadata": {},
        "span_id": None,
        "create_time_ms": REQUEST_TIME_MS + 60_000,
        "last_update_time_ms": None,
        "overrides": None,
        "valid": True,
    }
    logged.update(fields)
    return logged  # type: ignore[return-value]


def agent_trace(seed: int = 3, **options: Any) -> CompletedTrace:
    options.setdefault("request_time_ms", REQUEST_TIME_MS)
    return completed_trace(random.Random(seed), min_io_bytes=200, max_io_bytes=800, **options)


def reviewed_trace() -> CompletedTrace:
    """An agent trace with a re-rated answer (first rating overridden), a span-level feedback on
    the first chat call and an expected answer."""
    record = agent_trace(min_spans=7, max_spans=7, error=False)
    chat = next(s for s in record["spans"] if s["name"] == "chat")
    first = assessment(record, "rating", "FEEDBACK", 2, valid=False)
    record["assessments"] = [
        first,
        assessment(
            record, "rating", "FEEDBACK", 4, overrides=first["assessment_id"], rationale="fixed later"
        ),
        assessment(record, "grounded", "FEEDBACK", True, span_id=chat["span_id"], source_type="LLM_JUDGE"),
        assessment(record, "expected_answer", "EXPECTATION", {"answer": "refund issued", "steps": 2}),
    ]
    return record


# ---------------------------------------------------------------- TraceInfo


def test_trace_info_fields_and_their_mlflow_2_aliases() -> None:
    record = agent_trace(error=False)
    info = Trace.from_dict(trace_json(record)).info

    assert info.trace_id == info.request_id == record["trace_id"]
    assert info.request_time == info.timestamp_ms == REQUEST_TIME_MS
    assert info.execution_duration == info.execution_time_ms == record["info"]["execution_duration_ms"]
    assert info.state is TraceState.OK
    assert info.status is TraceStatus.OK
    assert info.trace_metadata == info.request_metadata == record["info"]["metadata"]
    assert info.tags == record["info"]["tags"]
    assert info.experiment_id == "0"
    assert info.trace_location.type == "MLFLOW_EXPERIMENT"
    assert info.client_request_id == record["info"]["client_request_id"]
    assert info.request_preview == record["info"]["request_preview"]
    assert info.response_preview == record["info"]["response_preview"]


def test_token_usage_is_the_parsed_metadata_entry() -> None:
    record = agent_trace(min_spans=4)
    expected = json.loads(record["info"]["metadata"]["mlflow.trace.tokenUsage"])

    assert Trace.from_dict(trace_json(record)).info.token_usage == expected
    assert expected["total_tokens"] == expected["input_tokens"] + expected["output_tokens"] > 0


def test_token_usage_is_none_without_the_metadata_entry() -> None:
    record = agent_trace()
    del record["info"]["metadata"]["mlflow.trace.tokenUsage"]

    assert Trace.from_dict(trace_json(record)).info.token_usage is None


def test_a_failed_trace_has_state_error_and_legacy_status_error() -> None:
    info = Trace.from_dict(trace_json(agent_trace(error=True))).info

    assert info.state is TraceState.ERROR
    assert info.status is TraceStatus.ERROR


def test_request_time_is_truncated_to_milliseconds_like_protobuf() -> None:
    assert parse_proto_timestamp("2026-11-22T04:12:33.286999999Z") == 1_795_320_753_286
    assert parse_proto_timestamp("2026-11-22T04:12:33Z") == 1_795_320_753_000
    assert parse_proto_timestamp("2026-11-22T05:12:33.286+01:00") == 1_795_320_753_286


# ---------------------------------------------------------------- spans


def test_span_ids_are_mlflow_style_hex_not_the_base64_of_the_json() -> None:
    record = agent_trace()
    trace = Trace.from_dict(trace_json(record))
    root, child = trace.data.spans[0], trace.data.spans[1]

    assert root.trace_id == child.trace_id == record["trace_id"]
    assert root.span_id == record["spans"][0]["span_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", root.span_id)
    assert root.parent_id is None
    assert child.parent_id == root.span_id


def test_span_trace_id_is_derived_from_the_otel_id_when_the_attribute_is_missing() -> None:
    record = agent_trace()
    data = trace_json(record)
    del data["data"]["spans"][0]["attributes"]["mlflow.traceRequestId"]

    assert Trace.from_dict(data).data.spans[0].trace_id == record["trace_id"]


def test_span_attributes_inputs_and_outputs_are_json_decoded() -> None:
    record = agent_trace()
    chat_record = next(s for s in record["spans"] if s["name"] == "chat")
    chat = Trace.from_dict(trace_json(record)).search_spans(span_id=chat_record["span_id"])[0]

    assert chat.name == "chat"
    assert chat.span_type == "CHAT_MODEL"
    assert chat.inputs == json.loads(chat_record["attributes"]["mlflow.spanInputs"])
    assert chat.outputs["choices"][0]["message"]["role"] == "assistant"
    assert chat.get_attribute("temperature") == 0.2
    assert (
        chat.get_attribute("model")
        == chat.attributes["model"]
        == json.loads(chat_record["attributes"]["model"])
    )
    assert chat.get_attribute("no.such.attribute") is None
    assert set(chat.attributes) == set(chat_record["attributes"])
    assert (chat.start_time_ns, chat.end_time_ns) == (
        chat_record["start_time_ns"],
        chat_record["end_time_ns"],
    )


def test_an_attribute_that_is_not_json_is_returned_as_stored() -> None:
    data = trace_json(agent_trace())
    data["data"]["spans"][0]["attributes"]["deployment"] = "eu-west-1/blue"

    assert Trace.from_dict(data).data.spans[0].get_attribute("deployment") == "eu-west-1/blue"


def test_a_failed_span_has_error_status_and_the_exception_event() -> None:
    trace = Trace.from_dict(trace_json(agent_trace(error=True)))
    failed = [s for s in trace.data.spans if s.status.status_code is SpanStatusCode.ERROR]

    assert [s.status.description for s in failed] == ["upstream model failed", "rate limited by provider"]
    event = failed[1].events[0]
    assert event.name == "exception"
    assert event.attributes == {"exception.type": "RateLimitError", "exception.message": "429"}
    assert event.timestamp == failed[1].end_time_ns


def test_trace_data_request_and_response_are_the_root_spans_raw_json() -> None:
    record = agent_trace()
    data = Trace.from_dict(trace_json(record)).data

    assert data.request == record["spans"][0]["attributes"]["mlflow.spanInputs"]
    assert data.response == record["spans"][0]["attributes"]["mlflow.spanOutputs"]


def test_trace_data_without_spans_has_no_request_or_response() -> None:
    data = trace_json(agent_trace())
    data["data"]["spans"] = []
    trace = Trace.from_dict(data)

    assert (trace.data.request, trace.data.response, trace.intermediate_outputs) == (None, None, None)


# ---------------------------------------------------------------- search_spans / search_assessments


def test_search_spans_by_exact_name_pattern_type_and_id() -> None:
    record = agent_trace(min_spans=10, max_spans=10)
    trace = Trace.from_dict(trace_json(record))
    names = [s["name"] for s in record["spans"]]

    assert [s.name for s in trace.search_spans(name="chat")] == ["chat"] * names.count("chat")
    assert {s.name for s in trace.search_spans(name=re.compile(r"^(chat|retrieve)$"))} == {"chat", "retrieve"}
    assert [s.span_type for s in trace.search_spans(span_type="RETRIEVER")] == ["RETRIEVER"] * names.count(
        "retrieve"
    )
    assert trace.search_spans(name="chat", span_type="TOOL") == []
    third = record["spans"][2]["span_id"]
    assert [s.span_id for s in trace.search_spans(span_id=third)] == [third]
    assert len(trace.search_spans()) == 10


def test_search_spans_takes_span_type_first_positionally_like_mlflow() -> None:
    trace = Trace.from_dict(trace_json(agent_trace()))

    assert [s.name for s in trace.search_spans("AGENT")] == ["support_agent"]


def test_search_assessments_returns_only_valid_ones_unless_all() -> None:
    trace = Trace.from_dict(trace_json(reviewed_trace()))

    ratings = trace.search_assessments("rating")
    assert [(a.value, a.rationale) for a in ratings] == [(4, "fixed later")]
    assert [a.value for a in trace.search_assessments("rating", all=True)] == [2, 4]


def test_search_assessments_by_type_and_span() -> None:
    record = reviewed_trace()
    chat_id = next(s for s in record["spans"] if s["name"] == "chat")["span_id"]
    trace = Trace.from_dict(trace_json(record))

    assert [a.name for a in trace.search_assessments(type="expectation")] == ["expected_answer"]
    assert [a.name for a in trace.search_assessments(type="feedback")] == ["rating", "grounded"]
    assert [(a.name, a.source.source_type) for a in trace.search_assessments(span_id=chat_id)] == [
        ("grounded", "LLM_JUDGE")
    ]
    assert trace.search_assessments("expected_answer")[0].value == {"answer": "refund issued", "steps": 2}


def test_a_feedback_that_failed_has_its_error_and_no_value() -> None:
    record = agent_trace()
    record["assessments"] = [
        assessment(
            record,
            "safety",
            "FEEDBACK",
            None,
            error={"error_code": "RATE_LIMIT", "error_message": "judge busy"},
        )
    ]
    [safety] = Trace.from_dict(trace_json(record)).search_assessments("safety")

    assert safety.value is None
    assert safety.error is not None
    assert (safety.error.error_code, safety.error.error_message) == ("RATE_LIMIT", "judge busy")
    assert safety.to_dictionary()["feedback"] == {
        "value": None,
        "error": {"error_code": "RATE_LIMIT", "error_message": "judge busy"},
    }


# ---------------------------------------------------------------- intermediate outputs


def test_intermediate_outputs_are_non_root_outputs_by_numbered_span_name() -> None:
    record = agent_trace(min_spans=7, max_spans=7)
    trace = Trace.from_dict(trace_json(record))
    children = record["spans"][1:]
    chats = [s for s in children if s["name"] == "chat"]

    outputs = trace.intermediate_outputs
    assert outputs is not None
    assert outputs["chat_1"] == json.loads(chats[0]["attributes"]["mlflow.spanOutputs"])
    assert outputs["chat_2"] == json.loads(chats[1]["attributes"]["mlflow.spanOutputs"])
    assert "support_agent" not in outputs
    assert len(outputs) == len(children)


# ---------------------------------------------------------------- round trips


def test_to_dict_gives_back_the_api_json_for_a_trace_without_assessments() -> None:
    data = trace_json(agent_trace(error=True))

    assert Trace.from_dict(data).to_dict() == data


def test_assessments_render_as_mlflow_does_numbers_as_floats_structures_serialized() -> None:
    record = reviewed_trace()
    rendered = Trace.from_dict(trace_json(record)).to_dict()["info"]["assessments"]

    assert rendered[0]["feedback"] == {"value": 2.0}
    assert rendered[0]["valid"] is False
    assert rendered[1]["overrides"] == record["assessments"][0]["assessment_id"]
    assert rendered[2]["feedback"] == {"value": True}
    assert rendered[3]["expectation"] == {
        "serialized_value": {
            "serialization_format": "JSON_FORMAT",
            "value": '{"answer": "refund issued", "steps": 2}',
        }
    }
    assert rendered[3]["create_time"] == "2026-11-22T08:14:32.365Z"


def test_from_dict_of_to_dict_is_the_same_trace() -> None:
    trace = Trace.from_dict(trace_json(reviewed_trace()))

    again = Trace.from_dict(trace.to_dict())
    assert again.to_dict() == trace.to_dict()
    assert again.info.assessments == trace.info.assessments
    assert again.data.spans == trace.data.spans


def test_json_round_trip() -> None:
    trace = Trace.from_dict(trace_json(reviewed_trace()))

    text = trace.to_json()
    assert json.loads(text) == trace.to_dict()
    assert Trace.from_json(text).to_dict() == trace.to_dict()
    assert Trace.from_json(trace.to_json(pretty=True)).to_dict() == trace.to_dict()


def test_assessment_to_dictionary_round_trips() -> None:
    record = reviewed_trace()
    for logged in record["assessments"]:
        parsed = Assessment.from_dictionary(mlflow_assessment_dict(logged))
        assert Assessment.from_dictionary(parsed.to_dictionary()) == parsed
        assert parsed.assessment_id == logged["assessment_id"]
        assert parsed.kind == logged["kind"].lower()


def test_a_dict_without_info_or_data_is_rejected() -> None:
    with pytest.raises(ValueError, match="Expected keys: 'info' and 'data'"):
        Trace.from_dict({"info": trace_json(agent_trace())["info"]})


def test_the_sdk_and_the_client_share_one_set_of_entity_types() -> None:
    from tracestream import producers
    from tracestream.search_api import entities

    for name in ("Assessment", "AssessmentError", "AssessmentSource", "SpanEvent", "SpanStatus"):
        assert getattr(producers, name) is getattr(entities, name)
    assert producers.SpanStatusCode is entities.SpanStatusCode
    feedback = producers.Feedback(
        name="correctness",
        value=1,
        error=producers.AssessmentError("TIMEOUT", "judge timed out"),
        trace_id="tr-" + "1" * 32,
        assessment_id=new_assessment_id(),
        create_time_ms=REQUEST_TIME_MS,
    )
    expectation = producers.Expectation(name="expected", value={"answer": 42}, trace_id="tr-" + "1" * 32)

    assert isinstance(feedback, Assessment)
    assert (feedback.kind, feedback.source.source_type) == ("feedback", "CODE")
    assert (expectation.kind, expectation.source.source_type) == ("expectation", "HUMAN")
    for logged in (feedback, expectation):
        assert Assessment.from_dictionary(logged.to_dictionary()).to_dictionary() == logged.to_dictionary()
