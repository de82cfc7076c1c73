"""``/api/v1/traces``: search a page at a time, export as NDJSON, get one trace, delete by filter.

Every route covers only the experiments its API key may use (``search_api.access``): reads are
scoped to those it may read, inside the OpenSearch query; the delete to those it may delete in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from tracestream.search_api import audit
from tracestream.search_api.access import PrincipalDep, Right
from tracestream.search_api.deletion import LISTED_TRACE_IDS, Selection, delete_traces
from tracestream.search_api.deps import PublisherDep, SearchDep
from tracestream.search_api.errors import error_body
from tracestream.search_api.search import SearchError, experiment_of

logger = logging.getLogger(__name__)

# How many traces an export will stream (known from its point in time before the first line).
TOTAL_COUNT_HEADER = "X-Total-Count"

router = APIRouter(prefix="/api/v1/traces")


class SearchRequest(BaseModel):
    filter: str | None = Field(default=None, description="An MLflow search_traces filter string")
    order_by: list[str] | None = Field(default=None, description='e.g. ["timestamp_ms DESC"]')
    max_results: int = Field(default=100, description="Traces per page, 1 to the server's limit (1,000)")
    page_token: str | None = None
    locations: list[str] | None = Field(default=None, description="Experiment ids; all when absent")
    include_spans: bool = True


class SearchResponse(BaseModel):
    traces: list[dict[str, Any]]
    next_page_token: str | None = None


@router.post("/search", response_model=SearchResponse)
def search_traces(
    request: Request, body: SearchRequest, searcher: SearchDep, principal: PrincipalDep
) -> Response:
    """Traces matching a filter, a page at a time; pass `next_page_token` back for the next page
    (with the same API key: a token is refused for another)."""
    scope = principal.scope(Right.READ, body.locations)
    page = searcher.search(
        body.filter,
        body.order_by,
        body.max_results,
        body.page_token,
        scope,
        body.include_spans,
        caller=principal.name,
    )
    if body.include_spans and page.traces:  # a page of whole traces, as a get of each
        audit.record(
            request,
            audit.AuditAction.SEARCH,
            experiments=scope,
            filter=body.filter,
            trace_ids=[trace["info"]["trace_id"] for trace in page.traces],
            count=len(page.traces),
        )
    content = orjson.dumps({"traces": page.traces, "next_page_token": page.next_page_token})
    return Response(content, media_type="application/json")


@router.get("/export")
def export_traces(
    request: Request,
    searcher: SearchDep,
    principal: PrincipalDep,
    filter: str | None = None,
    order_by: Annotated[list[str] | None, Query()] = None,
    locations: Annotated[list[str] | None, Query()] = None,
    include_spans: bool = True,
) -> StreamingResponse:
    """Every matching trace as NDJSON, streamed from one point-in-time view of the index."""
    scope = principal.scope(Right.READ, locations)
    export = searcher.export(filter, order_by, scope, include_spans)

    def lines() -> Iterator[bytes]:
        written = 0
        try:
            for trace in export.traces:
                yield orjson.dumps(trace) + b"\n"
                written += 1
        except SearchError as exc:
            # The 200 status is already sent: the failure can only be told in the stream, as a
            # last line the client recognizes (it has error_code and no info).
            logger.warning("export failed after it started: %s", exc.message)
            yield orjson.dumps(error_body(exc)) + b"\n"
        finally:
            # After the stream, so the count is what was sent (a client may stop reading early).
            audit.record(request, audit.AuditAction.EXPORT, experiments=scope, filter=filter, count=written)

    return StreamingResponse(
        lines(), media_type="application/x-ndjson", headers={TOTAL_COUNT_HEADER: str(export.total)}
    )


# The most traces one delete request deletes: a larger delete is several requests, each a bounded
# amount of work (one id per trace read, one event per trace published).
MAX_TRACES_PER_DELETE = 100_000


class DeleteRequest(BaseModel):
    filter: str | None = Field(default=None, description="An MLflow search_traces filter string")
    locations: list[str] | None = Field(default=None, description="Experiment ids; all when absent")
    max_traces: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TRACES_PER_DELETE,
        description=f"Delete at most this many, oldest first (default and limit: {MAX_TRACES_PER_DELETE:,})",
    )
    dry_run: bool = Field(default=False, description="Only say what would be deleted; delete nothing")


class DeleteResponse(BaseModel):
    traces_deleted: int = Field(description="Traces deleted (in a dry run: that would be deleted)")
    traces_matched: int = Field(description="Traces matching; more than traces_deleted when max_traces cut")
    trace_ids: list[str] = Field(
        description=f"The deleted traces' ids, oldest first, the first {LISTED_TRACE_IDS:,}"
    )
    trace_ids_truncated: bool
    dry_run: bool


@router.post("/delete", response_model=DeleteResponse)
def delete_traces_by_filter(
    request: Request,
    body: DeleteRequest,
    searcher: SearchDep,
    publisher: PublisherDep,
    principal: PrincipalDep,
) -> Response:
    """Delete the traces matching a filter, oldest first, for good: a late span or tag does not
    bring them back. Searches stop returning them within seconds. A dry run deletes nothing.
    Only traces of experiments the API key may delete in are matched."""
    if not (body.filter or "").strip() and not body.locations:
        raise SearchError(
            400,
            "INVALID_PARAMETER_VALUE",
            "A delete needs a filter or locations (it would delete every trace); "
            'e.g. "timestamp_ms < 1700000000000"',
        )
    # Experiments named outright must each be deletable (a refusal says so); without any, the
    # delete covers the experiments the key may delete in, as a search covers those it may read.
    for experiment_id in body.locations or []:
        principal.require(Right.DELETE, experiment_id)
    selection = Selection(
        body.filter,
        principal.scope(Right.DELETE, body.locations),
        max_traces=body.max_traces or MAX_TRACES_PER_DELETE,
    )
    deletion = delete_traces(
        searcher,
        None if body.dry_run else publisher(),
        selection,
        f"delete by filter: {body.filter or ''}",
        dry_run=body.dry_run,
    )
    audit.record_deletion(request, selection, deletion)
    answer = DeleteResponse(
        traces_deleted=deletion.deleted,
        traces_matched=deletion.matched,
        trace_ids=deletion.trace_ids,
        trace_ids_truncated=deletion.trace_ids_truncated,
        dry_run=deletion.dry_run,
    )
    return Response(answer.model_dump_json(), media_type="application/json")


# :path, so that an id holding "/" is answered as the id it is (not found), not as a route miss.
# Declared last: "/search" and "/export" are not ids.
@router.get("/{trace_id:path}")
def get_trace(request: Request, trace_id: str, searcher: SearchDep, principal: PrincipalDep) -> Response:
    """One trace with its spans and assessments; a trace of an experiment the API key may not
    read is not found, as an unknown id."""
    trace = searcher.get(trace_id, principal.scope(Right.READ, None))
    experiment_id = experiment_of(trace)
    audit.record(
        request,
        audit.AuditAction.GET_TRACE,
        experiments=[experiment_id] if experiment_id is not None else None,
        trace_ids=[trace_id],
    )
    return Response(orjson.dumps(trace), media_type="application/json")
