"""The search API over HTTP (FastAPI): `tracestream api serve`.

``create_app`` only assembles: the shared objects on ``app.state`` (read by the routes through
``search_api.deps``), the routers of ``search_api.routes`` and the MLflow drop-in, the middleware,
and the error handlers of ``search_api.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from tracestream.indexer.store import opensearch_client
from tracestream.search_api.audit import AuditTrail
from tracestream.search_api.auth import API_KEY_HEADER, FailedAttempts, authentication_dependencies
from tracestream.search_api.errors import ERROR_RESPONSES, install_error_handlers
from tracestream.search_api.keys import KeyRing
from tracestream.search_api.limits import RequestBodyLimit
from tracestream.search_api.metrics import Metrics, measure_latency
from tracestream.search_api.mlflow_rest import MlflowBackend
from tracestream.search_api.mlflow_rest import router as mlflow_router
from tracestream.search_api.routes import health, live, traces, ui
from tracestream.search_api.search import TraceSearch
from tracestream.settings import Settings, get_settings


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # The audit records still queued are written before the process goes.
    app.state.audit.close()


def create_app(settings: Settings | None = None, search: TraceSearch | None = None) -> FastAPI:
    settings = settings or get_settings()
    search = search or TraceSearch(opensearch_client(settings), settings)
    app = FastAPI(
        lifespan=_lifespan,
        title="tracestream search API",
        version="1",
        description="Search traces with MLflow's search_traces filter language.",
        responses=ERROR_RESPONSES,
        # Served by routes/ui.py from the package: FastAPI's own pages load their assets from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.search = search
    app.state.metrics = Metrics()
    app.state.mlflow = MlflowBackend(settings, search)
    app.state.audit = AuditTrail(opensearch_client(settings), settings, app.state.metrics.registry)

    # The data endpoints need a key when keys are set (MLflow's tracking protocol included: the
    # unmodified mlflow client works against this API). The pages (the explorer, the docs), the
    # OpenAPI schema, health and metrics stay open: the explorer sends the key it asks for.
    app.state.key_ring = KeyRing(
        settings.api.keys_file,
        [key.get_secret_value() for key in settings.api.api_keys],
        settings.api.keys_check_interval_s,
    )
    authenticated = authentication_dependencies(
        app.state.key_ring, FailedAttempts(settings.api.auth_max_failures, settings.api.auth_lockout_s)
    )
    app.include_router(traces.router, dependencies=authenticated)
    app.include_router(live.router, dependencies=authenticated)
    app.include_router(mlflow_router, dependencies=authenticated)
    app.include_router(health.router)
    app.include_router(ui.router)
    app.mount(ui.STATIC_PATH, StaticFiles(directory=ui.STATIC_DIR), name="static")

    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[API_KEY_HEADER, "Authorization", "Content-Type"],
        )
    # Every body any endpoint reads is bounded here; 413 in the API's error format.
    app.add_middleware(RequestBodyLimit, max_body_bytes=settings.api.max_request_body_bytes)
    app.middleware("http")(measure_latency)
    install_error_handlers(app)
    return app


def serve(settings: Settings) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.api.host, port=settings.api.port, log_level="info")
