"""``MlflowClient``: MLflow's client class for traces and experiments, over tracestream's API.

Code written for ``from mlflow import MlflowClient`` runs against the fleet's traces after
changing only that import to ``from tracestream.search_api import MlflowClient``: the same method
names, arguments and defaults, the same entity types the rest of this client returns
(:mod:`search_api.entities`), and failures raised as :class:`MlflowException` with MLflow's error
codes and messages.

One difference on purpose: ``search_traces(max_results=1000)``, which MLflow's own recipes call,
works. MLflow's client sends it to its server in one request, which refuses more than 500 traces
per request; this client fetches pages of at most 500 and returns the traces asked for, with
the token of the next page.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import httpx

from tracestream.search_api.client import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    PagedList,
    TraceClient,
    TraceSearchError,
)
from tracestream.search_api.entities import Experiment, Trace

__all__ = ["MlflowClient", "MlflowException", "ViewType"]

P = ParamSpec("P")
R = TypeVar("R")

MLFLOW_V2 = "/api/2.0/mlflow"
# The most traces one search request asks for: MLflow's REST handler refuses more per request.
SEARCH_PAGE_LIMIT = 500
SEARCH_TRACES_DEFAULT_MAX_RESULTS = 100
SEARCH_EXPERIMENTS_DEFAULT_MAX_RESULTS = 1000
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"


class ViewType:
    """MLflow's ``mlflow.entities.ViewType``: which experiments a search returns."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3


class MlflowException(TraceSearchError):
    """MLflow's ``MlflowException``: ``message``, ``error_code`` (MLflow's, e.g.
    ``INVALID_PARAMETER_VALUE``) and the HTTP status. A :class:`TraceSearchError`, so code that
    catches the client's errors catches these too."""

    def __str__(self) -> str:
        return self.message

    def get_http_status_code(self) -> int:
        return self.status_code or 500

    @classmethod
    def invalid_parameter_value(cls, message: str) -> MlflowException:
        return cls(message, INVALID_PARAMETER_VALUE)


