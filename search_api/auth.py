"""Who is calling the search API: with keys configured (``TRACESTREAM_API__KEYS_FILE`` or the
flat ``TRACESTREAM_API__API_KEYS``), the data endpoints need a key; the docs pages, the OpenAPI
schema, health and metrics stay open (a browser, a probe and a scraper carry no key).

A key is accepted in any of the forms the clients send:

- ``X-API-Key: <key>`` (the explorer, `tracestream traces`, Swagger UI's "Authorize");
- ``Authorization: Bearer <key>`` (MLflow's client with ``MLFLOW_TRACKING_TOKEN``);
- ``Authorization: Basic base64(user:key)`` (MLflow's client with ``MLFLOW_TRACKING_USERNAME`` and
  ``MLFLOW_TRACKING_PASSWORD``): the password is the key and the user name is ignored, so the
  answer never depends on whether a name exists.

The check is a dependency of the data routes; it sets ``request.state.principal`` (read through
``search_api.access.PrincipalDep``). A client address that sends ``auth_max_failures`` invalid
keys within a minute is refused (429) for ``auth_lockout_s``, whatever it sends meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import math
import threading
import time
from collections import OrderedDict, deque
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from tracestream.search_api.keys import KeyRing
from tracestream.search_api.search import SearchError

API_KEY_HEADER = "X-API-Key"
FAILURE_WINDOW_S = 60.0
MAX_TRACKED_CLIENTS = 10_000  # bounds the limiter's memory; the oldest addresses are forgotten first

api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    description="An API key (`tracestream keys create`, or one of TRACESTREAM_API__API_KEYS)",
    # Not auto_error: MLflow's client sends its key in Authorization instead, and a missing key
    # is answered in the API's error format.
    auto_error=False,
)


def _unauthenticated() -> SearchError:
    return SearchError(
        401, "UNAUTHENTICATED", f"missing API key: send {API_KEY_HEADER}, a bearer token or basic auth"
    )


def presented_key(request: Request, api_key: str | None) -> str | None:
    """The key a request carries, in whichever form; None when it carries none."""
    if api_key:
        return api_key
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        try:
            _user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            # Malformed basic credentials are a wrong key, not a missing one.
            return credentials
        return password or None
    return None


class FailedAttempts:
    """Invalid keys per client address within the last minute, for at most
    ``MAX_TRACKED_CLIENTS`` addresses (least recently failed forgotten first)."""

    def __init__(self, max_failures: int, lockout_s: float) -> None:
        self._max_failures = max_failures
        self._lockout_s = lockout_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Raises 429 while ``client`` is locked out."""
        with self._lock:
            until = self._locked_until.get(client)
            if until is None:
                return
            remaining = until - time.monotonic()
            if remaining <= 0:
                del self._locked_until[client]
                return
        raise SearchError(
            429,
            "REQUEST_LIMIT_EXCEEDED",
            f"too many invalid API keys from this address; try again in {math.ceil(remaining)} s",
        )

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = self._failures.pop(client, None) or deque(maxlen=self._max_failures)
            recent.append(now)
            self._failures[client] = recent
            while recent and recent[0] <= now - FAILURE_WINDOW_S:
                recent.popleft()
            if len(recent) >= self._max_failures:
                self._locked_until[client] = now + self._lockout_s
                recent.clear()
            while len(self._failures) > MAX_TRACKED_CLIENTS:
                self._failures.popitem(last=False)
            if len(self._locked_until) > MAX_TRACKED_CLIENTS:
                self._locked_until = {c: t for c, t in self._locked_until.items() if t > now}


def authentication_dependencies(key_ring: KeyRing, failed_attempts: FailedAttempts) -> list[Any]:
    """The dependencies a data route needs: none without keys (the API is open and the schema
    shows no lock; every request is then ``access.OPEN``)."""
    if not key_ring.configured:
        return []

    def authenticate(request: Request, api_key: Annotated[str | None, Security(api_key_scheme)]) -> None:
        client = request.client.host if request.client else "unknown"
        failed_attempts.check(client)
        given = presented_key(request, api_key)
        if given is None:
            raise _unauthenticated()
        principal = key_ring.principal_for(given)
        if principal is None:
            failed_attempts.failed(client)
            raise SearchError(403, "PERMISSION_DENIED", "invalid API key")
        request.state.principal = principal

    return [Security(authenticate)]
