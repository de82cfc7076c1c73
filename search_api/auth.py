"""Who may call the search API: with ``TRACESTREAM_API__API_KEYS`` set, the data endpoints need a
key; the docs pages, the OpenAPI schema, health and metrics stay open (a browser, a probe and a
scraper carry no key).

The check is a dependency of the data routes, declared through an ``APIKeyHeader`` security
scheme, so the OpenAPI schema describes it and Swagger UI's "Authorize" button sends the header.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from tracestream.search_api.search import SearchError

API_KEY_HEADER = "X-API-Key"

api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    description="One of the keys of TRACESTREAM_API__API_KEYS",
    # Not auto_error: MLflow's client sends its key as a bearer token instead, and a missing key
    # is answered in the API's error format.
    auto_error=False,
)


def api_key_dependencies(keys: list[bytes]) -> list[Any]:
    """The dependencies a data route needs: none without keys (the schema then shows no lock)."""
    if not keys:
        return []

    async def require_api_key(
        request: Request, api_key: Annotated[str | None, Security(api_key_scheme)]
    ) -> None:
        # MLflow's client sends MLFLOW_TRACKING_TOKEN as "Authorization: Bearer <token>".
        bearer = request.headers.get("Authorization", "")
        given = api_key or bearer.removeprefix("Bearer ") or None
        if given is None:
            raise SearchError(401, "UNAUTHENTICATED", f"missing {API_KEY_HEADER} header")
        if not any(hmac.compare_digest(given.encode(), key) for key in keys):
            raise SearchError(403, "PERMISSION_DENIED", "invalid API key")

    return [Security(require_api_key)]
