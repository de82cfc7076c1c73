"""The search API over HTTP (FastAPI): `tracestream api serve`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer import opensearch_client
from search_api.auth import API_KEY_HEADER, api_key_dependencies
from search_api.limits import TOO_LARGE_ERROR_CODE, RequestBodyLimit
from search_api.mlflow_rest import mlflow_router
from search_api.search import SearchError, TraceSearch
from tracestream.health import kafka_health, opensearch_health
from tracestream.settings import Settings, get_settings

logger = logging.getLogger(__name__)

# How many traces an export will stream (known from its point in time before the first line).
TOTAL_COUNT_HEADER = "X-Total-Count"
# error_code of the HTTP errors raised by the framework or search_api.limits, by status.
HTTP_ERROR_CODES = {404: "ENDPOINT_NOT_FOUND", 413: TOO_LARGE_ERROR_CODE}


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


class ErrorResponse(BaseModel):
    error_code: str
    message: str
    position: int | None = None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "tracestream_api_request_seconds",
            "Time to answer a request",
            ["route", "method", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.errors = Counter(
            "tracestream_api_errors_total",
            "Requests answered with an error",
            ["error_code"],
            registry=self.registry,
        )


def _search_of(request: Request) -> TraceSearch:
    return request.app.state.search


SearchDep = Annotated[TraceSearch, Depends(_search_of)]


def _error(status: int, error_code: str, message: str, position: int | None = None) -> JSONResponse:
    return JSONResponse(
        {"error_code": error_code, "message": message, "position": position},
        status_code=status,
    )


def create_app(settings: Settings | None = None, search: TraceSearch | None = None) -> FastAPI:
    settings = settings or get_settings()
    search = search or TraceSearch(opensearch_client(settings), settings)
    keys = [key.get_secret_value().encode() for key in settings.api.api_keys]
    metrics = Metrics()
    app = FastAPI(
        title="tracestream search API",
        version="1",
        description="Search traces with MLflow's search_traces filter language.",
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    app.state.search = search
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[API_KEY_HEADER, "Content-Type"],
        )

    # Every body any endpoint reads is bounded here; 413 in the error format below.
    app.add_middleware(RequestBodyLimit, max_body_bytes=settings.api.max_request_body_bytes)

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        matched = request.scope.get("route")
        label = getattr(matched, "path", "unmatched")
        metrics.latency.labels(label, request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    @app.exception_handler(SearchError)
    async def search_error(request: Request, exc: SearchError) -> JSONResponse:
        metrics.errors.labels(exc.error_code).inc()
        return _error(exc.status, exc.error_code, exc.message, exc.position)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("INVALID_PARAMETER_VALUE").inc()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        )
        return _error(400, "INVALID_PARAMETER_VALUE", f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")
        metrics.errors.labels(code).inc()
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error answering %s", request.url.path)
        metrics.errors.labels("INTERNAL_ERROR").inc()
        return _error(500, "INTERNAL_ERROR", "internal error")

    # The data endpoints: they need a key when keys are set. The docs pages, the OpenAPI schema,
    # health and metrics are the app's own routes and stay open.
    data = APIRouter(dependencies=api_key_dependencies(keys))

    @data.post("/api/v1/traces/search", response_model=SearchResponse)
    def search_traces(body: SearchRequest, searcher: SearchDep) -> Response:
        """Traces matching a filter, a page at a time; pass `next_page_token` back for the next page."""
        page = searcher.search(
            body.filter, body.order_by, body.max_results, body.page_token, body.locations, body.include_spans
        )
        content = orjson.dumps({"traces": page.traces, "next_page_token": page.next_page_token})
        return Response(content, media_type="application/json")

    @data.get("/api/v1/traces/export")
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
                # The 200 status is already sent: the failure can only be told in the stream, as
                # a last line the client recognizes (it has error_code and no info).
                logger.warning("export failed after it started: %s", exc.message)
                yield (
                    orjson.dumps(
                        {"error_code": exc.error_code, "message": exc.message, "position": exc.position}
                    )
                    + b"\n"
                )

        return StreamingResponse(
            lines(), media_type="application/x-ndjson", headers={TOTAL_COUNT_HEADER: str(export.total)}
        )

    # :path, so that an id holding "/" is answered as the id it is (not found), not as a route miss.
    @data.get("/api/v1/traces/{trace_id:path}")
    def get_trace(trace_id: str, searcher: SearchDep) -> Response:
        """One trace with its spans and assessments."""
        return Response(orjson.dumps(searcher.get(trace_id)), media_type="application/json")

    # MLflow's tracking protocol for traces: the unmodified mlflow client works against this API.
    data.include_router(mlflow_router(settings, search))
    app.include_router(data)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Kafka and OpenSearch are reachable."""
        reports = [kafka_health(settings, timeout_s=2.0), opensearch_health(settings, timeout_s=2.0)]
        body = {r.server: ("ok" if r.healthy else r.error or "unhealthy") for r in reports}
        return JSONResponse(body, status_code=200 if all(r.healthy for r in reports) else 503)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(settings: Settings) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.api.host, port=settings.api.port, log_level="info")
