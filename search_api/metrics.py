"""The API's Prometheus metrics: request latency by route, and errors by error code."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.middleware.base import RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response


class Metrics:
    """One registry per app, so that two apps in one process (tests) count apart."""

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


async def measure_latency(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """HTTP middleware: the latency of every request, labelled with the route it matched (its
    template, so that ids do not make a label each)."""
    started = time.perf_counter()
    response = await call_next(request)
    matched = request.scope.get("route")
    label = getattr(matched, "path", "unmatched")
    metrics: Metrics = request.app.state.metrics
    metrics.latency.labels(label, request.method, str(response.status_code)).observe(
        time.perf_counter() - started
    )
    return response
