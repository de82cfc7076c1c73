"""The events topic's one writer (schemas.event_writer), used by the SDK and the MLflow drop-in:
records per trace, split by event count and by size, a bad event costing only itself."""

from __future__ import annotations

from typing import Any

from tracestream import schemas
from tracestream.schemas import EVENT_BATCH, SPAN_ENDED, TRACE_TAGS_CHANGED
from tracestream.schemas.event_writer import MAX_RECORD_BYTES, Event, encode_events, without_surrogates

CODEC = schemas.events_codec()
TRACE_A = "tr-" + "a" * 32
TRACE_B = "tr-" + "b" * 32


def span(trace_id: str, n: int, text: str = "", attributes: dict[str, Any] | None = None) -> Event:
    return (
        SPAN_ENDED,
        {
            "trace_id": trace_id,
            "span_id": f"{n:016x}",
            "parent_span_id": None,
            "name": f"step {n}{text}",
            "span_type": "UNKNOWN",
            "start_time_ns": 1_763_784_000_000_000_000 + n,
            "end_time_ns": 1_763_784_000_000_000_100 + n,
            "status_code": "OK",
            "status_message": "",
            "attributes": attributes or {"mlflow.spanInputs": '"hello"'},
            "events": [],
            "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "0"},
        },
    )


def decoded(value: bytes) -> list[Event]:
    return schemas.events_of(CODEC.decode(value)["event"])


def test_the_events_of_a_trace_go_out_as_one_batch_record_and_a_lone_event_as_itself() -> None:
    events = [(TRACE_A, span(TRACE_A, 1)), (TRACE_B, span(TRACE_B, 2)), (TRACE_A, span(TRACE_A, 3))]

    encoded = encode_events(CODEC, events)

    assert encoded.failures == []
    assert [(r.key, r.events) for r in encoded.records] == [(TRACE_A, 2), (TRACE_B, 1)]
    batch, lone = encoded.records
    assert CODEC.decode(batch.value)["event"][0] == EVENT_BATCH
    assert decoded(batch.value) == [span(TRACE_A, 1), span(TRACE_A, 3)]
    assert CODEC.decode(lone.value)["event"] == span(TRACE_B, 2)


def test_without_batching_every_event_is_a_record_of_its_own_in_order() -> None:
    events = [(TRACE_A, span(TRACE_A, n)) for n in range(3)]

    encoded = encode_events(CODEC, events, by_trace=False)

    assert [CODEC.decode(r.value)["event"] for r in encoded.records] == [event for _, event in events]


def test_a_batch_is_cut_at_max_events_keeping_the_order() -> None:
    events = [(TRACE_A, span(TRACE_A, n)) for n in range(7)]

    encoded = encode_events(CODEC, events, max_events=3)

    assert [r.events for r in encoded.records] == [3, 3, 1]
    assert [e for r in encoded.records for e in decoded(r.value)] == [event for _, event in events]


def test_a_batch_larger_than_max_bytes_is_halved_until_each_part_fits() -> None:
    events = [(TRACE_A, span(TRACE_A, n, "x" * 1_000)) for n in range(16)]

    # Four events fit, eight do not.
    four = max(len(encode_events(CODEC, events[n : n + 4]).records[0].value) for n in range(0, 16, 4))

    encoded = encode_events(CODEC, events, max_bytes=four)

    assert all(len(r.value) <= four for r in encoded.records)
    assert [r.events for r in encoded.records] == [4, 4, 4, 4]
    assert [e for r in encoded.records for e in decoded(r.value)] == [event for _, event in events]


def test_an_event_larger_than_max_bytes_goes_alone_and_one_beyond_the_topic_limit_fails() -> None:
    big = span(TRACE_A, 1, attributes={"mlflow.spanInputs": '"' + "y" * 5_000 + '"'})
    huge = span(TRACE_A, 2, attributes={"mlflow.spanInputs": '"' + "z" * MAX_RECORD_BYTES + '"'})

    events = [(TRACE_A, big), (TRACE_A, huge), (TRACE_A, span(TRACE_A, 3))]

    encoded = encode_events(CODEC, events, max_bytes=2_000)

    assert [decoded(r.value) for r in encoded.records] == [[big], [span(TRACE_A, 3)]]
    [failure] = encoded.failures
    assert failure.event is huge
    assert str(MAX_RECORD_BYTES) in str(failure.error)


def test_a_bad_event_costs_only_itself() -> None:
    bad = (TRACE_TAGS_CHANGED, {"trace_id": TRACE_A, "set": {"k": 17}, "deleted": [], "time_ms": 1})
    events = [(TRACE_A, span(TRACE_A, 1)), (TRACE_A, bad), (TRACE_A, span(TRACE_A, 2))]

    encoded = encode_events(CODEC, events)

    assert [decoded(r.value) for r in encoded.records] == [[span(TRACE_A, 1)], [span(TRACE_A, 2)]]
    assert [(f.key, f.event) for f in encoded.failures] == [(TRACE_A, bad)]
    assert isinstance(encoded.failures[0].error, schemas.EncodeError)


def test_lone_surrogates_become_the_replacement_character_and_pairs_are_joined() -> None:
    events = [(TRACE_A, span(TRACE_A, 1, "-\ud800-\ud83d\ude00", {"q\udc80": '"caf\udce9"'}))]

    encoded = encode_events(CODEC, events)

    assert encoded.failures == []
    [(_, record)] = decoded(encoded.records[0].value)
    assert record["name"] == "step 1-\ufffd-\U0001f600"
    assert record["attributes"] == {"q\ufffd": '"caf\ufffd"'}


def test_without_surrogates_copies_only_what_changes() -> None:
    clean = {"a": ["b", ("c",)], "d": 1}
    assert without_surrogates(clean) is clean
    assert without_surrogates(["ok", "\udfff"]) == ["ok", "\ufffd"]
