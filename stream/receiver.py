"""A local webhook receiver for the demo and for trying rules: `tracestream alerts receiver`.

It binds 127.0.0.1 only, checks every delivery's signature and timestamp with
:func:`~tracestream.stream.webhooks.verify_signature` (401 when they do not verify), answers a
delivery id it has already handled with 200 without handling it again (redeliveries keep their
id), and hands each new delivery to a callback, which prints it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tracestream.stream.webhooks import DEFAULT_TOLERANCE_S, SignatureError, summary, verify_signature

MAX_BODY_BYTES = 1024 * 1024
REMEMBERED_DELIVERIES = 10_000


@dataclass(frozen=True)
class Received:
    delivery_id: str | None
    body: dict[str, Any] | None
    verified: bool
    duplicate: bool = False
    error: str | None = None


def describe(received: Received) -> str:
    """One line for a delivery: the alert's summary (either body format), or why it was refused."""
    if not received.verified:
        return f"REJECTED delivery {received.delivery_id or '?'}: {received.error}"
    body = received.body or {}
    if isinstance(body.get("data"), dict):  # the generic JSON body
        data = body["data"]
        line = summary(data)
        samples = data.get("sample_trace_ids") or []
        if samples:
            line += f"; e.g. trace {samples[0]}"
    else:  # the Slack body
        line = str(body.get("text", ""))
    again = " (redelivery, ignored)" if received.duplicate else ""
    return f"WEBHOOK {line}{again}"


class AlertReceiver:
    """An HTTP server on 127.0.0.1:``port`` (0: a free one) in a thread of its own."""

    def __init__(
        self,
        secret: str,
        port: int = 0,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        on_delivery: Callable[[Received], None] | None = None,
    ) -> None:
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.on_delivery = on_delivery
        self.received: list[Received] = []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def start(self) -> AlertReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, name="alert-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> AlertReceiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def handle(self, headers: dict[str, str], raw: bytes) -> tuple[int, Received]:
        """The answer's status and what was received, for one POST."""
        try:
            delivery = verify_signature(self.secret, headers, raw, self.tolerance_s)
        except SignatureError as exc:
            lowered = {k.lower(): v for k, v in headers.items()}
            received = Received(lowered.get("x-tracestream-delivery-id"), None, False, error=str(exc))
            return HTTPStatus.UNAUTHORIZED, self._record(received)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return HTTPStatus.BAD_REQUEST, self._record(Received(delivery, None, True, error=str(exc)))
        with self._lock:
            duplicate = delivery in self._seen
            self._seen[delivery] = None
            while len(self._seen) > REMEMBERED_DELIVERIES:
                self._seen.popitem(last=False)
        return HTTPStatus.OK, self._record(Received(delivery, body, True, duplicate))

    def _record(self, received: Received) -> Received:
        with self._lock:
            self.received.append(received)
        if self.on_delivery is not None:
            self.on_delivery(received)
        return received

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                    return
                raw = self.rfile.read(length)
                status, _ = receiver.handle(dict(self.headers.items()), raw)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the callback reports each delivery

        return Handler
