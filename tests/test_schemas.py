"""The data contract: encoding round trips, framing, bad input, and schema evolution."""

from __future__ import annotations

import copy
import json
from io import BytesIO
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from tracestream import schemas
from tracestream.schemas import (
    ASSESSMENT_LOGGED,
    EVENT_BATCH,
    SPAN_ENDED,
    TRACE_DELETED,
    TRACE_ENDED,
    TRACE_LINKED,
    TRACE_TAGS_CHANGED,
    DecodeError,
    DecodeReason,
)
from tracestream.schemas.codec import SINGLE_OBJECT_MAGIC
from tracestream.schemas.evolution import history_incompatibilities, incompatibilities

TRACE_ID = "tr-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e"
LOCATION = {"type": "MLFLOW_EXPERIMENT", "experiment_id": "42"}

LLM_SPAN = {
    "trace_id": TRACE_ID,
    "span_id": "9c2e4a6b8d0f1a3c",
    "parent_span_id": "1b3d5f7a9c2e4a6b",
    "name": "ChatOpenAI",
    "span_type": "CHAT_MODEL",
    "start_time_ns": 1_763_784_000_123_000_000,
    "end_time_ns": 1_763_784_001_456_000_000,
    "status_code": "ERROR",
    "status_message": "RateLimitError: Rate limit reached for gpt-4o",
    "attributes": {
        "mlflow.traceRequestId": json.dumps(TRACE_ID),
        "mlflow.spanType": '"CHAT_MODEL"',
        "mlflow.spanInputs": json.dumps(
            {"messages": [{"role": "user", "content": "Résumé de la réunion ?"}]}, ensure_ascii=False
        ),
        "mlflow.chat.tokenUsage": '{"input_tokens": 812, "output_tokens": 0, "total_tokens": 812}',
        "temperature": "0.2",
    },
    "events": [
        {
            "name": "exception",
            "time_ns": 1_763_784_001_455_000_000,
            "attributes": {
                "exception.type": "RateLimitError",
                "exception.message": "Rate limit reached for gpt-4o",
                "exception.escaped": False,
                "retry.attempts": 3,
                "retry.backoff_s": [0.5, 1.0, 2.0],
            },
        }
    ],
    "location": LOCATION,
}

TRACE_END = {
    "trace_id": TRACE_ID,
    "client_request_id": "req-2026-11-22-000173",
    "location": LOCATION,
    "request_time_ms": 1_763_784_000_100,
    "execution_duration_ms": 1_402,
    "state": "ERROR",
    "tags": {"mlflow.traceName": "support_agent", "team": "care"},
    "metadata": {
        "mlflow.trace.user": "u-4821",
        "mlflow.trace.session": "s-77",
        "mlflow.trace_schema.version": "3",
    },
    "request_preview": '{"question": "Where is my order?"}',
    "response_preview": None,
    "root_span_id": "1b3d5f7a9c2e4a6b",
    "span_count": 4,
}

TAGS_CHANGED = {
    "trace_id": TRACE_ID,
    "set": {"reviewed": "true"},
    "deleted": ["draft"],
    "time_ms": 1_763_784_100_000,
}

FEEDBACK = {
    "assessment_id": "a-0d1c2b3a49586776a5b4c3d2e1f00f1e",
    "trace_id": TRACE_ID,
    "name": "helpfulness",
    "kind": "FEEDBACK",
    "value_json": "0.25",
    "error": None,
    "source_type": "LLM_JUDGE",
    "source_id": "gpt-4o-judge",
    "rationale": "The answer ignored the order number.",
    "metadata": {"judge_version": "2"},
    "span_id": None,
    "create_time_ms": 1_763_784_200_000,
    "last_update_time_ms": None,
    "overrides": None,
    "valid": True,
}


