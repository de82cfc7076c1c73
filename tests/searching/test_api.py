"""The search API over HTTP, against the real OpenSearch: search, paging, errors, auth, get."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch
from pydantic import SecretStr

from searching.support import small_traces, write_traces
from tracestream.indexer import IndexNames, ensure_index_template
from tracestream.search_api.api import create_app
from tracestream.settings import Settings

START_MS = 1_763_800_000_000  # 2025-11-22


def _ids(response_json: dict) -> list[str]:
    return [trace["info"]["trace_id"] for trace in response_json["traces"]]


def _all_pages(api: TestClient, body: dict, token: str | None = None) -> list[str]:
    seen = []
    while True:
        response = api.post("/api/v1/traces/search", json={**body, "page_token": token})
        assert response.status_code == 200, response.text
        seen += _ids(response.json())
        token = response.json()["next_page_token"]
        if token is None:
            return seen


@pytest.fixture
def twelve_traces(opensearch: OpenSearch, api_settings: Settings) -> list[dict]:
    traces = small_traces(8, seed=1, start_ms=START_MS, error=False, tags={"env": "prod"})
    traces += small_traces(4, seed=2, start_ms=START_MS + 500, error=True, tags={"env": "staging"})
    write_traces(opensearch, api_settings, traces)
    return traces


def test_search_returns_matching_traces_newest_first(api: TestClient, twelve_traces: list[dict]) -> None:
    response = api.post("/api/v1/traces/search", json={"filter": "attributes.status = 'ERROR'"})

    assert response.status_code == 200
    expected = sorted(
        (t for t in twelve_traces if t["info"]["state"] == "ERROR"),
        key=lambda t: (-t["info"]["request_time_ms"], t["trace_id"]),
    )
    assert _ids(response.json()) == [t["trace_id"] for t in expected]
    assert response.json()["next_page_token"] is None


def test_a_trace_comes_back_as_mlflow_trace_json_with_spans(
    api: TestClient, twelve_traces: list[dict]
) -> None:
    newest = max(twelve_traces, key=lambda t: t["info"]["request_time_ms"])

    trace = api.post("/api/v1/traces/search", json={"max_results": 1}).json()["traces"][0]

    assert trace["info"]["trace_id"] == newest["trace_id"]
    assert trace["info"]["tags"]["mlflow.traceName"] == "support_agent"
    assert len(trace["data"]["spans"]) == len(newest["spans"])


def test_without_spans_the_traces_carry_only_their_info(api: TestClient, twelve_traces: list[dict]) -> None:
    response = api.post("/api/v1/traces/search", json={"include_spans": False})

    assert {len(t["data"]["spans"]) for t in response.json()["traces"]} == {0}
    assert len(response.json()["traces"]) == 12


def test_pages_follow_each_other_without_gaps_or_repeats(api: TestClient, twelve_traces: list[dict]) -> None:
    everything = _ids(api.post("/api/v1/traces/search", json={"max_results": 100}).json())

    paged = _all_pages(api, {"max_results": 5})

    assert paged == everything
    assert len(set(paged)) == 12


def test_paging_in_another_order_uses_that_order(api: TestClient, twelve_traces: list[dict]) -> None:
    paged = _all_pages(api, {"max_results": 5, "order_by": ["tags.env ASC", "timestamp_ms ASC"]})

    prod = sorted(
        (t for t in twelve_traces if t["info"]["tags"]["env"] == "prod"),
        key=lambda t: t["info"]["request_time_ms"],
    )
    staging = sorted(
        (t for t in twelve_traces if t["info"]["tags"]["env"] == "staging"),
        key=lambda t: t["info"]["request_time_ms"],
    )
    assert paged == [t["trace_id"] for t in prod + staging]


def test_traces_inserted_between_pages_do_not_shift_the_pages(
    api: TestClient, opensearch: OpenSearch, api_settings: Settings, twelve_traces: list[dict]
) -> None:
    first = api.post("/api/v1/traces/search", json={"max_results": 4}).json()
    # Newer and older traces arrive while the caller is between pages; with offsets the
    # newer ones would push already-seen traces onto the next page.
    write_traces(opensearch, api_settings, small_traces(6, seed=3, start_ms=START_MS + 100_000))
    write_traces(opensearch, api_settings, small_traces(3, seed=4, start_ms=START_MS - 100_000))

    rest = _all_pages(api, {"max_results": 4}, token=first["next_page_token"])

    seen = _ids(first) + rest
    originals = {t["trace_id"] for t in twelve_traces}
    assert [i for i in seen if i in originals] == [
        t["trace_id"]
        for t in sorted(twelve_traces, key=lambda t: (-t["info"]["request_time_ms"], t["trace_id"]))
    ]
    assert len(seen) == len(set(seen))


def test_a_page_token_of_another_filter_is_refused(api: TestClient, twelve_traces: list[dict]) -> None:
    token = api.post("/api/v1/traces/search", json={"max_results": 2}).json()["next_page_token"]

    response = api.post(
        "/api/v1/traces/search", json={"max_results": 2, "page_token": token, "filter": "tags.env = 'prod'"}
    )

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "another filter" in response.json()["message"]


def test_a_tampered_page_token_is_refused(api: TestClient, twelve_traces: list[dict]) -> None:
    token = api.post("/api/v1/traces/search", json={"max_results": 2}).json()["next_page_token"]
    encoded, signature = token.split(".")
    payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).replace(
        b'"after":[', b'"after":[9'
    )
    forged = base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + signature

    for bad in (forged, "not-a-token", token[:-3]):
        response = api.post("/api/v1/traces/search", json={"max_results": 2, "page_token": bad})
        assert response.status_code == 400, bad
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_an_invalid_filter_gets_mlflows_message_and_the_position(
    api: TestClient, twelve_traces: list[dict]
) -> None:
    response = api.post("/api/v1/traces/search", json={"filter": "tags.env = 'prod' AND status < 'OK'"})

    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "Invalid comparator '<'" in body["message"]
    assert body["position"] is not None and body["position"] >= len("tags.env = 'prod' AND ")


def test_an_invalid_filter_shows_where_beside_mlflows_message(api: TestClient) -> None:
    response = api.post("/api/v1/traces/search", json={"filter": "tags.env = 'prod' AND status = OK"})

    assert response.status_code == 400
    assert response.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "Parameter value is either not quoted or unidentified quote types used for string "
        "value OK. Use either single or double quotes.",
        "position": 31,
        "highlight": "tags.env = 'prod' AND status = OK\n                               ^^",
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"max_results": 0}, "max_results"),
        ({"max_results": 1001}, "max_results"),
        ({"filter": "tags.env = '" + "x" * 10_001 + "'"}, "too long"),
        ({"filter": "span.name RLIKE '(?<=a)b'"}, "not supported"),
        ({"order_by": ["timestamp_ms DESCENDING"]}, "order_by"),
        ({"max_results": "many"}, "max_results"),
    ],
)
def test_bad_requests_get_a_400_with_a_reason(
    api: TestClient, twelve_traces: list[dict], body: dict, fragment: str
) -> None:
    response = api.post("/api/v1/traces/search", json=body)

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert fragment in response.json()["message"]


def test_a_regex_too_complex_to_run_gets_a_400_not_opensearchs_error(
    api: TestClient, twelve_traces: list[dict]
) -> None:
    response = api.post("/api/v1/traces/search", json={"filter": "tags.env RLIKE '[ab]*a[ab]{40}c'"})

    assert response.status_code == 400
    assert response.json()["message"] == "The RLIKE pattern is too complex to evaluate; simplify it"


def test_get_returns_the_whole_trace_and_404_for_an_unknown_id(
    api: TestClient, twelve_traces: list[dict]
) -> None:
    trace = twelve_traces[3]

    found = api.get(f"/api/v1/traces/{trace['trace_id']}")
    missing = api.get("/api/v1/traces/tr-00000000000000000000000000000000")

    assert found.status_code == 200
    assert [s["name"] for s in found.json()["data"]["spans"]] == [s["name"] for s in trace["spans"]]
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize("trace_id", ["a%2Fb%2F..%2Fc", "a/b", "not-a-trace-id"])
def test_get_of_an_id_no_trace_can_have_is_not_found_not_a_missing_endpoint(
    api: TestClient, trace_id: str
) -> None:
    response = api.get(f"/api/v1/traces/{trace_id}")

    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_get_of_an_empty_id_is_an_invalid_parameter(api: TestClient) -> None:
    response = api.get("/api/v1/traces/")

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_searching_before_anything_is_indexed_finds_nothing(api: TestClient) -> None:
    response = api.post("/api/v1/traces/search", json={})

    assert response.status_code == 200
    assert response.json() == {"traces": [], "next_page_token": None}


def test_with_api_keys_every_endpoint_but_health_needs_one(
    api_settings: Settings, twelve_traces: list[dict]
) -> None:
    settings = api_settings.model_copy(
        update={
            "api": api_settings.api.model_copy(
                update={"api_keys": [SecretStr("k-ops-1"), SecretStr("k-ci-2")]}
            )
        }
    )
    with TestClient(create_app(settings)) as client:
        without = client.post("/api/v1/traces/search", json={})
        wrong = client.post("/api/v1/traces/search", json={}, headers={"X-API-Key": "guess"})
        right = client.post("/api/v1/traces/search", json={}, headers={"X-API-Key": "k-ci-2"})
        health = client.get("/healthz")

    assert (without.status_code, without.json()["error_code"]) == (401, "UNAUTHENTICATED")
    assert (wrong.status_code, wrong.json()["error_code"]) == (403, "PERMISSION_DENIED")
    assert right.status_code == 200 and len(right.json()["traces"]) == 12
    assert health.status_code == 200


def _with_api(settings: Settings, **api: object) -> Settings:
    return settings.model_copy(update={"api": settings.api.model_copy(update=api)})


def test_with_api_keys_the_docs_and_the_schema_stay_open(api_settings: Settings) -> None:
    with TestClient(create_app(_with_api(api_settings, api_keys=[SecretStr("k-ops-1")]))) as client:
        docs = client.get("/docs")
        schema = client.get("/openapi.json")
        search = client.post("/api/v1/traces/search", json={})

    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert schema.status_code == 200 and "/api/v1/traces/search" in schema.json()["paths"]
    assert search.status_code == 401


def test_the_schema_offers_the_api_key_header_on_data_endpoints_only(api_settings: Settings) -> None:
    with TestClient(create_app(_with_api(api_settings, api_keys=[SecretStr("k-ops-1")]))) as client:
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]

    # what Swagger UI's "Authorize" asks for and then sends
    assert schema["components"]["securitySchemes"] == {
        "ApiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key (`tracestream keys create`, or one of TRACESTREAM_API__API_KEYS)",
        }
    }
    assert paths["/api/v1/traces/search"]["post"]["security"] == [{"ApiKey": []}]
    assert paths["/v1/traces"]["post"]["security"] == [{"ApiKey": []}]
    assert "security" not in paths["/healthz"]["get"]


def test_without_api_keys_the_schema_asks_for_no_key(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()

    assert "securitySchemes" not in schema.get("components", {})
    assert "security" not in schema["paths"]["/api/v1/traces/search"]["post"]


def test_a_search_body_beyond_the_limit_is_a_413_in_the_error_format(api_settings: Settings) -> None:
    body = b'{"filter": "tags.env = \'prod\'", "order_by": ["' + b"x" * 2_000 + b'"]}'
    with TestClient(create_app(_with_api(api_settings, max_request_body_bytes=1_000))) as client:
        declared = client.post("/api/v1/traces/search", content=body)
        chunked = client.post("/api/v1/traces/search", content=iter([body[:600], body[600:]]))
        small = client.post("/api/v1/traces/search", json={"filter": "tags.env = 'prod'"})

    for response in (declared, chunked):
        assert response.status_code == 413
        assert response.json() == {
            "error_code": "RESOURCE_LIMIT_EXCEEDED",
            "message": "The request body exceeds the limit of 1000 bytes",
            "position": None,
        }
    assert small.status_code == 200


def test_opensearch_unreachable_is_a_503(api_settings: Settings) -> None:
    settings = api_settings.model_copy(
        update={
            "opensearch": api_settings.opensearch.model_copy(
                update={"url": "http://127.0.0.1:9", "timeout_s": 2}
            )
        }
    )
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/v1/traces/search", json={"filter": "tags.env = 'prod'"})
        ready = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "127.0.0.1:9" not in response.text
    assert ready.status_code == 503


def test_metrics_count_requests_and_errors(api: TestClient, twelve_traces: list[dict]) -> None:
    api.post("/api/v1/traces/search", json={})
    api.post("/api/v1/traces/search", json={"filter": "nonsense ="})

    text = api.get("/metrics").text

    assert (
        'tracestream_api_request_seconds_count{method="POST",route="/api/v1/traces/search",status="200"} 1.0'
        in text
    )
    assert 'tracestream_api_errors_total{error_code="INVALID_PARAMETER_VALUE"} 1.0' in text


def test_two_apps_in_one_process_share_no_state(api_settings: Settings) -> None:
    # The routers are module-level; what differs between apps (keys, metrics, the search) is
    # each app's own state.
    keyed = create_app(_with_api(api_settings, api_keys=[SecretStr("k-ops-1")]))
    with TestClient(keyed) as guarded, TestClient(create_app(api_settings)) as open_api:
        refused = guarded.post("/api/v1/traces/search", json={})
        answered = open_api.post("/api/v1/traces/search", json={})
        guarded_metrics = guarded.get("/metrics").text
        open_metrics = open_api.get("/metrics").text

    assert (refused.status_code, answered.status_code) == (401, 200)
    assert 'tracestream_api_errors_total{error_code="UNAUTHENTICATED"} 1.0' in guarded_metrics
    assert "UNAUTHENTICATED" not in open_metrics


def test_the_openapi_document_describes_the_search(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()

    assert "/api/v1/traces/search" in schema["paths"]
    assert "/api/v1/traces/export" in schema["paths"]


def test_a_trace_store_whose_shards_are_not_started_is_unavailable_not_an_internal_error(
    api: TestClient, api_settings: Settings, opensearch: OpenSearch
) -> None:
    """As for a moment after the indexer creates a new daily index: its shard is not started."""
    names = IndexNames.from_settings(api_settings)
    ensure_index_template(opensearch, api_settings)
    opensearch.indices.create(
        index=names.daily(1_796_601_600_000),
        body={"settings": {"index.routing.allocation.require._name": "no-such-node"}},
        params={"wait_for_active_shards": "0"},
    )

    got = api.get("/api/v1/traces/tr-" + "7" * 32)
    searched = api.post("/api/v1/traces/search", json={"filter": "trace.status = 'OK'"})

    for response in (got, searched):
        assert response.status_code == 503, response.text
        assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
