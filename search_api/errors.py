"""The one mapping of failures to the API's HTTP errors, ``{error_code, message, position}``
(plus ``highlight``, the filter with a caret under the position, for filter errors).

Domain code raises :class:`~search_api.search.SearchError` (status, MLflow's error code, message);
FastAPI's own failures (an invalid request, a route miss, a body beyond the limit) and anything
unexpected are answered here in the same format, and counted by error code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracestream.search_api.limits import TOO_LARGE_ERROR_CODE
from tracestream.search_api.metrics import Metrics
from tracestream.search_api.search import SearchError

logger = logging.getLogger(__name__)

# error_code of the HTTP errors raised by the framework or search_api.limits, by status.
HTTP_ERROR_CODES = {404: "ENDPOINT_NOT_FOUND", 413: TOO_LARGE_ERROR_CODE}


class ErrorResponse(BaseModel):
    error_code: str
    message: str
    position: int | None = None
    highlight: str | None = None


def error_body(exc: SearchError) -> dict[str, Any]:
    """The JSON of a SearchError; ``highlight`` only where there is one (a filter error), so the
    other errors keep their three fields."""
    body: dict[str, Any] = {"error_code": exc.error_code, "message": exc.message, "position": exc.position}
    if exc.highlight is not None:
        body["highlight"] = exc.highlight
    return body


def _answer(request: Request, status: int, body: dict[str, Any]) -> JSONResponse:
    metrics: Metrics = request.app.state.metrics
    metrics.errors.labels(body["error_code"]).inc()
    return JSONResponse(body, status_code=status)


def _plain(error_code: str, message: str) -> dict[str, Any]:
    return {"error_code": error_code, "message": message, "position": None}


async def search_error(request: Request, exc: SearchError) -> JSONResponse:
    return _answer(request, exc.status, error_body(exc))


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
    )
    return _answer(request, 400, _plain("INVALID_PARAMETER_VALUE", f"invalid request: {problems}"))


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")
    return _answer(request, exc.status_code, _plain(code, str(exc.detail)))


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error answering %s", request.url.path)
    return _answer(request, 500, _plain("INTERNAL_ERROR", "internal error"))


# Starlette's form (``exception_handlers={...}``): the most specific class that matches wins.
EXCEPTION_HANDLERS: dict[type[Exception], Callable[[Request, Any], Awaitable[JSONResponse]]] = {
    SearchError: search_error,
    RequestValidationError: validation_error,
    StarletteHTTPException: http_error,
    Exception: unexpected,
}

# Documented on every route of the schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 413, 503)
}


def install_error_handlers(app: FastAPI) -> None:
    for exc_class, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
