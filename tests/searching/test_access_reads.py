"""Scoped API keys on the read side (issue 26): three real keys in a keys file (ingest-only for
experiment A, read for A, admin) over the real app and a private index holding the traces of two
experiments. A key sees only the traces of experiments it may read, in search (counts and pages
included), get, export and the MLflow drop-in's reads; page tokens are bound to their key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from searching.support import drop, private_settings, small_traces, write_traces
from tracestream.schemas import new_trace_id
from tracestream.schemas.records import CompletedTrace
from tracestream.search_api.access import ALL_EXPERIMENTS, Right
from tracestream.search_api.api import create_app
from tracestream.search_api.keys import KeysFile
from tracestream.search_api.mlflow_rest.experiments import ExperimentStore
from tracestream.settings import Settings

START_MS = 1_763_800_000_000  # 2025-11-22
V2 = "/api/2.0/mlflow"
V3_TRACES = "/api/3.0/mlflow/traces"


@dataclass(frozen=True)
class Fleet:
    """Two experiments' traces and the keys of the three callers."""

    experiment_a: str
    experiment_b: str
    traces_a: list[CompletedTrace]  # oldest first
    traces_b: list[CompletedTrace]
    ingest_a: dict[str, str]  # the header each key is sent in
    read_a: dict[str, str]
    admin: dict[str, str]


@pytest.fixture(scope="module")
def fleet_settings(opensearch: OpenSearch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    keys_file = tmp_path_factory.mktemp("keys") / "keys.json"
    settings = private_settings(Settings(), keys_file=str(keys_file), audit_enabled=False)
    yield settings
    drop(opensearch, settings)
    prefix = settings.opensearch.index_prefix
    opensearch.indices.delete(index=f"{prefix}-experiments", ignore_unavailable=True)


@pytest.fixture(scope="module")
def fleet(opensearch: OpenSearch, fleet_settings: Settings) -> Fleet:
    """Experiment A's five traces are all older than experiment B's five: a page of B's newest
    traces would come first if the scope were applied after the search."""
    experiments = ExperimentStore(opensearch, fleet_settings)
    experiment_a = experiments.create("support-agent", None, {})
    experiment_b = experiments.create("billing-agent", None, {})
    traces_a = small_traces(5, seed=11, start_ms=START_MS, experiment_id=experiment_a)
    traces_b = small_traces(5, seed=12, start_ms=START_MS + 60_000, experiment_id=experiment_b)
    write_traces(opensearch, fleet_settings, traces_a + traces_b)
    keys = KeysFile(Path(str(fleet_settings.api.keys_file)))
    _, ingest_secret = keys.create("support-app", [experiment_a], [Right.INGEST])
    _, read_secret = keys.create("support-dashboard", [experiment_a], [Right.READ])
    _, admin_secret = keys.create("operator", [ALL_EXPERIMENTS], [Right.ADMIN])
    return Fleet(
        experiment_a,
        experiment_b,
        traces_a,
        traces_b,
        {"X-API-Key": ingest_secret},
        {"X-API-Key": read_secret},
        {"X-API-Key": admin_secret},
    )


@pytest.fixture(scope="module")
def api(fleet_settings: Settings, fleet: Fleet) -> Iterator[TestClient]:
    with TestClient(create_app(fleet_settings)) as client:
        yield client


def newest_first(traces: list[CompletedTrace]) -> list[str]:
    return [t["trace_id"] for t in sorted(traces, key=lambda t: t["info"]["request_time_ms"], reverse=True)]


def found_ids(answer: dict) -> list[str]:
    return [trace["info"]["trace_id"] for trace in answer["traces"]]


# ---------------------------------------------------------------- search and page tokens


def test_a_read_key_pages_through_its_experiment_only_even_when_another_has_newer_traces(
    api: TestClient, fleet: Fleet
) -> None:
    search = {"order_by": ["timestamp_ms DESC"], "max_results": 3, "include_spans": False}

    first = api.post("/api/v1/traces/search", json=search, headers=fleet.read_a).json()
    second = api.post(
        "/api/v1/traces/search",
        json={**search, "page_token": first["next_page_token"]},
        headers=fleet.read_a,
    ).json()

    assert found_ids(first) + found_ids(second) == newest_first(fleet.traces_a)
    assert second["next_page_token"] is None


def test_a_read_key_asking_for_another_experiment_finds_nothing(api: TestClient, fleet: Fleet) -> None:
    response = api.post(
        "/api/v1/traces/search", json={"locations": [fleet.experiment_b]}, headers=fleet.read_a
    )

    assert response.status_code == 200
    assert response.json() == {"traces": [], "next_page_token": None}


def test_the_admin_key_sees_every_experiment(api: TestClient, fleet: Fleet) -> None:
    response = api.post("/api/v1/traces/search", json={"include_spans": False}, headers=fleet.admin)

    assert sorted(found_ids(response.json())) == sorted(
        t["trace_id"] for t in fleet.traces_a + fleet.traces_b
    )


def test_a_page_token_of_one_key_is_refused_for_another(api: TestClient, fleet: Fleet) -> None:
    search = {"locations": [fleet.experiment_a], "max_results": 2}
    token = api.post("/api/v1/traces/search", json=search, headers=fleet.read_a).json()["next_page_token"]

    response = api.post("/api/v1/traces/search", json={**search, "page_token": token}, headers=fleet.admin)

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert response.json()["message"] == "Invalid page token: it was issued to another API key"


def test_an_ingest_only_key_may_not_search(api: TestClient, fleet: Fleet) -> None:
    response = api.post("/api/v1/traces/search", json={}, headers=fleet.ingest_a)

    assert response.status_code == 403
    assert response.json()["error_code"] == "PERMISSION_DENIED"


# ---------------------------------------------------------------- get and export


def test_a_trace_of_another_experiment_is_not_found_exactly_as_an_unknown_id(
    api: TestClient, fleet: Fleet
) -> None:
    other = fleet.traces_b[0]["trace_id"]
    unknown = new_trace_id()

    hidden = api.get(f"/api/v1/traces/{other}", headers=fleet.read_a)
    missing = api.get(f"/api/v1/traces/{unknown}", headers=fleet.read_a)

    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == {**missing.json(), "message": f"Trace with ID '{other}' not found."}


def test_a_read_key_gets_a_trace_of_its_experiment(api: TestClient, fleet: Fleet) -> None:
    wanted = fleet.traces_a[2]["trace_id"]

    response = api.get(f"/api/v1/traces/{wanted}", headers=fleet.read_a)

    assert response.status_code == 200
    assert response.json()["info"]["trace_id"] == wanted


def test_an_export_holds_only_the_traces_the_key_may_read_and_counts_only_those(
    api: TestClient, fleet: Fleet
) -> None:
    response = api.get(
        "/api/v1/traces/export",
        params={"locations": [fleet.experiment_a, fleet.experiment_b], "include_spans": "false"},
        headers=fleet.read_a,
    )

    exported = [orjson.loads(line)["info"]["trace_id"] for line in response.content.splitlines()]
    assert response.headers["X-Total-Count"] == "5"
    assert sorted(exported) == sorted(t["trace_id"] for t in fleet.traces_a)


# ---------------------------------------------------------------- the MLflow drop-in's reads


def test_mlflow_search_traces_returns_only_readable_experiments(api: TestClient, fleet: Fleet) -> None:
    locations = [
        {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment}}
        for experiment in (fleet.experiment_a, fleet.experiment_b)
    ]

    answer = api.post(
        f"{V3_TRACES}/search", json={"locations": locations, "max_results": 100}, headers=fleet.read_a
    ).json()

    assert sorted(t["trace_id"] for t in answer["traces"]) == sorted(t["trace_id"] for t in fleet.traces_a)


