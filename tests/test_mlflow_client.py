"""``MlflowClient``'s HTTP side against a scripted transport: paging under the hood, the requests
each method sends and MLflow's errors. tests/mlflow_dropin/test_mlflow_client_recipes.py runs it
against a real pipeline."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from test_client_http import BASE_URL, PagingAPI, small_traces

from tracestream.search_api import Experiment, MlflowClient, MlflowException, Trace, TraceSearchError


def client_for(handler: Any) -> MlflowClient:
    return MlflowClient(BASE_URL, transport=httpx.MockTransport(handler))


def test_max_results_past_the_servers_500_is_fetched_in_pages_and_continues_with_the_token() -> None:
    traces = small_traces(1234)
    api = PagingAPI(traces)
    client = client_for(api)
    first = client.search_traces(experiment_ids=["7"], filter_string="status = 'OK'", max_results=1000)
    assert [t.info.trace_id for t in first] == [t["info"]["trace_id"] for t in traces[:1000]]
    assert all(isinstance(t, Trace) for t in first)
    assert [b["max_results"] for b in api.bodies] == [500, 500]
    assert {(b["filter"], tuple(b["locations"])) for b in api.bodies} == {("status = 'OK'", ("7",))}
    assert first.token is not None
    rest = client.search_traces(
        experiment_ids=["7"], filter_string="status = 'OK'", max_results=1000, page_token=first.token
    )
    assert [t.info.trace_id for t in rest] == [t["info"]["trace_id"] for t in traces[1000:]]
    assert rest.token is None
    assert [b["max_results"] for b in api.bodies[2:]] == [500]  # 234 left: the last page says so


def test_a_small_max_results_is_one_request_and_the_default_is_mlflows_100() -> None:
    api = PagingAPI(small_traces(150))
    client = client_for(api)
    page = client.search_traces(experiment_ids=["1"])
    assert (len(page), page.token, [b["max_results"] for b in api.bodies]) == (100, "100", [100])
    assert api.bodies[0]["include_spans"] is True


def test_run_id_and_model_id_become_mlflows_filters() -> None:
    api = PagingAPI([])
    client = client_for(api)
    client.search_traces(experiment_ids=["1"], filter_string="tags.a = 'b'", run_id="r1")
    client.search_traces(experiment_ids=["1"], model_id="m-1")
    assert [b["filter"] for b in api.bodies] == [
        "tags.a = 'b' AND attribute.run_id = 'r1'",
        "request_metadata.`mlflow.modelId` = 'm-1'",
    ]
    with pytest.raises(MlflowException, match="Cannot specify both `model_id` or `filter_string`"):
        client.search_traces(experiment_ids=["1"], filter_string="status = 'OK'", model_id="m")


@pytest.mark.parametrize("bad", [0, -5])
def test_max_results_must_be_positive(bad: int) -> None:
    with pytest.raises(MlflowException) as caught:
        client_for(PagingAPI([])).search_traces(experiment_ids=["1"], max_results=bad)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_server_errors_are_mlflow_exceptions_with_code_and_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid page token: altered"}
        )

    with pytest.raises(MlflowException) as caught:
        client_for(handler).search_traces(experiment_ids=["1"], page_token="x")
    error = caught.value
    assert isinstance(error, TraceSearchError)
    assert (error.error_code, error.get_http_status_code(), str(error)) == (
        "INVALID_PARAMETER_VALUE",
        400,
        "Invalid page token: altered",
    )


def test_get_trace_of_an_unknown_id_raises_as_mlflows_client_does() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"})

    with pytest.raises(MlflowException) as caught:
        client_for(handler).get_trace("tr-" + "a" * 32)
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert str(caught.value) == f"Trace with ID 'tr-{'a' * 32}' not found."


def test_trace_tags_are_mlflows_patch_and_delete() -> None:
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={})

    client = client_for(handler)
    client.set_trace_tag("tr-1", "reviewed", 1)  # type: ignore[arg-type]  # MLflow str()s values
    client.delete_trace_tag("tr-1", "reviewed")
    assert seen == [
        ("PATCH", "/api/2.0/mlflow/traces/tr-1/tags", {"key": "reviewed", "value": "1"}),
        ("DELETE", "/api/2.0/mlflow/traces/tr-1/tags", {"key": "reviewed"}),
    ]


def test_delete_traces_sends_mlflows_delete_traces_and_returns_the_count() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={"traces_deleted": 3})

    client = client_for(handler)
    assert client.delete_traces("4", max_timestamp_millis=1700, max_traces=3) == 3
    assert client.delete_traces("4", trace_ids=["tr-1", "tr-2"]) == 3
    assert seen == [
        (
            "/api/2.0/mlflow/traces/delete-traces",
            {"experiment_id": "4", "max_timestamp_millis": 1700, "max_traces": 3},
        ),
        ("/api/2.0/mlflow/traces/delete-traces", {"experiment_id": "4", "request_ids": ["tr-1", "tr-2"]}),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Either `max_timestamp_millis` or `trace_ids` must be specified."),
        (
            {"max_timestamp_millis": 1, "trace_ids": ["t"]},
            "Only one of `max_timestamp_millis` and `trace_ids`",
        ),
        (
            {"trace_ids": ["t"], "max_traces": 1},
            "`max_traces` can't be specified if `trace_ids` is specified.",
        ),
        (
            {"max_timestamp_millis": 1, "max_traces": 0},
            "`max_traces` must be a positive integer, received 0.",
        ),
    ],
)
def test_delete_traces_arguments_are_checked_as_mlflow_checks_them(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(MlflowException, match=message.replace("(", r"\(")) as caught:
        client_for(lambda request: httpx.Response(500)).delete_traces("1", **kwargs)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_delete_traces_on_a_server_without_the_endpoint_is_an_mlflow_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error_code": "ENDPOINT_NOT_FOUND", "message": "Not Found"})

    with pytest.raises(MlflowException, match="does not support deleting traces") as caught:
        client_for(handler).delete_traces("1", max_timestamp_millis=5)
    assert (caught.value.error_code, caught.value.status_code) == ("ENDPOINT_NOT_FOUND", 404)


class PromptVersion:
    """What MLflow's client passes: an object with ``name`` and an int ``version``."""

    def __init__(self, name: str, version: int) -> None:
        self.name, self.version = name, version


