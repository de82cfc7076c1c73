"""The traces index in OpenSearch: the template, bulk writes and deletes with their retry rules,
reads by trace id, and retention by whole daily indices."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import NotFoundError, SerializationError, TransportError
from opensearchpy.serializer import JSONSerializer

from tracestream.indexer.document import TraceDocument, trace_from_source
from tracestream.indexer.mapping import GC_DELETES, MAPPINGS, F, IndexNames, index_template
from tracestream.settings import Settings

logger = logging.getLogger(__name__)


class OrjsonSerializer(JSONSerializer):
    """opensearch-py's JSON serializer with orjson: search responses of a hundred traces parse
    several times faster than with the standard json module."""

    def loads(self, s: str | bytes) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(s, exc) from exc

    def dumps(self, data: Any) -> str:
        if isinstance(data, str | bytes):
            return data  # type: ignore[return-value]  # bulk bodies arrive already serialized
        try:
            return orjson.dumps(data, default=self.default).decode()
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise SerializationError(data, exc) from exc


def opensearch_client(settings: Settings) -> OpenSearch:
    return OpenSearch(serializer=OrjsonSerializer(), **settings.opensearch.client_kwargs())


def ensure_index_template(client: OpenSearch, settings: Settings) -> None:
    """Create or update the traces index template, and bring the existing daily indices up to
    it. Idempotent."""
    names = IndexNames.from_settings(settings)
    client.indices.put_index_template(name=names.template, body=index_template(settings))
    existing = client.indices.get(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
    daily = ",".join(sorted(index for index in existing if names.day_of(index) is not None))
    if not daily:
        return
    # The mapping is strict, so an index made from an older template would refuse documents
    # with the fields added since. Fields are only ever added, so merging the current ones in
    # changes nothing that is there; other indices matching the pattern are left alone.
    client.indices.put_mapping(index=daily, body={"properties": MAPPINGS["properties"]})
    client.indices.put_settings(index=daily, body={"index": {"gc_deletes": GC_DELETES}})


# ---------------------------------------------------------------- writes


# The external version of a trace's delete: above any revision a trace can reach, so a revision
# still in flight cannot index the trace again once the delete is applied (while the index
# remembers the delete: ``GC_DELETES``). external_gte: the same delete again is not a conflict.
DELETED_VERSION = 1 << 62

# Trace ids looked up with one search: each trace has one document (a few if its index ever
# moved), so their documents fit in one page of OpenSearch's default 10,000 hits.
LOOKUP_MAX_TRACES = 5_000
LOOKUP_MAX_HITS = 10_000


@dataclass(frozen=True, slots=True)
class TraceDeletion:
    """One bulk delete action: a deleted trace's document in one index."""

    index: str
    trace_id: str


BulkItem = TraceDocument | TraceDeletion


@dataclass(frozen=True, slots=True)
class Rejection:
    """An action OpenSearch refused for what it is (a mapping or validation error): retrying
    cannot help, so its record goes to the dead-letter topic."""

    item: BulkItem
    status: int
    reason: str


@dataclass
class WriteReport:
    written: int = 0
    # A revision at or below the stored one: already done (a replay or a duplicate delivery).
    stale: int = 0
    # Documents of deleted traces removed.
    deleted: int = 0
    # Deleted traces with no document (never indexed, already deleted, or their index expired).
    deleted_absent: int = 0
    retries: int = 0
    rejected: list[Rejection] | None = None


def _retryable(status: Any) -> bool:
    # "N/A": no HTTP answer at all (connection refused, timeout).
    return not isinstance(status, int) or status == 429 or status >= 500


def _error_reason(item: dict[str, Any]) -> str:
    error = item.get("error")
    if isinstance(error, dict):
        reason = f"{error.get('type')}: {error.get('reason')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict):
            reason += f" (caused by {cause.get('type')}: {cause.get('reason')})"
        return reason
    return str(error)


def _action(item: BulkItem) -> dict[str, Any]:
    if isinstance(item, TraceDeletion):
        return {
            "_op_type": "delete",
            "_index": item.index,
            "_id": item.trace_id,
            "version": DELETED_VERSION,
            "version_type": "external_gte",
        }
    return {
        "_index": item.index,
        "_id": item.trace_id,
        "version": item.revision,
        "version_type": "external",
        "_source": item.source,  # already JSON: the serializer passes strings through
    }