def test_mlflow_batch_reads_leave_out_traces_of_other_experiments(api: TestClient, fleet: Fleet) -> None:
    mine, other = fleet.traces_a[0]["trace_id"], fleet.traces_b[0]["trace_id"]

    infos = api.post(
        f"{V3_TRACES}/batchGetInfos", json={"trace_ids": [mine, other]}, headers=fleet.read_a
    ).json()
    whole = api.get(f"{V3_TRACES}/batchGet", params={"trace_ids": [mine, other]}, headers=fleet.read_a).json()

    assert [info["trace_id"] for info in infos["trace_infos"]] == [mine]
    assert [trace["trace_info"]["trace_id"] for trace in whole["traces"]] == [mine]


def test_mlflow_get_trace_info_of_another_experiment_is_not_found(api: TestClient, fleet: Fleet) -> None:
    other = fleet.traces_b[0]["trace_id"]

    response = api.get(f"{V3_TRACES}/{other}", headers=fleet.read_a)

    assert response.status_code == 404
    assert response.json() == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": f"Trace with ID '{other}' not found.",
        "position": None,
    }


def test_mlflow_experiment_search_lists_only_the_keys_experiments(api: TestClient, fleet: Fleet) -> None:
    answer = api.post(f"{V2}/experiments/search", json={"max_results": 100}, headers=fleet.read_a).json()

    assert [experiment["name"] for experiment in answer["experiments"]] == ["support-agent"]


def test_mlflow_get_experiment_of_another_is_answered_as_a_missing_one(api: TestClient, fleet: Fleet) -> None:
    by_id = api.get(
        f"{V2}/experiments/get", params={"experiment_id": fleet.experiment_b}, headers=fleet.read_a
    )
    by_name = api.get(
        f"{V2}/experiments/get-by-name", params={"experiment_name": "billing-agent"}, headers=fleet.read_a
    )

    assert (by_id.status_code, by_id.json()) == (
        404,
        {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": f"No Experiment with id={fleet.experiment_b} exists",
            "position": None,
        },
    )
    assert (by_name.status_code, by_name.json()) == (
        404,
        {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": "Could not find experiment with name 'billing-agent'",
            "position": None,
        },
    )


def test_an_ingest_only_key_finds_its_own_experiment_by_name(api: TestClient, fleet: Fleet) -> None:
    # MLflow's client looks its experiment up by name before it logs traces into it.
    response = api.get(
        f"{V2}/experiments/get-by-name", params={"experiment_name": "support-agent"}, headers=fleet.ingest_a
    )

    assert response.status_code == 200
    assert response.json()["experiment"]["experiment_id"] == fleet.experiment_a