def test_links_send_mlflows_link_to_run_and_link_prompts_bodies() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={})

    client = client_for(handler)
    client.link_traces_to_run(["tr-1", "tr-2"], run_id="run-7")
    client.link_prompt_versions_to_trace(
        [PromptVersion("qa", 3), PromptVersion("summarize", 1)], trace_id="tr-1"
    )
    assert seen == [
        ("/api/2.0/mlflow/traces/link-to-run", {"trace_ids": ["tr-1", "tr-2"], "run_id": "run-7"}),
        (
            "/api/2.0/mlflow/traces/link-prompts",
            {
                "trace_id": "tr-1",
                "prompt_versions": [{"name": "qa", "version": "3"}, {"name": "summarize", "version": "1"}],
            },
        ),
    ]


def test_linking_prompts_to_an_unknown_trace_raises_mlflows_not_found() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        message = "Trace with ID 'tr-9' not found."
        return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": message})

    with pytest.raises(MlflowException, match="Trace with ID 'tr-9' not found") as caught:
        client_for(handler).link_prompt_versions_to_trace([PromptVersion("qa", 3)], trace_id="tr-9")
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_experiments_are_searched_and_got_by_name_as_mlflow_entities() -> None:
    experiment = {
        "experiment_id": "3",
        "name": "support",
        "artifact_location": "",
        "lifecycle_stage": "active",
        "creation_time": 5,
        "last_update_time": 6,
        "tags": [{"key": "team", "value": "care"}],
    }
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else dict(request.url.params)
        seen.append((request.method, request.url.path, body))
        if request.url.path.endswith("/search"):
            return httpx.Response(200, json={"experiments": [experiment], "next_page_token": "tok"})
        if body.get("experiment_name") == "support":
            return httpx.Response(200, json={"experiment": experiment})
        return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "none"})

    client = client_for(handler)
    page = client.search_experiments(filter_string="name LIKE 'sup%'", order_by=["name ASC"], max_results=5)
    assert page == [Experiment("3", "support", "", "active", {"team": "care"}, 5, 6)]
    assert page.token == "tok"
    assert client.get_experiment_by_name("support") == page[0]
    assert client.get_experiment_by_name("missing") is None
    assert seen[0] == (
        "POST",
        "/api/2.0/mlflow/experiments/search",
        {"view_type": 1, "max_results": 5, "filter": "name LIKE 'sup%'", "order_by": ["name ASC"]},
    )


def test_mlflow_tracking_uri_is_the_default_url_when_it_is_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.test:5000/")
    assert MlflowClient().tracking_uri == "http://tracking.test:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    assert MlflowClient().tracking_uri != "sqlite:///mlflow.db"
