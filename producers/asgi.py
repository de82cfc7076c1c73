"""Tracing web services: one trace per HTTP request, for any ASGI app (FastAPI, Starlette, ...).

Like OpenTelemetry's ASGI and FastAPI instrumentations, at the plain ASGI level: the SDK imports
no web framework. ::

    app = FastAPI()
    mlflow.instrument_fastapi(app)  # or app.add_middleware(mlflow.TracingMiddleware)

Each request gets a root span named after its method and route template (``POST /chat``); the
spans its handler starts (``@trace`` functions, ``start_span``) nest under it. Three request
headers become what ``update_current_trace`` would set: ``X-Request-ID`` the client request id,
``X-Session-ID`` the session (``mlflow.trace.session``), ``X-User-ID`` the user
(``mlflow.trace.user``); the handler can still call ``update_current_trace`` to add or change
them. The response status is recorded; a 5xx status or an exception leaving the app makes the
span ERROR (the exception is re-raised, untouched).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from tracestream.producers import fluent, routes
from tracestream.producers.span import LiveSpan, SpanStatusCode
from tracestream.schemas import SpanType, TraceMetadataKey

logger = logging.getLogger("tracestream.producers")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_REQUEST_ID_HEADER = "X-Request-ID"
DEFAULT_SESSION_HEADER = "X-Session-ID"
DEFAULT_USER_HEADER = "X-User-ID"


class TracingMiddleware:
    """ASGI middleware opening a root span per HTTP request (see the module's documentation).

    ``request_id_header``, ``session_header``, ``user_header``: the header names (any case; None
    to not read one). ``excluded_paths``: request paths not traced (health checks).
    ``span_type``: the root span's type.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        request_id_header: str | None = DEFAULT_REQUEST_ID_HEADER,
        session_header: str | None = DEFAULT_SESSION_HEADER,
        user_header: str | None = DEFAULT_USER_HEADER,
        excluded_paths: Iterable[str] = (),
        span_type: str = SpanType.UNKNOWN,
    ) -> None:
        self.app = app
        self._headers = {
            name.lower().encode("latin-1"): what
            for name, what in (
                (request_id_header, "request_id"),
                (session_header, "session"),
                (user_header, "user"),
            )
            if name
        }
        self._excluded = frozenset(excluded_paths)
        self._span_type = span_type
        self._routes_checked = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._routes_checked:
            self._routes_checked = True
            routes.check_app(scope.get("app") or self.app)
        if scope.get("type") != "http" or scope.get("path") in self._excluded:
            await self.app(scope, receive, send)
            return
        span = self._start(scope)
        if not isinstance(span, LiveSpan):  # tracing off, or the span could not start
            await self.app(scope, receive, send)
            return
        token = fluent._attach(span)
        status: list[int] = []

        async def send_recording_status(message: Message) -> None:
            if message.get("type") == "http.response.start":
                status.append(message.get("status", 0))
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        except BaseException as exception:
            fluent._detach(token)
            self._finish(span, scope, status)
            if isinstance(exception, Exception):
                fluent._end_error(span, exception)
            else:  # cancelled: the request stopped, it did not fail
                fluent._end_ok(span, set_outputs=False)
            raise
        fluent._detach(token)
        self._finish(span, scope, status)
        fluent._end_ok(span, set_outputs=False)

    def _start(self, scope: Scope) -> Any:
        method = str(scope.get("method", "GET"))
        path = str(scope.get("path", ""))
        span = fluent._start(f"{method} {path}", self._span_type, None)
        if not isinstance(span, LiveSpan):
            return span
        try:
            inputs: dict[str, Any] = {"method": method, "path": path}
            query = scope.get("query_string") or b""
            if query:
                inputs["query"] = query.decode("latin-1")
            span.set_inputs(inputs)
            span.set_attributes({"http.request.method": method, "url.path": path})
            found: dict[str, str] = {}
            for name, value in scope.get("headers") or ():
                what = self._headers.get(bytes(name).lower())
                if what is not None and what not in found:
                    found[what] = bytes(value).decode("latin-1")
            trace = span._trace
            if "request_id" in found:
                trace.client_request_id = found["request_id"]
            if "session" in found:
                trace.metadata[TraceMetadataKey.TRACE_SESSION] = found["session"]
            if "user" in found:
                trace.metadata[TraceMetadataKey.TRACE_USER] = found["user"]
        except Exception:
            logger.exception("tracestream: could not record the request on its span")
        return span

    def _finish(self, span: LiveSpan, scope: Scope, status: list[int]) -> None:
        try:
            template = getattr(scope.get("route"), "path", None)
            if isinstance(template, str) and template:
                span.name = f"{scope.get('method', 'GET')} {template}"
                span.set_attribute("http.route", template)
            if status:
                code = status[0]
                span.set_attribute("http.response.status_code", code)
                span.set_outputs({"status_code": code})
                if code >= 500:
                    span.set_status(SpanStatusCode.ERROR, f"HTTP {code}")
        except Exception:
            logger.exception("tracestream: could not record the response on its span")


def instrument_fastapi(
    app: Any,
    *,
    request_id_header: str | None = DEFAULT_REQUEST_ID_HEADER,
    session_header: str | None = DEFAULT_SESSION_HEADER,
    user_header: str | None = DEFAULT_USER_HEADER,
    excluded_paths: Iterable[str] = (),
    span_type: str = SpanType.UNKNOWN,
) -> Any:
    """Trace every HTTP request of a FastAPI (or Starlette) app: adds :class:`TracingMiddleware`
    with these options (call it before the app starts serving). A second call does nothing.
    Also warns about routes whose handler has ``@trace`` above the route decorator. Returns
    ``app``."""
    if getattr(app, "_tracestream_instrumented", False):
        logger.warning("tracestream: %r is already instrumented; ignored", app)
        return app
    app.add_middleware(
        TracingMiddleware,
        request_id_header=request_id_header,
        session_header=session_header,
        user_header=user_header,
        excluded_paths=tuple(excluded_paths),
        span_type=span_type,
    )
    app._tracestream_instrumented = True
    routes.check_app(app, stacklevel=2)
    return app


__all__ = ["TracingMiddleware", "instrument_fastapi"]
