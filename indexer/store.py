"""The traces index in OpenSearch: the template, bulk writes with their retry rules, reads by
trace id, and retention by whole daily indices."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import NotFoundError, SerializationError
from opensearchpy.serializer import JSONSerializer

from tracestream.indexer.document import TraceDocument, trace_from_source
from tracestream.indexer.mapping import F, IndexNames, index_template
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
    """Create or update the traces index template. Idempotent; existing indices keep their mapping."""
    names = IndexNames.from_settings(settings)
    client.indices.put_index_template(name=names.template, body=index_template(settings))


# ---------------------------------------------------------------- writes


@dataclass(frozen=True, slots=True)
class Rejection:
    """A document OpenSearch refused for what it is (a mapping or validation error): retrying
    cannot help, so it goes to the dead-letter topic."""

    document: TraceDocument
    status: int
    reason: str


@dataclass
class WriteReport:
    written: int = 0
    # A revision at or below the stored one: already done (a replay or a duplicate delivery).
    stale: int = 0
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


def _actions(documents: list[TraceDocument]) -> Iterator[dict[str, Any]]:
    for document in documents:
        yield {
            "_index": document.index,
            "_id": document.trace_id,
            "version": document.revision,
            "version_type": "external",
            "_source": document.source,  # already JSON: the serializer passes strings through
        }


class TraceWriter:
    """Writes documents with ``_bulk`` until each is durable, stale or rejected.

    Idempotent by construction: ``_id`` is the trace id and the revision is an external version,
    so duplicates and replays are 409s and the order of revisions within a batch does not matter.
    """

    def __init__(self, client: OpenSearch, settings: Settings) -> None:
        self._client = client
        self._config = settings.indexer

    def write(
        self,
        documents: list[TraceDocument],
        wait: Callable[[float], bool],
    ) -> WriteReport:
        """Write ``documents``. Between retries of failed items it calls ``wait(seconds)``, which
        returns False to give up (the indexer is stopping or lost the partitions); then the
        report is incomplete and the caller must not commit."""
        report = WriteReport(rejected=[])
        pending = documents
        backoff = self._config.retry_initial_backoff_s
        while pending:
            retry = []
            results = helpers.streaming_bulk(
                self._client,
                _actions(pending),
                chunk_size=self._config.batch_max_docs,
                max_chunk_bytes=self._config.batch_max_bytes,
                raise_on_error=False,
                raise_on_exception=False,
                max_retries=0,
            )
            last_reason = ""
            for document, (ok, result) in zip(pending, results, strict=True):
                item = result["index"]
                status = item.get("status")
                if ok:
                    report.written += 1
                elif status == 409:
                    report.stale += 1
                elif _retryable(status):
                    retry.append(document)
                    last_reason = _error_reason(item)
                else:
                    report.rejected.append(Rejection(document, status, _error_reason(item)))
            if not retry:
                break
            report.retries += 1
            logger.warning(
                "%d of %d documents not written (%s); retrying in %.1f s",
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
