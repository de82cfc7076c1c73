"""Web services: instrument_fastapi / TracingMiddleware, and @trace above a route decorator."""

from __future__ import annotations

import json
import warnings

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from tracestream import producers as mlflow
from tracestream.schemas import SPAN_ENDED, TRACE_ENDED

HEADERS = {"X-Request-ID": "req-1", "X-Session-ID": "session-7", "X-User-ID": "user-42"}


def make_app() -> FastAPI:
    app = FastAPI()
    mlflow.instrument_fastapi(app, excluded_paths=["/health"])

    @mlflow.trace(span_type=mlflow.SpanType.LLM)
    def generate(message: str) -> str:
        return message.upper()

    @app.post("/chat/{room}")
    async def chat(room: str, body: dict) -> dict:
        return {"answer": generate(body["message"])}

    @app.get("/sync")
    def sync_handler() -> dict:
        return {"answer": generate("sync")}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("model unavailable")

    @app.get("/unavailable")
    async def unavailable() -> None:
        raise HTTPException(status_code=503, detail="later")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="no")

    @app.get("/health")
    async def health() -> dict:
        return {}

    return app


def test_one_trace_per_request_with_the_headers(flushed) -> None:
    client = TestClient(make_app())
    assert client.post("/chat/lobby", json={"message": "hi"}, headers=HEADERS).json() == {"answer": "HI"}
    client.post("/chat/lobby", json={"message": "again"})

    exporter = flushed()
    first, second = exporter.records(TRACE_ENDED)
    assert first["client_request_id"] == "req-1"
    assert first["metadata"]["mlflow.trace.session"] == "session-7"
    assert first["metadata"]["mlflow.trace.user"] == "user-42"
    assert first["tags"]["mlflow.traceName"] == "POST /chat/{room}"
    assert first["state"] == "OK"
    assert second["client_request_id"] is None
    assert "mlflow.trace.session" not in second["metadata"]

    spans = [s for s in exporter.records(SPAN_ENDED) if s["trace_id"] == first["trace_id"]]
    root = next(s for s in spans if s["parent_span_id"] is None)
    [child] = [s for s in spans if s["parent_span_id"] is not None]
    assert child["name"] == "generate" and child["parent_span_id"] == root["span_id"]
    assert json.loads(root["attributes"]["http.response.status_code"]) == 200
    assert json.loads(root["attributes"]["http.route"]) == "/chat/{room}"
    assert json.loads(root["attributes"]["mlflow.spanInputs"]) == {"method": "POST", "path": "/chat/lobby"}


def test_sync_handlers_nest_too_and_excluded_paths_are_not_traced(flushed) -> None:
    client = TestClient(make_app())
    client.get("/sync")
    client.get("/health")
    exporter = flushed()
    [trace] = exporter.records(TRACE_ENDED)
    assert trace["tags"]["mlflow.traceName"] == "GET /sync"
    assert {s["name"] for s in exporter.records(SPAN_ENDED)} == {"GET /sync", "generate"}


def test_header_names_are_configurable(flushed) -> None:
    app = FastAPI()
    mlflow.instrument_fastapi(
        app, request_id_header="X-Correlation-ID", session_header=None, user_header="X-Who"
    )

    @app.get("/")
    async def index() -> dict:
        return {}

    TestClient(app).get("/", headers={"x-correlation-id": "c-1", "X-Who": "ann", **HEADERS})
    [trace] = flushed().records(TRACE_ENDED)
    assert trace["client_request_id"] == "c-1"
    assert trace["metadata"]["mlflow.trace.user"] == "ann"
    assert "mlflow.trace.session" not in trace["metadata"]


def test_an_exception_is_recorded_and_reraised(flushed) -> None:
    client = TestClient(make_app(), raise_server_exceptions=False)
    assert client.get("/boom", headers=HEADERS).status_code == 500
    [trace] = flushed().records(TRACE_ENDED)
    [root] = flushed().records(SPAN_ENDED)
    assert trace["state"] == "ERROR" and trace["client_request_id"] == "req-1"
    assert root["status_code"] == "ERROR"
    assert "model unavailable" in root["status_message"]
    assert root["events"][0]["name"] == "exception"

    with pytest.raises(RuntimeError, match="model unavailable"):
        TestClient(make_app()).get("/boom")


