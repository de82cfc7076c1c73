"""The audit trail: who read whole traces, exported, deleted, or changed keys; what, when, how
many. One document per request in the OpenSearch index ``<index prefix>-audit``, searchable like
any index (``key``, ``action``, ``experiments``, ``filter``, ``trace_ids``, ``count``, ``client``).

Routes record with one call, after the work is done (so ``count`` is what was returned)::

    audit.record(request, AuditAction.GET_TRACE, experiments=[trace.experiment_id], trace_ids=[trace_id])
    audit.record(request, AuditAction.EXPORT, experiments=scope, filter=filter_string, count=written)
    audit.record(request, AuditAction.DELETE, experiments=[experiment_id], trace_ids=ids, count=deleted)

and count ingest per key instead (it is not logged per request)::

    audit.count_ingest(request, "spans", len(spans))

``record`` only queues: a background thread writes the queue in bulk requests, so the request
path never waits for OpenSearch. A failed write is logged and counted
(``tracestream_audit_failures_total`` on ``/metrics``), never the request's failure. Key changes
of `tracestream keys` are written at once by :func:`write_now`.
"""

from __future__ import annotations

import getpass
import logging
import socket
import threading
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fastapi import Request
from opensearchpy import OpenSearch, helpers
from prometheus_client import CollectorRegistry, Counter

from tracestream.search_api.access import current_principal
from tracestream.search_api.deletion import Deletion, Selection
from tracestream.settings import Settings

logger = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # beyond, the oldest records are dropped (and counted): memory stays bounded
MAX_FILTER_CHARS = 10_000
BATCH_SIZE = 500


class AuditAction(StrEnum):
    GET_TRACE = "trace.get"
    SEARCH = "traces.search"
    EXPORT = "traces.export"
    DELETE = "traces.delete"
    KEY_CREATE = "key.create"
    KEY_REVOKE = "key.revoke"


AUDIT_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "@timestamp": {"type": "date"},
        "key": {"type": "keyword"},
        "action": {"type": "keyword"},
        "client": {"type": "keyword"},
        "experiments": {"type": "keyword"},
        "filter": {"type": "keyword", "ignore_above": 4096},
        "trace_ids": {"type": "keyword"},
        "trace_ids_truncated": {"type": "boolean"},
        "count": {"type": "long"},
    },
}


def audit_index(settings: Settings) -> str:
    return f"{settings.opensearch.index_prefix}-audit"


def audit_document(
    key: str,
    action: str,
    *,
    client: str | None = None,
    experiments: Iterable[str] | None = None,
    filter: str | None = None,
    trace_ids: Iterable[str] | None = None,
    count: int | None = None,
    max_trace_ids: int = 100,
    **details: Any,
) -> dict[str, Any]:
    """One audit record; ``trace_ids`` beyond ``max_trace_ids`` are left out and flagged, so a
    record stays small however many traces a request touched (``count`` says how many)."""
    ids = list(trace_ids or [])
    document: dict[str, Any] = {
        "@timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "key": key,
        "action": str(action),
        "client": client,
        "experiments": sorted(experiments) if experiments is not None else None,
        "filter": filter[:MAX_FILTER_CHARS] if filter else filter,
        "trace_ids": ids[:max_trace_ids],
        "trace_ids_truncated": len(ids) > max_trace_ids,
        "count": count if count is not None else (len(ids) or None),
        **details,
    }
    return {name: value for name, value in document.items() if value is not None}


def ensure_audit_index(client: OpenSearch, index: str) -> None:
    if not client.indices.exists(index=index):
        # 400: another replica created it meanwhile.
        client.indices.create(index=index, body={"mappings": AUDIT_MAPPING}, ignore=400)