def _as_mlflow_errors(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except MlflowException:
            raise
        except TraceSearchError as error:
            raise MlflowException(
                error.message, error.error_code, error.status_code, error.position, error.highlight
            ) from error

    return wrapper


def _validate_list_param(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, list):
        raise MlflowException.invalid_parameter_value(
            f"{name} must be a list, got {type(value).__name__}. Did you mean to use {name}=[{value!r}]?"
        )


class MlflowClient:
    """MLflow's ``MlflowClient`` for traces and experiments. ``tracking_uri`` is the search API's
    URL (default: ``MLFLOW_TRACKING_URI`` when it is an http(s) URL, as when MLflow's client is
    pointed at this API, else ``http://{api.host}:{api.port}`` of the settings); ``api_key`` defaults to the
    first of ``api.api_keys``; ``transport`` replaces httpx's network transport (tests)."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if tracking_uri is None:
            # Where MLflow's own client would go, when that is this API (the MLflow drop-in).
            environment = os.environ.get("MLFLOW_TRACKING_URI", "")
            tracking_uri = environment if environment.startswith(("http://", "https://")) else None
        self._client = TraceClient(tracking_uri, api_key, timeout_s, transport=transport)
        self.tracking_uri = self._client.base_url

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._client._send(method, path, **kwargs)
        if not response.content.strip():
            return {}
        try:
            payload = response.json()
        except ValueError as error:
            raise MlflowException(f"Malformed response from {path}: {error!r}", "INTERNAL_ERROR") from error
        return payload if isinstance(payload, dict) else {}

    # ------------------------------------------------------------ traces

    @_as_mlflow_errors
    def search_traces(
        self,
        experiment_ids: list[str] | None = None,
        filter_string: str | None = None,
        max_results: int = SEARCH_TRACES_DEFAULT_MAX_RESULTS,
        order_by: list[str] | None = None,
        page_token: str | None = None,
        run_id: str | None = None,
        include_spans: bool = True,
        model_id: str | None = None,
        locations: list[str] | None = None,
        flush: bool = False,
    ) -> PagedList[Trace]:
        """Up to ``max_results`` traces matching ``filter_string`` in the experiments
        ``experiment_ids`` / ``locations`` (all experiments when neither is given), in
        ``order_by`` order (newest first by default). ``.token`` of the result continues the
        search (pass it as ``page_token``); None when there is nothing more."""
        _validate_list_param("experiment_ids", experiment_ids)
        _validate_list_param("locations", locations)
        _validate_list_param("order_by", order_by)
        if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
            raise MlflowException.invalid_parameter_value(
                f"Invalid value {max_results} for parameter 'max_results' supplied. "
                "It must be a positive integer"
            )
        if model_id is not None:
            if filter_string:
                raise MlflowException.invalid_parameter_value(
                    "Cannot specify both `model_id` or `filter_string` in the search_traces call."
                )
            filter_string = f"request_metadata.`mlflow.modelId` = '{model_id}'"
        if run_id:
            if filter_string and "mlflow.sourceRun" in filter_string:
                raise MlflowException.invalid_parameter_value(
                    "You cannot filter by run_id when it is already part of the filter string."
                    "Please remove the mlflow.sourceRun filter from the filter string and try again."
                )
            run_filter = f"attribute.run_id = '{run_id}'"
            filter_string = f"{filter_string} AND {run_filter}" if filter_string else run_filter
        scope = None
        if experiment_ids is not None or locations is not None:
            scope = [str(e) for e in dict.fromkeys([*(experiment_ids or []), *(locations or [])])]

        traces: list[Trace] = []
        token = page_token
        while len(traces) < max_results:
            page = self._client.search_traces(
                filter_string=filter_string,
                max_results=min(max_results - len(traces), SEARCH_PAGE_LIMIT),
                order_by=order_by,
                page_token=token,
                locations=scope,
                include_spans=include_spans,
            )
            traces.extend(page)
            token = page.token
            if not token:
                break
        return PagedList(traces, token)

    @_as_mlflow_errors
    def get_trace(self, trace_id: str, display: bool = True, flush: bool = False) -> Trace:
        """The trace with its spans; ``MlflowException`` (RESOURCE_DOES_NOT_EXIST) when there is
        none, as MLflow's client raises against a tracking server."""
        trace = self._client.get_trace(trace_id)
        if trace is None:
            raise MlflowException(f"Trace with ID '{trace_id}' not found.", RESOURCE_DOES_NOT_EXIST, 404)
        return trace

    def _trace_tags_path(self, trace_id: str) -> str:
        if not isinstance(trace_id, str) or not trace_id.strip():
            raise MlflowException.invalid_parameter_value("trace_id must not be empty, e.g. tr-0123…")
        return f"{MLFLOW_V2}/traces/{quote(trace_id, safe='')}/tags"

    @_as_mlflow_errors
    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        """Set a tag on a trace; searches see it within the pipeline's usual freshness."""
        self._call("PATCH", self._trace_tags_path(trace_id), json={"key": key, "value": str(value)})

    @_as_mlflow_errors
    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        self._call("DELETE", self._trace_tags_path(trace_id), json={"key": key})

    @_as_mlflow_errors
    def delete_traces(
        self,
        experiment_id: str,
        max_timestamp_millis: int | None = None,
        max_traces: int | None = None,
        trace_ids: list[str] | None = None,
    ) -> int:
        """Delete the experiment's traces older than ``max_timestamp_millis`` (at most
        ``max_traces``, oldest first) or those in ``trace_ids``; the number deleted."""
        if max_timestamp_millis is None and not trace_ids:
            raise MlflowException.invalid_parameter_value(
                "Either `max_timestamp_millis` or `trace_ids` must be specified."
            )
        if max_timestamp_millis is not None and trace_ids:
            raise MlflowException.invalid_parameter_value(
                "Only one of `max_timestamp_millis` and `trace_ids` can be specified."
            )
        if trace_ids and max_traces is not None:
            raise MlflowException.invalid_parameter_value(
                "`max_traces` can't be specified if `trace_ids` is specified."
            )
        if max_traces is not None and max_traces <= 0:
            raise MlflowException.invalid_parameter_value(
                f"`max_traces` must be a positive integer, received {max_traces}."
            )
        body: dict[str, Any] = {"experiment_id": str(experiment_id)}
        if max_timestamp_millis is not None:
            body["max_timestamp_millis"] = max_timestamp_millis
        if max_traces is not None:
            body["max_traces"] = max_traces
        if trace_ids:
            body["request_ids"] = list(trace_ids)
        try:
            answer = self._call("POST", f"{MLFLOW_V2}/traces/delete-traces", json=body)
        except TraceSearchError as error:
            # An API older than the delete (or a proxy that does not pass it on).
            if error.status_code == 404 and error.error_code == ENDPOINT_NOT_FOUND:
                raise MlflowException(
                    f"The server at {self.tracking_uri} does not support deleting traces "
                    f"(POST {MLFLOW_V2}/traces/delete-traces answered 404 ENDPOINT_NOT_FOUND)",
                    ENDPOINT_NOT_FOUND,
                    404,
                ) from error
            raise
        return int(answer.get("traces_deleted") or 0)

    @_as_mlflow_errors
    def link_traces_to_run(self, trace_ids: list[str], run_id: str) -> None:
        """Link traces (at most 100) to a run: ``run_id = …`` then finds them too. Any run id is
        accepted (there are no runs here)."""
        _validate_list_param("trace_ids", trace_ids)
        self._call("POST", f"{MLFLOW_V2}/traces/link-to-run", json={"trace_ids": trace_ids, "run_id": run_id})

    @_as_mlflow_errors
    def link_prompt_versions_to_trace(self, prompt_versions: list[Any], trace_id: str) -> None:
        """Link prompt versions (objects with ``.name`` and ``.version``, as MLflow's
        ``PromptVersion``) to a trace: ``prompt = 'name/version'`` then finds it."""
        refs = [{"name": pv.name, "version": str(pv.version)} for pv in prompt_versions]
        self._call(
            "POST", f"{MLFLOW_V2}/traces/link-prompts", json={"trace_id": trace_id, "prompt_versions": refs}
        )

    # ------------------------------------------------------------ experiments

    @_as_mlflow_errors
    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = SEARCH_EXPERIMENTS_DEFAULT_MAX_RESULTS,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        """One page of experiments matching ``filter_string`` (MLflow's experiment filter:
        ``name``, ``experiment_id``, ``creation_time``, ``last_update_time``, ``tags.<key>``)."""
        _validate_list_param("order_by", order_by)
        body: dict[str, Any] = {"view_type": view_type}
        for name, value in (
            ("max_results", max_results),
            ("filter", filter_string),
            ("order_by", order_by),
            ("page_token", page_token),
        ):
            if value is not None:
                body[name] = value
        answer = self._call("POST", f"{MLFLOW_V2}/experiments/search", json=body)
        return PagedList(
            [Experiment.from_dict(e) for e in answer.get("experiments") or []],
            answer.get("next_page_token") or None,
        )

    @_as_mlflow_errors
    def get_experiment(self, experiment_id: str) -> Experiment:
        answer = self._call(
            "GET", f"{MLFLOW_V2}/experiments/get", params={"experiment_id": str(experiment_id)}
        )
        return Experiment.from_dict(answer["experiment"])

    @_as_mlflow_errors
    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment, or None when no experiment has that name."""
        try:
            answer = self._call(
                "GET", f"{MLFLOW_V2}/experiments/get-by-name", params={"experiment_name": name}
            )
        except TraceSearchError as error:
            if error.error_code == RESOURCE_DOES_NOT_EXIST:
                return None
            raise
        return Experiment.from_dict(answer["experiment"])

    @_as_mlflow_errors
    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, Any] | None = None
    ) -> str:
        body: dict[str, Any] = {"name": name}
        if artifact_location is not None:
            body["artifact_location"] = artifact_location
        if tags:
            body["tags"] = [{"key": k, "value": str(v)} for k, v in tags.items()]
        return str(self._call("POST", f"{MLFLOW_V2}/experiments/create", json=body)["experiment_id"])
