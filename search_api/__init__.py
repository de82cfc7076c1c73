"""Searching traces: MLflow's filter language over the index, as an HTTP API, a Python client with
MLflow's ``search_traces``/``get_trace``, and the ``tracestream traces`` commands.

The filter language itself is :mod:`search_api.dsl`; the server side is :mod:`search_api.api`
(``create_app``, ``serve``) over :class:`search_api.search.TraceSearch`.
"""

from tracestream.search_api.client import (
    ExportStream,
    PagedList,
    TraceClient,
    TraceSearchError,
    get_trace,
    search_traces,
)
from tracestream.search_api.entities import Assessment, Span, Trace, TraceData, TraceInfo

__all__ = [
    "Assessment",
    "ExportStream",
    "PagedList",
    "Span",
    "Trace",
    "TraceClient",
    "TraceData",
    "TraceInfo",
    "TraceSearchError",
    "get_trace",
    "search_traces",
]
