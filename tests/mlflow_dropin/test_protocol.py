"""MLflow's tracking protocol as the drop-in answers it: protobuf-JSON shapes, page tokens and
max_results, error codes and messages, experiments. Over the real app and a private OpenSearch
index holding traces made from the client's requests the way the pipeline makes them (ingest ->
the stream's assembly -> the indexer's documents); no Kafka needed for reads."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch
from pydantic import SecretStr
from searching.support import drop, private_settings, write_traces

from mlflow_dropin.otlp_requests import TRACE_HEX, TRACE_ID, export_request, mlflow_spans, start_trace_body
from tracestream.schemas import SPAN_ENDED, TRACE_ENDED
from tracestream.search_api.api import create_app
from tracestream.search_api.mlflow_rest.experiments import experiments_index
from tracestream.search_api.mlflow_rest.ingest import otlp_events, trace_info_events
from tracestream.settings import Settings
from tracestream.stream.derive import assemble

OTHER_HEX = "0" * 31 + "1"


def _trace(trace_hex: str, experiment_id: str, request_offset_ms: int = 0) -> Any:
    """The completed trace the pipeline makes of an MLflow client's spans and trace info."""
    trace_id = f"tr-{trace_hex}"
    events = otlp_events(export_request(*mlflow_spans(trace_hex)), experiment_id)
    events += trace_info_events(
        start_trace_body(trace_id, experiment_id, request_offset_ms=request_offset_ms)
    )[0]
    spans = [record for _, (branch, record) in events if branch == SPAN_ENDED]
    (ended,) = [record for _, (branch, record) in events if branch == TRACE_ENDED]
    return assemble(trace_id, 1, spans, ended, now_ms=1)


@pytest.fixture(scope="module")
def settings(opensearch: OpenSearch) -> Iterator[Settings]:
    settings = private_settings(Settings())
    write_traces(
        opensearch, settings, [_trace(TRACE_HEX, "2"), _trace(OTHER_HEX, "2", 1000), _trace("f" * 32, "3")]
    )
    yield settings
    drop(opensearch, settings)
    opensearch.indices.delete(index=experiments_index(settings), ignore_unavailable=True)


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def _search(api: TestClient, **body: Any) -> Any:
    body.setdefault("locations", [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "2"}}])
    return api.post("/api/3.0/mlflow/traces/search", json=body)


# ---------------------------------------------------------------- server and experiments


def test_version_is_one_the_client_sends_spans_to_over_otlp(api: TestClient) -> None:
    answer = api.get("/version")
    assert (answer.status_code, answer.text) == (200, "3.17.2")  # the client needs >= 3.4


def test_the_default_experiment_exists_and_new_names_get_the_next_ids(api: TestClient) -> None:
    default = api.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"}).json()["experiment"]
    assert (default["experiment_id"], default["name"], default["lifecycle_stage"]) == (
        "0",
        "Default",
        "active",
    )
    assert api.get(
        "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "Default"}
    ).json() == {"experiment": default}
    first = api.post("/api/2.0/mlflow/experiments/create", json={"name": "support-agent"}).json()
    second = api.post(
        "/api/2.0/mlflow/experiments/create",
        json={"name": "billing", "tags": [{"key": "team", "value": "care"}]},
    ).json()
    assert int(first["experiment_id"]) >= 1
    assert int(second["experiment_id"]) == int(first["experiment_id"]) + 1
    got = api.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "billing"}).json()
    assert got["experiment"]["experiment_id"] == second["experiment_id"]
    assert got["experiment"]["tags"] == [{"key": "team", "value": "care"}]
    assert isinstance(got["experiment"]["creation_time"], int)


def test_experiment_errors_are_mlflows(api: TestClient) -> None:
    api.post("/api/2.0/mlflow/experiments/create", json={"name": "taken"})
    cases = [
        (
            api.post("/api/2.0/mlflow/experiments/create", json={"name": "taken"}),
            400,
            "RESOURCE_ALREADY_EXISTS",
            "Experiment(name=taken) already exists.",
        ),
        (
            api.post("/api/2.0/mlflow/experiments/create", json={"name": ""}),
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid experiment name: ''",
        ),
        (
            api.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "nope"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Could not find experiment with name 'nope'",
        ),
        (
            api.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": "99"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "No Experiment with id=99 exists",
        ),
    ]
    for answer, status, code, message in cases:
        assert answer.status_code == status
        assert (answer.json()["error_code"], answer.json()["message"]) == (code, message)


