"""Deleted traces in the indexer, against real Kafka and OpenSearch: a tombstone on the completed
topic removes the trace's document for good, whatever revisions arrive around it."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from opensearchpy import OpenSearch
from waiting import wait_until

from indexing.support import (
    RunningIndexer,
    count_documents,
    produce,
    produce_tombstones,
    read_dead_letters,
)
from tracestream.indexer.store import OrjsonSerializer
from tracestream.schemas.records import CompletedTrace
from tracestream.schemas.samples import completed_trace
from tracestream.settings import Settings

StartIndexer = Callable[..., RunningIndexer]


def _documents_of(client: OpenSearch, settings: Settings, trace: CompletedTrace) -> int:
    return count_documents(client, settings, {"term": {"trace_id": trace["trace_id"]}})


def _revision(trace: CompletedTrace, revision: int) -> CompletedTrace:
    return {**trace, "revision": revision}


class SearchCountingClient(OpenSearch):
    """The real client, counting the searches it sends."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(serializer=OrjsonSerializer(), **settings.opensearch.client_kwargs())
        self.searches = 0

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self.searches += 1
        return super().search(*args, **kwargs)


def test_a_tombstone_deletes_the_trace_document_and_leaves_the_others(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    deleted, kept = completed_trace(random.Random(1)), completed_trace(random.Random(2))
    runner = start_indexer(settings)
    produce(settings, [deleted, kept])
    wait_until(lambda: count_documents(opensearch, settings) == 2, 30, "both traces to be indexed")

    produce_tombstones(settings, [deleted["trace_id"]])

    wait_until(lambda: _documents_of(opensearch, settings, deleted) == 0, 30, "the document to go")
    assert _documents_of(opensearch, settings, kept) == 1
    assert runner.indexer.stats.deleted == 1
    assert read_dead_letters(settings, expected=0, timeout_s=2) == []


def test_a_revision_arriving_after_the_delete_does_not_bring_the_trace_back(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    trace = completed_trace(random.Random(3), revision=2)
    runner = start_indexer(settings)
    produce(settings, [trace])
    wait_until(lambda: count_documents(opensearch, settings) == 1, 30, "revision 2 to be indexed")
    produce_tombstones(settings, [trace["trace_id"]])
    wait_until(lambda: runner.indexer.stats.deleted == 1, 30, "the delete")

    # A late span's revision, higher than any the index saw, from a replay or a former owner.
    produce(settings, [_revision(trace, 3)])

    wait_until(lambda: runner.indexer.stats.stale == 1, 30, "the late revision to be refused")
    assert _documents_of(opensearch, settings, trace) == 0


def test_a_tombstone_between_revisions_in_one_batch_leaves_the_trace_deleted(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    trace, other = completed_trace(random.Random(4)), completed_trace(random.Random(5))
    first = start_indexer(settings)
    produce(settings, [trace])
    wait_until(lambda: count_documents(opensearch, settings) == 1, 30, "revision 1 to be indexed")
    first.stop()
    produce(settings, [_revision(trace, 2)])
    produce_tombstones(settings, [trace["trace_id"]])
    produce(settings, [_revision(trace, 3), other])

    second = start_indexer(settings)

    wait_until(lambda: second.indexer.stats.records == 4, 30, "the four records")
    # Both revisions met the tombstone in its batch and were not sent.
    assert (second.indexer.stats.deleted, second.indexer.stats.superseded) == (1, 2)
    assert _documents_of(opensearch, settings, trace) == 0
    assert _documents_of(opensearch, settings, other) == 1


def test_a_tombstone_of_a_trace_never_indexed_is_counted_and_nothing_else_happens(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    never_indexed, indexed = completed_trace(random.Random(6)), completed_trace(random.Random(7))
    runner = start_indexer(settings)

    produce_tombstones(settings, [never_indexed["trace_id"]])
    produce(settings, [indexed])

    wait_until(lambda: runner.indexer.stats.records == 2, 30, "both records")
    assert (runner.indexer.stats.deleted, runner.indexer.stats.deleted_absent) == (0, 1)
    assert _documents_of(opensearch, settings, indexed) == 1
    assert read_dead_letters(settings, expected=0, timeout_s=2) == []


def test_fifty_tombstones_in_one_batch_cost_one_lookup_search(
    settings: Settings, opensearch: OpenSearch, start_indexer: StartIndexer
) -> None:
    traces = [completed_trace(random.Random(seed), min_spans=2, max_spans=3) for seed in range(50)]
    first = start_indexer(settings)
    produce(settings, traces)
    wait_until(lambda: count_documents(opensearch, settings) == 50, 60, "the traces to be indexed")
    first.stop()
    produce_tombstones(settings, [trace["trace_id"] for trace in traces])
    # A long linger, so that all fifty tombstones make one batch.
    lingering = settings.model_copy(
        update={"indexer": settings.indexer.model_copy(update={"batch_linger_ms": 2_000})}
    )
    client = SearchCountingClient(settings)

    second = start_indexer(lingering, client)

    wait_until(lambda: second.indexer.stats.deleted == 50, 60, "the fifty deletes")
    assert second.indexer.stats.batches == 1
    assert client.searches == 1
    assert count_documents(opensearch, settings) == 0
