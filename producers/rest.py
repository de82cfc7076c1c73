"""The few reads the fluent API needs from the tracestream API (its MLflow REST drop-in), over
the standard library: the SDK only writes events otherwise, and installs no HTTP client.

Used when ``TRACESTREAM_SDK__TRACKING_URI`` is set: ``set_experiment(experiment_name=...)`` and
``get_assessment`` of an assessment this process did not log.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

_TIMEOUT_S = 10.0


class RestError(Exception):
    """An answer other than 2xx, with MLflow's ``error_code`` when the server sent one."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}" if error_code else message)
        self.status, self.error_code = status, error_code


def call(
    base_uri: str,
    token: str,
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``method path`` on the API at ``base_uri`` (http or https, checked by the caller); the JSON
    answer. Raises RestError, OSError."""
    url = base_uri.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            text = response.read()
    except urllib.error.HTTPError as error:
        try:
            answer = json.loads(error.read() or b"{}")
        except ValueError:
            answer = {}
        raise RestError(error.code, answer.get("error_code", ""), answer.get("message", str(error))) from None
    return json.loads(text or b"{}")
