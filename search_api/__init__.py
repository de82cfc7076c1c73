"""Searching traces: MLflow's filter language over the index, as an HTTP API, a Python client with
MLflow's ``search_traces``/``get_trace`` and ``MlflowClient``, and the ``tracestream traces`` commands.

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
from tracestream.search_api.entities import Assessment, Experiment, Span, Trace, TraceData, TraceInfo
from tracestream.search_api.mlflow_client import MlflowClient, MlflowException, ViewType

__all__ = [
    "Assessment",
    "Experiment",
    "ExportStream",
    "MlflowClient",
    "MlflowException",
    "PagedList",
    "Span",
    "Trace",
    "TraceClient",
    "TraceData",
    "TraceInfo",
    "TraceSearchError",
    "ViewType",
    "get_trace",
    "search_traces",
]
