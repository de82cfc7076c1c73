"""How a completed trace becomes an index document (no servers needed)."""

from __future__ import annotations

import itertools
import json
import random
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from tracestream.indexer import IndexNames, build_document
from tracestream.indexer.document import (
    CHUNK_OVERLAP_BYTES,
    TraceDocument,
    chunks,
    trace_from_hit,
    trace_from_source,
)
from tracestream.indexer.mapping import ENTRY_SEPARATOR, MAX_TERM_BYTES, trace_order
from tracestream.schemas.samples import completed_trace

NAMES = IndexNames("tracestream")


def _source(trace: dict) -> dict:
    return json.loads(build_document(trace, NAMES, 131_072).source)


def test_the_index_is_the_utc_day_the_trace_started() -> None:
    assert NAMES.daily(1_763_855_999_999) == "tracestream-traces-2025.11.22"
    assert NAMES.daily(1_763_856_000_000) == "tracestream-traces-2025.11.23"


DAY_MS = 86_400_000
# 2026-12-07 10:00 UTC: when the stream first saw the traces below.
FIRST_SEEN_MS = 1_796_637_600_000
Y2099, Y1990, Y1970 = 4_070_908_800_000, 631_152_000_000, 0


def _placed(trace: dict) -> TraceDocument:
    return build_document(trace, NAMES, 131_072, first_seen_ms=FIRST_SEEN_MS, max_clock_skew_ms=DAY_MS)


def test_a_trace_goes_to_the_day_it_started_when_its_clock_is_within_the_skew_of_first_seen() -> None:
    # Started 23:30 the day before it was first seen: a late night, not a broken clock.
    trace = completed_trace(random.Random(4), request_time_ms=FIRST_SEEN_MS - 10 * 3_600_000 - 1_800_000)

    document = _placed(trace)

    assert (document.index, document.clock_skewed) == ("tracestream-traces-2026.12.06", False)
    metadata = json.loads(document.source)["trace"]["info"]["trace_metadata"]
    assert "tracestream.trace.clockSkewed" not in metadata


def test_a_client_clock_far_off_cannot_choose_the_index_the_first_seen_day_is_used_and_flagged() -> None:
    for request_time_ms in (Y2099, Y1990, Y1970, FIRST_SEEN_MS + DAY_MS + 1):
        trace = completed_trace(random.Random(5), request_time_ms=request_time_ms)

        document = _placed(trace)

        source = json.loads(document.source)
        assert (document.index, document.clock_skewed) == ("tracestream-traces-2026.12.07", True)
        assert source["timestamp_ms"] == request_time_ms  # the client's time, kept as sent
        assert {"key": "tracestream.trace.clockSkewed", "value": "true"} in source["metadata"]
        assert source["trace"]["info"]["trace_metadata"]["tracestream.trace.clockSkewed"] == "true"
        assert "tracestream.trace.clockSkewed" not in trace["info"]["metadata"]  # the record is not changed


def test_every_revision_of_a_skewed_trace_lands_in_the_same_index_whenever_it_completes() -> None:
    first = completed_trace(random.Random(6), request_time_ms=Y2099, revision=1)
    first["completed_time_ms"] = FIRST_SEEN_MS + 60_000
    later = {**first, "revision": 2, "completed_time_ms": FIRST_SEEN_MS + 5 * DAY_MS}

    assert {_placed(revision).index for revision in (first, later)} == {"tracestream-traces-2026.12.07"}


def test_without_a_first_seen_time_the_completed_time_bounds_the_index() -> None:
    trace = completed_trace(random.Random(7), request_time_ms=Y2099)
    trace["completed_time_ms"] = FIRST_SEEN_MS

    document = build_document(trace, NAMES, 131_072, max_clock_skew_ms=DAY_MS)

    assert (document.index, document.clock_skewed) == ("tracestream-traces-2026.12.07", True)


def test_only_our_daily_index_names_have_a_day() -> None:
    assert NAMES.day_of("tracestream-traces-2025.11.22") == date(2025, 11, 22)
    assert NAMES.day_of("tracestream-traces-latest") is None
    assert NAMES.day_of("other-traces-2025.11.22") is None


def test_document_id_and_version_are_the_trace_id_and_revision() -> None:
    trace = completed_trace(random.Random(1), revision=3)

    document = build_document(trace, NAMES, 131_072)

    assert (document.trace_id, document.revision) == (trace["trace_id"], 3)


def test_trace_fields_mlflow_searches_are_top_level() -> None:
    trace = completed_trace(random.Random(2), request_time_ms=1_700_000_000_000)
    trace["info"]["execution_duration_ms"] = 1500
    trace["info"]["metadata"]["mlflow.sourceRun"] = "run-42"

    source = _source(trace)

    assert source["timestamp_ms"] == 1_700_000_000_000
    assert source["end_time_ms"] == 1_700_000_001_500
    assert source["name"] == "support_agent"
    assert source["run_id"] == "run-42"
    usage = json.loads(trace["info"]["metadata"]["mlflow.trace.tokenUsage"])
    assert source["token_usage"] == usage


def test_linked_runs_and_prompt_versions_are_fields_of_their_own_beside_the_source_run() -> None:
    trace = completed_trace(random.Random(5))
    trace["info"]["metadata"]["mlflow.sourceRun"] = "run-42"
    linked = {**trace, "linked_run_ids": ["run-eval-7", "run-eval-8"], "linked_prompts": ["qa-prompt/3"]}

    source = _source(linked)

    assert source["run_id"] == "run-42"
    assert source["linked_run_ids"] == ["run-eval-7", "run-eval-8"]
    assert source["linked_prompts"] == ["qa-prompt/3"]


