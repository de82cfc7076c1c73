"""Searching the traces index: filter and order_by strings in, pages of MLflow trace JSON out.

The HTTP API, the CLI and tests all go through :class:`TraceSearch`; it is the only place that
turns OpenSearch's answers and failures into the API's typed errors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import ConnectionTimeout, NotFoundError, TransportError

from tracestream.indexer.document import hit_fetch, trace_from_hit
from tracestream.indexer.mapping import F, IndexNames
from tracestream.indexer.query import Sessions, experiments_query, session_source_query, to_query, to_sort
from tracestream.indexer.store import get_trace
from tracestream.schemas import is_trace_id
from tracestream.search_api.dsl import (
    Assessment,
    Comparison,
    FilterError,
    parse_filter,
    parse_order_by,
    with_default_order,
)
from tracestream.settings import Settings

T = TypeVar("T")

logger = logging.getLogger(__name__)

EXPORT_PAGE_SIZE = 500
# A scan of trace ids (deletes) fetches only the id per hit: pages can be larger.
ID_SCAN_PAGE_SIZE = 5_000
# OpenSearch's index.max_terms_count: the most trace ids one ``terms`` query may hold.
MAX_TRACE_IDS = 65_536
# Oldest first, as MLflow's store picks the traces of DeleteTraces (max_traces keeps the oldest).
OLDEST_FIRST = ["timestamp_ms ASC", "request_id ASC"]
# Session-scoped assessments: the sessions one assessment comparison covers are looked up first,
# a page of session ids at a time, and searched as one ``terms`` query (OpenSearch's
# index.max_terms_count is 65,536 by default).
SESSION_PAGE_SIZE = 10_000
MAX_SESSIONS = 65_536
PIT_KEEP_ALIVE = "2m"


class SearchError(Exception):
    """A request the API answers with an error: the HTTP status, MLflow's error code, a message
    meant for the caller (never OpenSearch's raw error) and, for filters, the position and the
    filter with a caret under it (``highlight``)."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        position: int | None = None,
        *,
        highlight: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.position = position
        self.highlight = highlight


def _busy(error: TransportError) -> SearchError | None:
    """503 for what a retry can fix: a busy node (429, 5xx), or shards not started yet (a daily
    index created a moment ago)."""
    if error.status_code == 429 or (isinstance(error.status_code, int) and error.status_code >= 500):
        logger.warning("OpenSearch failed: %s", error)
        return SearchError(503, "TEMPORARILY_UNAVAILABLE", "the trace store is busy; retry later")
    return None


def invalid(message: str, position: int | None = None) -> SearchError:
    return SearchError(400, "INVALID_PARAMETER_VALUE", message, position)


def experiment_of(trace: dict[str, Any]) -> str | None:
    """The experiment a trace (MLflow trace JSON) belongs to."""
    location = trace["info"].get("trace_location") or {}
    return (location.get("mlflow_experiment") or {}).get("experiment_id")


@dataclass(frozen=True)
class SearchPage:
    traces: list[dict[str, Any]]
    next_page_token: str | None


@dataclass(frozen=True)
class TraceExport:
    """An export in progress: how many traces match, and the traces, streamed in order."""

    total: int
    traces: Iterator[dict[str, Any]]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.traces


@dataclass(frozen=True)
class TraceIdScan:
    """The ids of the traces a selection matches, oldest first: how many match (exact), and the
    ids, streamed a page at a time from one point-in-time view of the index."""

    total: int
    trace_ids: Iterator[str]

    def __iter__(self) -> Iterator[str]:
        return self.trace_ids


@dataclass(frozen=True)
class _Request:
    query: dict[str, Any]
    sort: list[dict[str, Any]]
    fingerprint: str


class TraceSearch:
    def __init__(self, client: OpenSearch, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.names = IndexNames.from_settings(settings)
        self._secret = settings.api.page_token_secret.get_secret_value().encode()

    # ------------------------------------------------------------ request

    def _request(
        self, filter_string: str | None, order_by: list[str] | None, locations: list[str] | None
    ) -> _Request:
        limits = self.settings.api
        if filter_string is not None and len(filter_string) > limits.max_filter_length:
            raise invalid(
                f"filter is too long ({len(filter_string)} characters; at most {limits.max_filter_length})"
            )
        try:
            node = parse_filter(filter_string)
            orders = with_default_order(parse_order_by(order_by))
            query = to_query(node, self._sessions(locations))
            sort = to_sort(orders)
        except FilterError as exc:
            # The message stays MLflow's; where it points is a field of its own.
            raise SearchError(
                400, exc.error_code, exc.message, exc.position, highlight=exc.highlight(filter_string)
            ) from exc
        if locations is not None:
            query = {"bool": {"filter": [query, experiments_query(locations)]}}
        fingerprint = hashlib.sha256(
            json.dumps([filter_string or "", order_by or [], locations], sort_keys=True).encode()
        ).hexdigest()[:16]
        return _Request(query, sort, fingerprint)

    def _sessions(self, locations: list[str] | None) -> Sessions:
        """The sessions an assessment comparison covers through session-scoped assessments (MLflow:
        an assessment with metadata ``mlflow.trace.session`` counts for every trace of the session
        of the trace it was logged on), among the searched experiments: a composite aggregation
        over the ``session_id`` of the traces holding a matching one. Asked once per comparison."""
        found: dict[Comparison, frozenset[str]] = {}

        def lookup(c: Comparison) -> frozenset[str]:
            if c in found:
                return found[c]
            assert isinstance(c.field, Assessment)
            query = session_source_query(c)
            if locations is not None:
                query = {"bool": {"filter": [query, experiments_query(locations)]}}
            sessions: set[str] = set()
            after: dict[str, Any] | None = None
            while True:
                composite: dict[str, Any] = {
                    "size": SESSION_PAGE_SIZE,
                    "sources": [{"session": {"terms": {"field": F.SESSION_ID}}}],
                }
                if after is not None:
                    composite["after"] = after
                body = {
                    "query": query,
                    "size": 0,
                    "track_total_hits": False,
                    "aggs": {"s": {"composite": composite}},
                }
                response = self._search_traces(body)
                page = response.get("aggregations", {}).get("s", {})
                sessions.update(bucket["key"]["session"] for bucket in page.get("buckets", []))
                if len(sessions) > MAX_SESSIONS:
                    raise invalid(
                        f"{c.field.kind}.{c.field.name} {c.op.value}: session-scoped assessments of "
                        f"more than {MAX_SESSIONS} sessions match; narrow the search (experiments)",
                        c.position,
                    )
                after = page.get("after_key")
                if after is None or len(page.get("buckets", [])) < SESSION_PAGE_SIZE:
                    break
            found[c] = frozenset(sessions)
            return found[c]

        return lookup

    # ------------------------------------------------------------ page tokens

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def _holder(caller: str | None) -> str:
        """Who a token is issued to, as it is signed: a digest of the API key's name, so the
        token does not spell the name out."""
        return hashlib.sha256((caller or "").encode()).hexdigest()[:16]

    def _token(self, request: _Request, sort_values: list[Any], caller: str | None) -> str:
        payload = json.dumps(
            {"v": 1, "q": request.fingerprint, "k": self._holder(caller), "after": sort_values},
            separators=(",", ":"),
        )
        encoded = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
        return f"{encoded}.{self._sign(payload.encode())}"

    def _search_after(self, request: _Request, token: Any, caller: str | None) -> list[Any]:
        if not isinstance(token, str):
            # The MLflow drop-in passes the request's JSON value as it came.
            raise invalid(f"Invalid page token, expected a string, got {json.dumps(token)}")
        encoded, _, signature = token.partition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError) as exc:
            raise invalid("Invalid page token, could not base64-decode") from exc
        if not signature or not hmac.compare_digest(signature, self._sign(payload)):
            raise invalid("Invalid page token: it was not issued by this service or was altered")
        try:
            decoded = json.loads(payload)
            fingerprint, holder, after = decoded["q"], decoded.get("k", ""), decoded["after"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise invalid("Invalid page token, could not parse it") from exc
        if holder != self._holder(caller):
            # A token is a capability: another key may not continue a search it did not start.
            raise invalid("Invalid page token: it was issued to another API key")
        if (
            fingerprint != request.fingerprint
            or not isinstance(after, list)
            or len(after) != len(request.sort)
        ):
            raise invalid(
                "Invalid page token: it belongs to a search with another filter, order_by or locations"
            )
        return after

    # ------------------------------------------------------------ OpenSearch

    def _search_traces(self, body: dict[str, Any]) -> dict[str, Any]:
        """One search of the trace indices (none yet is no error: no hits)."""
        return self._call(
            self.client.search,
            index=self.names.read_alias,
            body=body,
            ignore_unavailable=True,
            allow_no_indices=True,
        )

    def _call(self, method: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return method(**kwargs)
        except (OpenSearchConnectionError, ConnectionTimeout) as exc:
            logger.warning("OpenSearch unreachable: %s", exc)
            raise SearchError(
                503, "TEMPORARILY_UNAVAILABLE", "the trace store is unavailable; retry later"
            ) from exc
        except NotFoundError as exc:
            raise SearchError(404, "RESOURCE_DOES_NOT_EXIST", "no traces indexed yet") from exc
        except TransportError as exc:
            text = json.dumps(exc.info) if isinstance(exc.info, dict) else str(exc.info)
            if exc.status_code == 400 and (
                "too_complex_to_determinize" in text or "max_determinized_states" in text or "regex" in text
            ):
                raise invalid("The RLIKE pattern is too complex to evaluate; simplify it") from exc
            busy = _busy(exc)
            if busy is not None:
                raise busy from exc
            logger.error("search failed: %s %s", exc.status_code, text[:2000])
            raise SearchError(500, "INTERNAL_ERROR", "the search failed") from exc

    def search(
        self,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
        locations: list[str] | None = None,
        include_spans: bool = True,
        caller: str | None = None,
    ) -> SearchPage:
        """A page of the traces matching ``filter_string`` in ``locations`` (all when None; none
        when empty). ``caller`` is the API key the page token is issued to: only it may use it."""
        limit = self.settings.api.max_results_limit
        if not 1 <= max_results <= limit:
            raise invalid(
                f"Invalid value {max_results} for parameter 'max_results' supplied. "
                f"It must be a positive integer at most {limit}"
            )
        request = self._request(filter_string, order_by, locations)
        body: dict[str, Any] = {
            "query": request.query,
            "sort": request.sort,
            "size": max_results + 1,  # one more tells whether there is a next page
            "track_total_hits": False,
            **hit_fetch(include_spans),
        }
        if page_token:
            body["search_after"] = self._search_after(request, page_token, caller)
        response = self._search_traces(body)
        hits = response["hits"]["hits"]
        token = (
            self._token(request, hits[max_results - 1]["sort"], caller) if len(hits) > max_results else None
        )
        return SearchPage([trace_from_hit(hit, include_spans) for hit in hits[:max_results]], token)

    def get(self, trace_id: str, locations: list[str] | None = None) -> dict[str, Any]:
        """One trace; a trace outside ``locations`` (when given) is answered exactly as an unknown
        id, so a caller learns nothing of experiments it may not read."""
        if not trace_id.strip():
            raise invalid("Invalid value '' for parameter 'trace_id' supplied. It must not be empty")
        if not is_trace_id(trace_id):
            # No trace can have it (ids are checked when traces are written): not found, without
            # asking OpenSearch.
            raise SearchError(404, "RESOURCE_DOES_NOT_EXIST", f"Trace with ID '{trace_id}' not found.")
        try:
            trace = get_trace(self.client, self.settings, trace_id)
        except (OpenSearchConnectionError, ConnectionTimeout) as exc:
            raise SearchError(
                503, "TEMPORARILY_UNAVAILABLE", "the trace store is unavailable; retry later"
            ) from exc
        except TransportError as exc:
            busy = _busy(exc)
            if busy is None:
                raise
            raise busy from exc
        if trace is None or (locations is not None and experiment_of(trace) not in locations):
            raise SearchError(404, "RESOURCE_DOES_NOT_EXIST", f"Trace with ID '{trace_id}' not found.")
        return trace

    def experiments_of(self, trace_ids: list[str]) -> dict[str, str | None]:
        """The experiment of each indexed trace among ``trace_ids`` (one search, whatever their
        number up to MAX_TRACE_IDS); an id not indexed is absent from the answer."""
        wanted = [trace_id for trace_id in dict.fromkeys(trace_ids) if is_trace_id(trace_id)]
        if not wanted:
            return {}
        if len(wanted) > MAX_TRACE_IDS:
            raise invalid(f"Too many trace ids ({len(wanted)}); at most {MAX_TRACE_IDS} a request")
        body = {
            "query": {"terms": {F.TRACE_ID: wanted}},
            "size": len(wanted),
            "track_total_hits": False,
            "_source": False,
            "docvalue_fields": [F.TRACE_ID, F.EXPERIMENT_ID],
        }
        try:
            hits = self._search_traces(body)["hits"]["hits"]
        except SearchError as exc:
            if exc.status == 404:  # nothing indexed yet
                return {}
            raise
        return {
            hit["fields"][F.TRACE_ID][0]: (hit["fields"].get(F.EXPERIMENT_ID) or [None])[0] for hit in hits
        }

    def export(
        self,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        locations: list[str] | None = None,
        include_spans: bool = True,
        page_size: int = EXPORT_PAGE_SIZE,
    ) -> TraceExport:
        """Every matching trace, in order, from one point-in-time view of the index: a page in
        memory at a time, however many traces match. The first page is fetched here, so that a
        bad request fails before anything is streamed, and so that the total is known."""
        request = self._request(filter_string, order_by, locations)
        total, traces = self._scan(
            request.query,
            request.sort,
            hit_fetch(include_spans),
            page_size,
            lambda hit: trace_from_hit(hit, include_spans),
        )
        return TraceExport(total, traces)

    def scan_trace_ids(
        self,
        filter_string: str | None = None,
        locations: list[str] | None = None,
        trace_ids: list[str] | None = None,
        page_size: int | None = None,
    ) -> TraceIdScan:
        """The ids of every trace matching ``filter_string`` in ``locations`` (and, when given,
        among ``trace_ids``), oldest first (``timestamp_ms``, then the id, as MLflow's store
        orders the traces it deletes). Only the id is fetched per hit; the total is exact."""
        page_size = page_size or ID_SCAN_PAGE_SIZE
        request = self._request(filter_string, OLDEST_FIRST, locations)
        query = request.query
        if trace_ids is not None:
            if len(trace_ids) > MAX_TRACE_IDS:
                raise invalid(f"Too many trace ids ({len(trace_ids)}); at most {MAX_TRACE_IDS} a request")
            query = {"bool": {"filter": [query, {"terms": {F.TRACE_ID: trace_ids}}]}}
        total, ids = self._scan(
            query,
            request.sort,
            {"_source": False, "docvalue_fields": [F.TRACE_ID]},
            page_size,
            lambda hit: hit["fields"][F.TRACE_ID][0],
        )
        return TraceIdScan(total, ids)

    def _scan(
        self,
        query: dict[str, Any],
        sort: list[Any],
        fetch: dict[str, Any],
        page_size: int,
        convert: Callable[[dict[str, Any]], T],
    ) -> tuple[int, Iterator[T]]:
        """``convert`` of every hit of ``query`` in ``sort`` order from one point-in-time view of the index, a
        page in memory at a time, and how many there are (counted once: the view does not
        change). The first page is fetched here, so a bad request fails before anything is
        streamed; the point in time is released when the hits are exhausted or closed."""
        try:
            pit = self._call(
                self.client.create_pit, index=self.names.read_alias, params={"keep_alive": PIT_KEEP_ALIVE}
            )
        except SearchError as exc:
            if exc.status == 404:  # nothing indexed yet
                return 0, iter(())
            raise
        pit_id = pit["pit_id"]
        body: dict[str, Any] = {
            "query": query,
            "sort": sort,
            "size": page_size,
            "track_total_hits": True,
            **fetch,
            "pit": {"id": pit_id, "keep_alive": PIT_KEEP_ALIVE},
        }
        try:
            first = self._call(self.client.search, body=body)["hits"]
        except BaseException:
            self._delete_pit(pit_id)
            raise
        body["track_total_hits"] = False
        return first["total"]["value"], self._pages(body, first["hits"], pit_id, page_size, convert)

    def _pages(
        self,
        body: dict[str, Any],
        hits: list[dict[str, Any]],
        pit_id: str,
        page_size: int,
        convert: Callable[[dict[str, Any]], T],
    ) -> Iterator[T]:
        try:
            while True:
                for hit in hits:
                    yield convert(hit)
                if len(hits) < page_size:
                    return
                body["search_after"] = hits[-1]["sort"]
                hits = self._call(self.client.search, body=body)["hits"]["hits"]
        finally:
            self._delete_pit(pit_id)

    def _delete_pit(self, pit_id: str) -> None:
        try:
            self.client.delete_pit(body={"pit_id": [pit_id]})
        except TransportError as exc:  # it expires by itself
            logger.info("could not delete point in time: %s", exc)
