"""The limit on request bodies as sent, in one place for every endpoint that reads a body (the
search, the MLflow drop-in's writes and OTLP ingest); the inflated size of a compressed body is
limited where it is inflated (``mlflow_rest.ingest.decompress``).

A pure ASGI middleware wraps ``receive``: a Content-Length beyond the limit is refused at the
first read, before a byte of the body is taken (uvicorn sends no ``100 Continue`` then), and a
body without one (chunked) is counted as it arrives and refused when the count passes the limit.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# MLflow's error code for a request beyond a limit (its client knows it; no MLflow code says 413).
TOO_LARGE_ERROR_CODE = "RESOURCE_LIMIT_EXCEEDED"


class BodyTooLarge(HTTPException):
    """A request body beyond a limit, answered 413 by the app's error handler. An HTTPException
    because FastAPI's own body parsing passes those on unchanged (any other error raised while
    it reads the body becomes a 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class RequestBodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        too_large = f"The request body exceeds the limit of {limit} bytes"
        declared = Headers(scope=scope).get("content-length")
        refused_up_front = declared is not None and declared.isdigit() and int(declared) > limit
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if refused_up_front:
                raise BodyTooLarge(too_large)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(too_large)
            return message

        await self.app(scope, limited_receive, send)
