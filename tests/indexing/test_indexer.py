"""The indexer against real Kafka and OpenSearch: idempotent, versioned writes, dead letters for
what OpenSearch refuses, and a mapping that does not grow with the data."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from opensearchpy import OpenSearch
from waiting import wait_until

from indexing.support import (
    RunningIndexer,
    count_documents,
    produce,
    read_dead_letters,
)
from tracestream.indexer import IndexNames, delete_indices_older_than, get_trace
from tracestream.schemas.samples import completed_trace
from tracestream.settings import Settings

StartIndexer = Callable[[Settings], RunningIndexer]


def _stored(client: OpenSearch, settings: Settings, trace_id: str) -> dict:
    names = IndexNames.from_settings(settings)
    client.indices.refresh(index=names.read_alias)
    hits = client.search(
        index=names.read_alias,
        body={"query": {"term": {"trace_id": trace_id}}, "version": True},
    )["hits"]["hits"]
    assert len(hits) == 1, f"expected one document for {trace_id}, found {len(hits)}"
    return hits[0]


def test_a_completed_trace_becomes_one_searchable_document_in_its_daily_index(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    trace = completed_trace(random.Random(7), request_time_ms=1_763_800_000_000, error=True)
    start_indexer(settings)

    produce(settings, [trace])

    wait_until(lambda: count_documents(opensearch, settings) == 1, 30, "the trace to be indexed")
    hit = _stored(opensearch, settings, trace["trace_id"])
    assert hit["_index"] == f"{settings.opensearch.index_prefix}-traces-2025.11.22"
    assert hit["_source"]["state"] == "ERROR"
    assert hit["_source"]["num_spans"] == len(trace["spans"])
    failed_llm = {"nested": {"path": "spans", "query": {"term": {"spans.status": "ERROR"}}}}
    assert count_documents(opensearch, settings, failed_llm) == 1


def test_the_same_revision_delivered_twice_leaves_one_document(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    trace = completed_trace(random.Random(1), revision=1)
    other = completed_trace(random.Random(2), revision=1)
    start_indexer(settings)

    produce(settings, [trace, other, trace])

    wait_until(lambda: count_documents(opensearch, settings) == 2, 30, "both traces to be indexed")
    assert _stored(opensearch, settings, trace["trace_id"])["_version"] == 1
    assert read_dead_letters(settings, expected=0, timeout_s=2) == []


def test_a_stale_revision_is_ignored(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    newer = completed_trace(random.Random(3), revision=2, tags={"stage": "second"})
    older = {**newer, "revision": 1, "info": {**newer["info"], "tags": {"stage": "first"}}}
    runner = start_indexer(settings)
    produce(settings, [newer])
    wait_until(lambda: count_documents(opensearch, settings) == 1, 30, "revision 2 to be indexed")

    produce(settings, [older])
    wait_until(lambda: runner.indexer.stats.stale >= 1, 30, "the stale revision to be refused")

    hit = _stored(opensearch, settings, newer["trace_id"])
    assert hit["_version"] == 2
    assert {"key": "stage", "value": "second"} in hit["_source"]["tags"]


def test_a_later_revision_replaces_the_document(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    first = completed_trace(random.Random(4), revision=1)
    rated = {
        **first,
        "revision": 2,
        "info": {**first["info"], "tags": {**first["info"]["tags"], "reviewed": "yes"}},
    }
    start_indexer(settings)
    produce(settings, [first])
    wait_until(lambda: count_documents(opensearch, settings) == 1, 30, "revision 1 to be indexed")

    produce(settings, [rated])

    reviewed = {"nested": {"path": "tags", "query": {"term": {"tags.key": "reviewed"}}}}
    wait_until(lambda: count_documents(opensearch, settings, reviewed) == 1, 30, "revision 2")
    assert _stored(opensearch, settings, first["trace_id"])["_version"] == 2
    assert count_documents(opensearch, settings) == 1


def test_a_document_opensearch_rejects_goes_alone_to_the_dead_letter_topic(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    rng = random.Random(5)
    good = [completed_trace(rng) for _ in range(5)]
    bad = completed_trace(rng)
    # A token count beyond a 64-bit integer: the mapping's long field refuses the document.
    bad["info"]["metadata"]["mlflow.trace.tokenUsage"] = json.dumps(
        {"input_tokens": 1e20, "output_tokens": 1, "total_tokens": 1e20}
    )
    start_indexer(settings)

    produce(settings, [*good[:2], bad, *good[2:]])

    wait_until(lambda: count_documents(opensearch, settings) == 5, 30, "the five good traces")
    letters = read_dead_letters(settings, expected=1)
    assert len(letters) == 1
    assert letters[0]["reason"] == "rejected_by_opensearch"
    assert "token_usage" in letters[0]["detail"]
    assert letters[0]["key"] == bad["trace_id"].encode()
    assert letters[0]["consumer"] == "indexer"


def test_a_record_that_is_not_a_completed_trace_is_dead_lettered_and_the_rest_indexed(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    trace = completed_trace(random.Random(6))
    start_indexer(settings)

    produce(settings, [trace], raw=[b'{"trace_id": "tr-not-avro"}'])

    wait_until(lambda: count_documents(opensearch, settings) == 1, 30, "the valid trace")
    letters = read_dead_letters(settings, expected=1)
    assert [(letter["reason"], letter["value"]) for letter in letters] == [
        ("not_avro", b'{"trace_id": "tr-not-avro"}')
    ]


def test_ten_thousand_distinct_tag_keys_do_not_grow_the_mapping(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    names = IndexNames.from_settings(settings)
    rng = random.Random(8)
    start_indexer(settings)
    produce(settings, [completed_trace(rng, min_spans=2, max_spans=3, min_io_bytes=50, max_io_bytes=100)])
    wait_until(lambda: count_documents(opensearch, settings) == 1, 30, "the first trace")
    before = opensearch.indices.get_mapping(index=names.read_alias)

    traces = [
        completed_trace(
            rng,
            min_spans=2,
            max_spans=3,
            min_io_bytes=50,
            max_io_bytes=100,
            tags={f"customer.attribute.{n * 100 + k}": str(k) for k in range(100)},
        )
        for n in range(100)
    ]
    produce(settings, traces)

    wait_until(lambda: count_documents(opensearch, settings) == 101, 60, "the 100 tagged traces")
    assert opensearch.indices.get_mapping(index=names.read_alias) == before
    key = {"nested": {"path": "tags", "query": {"term": {"tags.key": "customer.attribute.9999"}}}}
    assert count_documents(opensearch, settings, key) == 1


def test_a_stored_trace_reads_back_as_mlflow_trace_json(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    trace = completed_trace(random.Random(9))
    start_indexer(settings)
    produce(settings, [trace])
    wait_until(lambda: count_documents(opensearch, settings) == 1, 30, "the trace")

    stored = get_trace(opensearch, settings, trace["trace_id"])

    assert stored is not None
    assert stored["info"]["trace_id"] == trace["trace_id"]
    assert stored["info"]["tags"]["mlflow.traceName"] == "support_agent"
    assert [s["name"] for s in stored["data"]["spans"]] == [s["name"] for s in trace["spans"]]
    root = stored["data"]["spans"][0]
    assert root["attributes"]["mlflow.spanInputs"] == trace["spans"][0]["attributes"]["mlflow.spanInputs"]
    assert get_trace(opensearch, settings, "tr-" + "0" * 32) is None


def test_client_clocks_in_2099_and_1970_create_no_index_every_revision_lands_in_the_first_seen_day(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    names = IndexNames.from_settings(settings)
    first_seen_ms = int(time.time() * 1000)
    future = completed_trace(random.Random(10), request_time_ms=4_070_908_800_000)  # 2099-01-01
    past = completed_trace(random.Random(11), request_time_ms=0)  # 1970-01-01
    # Feedback three days later: a new revision, completed on another day, of the same trace.
    rated = {
        **future,
        "revision": 2,
        "info": {**future["info"], "tags": {**future["info"]["tags"], "reviewed": "yes"}},
        "completed_time_ms": first_seen_ms + 3 * 86_400_000,
    }
    runner = start_indexer(settings)
    produce(settings, [future, past], first_seen_ms=first_seen_ms)
    wait_until(lambda: count_documents(opensearch, settings) == 2, 30, "both traces to be indexed")
    produce(settings, [rated], first_seen_ms=first_seen_ms)
    reviewed = {"nested": {"path": "tags", "query": {"term": {"tags.key": "reviewed"}}}}
    wait_until(lambda: count_documents(opensearch, settings, reviewed) == 1, 30, "revision 2")

    # Only the day the traces arrived has an index; revision 2 replaced revision 1 in it.
    indices = opensearch.indices.get(index=names.pattern)
    assert sorted(indices) == [names.daily(first_seen_ms)]
    hit = _stored(opensearch, settings, future["trace_id"])
    assert (hit["_index"], hit["_version"]) == (names.daily(first_seen_ms), 2)
    # The client's times are kept as sent and searchable; the traces are flagged.
    assert hit["_source"]["timestamp_ms"] == 4_070_908_800_000
    in_2099 = {"range": {"timestamp_ms": {"gte": 4_070_908_800_000}}}
    assert count_documents(opensearch, settings, in_2099) == 1
    flagged = {
        "nested": {
            "path": "metadata",
            "query": {"bool": {"filter": [{"term": {"metadata.key": "tracestream.trace.clockSkewed"}}]}},
        }
    }
    assert count_documents(opensearch, settings, flagged) == 2
    assert runner.indexer.stats.clock_skewed == 3
    # Read by id, whatever the index's day.
    stored = get_trace(opensearch, settings, past["trace_id"])
    assert stored is not None
    assert stored["info"]["request_time"] == "1970-01-01T00:00:00Z"
    assert stored["info"]["trace_metadata"]["tracestream.trace.clockSkewed"] == "true"
    # Retention counts from the day they arrived: kept 7 days, then deleted with their index.
    arrived = datetime.fromtimestamp(first_seen_ms / 1000, tz=UTC).date()
    assert delete_indices_older_than(opensearch, settings, days=7, today=arrived + timedelta(days=7)) == []
    assert delete_indices_older_than(opensearch, settings, days=7, today=arrived + timedelta(days=8)) == [
        names.daily(first_seen_ms)
    ]