EVERY_EVENT_KIND = [
    (SPAN_ENDED, LLM_SPAN),
    (TRACE_ENDED, TRACE_END),
    (TRACE_TAGS_CHANGED, TAGS_CHANGED),
    (ASSESSMENT_LOGGED, FEEDBACK),
    (
        TRACE_LINKED,
        {
            "trace_id": TRACE_ID,
            "run_ids": ["5f1c0a7e9b2d4c3a8e6f1b0d2c4a6e8f"],
            "prompt_versions": ["qa-system-prompt/3", "rewrite-query/12"],
            "time_ms": 1_763_784_400_000,
        },
    ),
    (TRACE_DELETED, {"trace_id": TRACE_ID, "time_ms": 1_763_784_500_000, "reason": "DeleteTraces"}),
]


def completed_trace() -> dict:
    info = {
        k: TRACE_END[k]
        for k in (
            "trace_id",
            "client_request_id",
            "location",
            "request_time_ms",
            "execution_duration_ms",
            "state",
            "request_preview",
            "response_preview",
            "tags",
            "metadata",
        )
    }
    return {
        "trace_id": TRACE_ID,
        "revision": 2,
        "info": info,
        "spans": [LLM_SPAN],
        "assessments": [FEEDBACK],
        "linked_run_ids": ["5f1c0a7e9b2d4c3a8e6f1b0d2c4a6e8f"],
        "linked_prompts": ["qa-system-prompt/3"],
        "completed_time_ms": 1_763_784_300_000,
    }


@pytest.mark.parametrize(("kind", "record"), EVERY_EVENT_KIND)
def test_every_event_kind_round_trips(kind: str, record: dict) -> None:
    codec = schemas.events_codec()

    assert codec.decode(codec.encode({"event": (kind, record)})) == {"event": (kind, record)}


@pytest.mark.parametrize(("kind", "record"), EVERY_EVENT_KIND)
def test_encoding_a_union_branch_directly_gives_the_same_bytes(kind: str, record: dict) -> None:
    codec = schemas.events_codec()

    assert codec.encode_union(kind, record) == codec.encode({"event": (kind, record)})


def test_a_batch_of_one_traces_events_round_trips_in_order() -> None:
    codec = schemas.events_codec()
    batch = {"trace_id": TRACE_ID, "events": EVERY_EVENT_KIND}

    decoded = codec.decode(codec.encode_union(EVENT_BATCH, batch))["event"]

    assert decoded == (EVENT_BATCH, batch)
    assert schemas.events_of(decoded) == EVERY_EVENT_KIND


def test_a_single_event_is_its_own_list_of_events() -> None:
    assert schemas.events_of((SPAN_ENDED, LLM_SPAN)) == [(SPAN_ENDED, LLM_SPAN)]


def test_completed_trace_round_trips() -> None:
    codec = schemas.completed_codec()

    assert codec.decode(codec.encode(completed_trace())) == completed_trace()


def _crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it, independent of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_crc64_reference_matches_the_avro_spec_test_vector() -> None:
    # From the Avro project's schema test cases: "int" -> 8247732601305521295.
    assert _crc64_avro(b'"int"') == 8247732601305521295


def test_single_object_header_is_magic_then_little_endian_fingerprint() -> None:
    codec = schemas.events_codec()
    writer = codec.writer_schema

    data = codec.encode({"event": (TRACE_TAGS_CHANGED, TAGS_CHANGED)})

    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == _crc64_avro(writer.canonical.encode()).to_bytes(8, "little")


def test_a_completed_trace_is_refused_by_the_events_codec() -> None:
    data = schemas.completed_codec().encode(completed_trace())

    with pytest.raises(DecodeError) as raised:
        schemas.events_codec().decode(data)

    assert raised.value.reason is DecodeReason.WRONG_TYPE


def test_an_unknown_fingerprint_is_refused() -> None:
    data = bytearray(schemas.events_codec().encode({"event": (TRACE_TAGS_CHANGED, TAGS_CHANGED)}))
    data[2:10] = bytes(8)

    with pytest.raises(DecodeError) as raised:
        schemas.events_codec().decode(bytes(data))

    assert raised.value.reason is DecodeReason.UNKNOWN_SCHEMA