def find_trace_indices(client: OpenSearch, names: IndexNames, trace_ids: list[str]) -> list[TraceDeletion]:
    """Where the documents of ``trace_ids`` are: one search per LOOKUP_MAX_TRACES ids. A trace's
    index follows from its start time, which a deletion does not carry, so it is looked up."""
    # A search sees what was refreshed; a revision indexed a moment ago must be found too.
    client.indices.refresh(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
    found: list[TraceDeletion] = []
    for start in range(0, len(trace_ids), LOOKUP_MAX_TRACES):
        response = client.search(
            index=names.pattern,
            body={
                "query": {"terms": {F.TRACE_ID: trace_ids[start : start + LOOKUP_MAX_TRACES]}},
                "_source": False,
                "size": LOOKUP_MAX_HITS,
            },
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        found += [TraceDeletion(hit["_index"], hit["_id"]) for hit in response["hits"]["hits"]]
    return found


class TraceWriter:
    """Writes documents and deletes deleted traces' documents with ``_bulk`` until each action
    is durable, stale or rejected.

    Idempotent by construction: ``_id`` is the trace id and the revision is an external version,
    so duplicates and replays are 409s and the order of revisions within a batch does not matter.
    A delete's version is above every revision (``DELETED_VERSION``), so it wins over them.
    """

    def __init__(self, client: OpenSearch, settings: Settings) -> None:
        self._client = client
        self._names = IndexNames.from_settings(settings)
        self._config = settings.indexer

    def write(
        self,
        documents: list[TraceDocument],
        wait: Callable[[float], bool],
        deleted_trace_ids: list[str] | None = None,
    ) -> WriteReport:
        """Write ``documents`` and delete the documents of ``deleted_trace_ids`` (which must not
        be among ``documents``' traces), in the same bulk requests. Between retries of failed
        items it calls ``wait(seconds)``, which returns False to give up (the indexer is stopping
        or lost the partitions); then the report is incomplete and the caller must not commit."""
        report = WriteReport(rejected=[])
        deletions = self._locate(deleted_trace_ids or [], wait, report)
        report.deleted_absent = len(set(deleted_trace_ids or ()) - {d.trace_id for d in deletions})
        pending: list[BulkItem] = [*documents, *deletions]
        backoff = self._config.retry_initial_backoff_s
        while pending:
            retry: list[BulkItem] = []
            results = helpers.streaming_bulk(
                self._client,
                map(_action, pending),
                chunk_size=self._config.batch_max_docs,
                max_chunk_bytes=self._config.batch_max_bytes,
                raise_on_error=False,
                raise_on_exception=False,
                max_retries=0,
            )
            last_reason = ""
            for bulk_item, (ok, result) in zip(pending, results, strict=True):
                item = result["delete"] if isinstance(bulk_item, TraceDeletion) else result["index"]
                status = item.get("status")
                if ok:
                    if isinstance(bulk_item, TraceDeletion):
                        report.deleted += 1
                    else:
                        report.written += 1
                elif status == 404 and isinstance(bulk_item, TraceDeletion):
                    report.deleted_absent += 1  # gone since the lookup (its index expired)
                elif status == 409:
                    report.stale += 1
                elif _retryable(status):
                    retry.append(bulk_item)
                    last_reason = _error_reason(item)
                else:
                    report.rejected.append(Rejection(bulk_item, status, _error_reason(item)))
            if not retry:
                break
            report.retries += 1
            logger.warning(
                "%d of %d actions not done (%s); retrying in %.1f s",
                len(retry),
                len(pending),
                last_reason[:300],
                backoff,
            )
            if not wait(backoff):
                raise WriteInterrupted(report)
            backoff = min(backoff * 2, self._config.retry_max_backoff_s)
            pending = retry
        return report

    def _locate(
        self, trace_ids: list[str], wait: Callable[[float], bool], report: WriteReport
    ) -> list[TraceDeletion]:
        """``find_trace_indices``, retried while OpenSearch is unreachable or overloaded."""
        backoff = self._config.retry_initial_backoff_s
        while trace_ids:
            try:
                return find_trace_indices(self._client, self._names, trace_ids)
            except TransportError as exc:  # ConnectionError too; its status is "N/A"
                if not _retryable(exc.status_code):
                    raise
                report.retries += 1
                logger.warning("cannot look up deleted traces (%s); retrying in %.1f s", exc, backoff)
                if not wait(backoff):
                    raise WriteInterrupted(report) from exc
                backoff = min(backoff * 2, self._config.retry_max_backoff_s)
        return []


class WriteInterrupted(Exception):
    """The write was abandoned between retries; nothing may be committed."""

    def __init__(self, report: WriteReport) -> None:
        super().__init__("write interrupted")
        self.report = report


# ---------------------------------------------------------------- reads


def get_trace(client: OpenSearch, settings: Settings, trace_id: str) -> dict[str, Any] | None:
    """The latest stored revision of a trace as MLflow's ``Trace.to_dict()``, or None.

    The trace's day is not known from its id, so this searches the read alias (all days)."""
    names = IndexNames.from_settings(settings)
    try:
        response = client.search(
            index=names.read_alias,
            body={
                "query": {"term": {F.TRACE_ID: trace_id}},
                "sort": [{F.REVISION: "desc"}],
                "size": 1,
                "_source": [F.TRACE, F.REVISION],
            },
            ignore_unavailable=True,
        )
    except NotFoundError:
        return None
    hits = response["hits"]["hits"]
    return trace_from_source(hits[0]["_source"]) if hits else None


# ---------------------------------------------------------------- retention


def delete_indices_older_than(
    client: OpenSearch, settings: Settings, days: int, today: date | None = None
) -> list[str]:
    """Delete every daily traces index whose day is more than ``days`` days before ``today``.
    Whole indices only: cheap, and no ISM plugin needed (the minimal distribution has none)."""
    if days < 0:
        raise ValueError("days must be >= 0")
    names = IndexNames.from_settings(settings)
    cutoff = (today or datetime.now(tz=UTC).date()) - timedelta(days=days)
    existing = client.indices.get(
        index=names.pattern, expand_wildcards="open,closed", ignore_unavailable=True
    )
    expired = sorted(index for index in existing if (day := names.day_of(index)) is not None and day < cutoff)
    for index in expired:
        client.indices.delete(index=index, ignore_unavailable=True)
        logger.info("deleted expired index %s", index)
    return expired