def test_5xx_responses_are_errors_and_4xx_are_not(flushed) -> None:
    client = TestClient(make_app())
    assert client.get("/unavailable").status_code == 503
    assert client.get("/missing").status_code == 404
    unavailable, missing = flushed().records(TRACE_ENDED)
    assert unavailable["state"] == "ERROR" and missing["state"] == "OK"


def test_update_current_trace_in_a_handler_still_applies(flushed) -> None:
    app = FastAPI()
    mlflow.instrument_fastapi(app)

    @app.get("/")
    async def index() -> dict:
        mlflow.update_current_trace(tags={"team": "care"}, session_id="from-handler")
        return {}

    TestClient(app).get("/", headers=HEADERS)
    [trace] = flushed().records(TRACE_ENDED)
    assert trace["tags"]["team"] == "care"
    assert trace["metadata"]["mlflow.trace.session"] == "from-handler"
    assert trace["metadata"]["mlflow.trace.user"] == "user-42"


def test_any_asgi_app_with_the_middleware(flushed) -> None:
    async def bare(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    assert TestClient(mlflow.TracingMiddleware(bare)).get("/x?a=1", headers=HEADERS).status_code == 201
    [trace] = flushed().records(TRACE_ENDED)
    [root] = flushed().records(SPAN_ENDED)
    assert root["name"] == "GET /x"
    inputs = json.loads(root["attributes"]["mlflow.spanInputs"])
    assert inputs == {"method": "GET", "path": "/x", "query": "a=1"}
    assert trace["client_request_id"] == "req-1"


def test_requests_run_untraced_when_tracing_is_disabled(flushed) -> None:
    client = TestClient(make_app())
    mlflow.tracing.disable()
    try:
        assert client.post("/chat/a", json={"message": "hi"}).json() == {"answer": "HI"}
    finally:
        mlflow.tracing.enable()
    assert flushed().events == []


# ---------------------------------------------------------------- @trace above a route decorator


def misplaced_module() -> tuple[FastAPI, dict]:
    """A module where @trace is above @app.post, as MLflow's guide shows it."""
    namespace: dict = {"mlflow": mlflow, "FastAPI": FastAPI, "__name__": "chat_service"}
    exec(
        "app = FastAPI()\n"
        "@mlflow.trace\n"
        "@app.post('/chat')\n"
        "async def chat(body: dict) -> dict:\n"
        "    mlflow.update_current_trace(client_request_id='r')\n"
        "    return {'ok': True}\n",
        namespace,
    )
    return namespace["app"], namespace


def test_trace_above_a_route_decorator_warns_once_with_the_fix(exporter) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app, _ = misplaced_module()
        mlflow.instrument_fastapi(app)  # looks through the routes again: no second warning
        TestClient(app).post("/chat", json={})
    misplaced = [w for w in caught if issubclass(w.category, mlflow.MisplacedTraceDecoratorWarning)]
    assert len(misplaced) == 1
    message = str(misplaced[0].message)
    assert "chat" in message and "Swap the two decorators" in message
    assert '@app.post("/chat")\n    @mlflow.trace\n    def chat' in message
    assert "instrument_fastapi" in message


def test_the_warning_comes_at_instrumentation_when_the_app_is_elsewhere(exporter) -> None:
    app = FastAPI()

    def handler() -> dict:
        return {}

    app.post("/chat")(handler)
    holder = {"routes": app}  # the route's app is not a global of the decorating module
    traced = mlflow.trace(handler)
    with pytest.warns(mlflow.MisplacedTraceDecoratorWarning, match="Swap the two decorators"):
        mlflow.instrument_fastapi(holder["routes"])
    assert traced is not handler


def test_trace_below_the_route_decorator_does_not_warn(flushed) -> None:
    app = FastAPI()
    with warnings.catch_warnings():
        warnings.simplefilter("error", mlflow.MisplacedTraceDecoratorWarning)

        @app.post("/chat")
        @mlflow.trace
        async def chat(body: dict) -> dict:
            return {}

        mlflow.instrument_fastapi(app)
        TestClient(app).post("/chat", json={}, headers=HEADERS)
    names = {s["name"] for s in flushed().records(SPAN_ENDED)}
    assert names == {"POST /chat", "chat"}
