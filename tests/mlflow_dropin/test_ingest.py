"""What MLflow's client and OpenTelemetry SDKs send, as events of our data contract (no servers)."""

from __future__ import annotations

import base64
import gzip
import json
import zlib

import pytest
from google.protobuf import json_format

from mlflow_dropin.otlp_requests import (
    CHILD_HEX,
    ROOT_HEX,
    TRACE_ID,
    export_request,
    mlflow_spans,
    span,
    start_trace_body,
)
from tracestream.schemas import ASSESSMENT_LOGGED, SPAN_ENDED, TRACE_ENDED, TRACE_TAGS_CHANGED, events_codec
from tracestream.schemas.mlflow_format import mlflow_assessment_dict
from tracestream.search_api.mlflow_rest.ingest import (
    OtlpError,
    OtlpTooLarge,
    assessment_deletion,
    assessment_record,
    assessment_update,
    decompress,
    otlp_events,
    parse_otlp,
    tag_event,
    trace_info_events,
    translate_genai,
)
from tracestream.search_api.mlflow_rest.protojson import visible_assessments
from tracestream.search_api.search import SearchError

LIMIT = 20 * 1024 * 1024  # the default of TRACESTREAM_API__MAX_INFLATED_BODY_BYTES


def _encodable(events: list) -> None:
    codec = events_codec()
    for _, (branch, record) in events:
        assert codec.decode(codec.encode_union(branch, record))["event"] == (branch, record)


# ---------------------------------------------------------------- spans


def test_mlflow_spans_become_span_events_with_mlflows_json_encoded_attributes() -> None:
    events = otlp_events(export_request(*mlflow_spans()), "2")
    _encodable(events)
    # No trace info from spans MLflow's SDK wrote: its StartTraceV3 brings it.
    assert [(key, branch) for key, (branch, _) in events] == [(TRACE_ID, SPAN_ENDED), (TRACE_ID, SPAN_ENDED)]
    child = events[0][1][1]
    assert child["span_id"] == CHILD_HEX and child["parent_span_id"] == ROOT_HEX
    assert child["span_type"] == "LLM"
    assert child["location"] == {"type": "MLFLOW_EXPERIMENT", "experiment_id": "2"}
    assert child["attributes"] == {
        "mlflow.traceRequestId": '"tr-c50a7c35abb3e8787098ebcc6fbd6900"',
        "mlflow.spanType": '"LLM"',
        "mlflow.spanInputs": '{"q": "hello"}',
        "mlflow.chat.tokenUsage": '{"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}',
        "model": '"gpt-4"',
        "mlflow.spanOutputs": '"answer to hello"',
        "mlflow.spanLogLevel": "20",
    }
    root = events[1][1][1]
    assert root["parent_span_id"] is None
    assert root["end_time_ns"] - root["start_time_ns"] == 71_000_000


def test_a_root_span_from_an_opentelemetry_sdk_also_ends_its_trace() -> None:
    trace_hex = "ab" * 16
    request = export_request(
        span(
            "01" * 8,
            "02" * 8,
            "lookup",
            {"user.id": "u-7", "gen_ai.conversation.id": "c-1"},
            5,
            20,
            trace_hex=trace_hex,
        ),
        span(
            "02" * 8,
            None,
            "handle",
            {"mlflow.traceTag.team": "care"},
            0,
            40,
            error="boom",
            trace_hex=trace_hex,
        ),
    )
    events = otlp_events(request, None)
    _encodable(events)
    assert [branch for _, (branch, _) in events] == [SPAN_ENDED, SPAN_ENDED, TRACE_ENDED]
    ended = events[2][1][1]
    assert ended == {
        "trace_id": f"tr-{trace_hex}",
        "client_request_id": None,
        "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "0"},  # no header: the default experiment
        "request_time_ms": events[1][1][1]["start_time_ns"] // 1_000_000,
        "execution_duration_ms": 40,
        "state": "ERROR",
        "tags": {"team": "care"},
        "metadata": {
            "mlflow.trace_schema.version": "3",
            "mlflow.trace.session": "c-1",
            "mlflow.trace.user": "u-7",
        },
        "request_preview": None,
        "response_preview": None,
        "root_span_id": "02" * 8,
        "span_count": 2,  # the spans of this export; later ones become revisions
    }
    assert events[0][1][1]["attributes"]["mlflow.traceRequestId"] == f'"tr-{trace_hex}"'


