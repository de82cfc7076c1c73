"""Deleting traces: the traces a selection matches in the index become ``TraceDeleted`` events on
the events topic (the stream drops each trace and writes its tombstone; the indexer deletes its
document). Shared by MLflow's DeleteTraces and the native delete by filter.

A delete costs one id per matching trace, whatever their number: ids are read a page at a time
(``TraceSearch.scan_trace_ids``) and published a batch at a time, each batch acknowledged by Kafka
before the next is read. A trace counts as deleted once its event is acknowledged; search stops
returning it when the indexer has deleted its document (the pipeline's usual few seconds), so a
second delete within those seconds finds and counts it again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from tracestream.schemas import TRACE_DELETED
from tracestream.schemas.event_writer import Event
from tracestream.search_api.search import TraceSearch

# TraceDeleted events per publish: a batch is acknowledged before the next page is read.
PUBLISH_BATCH = 1_000
# How many ids an answer lists (oldest first); the count is always exact.
LISTED_TRACE_IDS = 1_000
# The reason a TraceDeleted event carries, for the logs; longer ones are cut.
MAX_REASON_CHARS = 200


class Publisher(Protocol):
    """Where the events go (``mlflow_rest.publisher.EventPublisher``): returns once Kafka has
    acknowledged them."""

    def publish(self, trace_events: list[tuple[str, Event]]) -> None: ...


@dataclass(frozen=True)
class Selection:
    """Which traces to delete: those matching ``filter_string`` in the experiments
    ``locations`` (all when None) and, when given, among ``trace_ids``; the oldest
    ``max_traces`` of them when given."""

    filter_string: str | None = None
    locations: list[str] | None = None
    trace_ids: list[str] | None = None
    max_traces: int | None = None


@dataclass(frozen=True)
class Deletion:
    """What a delete did, or in a dry run would do: ``matched`` traces match the selection,
    ``deleted`` of them are (would be) deleted (fewer when ``max_traces`` cut the selection), and
    the first ``LISTED_TRACE_IDS`` of those, oldest first."""

    matched: int
    deleted: int
    trace_ids: list[str]
    dry_run: bool

    @property
    def trace_ids_truncated(self) -> bool:
        return len(self.trace_ids) < self.deleted


def _batches(ids: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(islice(ids, size)):
        yield batch


def deletion_events(trace_ids: Iterable[str], reason: str | None) -> list[tuple[str, Event]]:
    now_ms = int(time.time() * 1000)
    reason = reason[:MAX_REASON_CHARS] if reason else None
    return [
        (trace_id, (TRACE_DELETED, {"trace_id": trace_id, "time_ms": now_ms, "reason": reason}))
        for trace_id in trace_ids
    ]


def delete_traces(
    search: TraceSearch,
    publisher: Publisher | None,
    selection: Selection,
    reason: str | None,
    *,
    dry_run: bool = False,
) -> Deletion:
    """Delete the selected traces and say how many. A dry run publishes nothing (``publisher``
    may be None then) and reads only the ids it lists."""
    if publisher is None and not dry_run:
        raise ValueError("a delete that is not a dry run needs a publisher")
    scan = search.scan_trace_ids(selection.filter_string, selection.locations, selection.trace_ids)
    limit = scan.total if selection.max_traces is None else min(scan.total, selection.max_traces)
    ids = islice(scan.trace_ids, limit)
    listed: list[str] = []
    count = 0
    try:
        if dry_run:
            listed = list(islice(ids, LISTED_TRACE_IDS))
            return Deletion(scan.total, limit, listed, dry_run)
        assert publisher is not None  # checked above
        for batch in _batches(ids, PUBLISH_BATCH):
            publisher.publish(deletion_events(batch, reason))
            count += len(batch)
            listed.extend(batch[: LISTED_TRACE_IDS - len(listed)])
    finally:
        # Stopping early (max_traces, a failure) must still release the point in time.
        close = getattr(scan.trace_ids, "close", None)
        if close is not None:
            close()
    return Deletion(scan.total, count, listed, dry_run)
