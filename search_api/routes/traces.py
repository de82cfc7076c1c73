"""``/api/v1/traces``: search a page at a time, export as NDJSON, get one trace."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from tracestream.search_api.deps import SearchDep
from tracestream.search_api.errors import error_body
from tracestream.search_api.search import SearchError

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
def search_traces(body: SearchRequest, searcher: SearchDep) -> Response:
    """Traces matching a filter, a page at a time; pass `next_page_token` back for the next page."""
    page = searcher.search(
        body.filter, body.order_by, body.max_results, body.page_token, body.locations, body.include_spans
    )
    content = orjson.dumps({"traces": page.traces, "next_page_token": page.next_page_token})
    return Response(content, media_type="application/json")


@router.get("/export")
def export_traces(
    searcher: SearchDep,
    filter: str | None = None,
    order_by: Annotated[list[str] | None, Query()] = None,
    locations: Annotated[list[str] | None, Query()] = None,
    include_spans: bool = True,
) -> StreamingResponse:
    """Every matching trace as NDJSON, streamed from one point-in-time view of the index."""
    export = searcher.export(filter, order_by, locations, include_spans)

    def lines() -> Iterator[bytes]:
        try:
            for trace in export.traces:
                yield orjson.dumps(trace) + b"\n"
        except SearchError as exc:
            # The 200 status is already sent: the failure can only be told in the stream, as a
            # last line the client recognizes (it has error_code and no info).
            logger.warning("export failed after it started: %s", exc.message)
            yield orjson.dumps(error_body(exc)) + b"\n"

    return StreamingResponse(
        lines(), media_type="application/x-ndjson", headers={TOTAL_COUNT_HEADER: str(export.total)}
    )


# :path, so that an id holding "/" is answered as the id it is (not found), not as a route miss.
# Declared last: "/search" and "/export" are not ids.
@router.get("/{trace_id:path}")
def get_trace(trace_id: str, searcher: SearchDep) -> Response:
    """One trace with its spans and assessments."""
    return Response(orjson.dumps(searcher.get(trace_id)), media_type="application/json")