def test_genai_semantic_conventions_map_to_mlflows_span_attributes() -> None:
    assert translate_genai(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 30,
            "gen_ai.usage.cache_read.input_tokens": 100,
            "gen_ai.input.messages": '[{"role": "user", "content": "hi"}]',
        }
    ) == {
        "mlflow.spanType": "CHAT_MODEL",
        "mlflow.spanInputs": [{"role": "user", "content": "hi"}],
        "mlflow.chat.tokenUsage": {
            "input_tokens": 120,
            "output_tokens": 30,
            "total_tokens": 150,
            "cache_read_input_tokens": 100,
        },
        "mlflow.llm.model": "gpt-4o-2024-08-06",
        "mlflow.llm.provider": "openai",
    }
    # What the span already says wins; a lone count is no total.
    assert translate_genai(
        {"mlflow.spanType": "LLM", "gen_ai.operation.name": "chat", "gen_ai.usage.output_tokens": "7"}
    ) == {"mlflow.chat.tokenUsage": {"output_tokens": 7}}
    assert translate_genai({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.call.result": "42"}) == {
        "mlflow.spanType": "TOOL",
        "mlflow.spanOutputs": 42,
    }


def test_otlp_comes_as_protobuf_or_json_plain_gzip_or_deflate() -> None:
    request = export_request(*mlflow_spans())
    binary = request.SerializeToString()
    assert parse_otlp(binary, "application/x-protobuf", None, LIMIT) == request
    assert parse_otlp(gzip.compress(binary), "application/x-protobuf", "gzip", LIMIT) == request
    assert parse_otlp(zlib.compress(binary), "application/x-protobuf", "deflate", LIMIT) == request
    # OTLP/JSON writes ids in hex and field names in lowerCamelCase
    as_json = json_format.MessageToDict(request)
    for resource in as_json["resourceSpans"]:
        for s in resource["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in s:
                    s[key] = base64.b64decode(s[key]).hex()
    assert parse_otlp(json.dumps(as_json).encode(), "application/json; charset=utf-8", None, LIMIT) == request


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "message"),
    [
        (b"x", "text/plain", None, "Invalid Content-Type: text/plain"),
        (b"\xff\x00garbage", "application/x-protobuf", None, "Invalid OpenTelemetry format"),
        (b"{not json", "application/json", None, "Invalid OpenTelemetry format"),
        (b"not gzip", "application/x-protobuf", "gzip", "Failed to decompress gzip payload"),
        (b"x", "application/x-protobuf", "br", "Unsupported Content-Encoding: br"),
    ],
)
def test_unreadable_otlp_is_refused(
    body: bytes, content_type: str, encoding: str | None, message: str
) -> None:
    with pytest.raises(OtlpError, match=message):
        parse_otlp(body, content_type, encoding, LIMIT)


def test_a_compressed_body_is_inflated_up_to_the_limit_and_no_further() -> None:
    # 50 MB of zeros compress to about 50 kB: a small bomb against a 1 MiB limit
    bomb = gzip.compress(bytes(50_000_000))
    exactly = zlib.compress(bytes(1024 * 1024))

    assert decompress(exactly, "deflate", 1024 * 1024) == bytes(1024 * 1024)
    with pytest.raises(OtlpTooLarge, match="inflates beyond the limit of 1048576 bytes"):
        decompress(bomb, "gzip", 1024 * 1024)