def test_every_truncation_of_a_valid_message_is_a_decode_error() -> None:
    codec = schemas.events_codec()
    data = codec.encode({"event": (SPAN_ENDED, LLM_SPAN)})

    reasons = set()
    for length in range(len(data)):
        with pytest.raises(DecodeError) as raised:
            codec.decode(data[:length])
        reasons.add(raised.value.reason)

    assert reasons <= {DecodeReason.TRUNCATED, DecodeReason.MALFORMED}


def test_trailing_bytes_are_a_decode_error() -> None:
    codec = schemas.events_codec()

    with pytest.raises(DecodeError, match="after the record"):
        codec.decode(codec.encode({"event": (TRACE_TAGS_CHANGED, TAGS_CHANGED)}) + b"\x00")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        decoded = schemas.events_codec().decode(data)
    except DecodeError:
        return
    assert isinstance(decoded, dict)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_garbage_behind_a_valid_header_decodes_or_raises_decode_error(body: bytes) -> None:
    codec = schemas.events_codec()
    header = codec.encode({"event": (TRACE_TAGS_CHANGED, TAGS_CHANGED)})[:10]
    try:
        decoded = codec.decode(header + body)
    except DecodeError:
        return
    assert isinstance(decoded, dict)


def test_a_record_that_does_not_fit_is_an_encode_error() -> None:
    span = {**LLM_SPAN, "start_time_ns": "yesterday"}

    with pytest.raises(schemas.EncodeError, match=r"does not fit io\.tracestream\.TraceEvent"):
        schemas.events_codec().encode({"event": (SPAN_ENDED, span)})


def test_confluent_wire_format_with_a_registry() -> None:
    # confluent-kafka's in-memory registry (mock:// URL); no registry server is available here.
    codec = schemas.events_codec(schema_registry_url="mock://test-confluent-wire", topic="llm.events")
    event = {"event": (TRACE_ENDED, TRACE_END)}

    data = codec.encode(event)

    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert schema_id >= 1
    assert codec.decode(data) == event


def test_a_registry_codec_still_reads_single_object_messages() -> None:
    single_object = schemas.events_codec().encode({"event": (SPAN_ENDED, LLM_SPAN)})
    registry_codec = schemas.events_codec(
        schema_registry_url="mock://test-mixed-framings", topic="llm.events"
    )

    assert registry_codec.decode(single_object) == {"event": (SPAN_ENDED, LLM_SPAN)}


