"""The audit trail: reads of whole traces and exports recorded in ``<prefix>-audit`` (who, what,
when, how many), one document per request, never failing the request; ingest counted per key
on /metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch
from searching.support import drop, private_settings, small_traces, write_traces

from tracestream.schemas.records import CompletedTrace
from tracestream.search_api import audit
from tracestream.search_api.access import Right
from tracestream.search_api.api import create_app
from tracestream.search_api.keys import KeysFile
from tracestream.settings import OpenSearchSettings, Settings

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
def settings(opensearch: OpenSearch, tmp_path: Path) -> Iterator[Settings]:
    settings = private_settings(Settings(), keys_file=str(tmp_path / "keys.json"))
    yield settings
    drop(opensearch, settings)
    opensearch.indices.delete(index=audit.audit_index(settings), ignore_unavailable=True)


@pytest.fixture
def traces(opensearch: OpenSearch, settings: Settings) -> list[CompletedTrace]:
    traces = small_traces(5, seed=7, start_ms=START_MS, experiment_id="17")
    traces += small_traces(3, seed=8, start_ms=START_MS + 500, experiment_id="18")
    write_traces(opensearch, settings, traces)
    return traces


def audit_records(opensearch: OpenSearch, app_client: TestClient, settings: Settings) -> list[dict[str, Any]]:
    assert app_client.app.state.audit.flush(timeout_s=10)  # type: ignore[attr-defined]
    index = audit.audit_index(settings)
    opensearch.indices.refresh(index=index)
    hits = opensearch.search(index=index, body={"sort": [{"@timestamp": "asc"}], "size": 100})
    return [hit["_source"] for hit in hits["hits"]["hits"]]


def test_an_export_is_one_audit_record_with_its_key_scope_filter_and_count(
    opensearch: OpenSearch, settings: Settings, traces: list[CompletedTrace]
) -> None:
    _, secret = KeysFile(settings.api.keys_file or "").create("support-dashboard", ["17"], [Right.READ])
    with TestClient(create_app(settings)) as client:
        before = time.time()
        export = client.get(
            "/api/v1/traces/export",
            params={"filter": "attributes.status = 'OK'"},
            headers={"X-API-Key": secret},
        )
        exported = [json.loads(line) for line in export.text.splitlines()]
        [record] = audit_records(opensearch, client, settings)

    assert export.status_code == 200 and exported
    assert record["key"] == "support-dashboard"
    assert record["action"] == "traces.export"
    assert record["experiments"] == ["17"]
    assert record["filter"] == "attributes.status = 'OK'"
    assert record["count"] == len(exported)
    assert record["client"] == "testclient"
    assert abs(datetime.fromisoformat(record["@timestamp"]).timestamp() - before) < 30


def test_reading_a_whole_trace_records_its_id_and_experiment(
    opensearch: OpenSearch, settings: Settings, traces: list[CompletedTrace]
) -> None:
    _, secret = KeysFile(settings.api.keys_file or "").create("ops", ["*"], [Right.ADMIN])
    trace_id = traces[-1]["trace_id"]
    with TestClient(create_app(settings)) as client:
        answer = client.get(f"/api/v1/traces/{trace_id}", headers={"Authorization": f"Bearer {secret}"})
        records = audit_records(opensearch, client, settings)

    assert answer.status_code == 200
    assert [(r["key"], r["action"], r["trace_ids"], r["experiments"]) for r in records] == [
        ("ops", "trace.get", [trace_id], ["18"])
    ]


def test_a_search_page_of_whole_traces_is_recorded_and_one_without_spans_is_not(
    opensearch: OpenSearch, settings: Settings, traces: list[CompletedTrace]
) -> None:
    _, secret = KeysFile(settings.api.keys_file or "").create("support-dashboard", ["17"], [Right.READ])
    with TestClient(create_app(settings)) as client:
        whole = client.post("/api/v1/traces/search", json={"max_results": 2}, headers={"X-API-Key": secret})
        infos = client.post(
            "/api/v1/traces/search", json={"include_spans": False}, headers={"X-API-Key": secret}
        )
        records = audit_records(opensearch, client, settings)

    assert whole.status_code == 200 and infos.status_code == 200
    shown = [trace["info"]["trace_id"] for trace in whole.json()["traces"]]
    assert [(r["action"], r["experiments"], r["trace_ids"], r["count"]) for r in records] == [
        ("traces.search", ["17"], shown, 2)
    ]


def test_a_record_lists_a_bounded_number_of_trace_ids_and_the_exact_count() -> None:
    ids = [f"tr-{n:032x}" for n in range(250)]

    record = audit.audit_document("ops", audit.AuditAction.DELETE, trace_ids=ids, max_trace_ids=100)

    assert record["trace_ids"] == ids[:100]
    assert record["trace_ids_truncated"] is True
    assert record["count"] == 250


def app_with_route(settings: Settings, route: Any) -> TestClient:
    """The real app plus one route, as a route of search_api.routes would use the audit module."""
    app = create_app(settings)
    router = APIRouter()
    router.add_api_route("/test/route", route, methods=["POST"])
    app.include_router(router)
    return TestClient(app)


def test_ingest_is_counted_per_key_on_the_metrics_endpoint(settings: Settings) -> None:
    def ingest(request: Request) -> dict[str, str]:
        request.state.principal = KeysFile(settings.api.keys_file or "").read()[0].principal()
        audit.count_ingest(request, "spans", 3)
        return {}

    KeysFile(settings.api.keys_file or "").create("billing-agent", ["4"], [Right.INGEST])
    with app_with_route(settings, ingest) as client:
        client.post("/test/route")
        client.post("/test/route")
        metrics = client.get("/metrics").text

    assert 'tracestream_api_ingested_total{key="billing-agent",kind="spans"} 6.0' in metrics


def test_an_audit_index_that_cannot_be_written_fails_no_request_and_is_counted(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={"opensearch": OpenSearchSettings(url="http://127.0.0.1:1", index_prefix="unwritable")}
    )

    def read(request: Request) -> dict[str, str]:
        audit.record(request, audit.AuditAction.GET_TRACE, trace_ids=["tr-0123"])
        return {"status": "read"}

    with app_with_route(unreachable, read) as client:
        answer = client.post("/test/route")
        assert client.app.state.audit.flush(timeout_s=60)  # type: ignore[attr-defined]
        metrics = client.get("/metrics").text

    assert answer.json() == {"status": "read"}
    assert "tracestream_audit_failures_total 1.0" in metrics