def test_gzip_members_raw_deflate_and_truncated_streams_inflate_as_before() -> None:
    binary = export_request(*mlflow_spans()).SerializeToString()
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = raw_deflate.compress(binary) + raw_deflate.flush()

    assert decompress(gzip.compress(binary[:100]) + gzip.compress(binary[100:]), "gzip", LIMIT) == binary
    assert decompress(raw, "deflate", LIMIT) == binary
    with pytest.raises(OtlpError, match="Failed to decompress gzip payload"):
        decompress(gzip.compress(binary)[:-12], "gzip", LIMIT)


# ---------------------------------------------------------------- trace info


def test_start_trace_ends_the_trace_expecting_the_clients_span_count() -> None:
    events, answer = trace_info_events(start_trace_body(num_spans=3))
    _encodable(events)
    ((key, (branch, ended)),) = events
    assert (key, branch) == (TRACE_ID, TRACE_ENDED)
    assert ended["span_count"] == 3  # num_spans of mlflow.trace.sizeStats
    assert ended["request_time_ms"] == 1_795_321_886_716
    assert ended["execution_duration_ms"] == 71
    assert ended["location"]["experiment_id"] == "2"
    assert ended["state"] == "OK"
    assert ended["client_request_id"] == "req-1"
    assert ended["tags"] == {"mlflow.traceName": "agent", "env": "prod"}  # server-managed tags dropped
    assert ended["metadata"]["custom"] == "x"
    assert ended["root_span_id"] is None
    # The answer tells the client its spans are in the tracking store: no artifact upload.
    assert answer["tags"] == {
        "mlflow.traceName": "agent",
        "env": "prod",
        "mlflow.trace.spansLocation": "TRACKING_STORE",
    }


def test_start_trace_without_size_stats_waits_for_the_root_at_least() -> None:
    body = start_trace_body()
    del body["trace"]["trace_info"]["trace_metadata"]["mlflow.trace.sizeStats"]
    events, _ = trace_info_events(body)
    assert events[0][1][1]["span_count"] == 1


def test_assessments_logged_during_the_trace_come_with_its_info_and_keep_their_ids_on_retry() -> None:
    body = start_trace_body()
    body["trace"]["trace_info"]["assessments"] = [
        {
            "assessment_name": "expected",
            "trace_id": TRACE_ID,
            "source": {"source_type": "HUMAN", "source_id": "default"},
            "create_time": "2026-11-22T04:31:26.852Z",
            "last_update_time": "2026-11-22T04:31:26.852Z",
            "expectation": {"value": "answer"},
        }
    ]
    events, _ = trace_info_events(body)
    retried, _ = trace_info_events(body)
    _encodable(events)
    assert [branch for _, (branch, _) in events] == [TRACE_ENDED, ASSESSMENT_LOGGED]
    logged = events[1][1][1]
    assert logged == retried[1][1][1]
    assert (logged["name"], logged["kind"], logged["value_json"]) == ("expected", "EXPECTATION", '"answer"')


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.pop("trace"), "Missing value for required parameter 'trace'"),
        (lambda b: b["trace"]["trace_info"].update(trace_id="abc"), "Invalid trace_id 'abc'"),
        (
            lambda b: b["trace"]["trace_info"].update(state="DONE"),
            "Invalid value 'DONE' for parameter 'state'",
        ),
        (lambda b: b["trace"]["trace_info"].update(request_time="yesterday"), "parameter 'request_time'"),
    ],
)
def test_invalid_trace_info_is_refused(change, message: str) -> None:
    body = start_trace_body()
    change(body)
    with pytest.raises(SearchError, match=message) as refused:
        trace_info_events(body)
    assert (refused.value.status, refused.value.error_code) == (400, "INVALID_PARAMETER_VALUE")


# ---------------------------------------------------------------- tags and assessments