def test_experiments_are_stored_durably_not_in_the_process(settings: Settings, api: TestClient) -> None:
    api.post("/api/2.0/mlflow/experiments/create", json={"name": "survives-restarts"})
    with TestClient(create_app(settings)) as restarted:  # another API process, same store
        answer = restarted.get(
            "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "survives-restarts"}
        )
    assert answer.status_code == 200


# ---------------------------------------------------------------- search


def test_search_answers_trace_infos_in_protobuf_json(api: TestClient) -> None:
    answer = _search(api, filter="tags.env = 'prod'", order_by=["timestamp_ms ASC"])
    assert answer.status_code == 200
    infos = answer.json()["traces"]
    assert [info["trace_id"] for info in infos] == [TRACE_ID, f"tr-{OTHER_HEX}"]
    info = infos[0]
    assert info["trace_location"] == {
        "type": "MLFLOW_EXPERIMENT",
        "mlflow_experiment": {"experiment_id": "2"},
    }
    assert info["request_time"] == "2026-11-22T04:31:26.716Z"  # a Timestamp
    assert info["execution_duration"] == "0.071s"  # a Duration
    assert info["state"] == "OK"  # an enum name
    assert info["client_request_id"] == "req-1"
    assert info["request_preview"] == '{"q": "hello"}'
    assert info["tags"] == {
        "mlflow.traceName": "agent",
        "env": "prod",
        "mlflow.trace.spansLocation": "TRACKING_STORE",
    }
    assert info["trace_metadata"]["mlflow.trace.tokenUsage"] == (
        '{"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}'
    )
    assert "spans" not in info


def test_search_pages_with_tokens_until_there_is_none(api: TestClient) -> None:
    first = _search(api, max_results=1, order_by=["timestamp_ms ASC"]).json()
    assert [t["trace_id"] for t in first["traces"]] == [TRACE_ID]
    second = _search(
        api, max_results=1, order_by=["timestamp_ms ASC"], page_token=first["next_page_token"]
    ).json()
    assert [t["trace_id"] for t in second["traces"]] == [f"tr-{OTHER_HEX}"]
    assert "next_page_token" not in second
    # Nothing found is an empty message, and so is searching no experiment.
    assert _search(api, filter="tags.env = 'staging'").json() == {}
    assert _search(api, locations=[]).json() == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"max_results": 501},
            "Invalid value 501 for parameter 'max_results' supplied:  Hint: Value was of type 'int'. "
            "See the API docs for more information about request parameters.",
        ),
        (
            {"max_results": 0},
            "Invalid value 0 for parameter 'max_results' supplied. It must be a positive integer",
        ),
        (
            {"locations": None},
            "Missing value for required parameter 'locations'. "
            "See the API docs for more information about request parameters.",
        ),
        ({"filter": "foo.bar = 'x'"}, "Invalid entity type 'foo'. Valid values are"),
        ({"page_token": "not-a-token"}, "Invalid page token"),
    ],
)
def test_invalid_searches_get_mlflows_error(api: TestClient, body: dict[str, Any], message: str) -> None:
    if body.get("locations", "") is None:
        answer = api.post("/api/3.0/mlflow/traces/search", json={})
    else:
        answer = _search(api, **body)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert answer.json()["message"].startswith(message)


# ---------------------------------------------------------------- traces with spans


