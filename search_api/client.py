"""Python client of tracestream's search API, with MLflow's ``search_traces`` / ``get_trace`` API.

``TraceClient`` speaks the HTTP API (``/api/v1/traces/...``); the module-level ``search_traces`` and
``get_trace`` behave like ``mlflow.search_traces`` / ``mlflow.get_trace`` so analysis code written
for MLflow runs against the fleet's traces by changing its import.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from tracestream.search_api.entities import Trace

if TYPE_CHECKING:
    import pandas

__all__ = [
    "ExportStream",
    "PagedList",
    "TraceClient",
    "TraceDeletion",
    "TraceSearchError",
    "get_trace",
    "search_traces",
]

T = TypeVar("T")

API_PREFIX = "/api/v1/traces"
TOTAL_COUNT_HEADER = "X-Total-Count"
# mlflow.search_traces fetches this many traces per call when it pages through all results.
SEARCH_TRACES_PAGE_SIZE = 100

INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
INTERNAL_ERROR = "INTERNAL_ERROR"

# Used when an error response carries no error_code (a proxy's page, a framework default).
_CODE_BY_STATUS = {
    400: INVALID_PARAMETER_VALUE,
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: RESOURCE_DOES_NOT_EXIST,
    422: INVALID_PARAMETER_VALUE,
    429: TEMPORARILY_UNAVAILABLE,
    502: TEMPORARILY_UNAVAILABLE,
    503: TEMPORARILY_UNAVAILABLE,
    504: TEMPORARILY_UNAVAILABLE,
}


class TraceSearchError(Exception):
    """An error answered by the search API, or the API being unreachable
    (``error_code`` TEMPORARILY_UNAVAILABLE, ``status_code`` None).

    ``position`` is the character offset in the filter string of the token a filter error is
    about, when the server knows it; ``highlight`` the filter with a caret line under it."""

    def __init__(
        self,
        message: str,
        error_code: str = INTERNAL_ERROR,
        status_code: int | None = None,
        position: int | None = None,
        highlight: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.status_code = status_code
        self.position = position
        self.highlight = highlight

    def __str__(self) -> str:
        where = f" (at position {self.position})" if self.position is not None else ""
        return f"{self.error_code}: {self.message}{where}"

    @property
    def is_usage_error(self) -> bool:
        """Refused by the client before any request: the caller's arguments or URL are wrong."""
        return self.status_code is None and self.error_code == INVALID_PARAMETER_VALUE


@dataclass(frozen=True)
class ExportStream:
    """An open export: how many traces it holds (None if the server did not say) and its lines."""

    total: int | None
    lines: Iterator[bytes]


@dataclass(frozen=True)
class TraceDeletion:
    """What a delete by filter did, or in a dry run would do: ``traces_deleted`` of the
    ``traces_matched`` matching traces (fewer when ``max_traces`` or the server's limit per request
    cut them, oldest first) and the first of their ids (``trace_ids_truncated`` when not all)."""

    traces_deleted: int
    traces_matched: int
    trace_ids: list[str]
    trace_ids_truncated: bool
    dry_run: bool


class PagedList(list[T]):
    """A page of results; ``token`` fetches the next page, None on the last one."""

    def __init__(self, items: Iterable[T], token: str | None) -> None:
        super().__init__(items)
        self.token = token

    def to_list(self) -> list[T]:
        return list(self)


def _default_base_url() -> str:
    from tracestream.settings import get_settings

    host = get_settings().api.host
    # A server bound to every interface is reached on loopback.
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{get_settings().api.port}"


def _default_api_key() -> str | None:
    from tracestream.settings import get_settings

    keys = get_settings().api.api_keys
    return keys[0].get_secret_value() if keys else None


