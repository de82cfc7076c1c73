"""What the routes need, as FastAPI dependencies: ``create_app`` builds each once and keeps it
on ``app.state``; a route names it by type (``search: SearchDep``) instead of closing over it, so
the route modules hold no state and a test can swap one with ``app.dependency_overrides``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from tracestream.search_api.metrics import Metrics
from tracestream.search_api.mlflow_rest.publisher import EventPublisher
from tracestream.search_api.search import TraceSearch
from tracestream.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_search(request: Request) -> TraceSearch:
    return request.app.state.search


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_publisher(request: Request) -> Callable[[], EventPublisher]:
    """The events topic's publisher, shared with the MLflow drop-in, as a function: it connects
    to Kafka on its first use, which a request that writes nothing (a dry run) never makes."""
    backend = request.app.state.mlflow
    return lambda: backend.publisher


SettingsDep = Annotated[Settings, Depends(get_settings)]
SearchDep = Annotated[TraceSearch, Depends(get_search)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
PublisherDep = Annotated[Callable[[], EventPublisher], Depends(get_publisher)]
