"""The operator's routes, open with API keys set (a probe and a scraper carry no key):
``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tracestream.health import kafka_health, opensearch_health
from tracestream.search_api.deps import MetricsDep, SettingsDep

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(settings: SettingsDep) -> JSONResponse:
    """Kafka and OpenSearch are reachable."""
    reports = [kafka_health(settings, timeout_s=2.0), opensearch_health(settings, timeout_s=2.0)]
    body = {r.server: ("ok" if r.healthy else r.error or "unhealthy") for r in reports}
    return JSONResponse(body, status_code=200 if all(r.healthy for r in reports) else 503)


@router.get("/metrics")
def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
