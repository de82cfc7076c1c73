"""The client's HTTP side against a scripted transport: request shapes, paging and error mapping.

These check what the client sends and how it reads answers; the search API's own tests run the
client against the real server.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from test_client_entities import trace_json

from tracestream.schemas.samples import completed_trace
from tracestream.search_api import client as client_module
from tracestream.search_api.client import TraceClient, TraceSearchError, get_trace, search_traces
from tracestream.search_api.entities import Trace
from tracestream.settings import get_settings

BASE_URL = "http://search.test:8080"


def small_traces(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        trace_json(completed_trace(rng, min_spans=2, max_spans=4, min_io_bytes=40, max_io_bytes=120))
        for _ in range(count)
    ]


class PagingAPI:
    """Serves ``traces`` in pages the size each request asks for, with the contract's tokens."""

    def __init__(self, traces: list[dict[str, Any]]) -> None:
        self.traces = traces
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/api/v1/traces/search")
        body = json.loads(request.content)
        self.bodies.append(body)
        start = int(body["page_token"] or 0)
        end = start + body["max_results"]
        token = str(end) if end < len(self.traces) else None
        return httpx.Response(200, json={"traces": self.traces[start:end], "next_page_token": token})


def use_transport(
    monkeypatch: pytest.MonkeyPatch, handler: Callable[[httpx.Request], httpx.Response]
) -> None:
    """Makes the module-level functions' clients talk to ``handler``."""
    monkeypatch.setattr(
        client_module,
        "TraceClient",
        functools.partial(TraceClient, base_url=BASE_URL, transport=httpx.MockTransport(handler)),
    )