def test_batch_get_returns_whole_traces_with_spans_as_otlp_json(api: TestClient) -> None:
    answer = api.get(
        "/api/3.0/mlflow/traces/batchGet",
        params={"trace_ids": [TRACE_ID, "tr-" + "9" * 32, f"tr-{OTHER_HEX}"]},
    )
    traces = answer.json()["traces"]
    assert [t["trace_info"]["trace_id"] for t in traces] == [
        TRACE_ID,
        f"tr-{OTHER_HEX}",
    ]  # unknown ids left out
    root, child = traces[0]["spans"]  # the root first
    assert root["trace_id"] == base64.b64encode(bytes.fromhex(TRACE_HEX)).decode()
    assert "parent_span_id" not in root
    assert child["parent_span_id"] == root["span_id"]
    assert (child["name"], child["kind"], child["status"]) == (
        "llm_call",
        "SPAN_KIND_INTERNAL",
        {"code": "STATUS_CODE_OK"},
    )
    assert isinstance(child["start_time_unix_nano"], int)
    attributes = {a["key"]: a["value"] for a in child["attributes"]}
    # Values decoded, as OTLP carries them, not MLflow's JSON text
    assert attributes["mlflow.spanType"] == {"string_value": "LLM"}
    assert attributes["mlflow.spanLogLevel"] == {"int_value": 20}
    assert attributes["mlflow.spanInputs"] == {
        "kvlist_value": {"values": [{"key": "q", "value": {"string_value": "hello"}}]}
    }
    only_three = api.get(
        "/api/3.0/mlflow/traces/batchGet",
        params={"trace_ids": [TRACE_ID, "tr-" + "f" * 32], "experiment_ids": ["3"]},
    )
    assert [t["trace_info"]["trace_id"] for t in only_three.json()["traces"]] == ["tr-" + "f" * 32]


def test_get_trace_info_get_trace_and_batch_get_infos(api: TestClient) -> None:
    info = api.get(f"/api/3.0/mlflow/traces/{TRACE_ID}", params={"trace_id": TRACE_ID}).json()
    assert info["trace"]["trace_info"]["trace_id"] == TRACE_ID
    assert "spans" not in info["trace"]
    whole = api.get(
        "/api/3.0/mlflow/traces/get", params={"trace_id": TRACE_ID, "allow_partial": "False"}
    ).json()
    assert whole["trace"]["trace_info"] == info["trace"]["trace_info"]
    assert len(whole["trace"]["spans"]) == 2
    infos = api.post("/api/3.0/mlflow/traces/batchGetInfos", json={"trace_ids": [TRACE_ID]}).json()
    assert infos == {"trace_infos": [info["trace"]["trace_info"]]}


def test_an_unknown_trace_is_mlflows_not_found(api: TestClient) -> None:
    unknown = "tr-" + "9" * 32
    for answer in (
        api.get(f"/api/3.0/mlflow/traces/{unknown}"),
        api.get("/api/3.0/mlflow/traces/get", params={"trace_id": unknown}),
    ):
        assert answer.status_code == 404
        assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        assert answer.json()["message"] == f"Trace with ID '{unknown}' not found."
    missing = api.get(f"/api/3.0/mlflow/traces/{TRACE_ID}/assessments/a-{'0' * 32}")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_malformed_requests_are_refused_before_anything_is_written(api: TestClient) -> None:
    cases = [
        api.post("/api/3.0/mlflow/traces", content=b"{nope", headers={"Content-Type": "application/json"}),
        api.post("/api/3.0/mlflow/traces", json={"trace": {"trace_info": {"trace_id": "x"}}}),
        api.post("/v1/traces", content=b"garbage", headers={"Content-Type": "application/x-protobuf"}),
        api.post("/v1/traces", content=b"{}", headers={"Content-Type": "text/plain"}),
        api.patch(f"/api/2.0/mlflow/traces/{TRACE_ID}/tags", json={"value": "no key"}),
        api.post(
            f"/api/3.0/mlflow/traces/{TRACE_ID}/assessments", json={"assessment": {"feedback": {"value": 1}}}
        ),
    ]
    assert [(a.status_code, a.json()["error_code"]) for a in cases] == [
        (400, "MALFORMED_REQUEST"),
        (400, "INVALID_PARAMETER_VALUE"),
        (400, "BAD_REQUEST"),
        (400, "BAD_REQUEST"),
        (400, "INVALID_PARAMETER_VALUE"),
        (400, "INVALID_PARAMETER_VALUE"),
    ]


def test_with_api_keys_the_client_authenticates_with_mlflow_tracking_token(settings: Settings) -> None:
    guarded = settings.model_copy(
        update={"api": settings.api.model_copy(update={"api_keys": [SecretStr("k-1")]})}
    )
    with TestClient(create_app(guarded)) as api:
        # MLflow's client sends MLFLOW_TRACKING_TOKEN as "Authorization: Bearer <token>"
        assert api.get("/version", headers={"Authorization": "Bearer k-1"}).status_code == 200
        assert api.get("/version", headers={"Authorization": "Bearer k-2"}).status_code == 403
        assert api.get("/version").status_code == 401