def operator() -> str:
    """Who `tracestream keys` records as the author of a key change: the OS user on the host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def write_now(client: OpenSearch, settings: Settings, document: dict[str, Any]) -> None:
    """Writes one record synchronously (the CLI's key changes); raises if OpenSearch does not
    take it, for the caller to warn."""
    index = audit_index(settings)
    ensure_audit_index(client, index)
    client.index(index=index, body=document, refresh="wait_for")


class AuditTrail:
    """The API's audit writer and its per-key counters (on the app's metrics registry)."""

    def __init__(self, client: OpenSearch, settings: Settings, registry: CollectorRegistry) -> None:
        self._client = client
        self._index = audit_index(settings)
        self._enabled = settings.api.audit_enabled
        self.max_trace_ids = settings.api.audit_max_trace_ids
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = threading.Condition()
        self._in_flight = 0
        self._worker: threading.Thread | None = None
        self._index_ready = False
        self._closed = False
        self.recorded = Counter(
            "tracestream_audit_records_total", "Audit records written", ["action"], registry=registry
        )
        self.failures = Counter(
            "tracestream_audit_failures_total",
            "Audit records lost: OpenSearch refused them, or the queue overflowed",
            registry=registry,
        )
        self.ingested = Counter(
            "tracestream_api_ingested_total",
            "Items ingested through the API, per key (spans, traces, tags, assessments, links)",
            ["key", "kind"],
            registry=registry,
        )

    def add(self, document: dict[str, Any]) -> None:
        if not self._enabled:
            return
        with self._wake:
            if len(self._queue) >= MAX_QUEUED:
                self._queue.popleft()
                self.failures.inc()
            self._queue.append(document)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._worker.start()
            self._wake.notify()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Waits until every queued record is written (or lost); False on timeout."""
        with self._wake:
            return self._wake.wait_for(lambda: not self._queue and not self._in_flight, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        with self._wake:
            self._closed = True
            self._wake.notify_all()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._queue or self._closed)
                if self._closed and not self._queue:
                    return
                batch = [self._queue.popleft() for _ in range(min(BATCH_SIZE, len(self._queue)))]
                self._in_flight = len(batch)
            try:
                self._write(batch)
            finally:
                with self._wake:
                    self._in_flight = 0
                    self._wake.notify_all()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            if not self._index_ready:
                ensure_audit_index(self._client, self._index)
                self._index_ready = True
            actions = ({"_index": self._index, "_source": document} for document in batch)
            written, errors = helpers.bulk(self._client, actions, raise_on_error=False)
        except Exception:
            logger.exception("could not write %d audit records to %s", len(batch), self._index)
            self.failures.inc(len(batch))
            return
        if errors:
            logger.error("OpenSearch refused %d audit records: %s", len(errors), errors[:1])
            self.failures.inc(len(errors))
        for document in batch[: int(written)]:
            self.recorded.labels(document["action"]).inc()


def _trail(request: Request) -> AuditTrail:
    return request.app.state.audit


def record(request: Request, action: AuditAction | str, **details: Any) -> None:
    """Records that the caller of ``request`` did ``action`` (``experiments``, ``filter``,
    ``trace_ids``, ``count``, or any other detail); returns at once."""
    trail = _trail(request)
    document = audit_document(
        current_principal(request).name,
        action,
        client=request.client.host if request.client else None,
        max_trace_ids=trail.max_trace_ids,
        **details,
    )
    trail.add(document)


def record_deletion(request: Request, selection: Selection, deletion: Deletion) -> None:
    """Records a delete that was carried out (a dry run is not): its selection and what went."""
    if not deletion.dry_run:
        record(
            request,
            AuditAction.DELETE,
            experiments=selection.locations,
            filter=selection.filter_string,
            trace_ids=deletion.trace_ids,
            count=deletion.deleted,
        )


def count_ingest(request: Request, kind: str, count: int = 1) -> None:
    """Counts ``count`` items of ``kind`` (spans, traces, tags…) ingested by the caller's key."""
    _trail(request).ingested.labels(current_principal(request).name, kind).inc(count)