def test_tag_changes_are_tag_events() -> None:
    ((key, (branch, record)),) = tag_event(TRACE_ID, set_tags={"reviewed": "yes"})
    assert (key, branch, record["set"], record["deleted"]) == (
        TRACE_ID,
        TRACE_TAGS_CHANGED,
        {"reviewed": "yes"},
        [],
    )
    ((_, (_, record)),) = tag_event(TRACE_ID, deleted=["reviewed"])
    assert (record["set"], record["deleted"]) == ({}, ["reviewed"])


def test_feedback_is_an_assessment_event_rendered_back_as_mlflow_logged_it() -> None:
    message = {
        "assessment_name": "quality",
        "trace_id": TRACE_ID,
        "source": {"source_type": "HUMAN", "source_id": "me"},
        "create_time": "2026-11-22T04:31:26.835Z",
        "last_update_time": "2026-11-22T04:31:26.835Z",
        "feedback": {"value": 0.8},
        "rationale": "ok",
        "metadata": {"k": "v"},
    }
    record = assessment_record(message, TRACE_ID)
    assert record["assessment_id"].startswith("a-")
    assert mlflow_assessment_dict(record) == {
        **message,
        "assessment_id": record["assessment_id"],
        "valid": True,
    }
    error_only = assessment_record(
        {**message, "feedback": {"error": {"error_code": "RATE_LIMIT", "error_message": "slow down"}}},
        TRACE_ID,
    )
    assert (error_only["value_json"], error_only["error"]) == (
        None,
        {"error_code": "RATE_LIMIT", "error_message": "slow down"},
    )
    structured = assessment_record(
        {
            **{k: v for k, v in message.items() if k != "feedback"},
            "expectation": {
                "serialized_value": {"serialization_format": "JSON_FORMAT", "value": '{"a": [1]}'}
            },
        },
        TRACE_ID,
    )
    assert (structured["kind"], structured["value_json"]) == ("EXPECTATION", '{"a": [1]}')


def test_updated_and_deleted_assessments_read_as_mlflow_shows_them() -> None:
    original = assessment_record(
        {
            "assessment_name": "quality",
            "source": {"source_type": "HUMAN", "source_id": "me"},
            "feedback": {"value": 1},
        },
        TRACE_ID,
    )
    other = assessment_record({"assessment_name": "tone", "feedback": {"value": "curt"}}, TRACE_ID)
    shown = mlflow_assessment_dict(original)
    update = assessment_update(
        shown, original["assessment_id"], TRACE_ID, {"feedback": {"value": 3}}, "feedback"
    )
    # Stored: the update overrides the original (the stream marks it invalid)
    assert update["overrides"] == original["assessment_id"] != update["assessment_id"]
    stored = [
        {**mlflow_assessment_dict(original), "valid": False},
        mlflow_assessment_dict(other),
        mlflow_assessment_dict(update),
    ]
    visible = visible_assessments(stored)
    assert [(a["assessment_id"], a["feedback"], a["valid"]) for a in visible] == [
        (original["assessment_id"], {"value": 3}, True),  # updated in place
        (other["assessment_id"], {"value": "curt"}, True),
    ]
    assert "metadata" not in visible[0]
    # A second update overrides the current version, not the original.
    second = assessment_update(
        visible[0], update["assessment_id"], TRACE_ID, {"rationale": "why"}, "rationale"
    )
    assert second["overrides"] == update["assessment_id"]
    deletion = assessment_deletion(TRACE_ID, other["assessment_id"], other["assessment_id"])
    stored = [
        *stored[:2],
        {**stored[2], "valid": False},
        mlflow_assessment_dict(second),
        mlflow_assessment_dict(deletion),
    ]
    stored[1] = {**stored[1], "valid": False}
    assert [(a["assessment_id"], a["feedback"], a.get("rationale")) for a in visible_assessments(stored)] == [
        (original["assessment_id"], {"value": 3}, "why")
    ]