def test_search_sends_the_contract_body_and_the_api_key() -> None:
    served = small_traces(2)
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"traces": served, "next_page_token": "eyJvZmZzZXQiOiAyfQ=="})

    with TraceClient(BASE_URL, api_key="ops-key-1", transport=httpx.MockTransport(handler)) as client:
        page = client.search_traces(
            "tags.env = 'prod' AND trace.status = 'ERROR'",
            max_results=2,
            order_by=["timestamp_ms DESC"],
            locations=["0", "7"],
            include_spans=False,
        )

    [request] = requests
    assert str(request.url) == f"{BASE_URL}/api/v1/traces/search"
    assert request.headers["X-API-Key"] == "ops-key-1"
    assert json.loads(request.content) == {
        "filter": "tags.env = 'prod' AND trace.status = 'ERROR'",
        "order_by": ["timestamp_ms DESC"],
        "max_results": 2,
        "page_token": None,
        "locations": ["0", "7"],
        "include_spans": False,
    }
    assert [t.info.trace_id for t in page] == [t["info"]["trace_id"] for t in served]
    assert page.token == "eyJvZmZzZXQiOiAyfQ=="


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """The process-wide settings read again from the environment this test sets."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_address_and_api_key_default_to_the_settings(
    monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    monkeypatch.setenv("TRACESTREAM_API__PORT", "9181")
    monkeypatch.setenv("TRACESTREAM_API__API_KEYS", "first-key,second-key")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"traces": [], "next_page_token": None})

    with TraceClient(transport=httpx.MockTransport(handler)) as client:
        assert client.search_traces().token is None

    assert str(seen[0].url).startswith("http://127.0.0.1:9181/")
    assert seen[0].headers["X-API-Key"] == "first-key"


def test_search_traces_without_max_results_follows_tokens_100_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = PagingAPI(small_traces(237))
    use_transport(monkeypatch, api)

    frame = search_traces("trace.status = 'OK'", locations=["0"])

    assert [(b["max_results"], b["page_token"]) for b in api.bodies] == [
        (100, None),
        (100, "100"),
        (100, "200"),
    ]
    assert list(frame["trace_id"]) == [t["info"]["trace_id"] for t in api.traces]


def test_search_traces_with_max_results_stops_there(monkeypatch: pytest.MonkeyPatch) -> None:
    api = PagingAPI(small_traces(237))
    use_transport(monkeypatch, api)

    traces = search_traces(max_results=150, return_type="list")

    assert [b["max_results"] for b in api.bodies] == [100, 50]
    assert len(traces) == 150
    assert all(isinstance(t, Trace) for t in traces)


def test_experiment_ids_is_the_deprecated_name_of_locations(monkeypatch: pytest.MonkeyPatch) -> None:
    api = PagingAPI(small_traces(3))
    use_transport(monkeypatch, api)

    with pytest.warns(FutureWarning, match="'experiment_ids' is deprecated"):
        search_traces(experiment_ids=["12"], return_type="list")

    assert api.bodies[0]["locations"] == ["12"]


def test_extract_fields_with_a_list_return_type_is_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = PagingAPI(small_traces(3))
    use_transport(monkeypatch, api)

    with (
        pytest.warns(FutureWarning, match="`extract_fields` parameter is deprecated"),
        pytest.raises(TraceSearchError, match="only supported when return type is set to 'pandas'"),
    ):
        search_traces(return_type="list", extract_fields=["chat.inputs"])

    assert api.bodies == []


def test_an_error_answer_becomes_a_trace_search_error_with_its_fields() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400,
            json={
                "error_code": "INVALID_PARAMETER_VALUE",
                "message": "Invalid comparator '~' in filter string",
                "position": 9,
            },
        )

    with (
        TraceClient(BASE_URL, transport=httpx.MockTransport(handler)) as client,
        pytest.raises(TraceSearchError) as raised,
    ):
        client.search_traces("tags.env ~ 'prod'")

    error = raised.value
    assert (error.error_code, error.status_code, error.position) == ("INVALID_PARAMETER_VALUE", 400, 9)
    assert error.message == "Invalid comparator '~' in filter string"


def test_a_proxy_error_page_maps_by_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="<html>upstream unavailable</html>")

    with (
        TraceClient(BASE_URL, transport=httpx.MockTransport(handler)) as client,
        pytest.raises(TraceSearchError) as raised,
    ):
        client.search_traces()

    assert (raised.value.error_code, raised.value.status_code) == ("TEMPORARILY_UNAVAILABLE", 503)
    assert "upstream unavailable" in raised.value.message


def test_an_api_that_does_not_answer_is_temporarily_unavailable() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused.
    with TraceClient("http://127.0.0.1:1", timeout_s=2) as client, pytest.raises(TraceSearchError) as raised:
        client.search_traces()

    assert (raised.value.error_code, raised.value.status_code) == ("TEMPORARILY_UNAVAILABLE", None)


def test_get_trace_returns_the_trace_or_none_when_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    [stored] = small_traces(1)
    trace_id = stored["info"]["trace_id"]
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == f"/api/v1/traces/{trace_id}":
            return httpx.Response(200, json=stored)
        return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no trace"})

    use_transport(monkeypatch, handler)

    found = get_trace(trace_id)
    assert found is not None and found.to_dict() == stored
    assert get_trace("tr-00000000000000000000000000000000") is None
    assert paths[1] == "/api/v1/traces/tr-00000000000000000000000000000000"


def test_export_streams_ndjson_and_repeats_list_parameters() -> None:
    served = small_traces(3)
    seen: list[httpx.Request] = []

    def lines() -> Iterator[bytes]:
        for trace in served:
            yield (json.dumps(trace) + "\n").encode()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"content-type": "application/x-ndjson"}, content=lines())

    with TraceClient(BASE_URL, transport=httpx.MockTransport(handler)) as client:
        exported = client.export_traces(
            "span.type = 'TOOL'",
            order_by=["timestamp_ms DESC", "trace_id"],
            locations=["0", "7"],
            include_spans=False,
        )
        assert seen == []  # nothing is sent until iteration starts
        ids = [trace.info.trace_id for trace in exported]

    assert ids == [t["info"]["trace_id"] for t in served]
    assert seen[0].url.path == "/api/v1/traces/export"
    assert list(seen[0].url.params.multi_items()) == [
        ("filter", "span.type = 'TOOL'"),
        ("order_by", "timestamp_ms DESC"),
        ("order_by", "trace_id"),
        ("locations", "0"),
        ("locations", "7"),
        ("include_spans", "false"),
    ]