def _readers_used(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The reader schema each decode hands fastavro (None: the writer's own, no resolution)."""
    from tracestream.schemas import codec as codec_module

    used: list[object] = []

    def recording_reader(buffer, writer, reader=None, **options):  # type: ignore[no-untyped-def]
        used.append(reader)
        return schemaless_reader(buffer, writer, reader, **options)

    monkeypatch.setattr(codec_module, "schemaless_reader", recording_reader)
    return used


def test_a_record_of_the_newest_schema_is_read_without_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    # TraceEvent v2 and v3 had the same canonical form, so the same fingerprint; resolving the
    # writer against the reader anyway made each decode about three times slower. TraceAlert
    # is the same in every version.
    codec = schemas.alerts_codec()
    shipped = [v.fingerprint for v in codec._schemas.versions["TraceAlert"]]
    assert shipped.count(codec.writer_schema.fingerprint) > 1
    alert = {
        "trace_id": TRACE_ID,
        "revision": 1,
        "trace_name": "support_agent",
        "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "0"},
        "request_time_ms": 1_763_784_000_000,
        "execution_duration_ms": 2_300,
        "failed_spans": [],
        "tags": {},
        "metadata": {},
        "alert_time_ms": 1_763_784_003_000,
    }
    used = _readers_used(monkeypatch)

    assert codec.decode(codec.encode(alert)) == alert
    assert used == [None]


def test_a_registry_record_of_the_newest_schema_is_read_without_resolution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codec = schemas.events_codec(schema_registry_url="mock://test-no-resolution", topic="llm.events")
    data = codec.encode({"event": (TRACE_ENDED, TRACE_END)})
    used = _readers_used(monkeypatch)

    assert codec.decode(data) == {"event": (TRACE_ENDED, TRACE_END)}
    assert codec.decode(data) == {"event": (TRACE_ENDED, TRACE_END)}
    assert used == [None, None]


def test_a_record_of_an_older_schema_is_resolved_to_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = schemas.events_codec()
    oldest = codec._schemas.versions["TraceEvent"][0]
    assert oldest.fingerprint != codec.writer_schema.fingerprint
    buffer = BytesIO()
    schemaless_writer(buffer, oldest.parsed, {"event": (TRACE_ENDED, TRACE_END)})
    used = _readers_used(monkeypatch)

    decoded = codec.decode(SINGLE_OBJECT_MAGIC + oldest.fingerprint + buffer.getvalue())

    assert decoded["event"][0] == TRACE_ENDED
    assert used == [codec.writer_schema.parsed]


# ---------------------------------------------------------------- evolution


def test_each_shipped_version_is_compatible_with_the_previous_one() -> None:
    assert history_incompatibilities(schemas.shipped()) == {}


def test_shipped_versions_are_never_edited() -> None:
    recorded = (Path(schemas.__file__).parent / "avro" / "FINGERPRINTS").read_text().split("\n")
    shipped = [
        f"v{version.version} {name} {version.fingerprint.hex()}"
        for name, history in schemas.shipped().versions.items()
        for version in history
    ]

    assert shipped == [line for line in recorded if line], (
        "a shipped schema changed: add a new version directory instead (schemas/README.md)"
    )


def _tags_changed_v1() -> dict:
    return json.loads(
        (Path(schemas.__file__).parent / "avro/v1/io.tracestream.TraceTagsChanged.avsc").read_text()
    )


def test_adding_a_field_with_a_default_is_compatible() -> None:
    old = _tags_changed_v1()
    new = copy.deepcopy(old)
    new["fields"].append({"name": "actor", "type": ["null", "string"], "default": None})

    assert incompatibilities(parse_schema(old), parse_schema(new)) == []


def test_adding_a_field_without_a_default_breaks_old_data() -> None:
    old = _tags_changed_v1()
    new = copy.deepcopy(old)
    new["fields"].append({"name": "actor", "type": "string"})

    problems = incompatibilities(parse_schema(old), parse_schema(new))

    assert [p.split(":")[0] for p in problems] == ["backward (new reader, old data)"]


def test_removing_a_field_without_a_default_breaks_old_readers() -> None:
    old = _tags_changed_v1()
    new = copy.deepcopy(old)
    new["fields"] = [f for f in new["fields"] if f["name"] != "time_ms"]

    problems = incompatibilities(parse_schema(old), parse_schema(new))

    assert [p.split(":")[0] for p in problems] == ["forward (old reader, new data)"]


def test_changing_a_field_type_breaks_both_ways() -> None:
    old = _tags_changed_v1()
    new = copy.deepcopy(old)
    next(f for f in new["fields"] if f["name"] == "time_ms")["type"] = "string"

    problems = incompatibilities(parse_schema(old), parse_schema(new))

    assert len(problems) == 2


def test_the_event_batch_branch_is_compatible_for_records_that_keep_to_the_old_branches() -> None:
    v1, v2 = schemas.shipped().versions["TraceEvent"][:2]

    assert incompatibilities(v1.parsed, v2.parsed) == []


def test_an_old_reader_cannot_read_a_record_that_takes_a_new_union_branch() -> None:
    v1, v2 = schemas.shipped().versions["TraceEvent"][:2]
    batch = {"event": (EVENT_BATCH, {"trace_id": LLM_SPAN["trace_id"], "events": [(SPAN_ENDED, LLM_SPAN)]})}
    buffer = BytesIO()
    schemaless_writer(buffer, v2.parsed, batch)
    buffer.seek(0)

    with pytest.raises(Exception, match=r"EventBatch|not found|mismatch"):
        schemaless_reader(buffer, v2.parsed, v1.parsed)
