"""Scoped API keys on the write side (issue 26): ingest, tags, links and deletes through the real
app with real keys, publishing to a private events topic on the real Kafka. A refused write
answers MLflow's PERMISSION_DENIED and publishes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow_dropin.otlp_requests import TRACE_ID, export_request, mlflow_spans, start_trace_body
from opensearchpy import OpenSearch

from searching.support import deleted_trace_ids, published_events, small_traces, write_traces
from tracestream.schemas import SPAN_ENDED, TRACE_TAGS_CHANGED, new_trace_id
from tracestream.schemas.records import CompletedTrace
from tracestream.search_api.access import ALL_EXPERIMENTS, Right
from tracestream.search_api.api import create_app
from tracestream.search_api.keys import KeysFile
from tracestream.settings import Settings

START_MS = 1_763_800_000_000  # 2025-11-22
V2 = "/api/2.0/mlflow"
V3_TRACES = "/api/3.0/mlflow/traces"
EXPERIMENT_A, EXPERIMENT_B = "1", "2"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@dataclass(frozen=True)
class Fleet:
    traces_a: list[CompletedTrace]
    traces_b: list[CompletedTrace]
    ingest_a: dict[str, str]
    read_a: dict[str, str]
    admin: dict[str, str]


@pytest.fixture
def fleet(
    opensearch: OpenSearch, write_settings: Settings, tmp_path: Path
) -> Iterator[tuple[TestClient, Fleet]]:
    traces_a = small_traces(3, seed=21, start_ms=START_MS, experiment_id=EXPERIMENT_A)
    traces_b = small_traces(3, seed=22, start_ms=START_MS + 500, experiment_id=EXPERIMENT_B)
    write_traces(opensearch, write_settings, traces_a + traces_b)
    keys = KeysFile(tmp_path / "keys.json")
    _, ingest_secret = keys.create("support-app", [EXPERIMENT_A], [Right.INGEST])
    _, read_secret = keys.create("support-dashboard", [EXPERIMENT_A], [Right.READ])
    _, admin_secret = keys.create("operator", [ALL_EXPERIMENTS], [Right.ADMIN])
    settings = write_settings.model_copy(
        update={
            "api": write_settings.api.model_copy(
                update={"keys_file": str(tmp_path / "keys.json"), "audit_enabled": False}
            )
        }
    )
    with TestClient(create_app(settings)) as client:
        yield (
            client,
            Fleet(
                traces_a,
                traces_b,
                {"X-API-Key": ingest_secret},
                {"X-API-Key": read_secret},
                {"X-API-Key": admin_secret},
            ),
        )


def assert_refused(response_json: dict, status: int) -> None:
    assert status == 403
    assert response_json["error_code"] == "PERMISSION_DENIED"


def test_the_ingest_key_sends_spans_to_its_experiment(
    fleet: tuple[TestClient, Fleet], write_settings: Settings
) -> None:
    api, keys = fleet

    response = api.post(
        "/v1/traces",
        content=export_request(*mlflow_spans()).SerializeToString(),
        headers={**keys.ingest_a, **PROTOBUF, "x-mlflow-experiment-id": EXPERIMENT_A},
    )

    assert response.status_code == 200
    spans = [record for kind, record in published_events(write_settings) if kind == SPAN_ENDED]
    assert {span["location"]["experiment_id"] for span in spans} == {EXPERIMENT_A}


def test_the_ingest_key_may_not_send_spans_to_another_experiment(
    fleet: tuple[TestClient, Fleet], write_settings: Settings
) -> None:
    api, keys = fleet

    response = api.post(
        "/v1/traces",
        content=export_request(*mlflow_spans()).SerializeToString(),
        headers={**keys.ingest_a, **PROTOBUF, "x-mlflow-experiment-id": EXPERIMENT_B},
    )

    assert_refused(response.json(), response.status_code)
    assert published_events(write_settings) == []


def test_the_ingest_key_may_not_start_a_trace_in_another_experiment(
    fleet: tuple[TestClient, Fleet], write_settings: Settings
) -> None:
    api, keys = fleet

    response = api.post(V3_TRACES, json=start_trace_body(TRACE_ID, EXPERIMENT_B), headers=keys.ingest_a)

    assert_refused(response.json(), response.status_code)
    assert published_events(write_settings) == []


def test_the_ingest_key_may_not_add_spans_to_a_trace_of_another_experiment(
    fleet: tuple[TestClient, Fleet], write_settings: Settings
) -> None:
    # The spans name the key's own experiment, but their trace id is an indexed trace of B: the
    # stream would add them to that trace.
    api, keys = fleet
    trace_of_b = keys.traces_b[0]["trace_id"]

    response = api.post(
        "/v1/traces",
        content=export_request(*mlflow_spans(trace_of_b.removeprefix("tr-"))).SerializeToString(),
        headers={**keys.ingest_a, **PROTOBUF, "x-mlflow-experiment-id": EXPERIMENT_A},
    )
    started = api.post(V3_TRACES, json=start_trace_body(trace_of_b, EXPERIMENT_A), headers=keys.ingest_a)

    assert_refused(response.json(), response.status_code)
    assert_refused(started.json(), started.status_code)
    assert published_events(write_settings) == []


def test_the_ingest_key_tags_a_trace_of_its_experiment(
    fleet: tuple[TestClient, Fleet], write_settings: Settings
) -> None:
    api, keys = fleet
    trace_id = keys.traces_a[0]["trace_id"]

    response = api.patch(
        f"{V2}/traces/{trace_id}/tags", json={"key": "reviewed", "value": "yes"}, headers=keys.ingest_a
    )

    assert response.status_code == 200
    assert [(kind, record["trace_id"]) for kind, record in published_events(write_settings)] == [
        (TRACE_TAGS_CHANGED, trace_id)
    ]


def test_a_trace_of_another_experiment_and_an_unknown_one_are_refused_alike(
    fleet: tuple[TestClient, Fleet], write_settings: Settings
) -> None:
    api, keys = fleet
    other, unknown = keys.traces_b[0]["trace_id"], new_trace_id()

    hidden = api.patch(f"{V2}/traces/{other}/tags", json={"key": "k", "value": "v"}, headers=keys.ingest_a)
    missing = api.patch(f"{V2}/traces/{unknown}/tags", json={"key": "k", "value": "v"}, headers=keys.ingest_a)

    assert (hidden.status_code, missing.status_code) == (403, 403)
    assert hidden.json()["message"] == f"API key 'support-app' may not ingest into trace '{other}'"
    assert missing.json()["message"] == f"API key 'support-app' may not ingest into trace '{unknown}'"
    assert published_events(write_settings) == []


def test_linking_traces_of_two_experiments_to_a_run_is_refused_whole(
    fleet: tuple[TestClient, Fleet], write_settings: Settings
) -> None:
    api, keys = fleet
    trace_ids = [keys.traces_a[0]["trace_id"], keys.traces_b[0]["trace_id"]]

    response = api.post(
        f"{V2}/traces/link-to-run", json={"trace_ids": trace_ids, "run_id": "run-7"}, headers=keys.ingest_a
    )

    assert_refused(response.json(), response.status_code)
    assert published_events(write_settings) == []


def test_a_read_key_may_not_write(fleet: tuple[TestClient, Fleet], write_settings: Settings) -> None:
    api, keys = fleet

    response = api.post(V3_TRACES, json=start_trace_body(TRACE_ID, EXPERIMENT_A), headers=keys.read_a)

    assert_refused(response.json(), response.status_code)
    assert published_events(write_settings) == []


def test_a_key_without_the_delete_right_may_not_delete(
    fleet: tuple[TestClient, Fleet], write_settings: Settings
) -> None:
    api, keys = fleet

    mlflow = api.post(
        f"{V3_TRACES}/delete-traces",
        json={"experiment_id": EXPERIMENT_A, "max_timestamp_millis": START_MS + 10_000},
        headers=keys.read_a,
    )
    native = api.post("/api/v1/traces/delete", json={"locations": [EXPERIMENT_A]}, headers=keys.ingest_a)

    assert_refused(mlflow.json(), mlflow.status_code)
    assert_refused(native.json(), native.status_code)
    assert deleted_trace_ids(write_settings) == []


def test_the_admin_key_deletes_by_filter_in_every_experiment(
    fleet: tuple[TestClient, Fleet], write_settings: Settings
) -> None:
    api, keys = fleet

    response = api.post(
        "/api/v1/traces/delete", json={"filter": f"timestamp_ms >= {START_MS}"}, headers=keys.admin
    )

    assert response.json()["traces_deleted"] == 6
    assert sorted(deleted_trace_ids(write_settings)) == sorted(
        t["trace_id"] for t in keys.traces_a + keys.traces_b
    )


def test_only_an_admin_key_or_one_of_every_experiment_creates_experiments(
    fleet: tuple[TestClient, Fleet],
) -> None:
    api, keys = fleet

    refused = api.post(f"{V2}/experiments/create", json={"name": "new-agent"}, headers=keys.ingest_a)
    created = api.post(f"{V2}/experiments/create", json={"name": "new-agent"}, headers=keys.admin)

    assert_refused(refused.json(), refused.status_code)
    assert created.status_code == 200