def test_a_trace_from_a_record_before_links_existed_has_no_links() -> None:
    source = _source(completed_trace(random.Random(6)))

    assert (source["linked_run_ids"], source["linked_prompts"]) == ([], [])


def test_span_attributes_are_key_value_entries_with_json_strings_decoded() -> None:
    trace = completed_trace(random.Random(3))
    chat = next(s for s in trace["spans"] if s["name"] == "chat")
    model = json.loads(chat["attributes"]["model"])

    source = _source(trace)

    indexed = next(s for s in source["spans"] if s["span_id"] == chat["span_id"])
    assert f"model{ENTRY_SEPARATOR}{model}" in indexed["attributes"]
    assert f"temperature{ENTRY_SEPARATOR}0.2" in indexed["attributes"]


def test_span_content_is_mlflow_span_json_with_non_ascii_unescaped() -> None:
    trace = completed_trace(random.Random(4))
    trace["spans"][0]["attributes"]["note"] = json.dumps("こんにちは", ensure_ascii=False)

    content = _source(trace)["spans"][0]["content"][0]

    assert '"note": "\\"こんにちは\\""' in content
    assert content.startswith('{"trace_id": "')


def test_assessments_keep_their_json_value_and_a_numeric_value_only_for_numbers() -> None:
    trace = completed_trace(random.Random(5))
    base = {
        "trace_id": trace["trace_id"],
        "kind": "FEEDBACK",
        "error": None,
        "source_type": "HUMAN",
        "source_id": "alice",
        "rationale": None,
        "metadata": {},
        "span_id": None,
        "create_time_ms": 1,
        "last_update_time_ms": None,
        "overrides": None,
        "valid": True,
    }
    trace["assessments"] = [
        {**base, "assessment_id": "a-1", "name": "rating", "value_json": "4"},
        {**base, "assessment_id": "a-2", "name": "correct", "value_json": "true"},
        {**base, "assessment_id": "a-3", "name": "tone", "value_json": '"polite"'},
    ]

    indexed = {a["name"]: a for a in _source(trace)["assessments"]}

    assert (indexed["rating"]["value"], indexed["rating"]["numeric_value"]) == ("4", 4.0)
    assert (indexed["correct"]["value"], indexed["correct"]["numeric_value"]) == ("true", None)
    assert (indexed["tone"]["value"], indexed["tone"]["kind"]) == ('"polite"', "feedback")


def test_the_stored_trace_is_mlflow_trace_json() -> None:
    trace = completed_trace(random.Random(6))

    stored = trace_from_source(_source(trace))

    assert stored["info"]["trace_id"] == trace["trace_id"]
    assert stored["info"]["request_time"].endswith("Z")
    assert [s["name"] for s in stored["data"]["spans"]] == [s["name"] for s in trace["spans"]]
    assert stored["data"]["spans"][0]["status"]["code"].startswith("STATUS_CODE_")


def test_long_text_is_cut_into_overlapping_chunks_under_the_term_limit() -> None:
    text = "".join(f"{n:07d}é" for n in range(20_000))  # 180,000 bytes, 2-byte characters included

    pieces = chunks(text, max_total_bytes=1_000_000)

    assert all(len(p.encode()) <= MAX_TERM_BYTES for p in pieces)
    assert pieces[0] == text[: len(pieces[0])]
    for previous, current in itertools.pairwise(pieces):
        overlap = current[: CHUNK_OVERLAP_BYTES // 2]
        assert overlap in previous, "consecutive chunks must overlap"
    assert pieces[-1].endswith(text[-100:])


def test_text_beyond_the_indexed_limit_is_not_indexed() -> None:
    text = "a" * 200_000 + "needle"

    pieces = chunks(text, max_total_bytes=100_000)

    assert sum(len(p) for p in pieces) < 110_000
    assert not any("needle" in p for p in pieces)


@given(st.text(min_size=1, max_size=64), st.integers(min_value=1, max_value=4_000), st.text(max_size=100))
def test_any_short_passage_of_a_long_text_is_whole_in_some_chunk(unit: str, repeat: int, tail: str) -> None:
    text = unit * repeat + tail
    pieces = chunks(text, max_total_bytes=10_000_000)

    assert all(len(p.encode()) <= MAX_TERM_BYTES for p in pieces)
    window = text[len(text) // 2 : len(text) // 2 + 200]
    assert any(window in p for p in pieces)


_MLFLOW_IDS = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).map(lambda h: "tr-" + h)


@given(_MLFLOW_IDS, _MLFLOW_IDS)
def test_the_trace_order_fields_sort_mlflow_ids_as_strings_sort(first: str, second: str) -> None:
    assert (trace_order(first) < trace_order(second)) == (first < second)
    assert all(-(2**63) <= half < 2**63 for half in trace_order(first) + trace_order(second))


def test_ids_of_another_form_sort_after_mlflow_ids() -> None:
    assert trace_order("tr-" + "fe" * 16) < trace_order("my-own-trace-id")
    assert trace_order("tr-" + "A" * 32) == trace_order("my-own-trace-id")


def test_a_hit_without_spans_reads_the_same_info_from_doc_values_as_the_source_holds() -> None:
    trace = completed_trace(random.Random(5), request_time_ms=1_763_800_000_000)
    document = json.loads(build_document(trace, IndexNames("ts"), 131_072).source)
    # OpenSearch returns binary doc values as the base64 text the document carried, unpadded.
    hit = {"fields": {"info_json": [document["info_json"].rstrip("=")]}}

    assert trace_from_hit(hit, include_spans=False) == {
        "info": trace_from_source(document)["info"],
        "data": {"spans": []},
    }