def _checked_base_url(url: str) -> str:
    """``url`` without a trailing slash, if httpx can send requests to it. Without this check
    "127.0.0.1:8080" fails at the first request as an unreachable server."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        hint = url.split("://", 1)[-1].lstrip("/")
        raise TraceSearchError(
            f"Configuration error: the search API URL {url!r} is not an http(s) URL; the URL needs a "
            f"scheme, e.g. http://{hint or '127.0.0.1:8080'}",
            INVALID_PARAMETER_VALUE,
        )
    return url.rstrip("/")


def _validate_list(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, list):
        raise TraceSearchError(
            f"{name} must be a list, got {type(value).__name__}. Did you mean to use {name}=[{value!r}]?",
            INVALID_PARAMETER_VALUE,
        )


def _error_from_response(response: httpx.Response) -> TraceSearchError:
    body: Any = None
    try:
        body = json.loads(response.read())
    except (ValueError, httpx.HTTPError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error_code"), str):
        position, highlight = body.get("position"), body.get("highlight")
        return TraceSearchError(
            str(body.get("message") or response.reason_phrase),
            body["error_code"],
            response.status_code,
            position if isinstance(position, int) else None,
            highlight if isinstance(highlight, str) else None,
        )
    code = _CODE_BY_STATUS.get(response.status_code, INTERNAL_ERROR)
    text = response.text.strip()[:500] if body is None else json.dumps(body)[:500]
    return TraceSearchError(
        f"HTTP {response.status_code} {response.reason_phrase}: {text}".rstrip(": "),
        code,
        response.status_code,
    )


def _unreachable(error: httpx.TransportError, url: str) -> TraceSearchError:
    return TraceSearchError(
        f"The search API at {url} is unreachable: {type(error).__name__}: {error}", TEMPORARILY_UNAVAILABLE
    )


def _parse_trace(data: Any) -> Trace:
    try:
        return Trace.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise TraceSearchError(f"Malformed trace in the response: {error!r}", INTERNAL_ERROR) from error


class TraceClient:
    """A connection to the search API. ``base_url`` defaults to ``http://{api.host}:{api.port}`` of
    the settings and ``api_key`` to the first of ``api.api_keys``; ``transport`` replaces httpx's
    network transport (tests)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = _checked_base_url(base_url or _default_base_url())
        key = api_key if api_key is not None else _default_api_key()
        headers = {"Accept": "application/json"}
        if key:
            headers["X-API-Key"] = key
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> TraceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise _unreachable(error, self.base_url) from error
        if response.status_code >= 400:
            raise _error_from_response(response)
        return response

    def search_traces(
        self,
        filter_string: str | None = None,
        max_results: int = SEARCH_TRACES_PAGE_SIZE,
        order_by: list[str] | None = None,
        page_token: str | None = None,
        locations: list[str] | None = None,
        include_spans: bool = True,
    ) -> PagedList[Trace]:
        """One page of traces matching ``filter_string`` (MLflow's filter language) in
        ``locations`` (experiment ids; None searches all)."""
        _validate_list("order_by", order_by)
        _validate_list("locations", locations)
        body = {
            "filter": filter_string,
            "order_by": order_by,
            "max_results": max_results,
            "page_token": page_token,
            "locations": locations,
            "include_spans": include_spans,
        }
        response = self._send("POST", f"{API_PREFIX}/search", json=body)
        try:
            payload = response.json()
            raw_traces = payload["traces"]
        except (ValueError, KeyError, TypeError) as error:
            raise TraceSearchError(f"Malformed search response: {error!r}", INTERNAL_ERROR) from error
        return PagedList([_parse_trace(t) for t in raw_traces], payload.get("next_page_token") or None)

    def get_trace(self, trace_id: str) -> Trace | None:
        """The trace, or None when the API does not have it."""
        if not trace_id.strip():
            # GET /api/v1/traces/ would be another endpoint's URL: refuse it here.
            raise TraceSearchError("trace_id must not be empty, e.g. tr-0123…", INVALID_PARAMETER_VALUE)
        try:
            response = self._send("GET", f"{API_PREFIX}/{quote(trace_id, safe='')}")
        except TraceSearchError as error:
            if error.error_code == RESOURCE_DOES_NOT_EXIST:
                return None
            raise
        try:
            data = response.json()
        except ValueError as error:
            raise TraceSearchError(f"Malformed trace response: {error!r}", INTERNAL_ERROR) from error
        return _parse_trace(data)

    def export_traces(
        self,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        locations: list[str] | None = None,
        include_spans: bool = True,
    ) -> Iterator[Trace]:
        """Every matching trace, streamed: traces are parsed as their lines arrive, so memory
        stays flat however many match. The request is sent when iteration starts."""
        _validate_list("order_by", order_by)
        _validate_list("locations", locations)
        return self._export_traces(filter_string, order_by, locations, include_spans)

    def _export_traces(
        self,
        filter_string: str | None,
        order_by: list[str] | None,
        locations: list[str] | None,
        include_spans: bool,
    ) -> Iterator[Trace]:
        with self.open_export(filter_string, order_by, locations, include_spans) as export:
            for line in export.lines:
                yield _parse_trace(json.loads(line))

    def delete_traces(
        self,
        filter_string: str,
        locations: list[str] | None = None,
        max_traces: int | None = None,
        dry_run: bool = False,
    ) -> TraceDeletion:
        """Delete the traces matching ``filter_string`` in ``locations`` (experiment ids; None:
        all), oldest first, at most ``max_traces`` (and the server's limit per request). For good:
        searches stop returning them within seconds. A dry run only says what would go."""
        _validate_list("locations", locations)
        body = {"filter": filter_string, "locations": locations, "max_traces": max_traces, "dry_run": dry_run}
        response = self._send("POST", f"{API_PREFIX}/delete", json=body)
        try:
            payload = response.json()
            return TraceDeletion(
                traces_deleted=int(payload["traces_deleted"]),
                traces_matched=int(payload["traces_matched"]),
                trace_ids=list(payload["trace_ids"]),
                trace_ids_truncated=bool(payload["trace_ids_truncated"]),
                dry_run=bool(payload["dry_run"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise TraceSearchError(f"Malformed delete response: {error!r}", INTERNAL_ERROR) from error

    @contextmanager
    def open_export(
        self,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        locations: list[str] | None = None,
        include_spans: bool = True,
    ) -> Iterator[ExportStream]:
        """The export response, open: its total and its NDJSON lines as they arrive, unparsed (for
        writing them to a file as they are). Failures reported inside the stream raise
        ``TraceSearchError``."""
        _validate_list("order_by", order_by)
        _validate_list("locations", locations)
        params: list[tuple[str, str]] = []
        if filter_string is not None:
            params.append(("filter", filter_string))
        params += [("order_by", clause) for clause in order_by or []]
        params += [("locations", location) for location in locations or []]
        params.append(("include_spans", "true" if include_spans else "false"))
        try:
            with self._http.stream("GET", f"{API_PREFIX}/export", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from_response(response)
                total = response.headers.get(TOTAL_COUNT_HEADER)
                yield ExportStream(int(total) if total and total.isdigit() else None, _export_lines(response))
        except httpx.TransportError as error:
            raise _unreachable(error, self.base_url) from error


def _export_lines(response: httpx.Response) -> Iterator[bytes]:
    for line in response.iter_lines():
        if not line.strip():
            continue
        # The status line is sent before the first trace; a failure after it can only be
        # reported in the stream, as a last line with an error code and no trace info.
        if line.startswith('{"error_code"'):
            try:
                data = json.loads(line)
            except ValueError as error:
                raise TraceSearchError(
                    f"Malformed export line: {line[:200]!r}", INTERNAL_ERROR, response.status_code
                ) from error
            position = data.get("position")
            raise TraceSearchError(
                str(data.get("message")),
                data["error_code"],
                response.status_code,
                position if isinstance(position, int) else None,
            )
        yield line.encode()


# ---------------------------------------------------------------- MLflow's module-level API


def search_traces(
    filter_string: str | None = None,
    max_results: int | None = None,
    order_by: list[str] | None = None,
    return_type: Literal["pandas", "list"] = "pandas",
    include_spans: bool = True,
    locations: list[str] | None = None,
    extract_fields: list[str] | None = None,
    experiment_ids: list[str] | None = None,
) -> pandas.DataFrame | list[Trace]:
    """``mlflow.search_traces``: every matching trace (``max_results=None``) or the first
    ``max_results``, fetched 100 per request, as MLflow's DataFrame or a list of ``Trace``.

    ``locations`` are experiment ids (None: all experiments); ``experiment_ids`` is its
    deprecated name. ``extract_fields`` (deprecated in MLflow, pandas only) adds one column per
    ``"span_name.inputs|outputs[.field]"``."""
    if experiment_ids is not None:
        warnings.warn(
            "Parameter 'experiment_ids' is deprecated. Please use 'locations' instead.",
            FutureWarning,
            stacklevel=2,
        )
        if locations is not None:
            raise ValueError(
                "Cannot specify both 'experiment_ids' (deprecated) and 'locations'. Use 'locations' only."
            )
        locations = experiment_ids
    if extract_fields is not None:
        warnings.warn(
            "The `extract_fields` parameter is deprecated and will be removed in a future version.",
            FutureWarning,
            stacklevel=2,
        )
    if return_type not in ("pandas", "list"):
        raise TraceSearchError(
            f"Invalid return type: {return_type}. Return type must be either 'pandas' or 'list'.",
            INVALID_PARAMETER_VALUE,
        )
    if return_type == "list" and extract_fields:
        raise TraceSearchError(
            "The `extract_fields` parameter is only supported when return type is set to 'pandas'.",
            INVALID_PARAMETER_VALUE,
        )
    _validate_list("locations", locations)
    if max_results is not None and max_results < 1:
        # The API answers 400 to it; without this check the loop below would ask nothing and
        # return an empty result as if no trace matched.
        raise TraceSearchError(
            f"Invalid value {max_results} for parameter 'max_results' supplied. "
            "It must be a positive integer",
            INVALID_PARAMETER_VALUE,
        )
    if return_type == "pandas":
        from tracestream.search_api.dataframe import parse_fields

        # Checked before any request, so a typo does not cost a full search.
        parse_fields(extract_fields or [])

    results: list[Trace] = []
    with TraceClient() as client:
        token: str | None = None
        while max_results is None or len(results) < max_results:
            wanted = SEARCH_TRACES_PAGE_SIZE if max_results is None else max_results - len(results)
            page = client.search_traces(
                filter_string=filter_string,
                max_results=min(wanted, SEARCH_TRACES_PAGE_SIZE),
                order_by=order_by,
                page_token=token,
                locations=locations,
                include_spans=include_spans,
            )
            results.extend(page)
            if not page.token:
                break
            token = page.token

    if return_type == "list":
        return results
    from tracestream.search_api.dataframe import traces_to_dataframe

    return traces_to_dataframe(results, extract_fields=extract_fields)


def get_trace(trace_id: str) -> Trace | None:
    """``mlflow.get_trace``: the trace, or None when it does not exist."""
    with TraceClient() as client:
        return client.get_trace(trace_id)
