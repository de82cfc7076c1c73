"""MLflow's GetRun for the runs that traces name: there are no runs here, but MLflow's client
reads a run before it searches its traces (``search_traces(run_id=…)``, ``mlflow traces search
--run-id``), to check the run's experiment is among the locations searched.

A run is known when a trace names it, as its source run (metadata ``mlflow.sourceRun``) or a
linked run (LinkTracesToRun); its experiment is that of the oldest such trace, its start time
that trace's request time. Anything else a run has in MLflow (params, metrics, name, status)
does not exist here.
"""

from __future__ import annotations

from typing import Any

from tracestream.schemas.mlflow_format import parse_proto_timestamp
from tracestream.search_api.mlflow_rest.protojson import not_found
from tracestream.search_api.search import TraceSearch


def run_seen_in_traces(
    search: TraceSearch, run_id: str, locations: list[str] | None = None
) -> dict[str, Any]:
    """The run as MLflow's ``Run`` protobuf JSON, from the oldest trace in ``locations`` (all when
    None) that names it; MLflow's RESOURCE_DOES_NOT_EXIST when none does."""
    if "'" in run_id or "\\" in run_id:  # no trace can name it in a filter; nor is it a run id
        raise not_found(f"Run with id={run_id} not found")
    oldest = search.search(
        f"run_id = '{run_id}'", ["timestamp_ms ASC"], 1, None, locations, include_spans=False
    )
    if not oldest.traces:
        raise not_found(f"Run with id={run_id} not found")
    info = oldest.traces[0]["info"]
    experiment_id = info["trace_location"]["mlflow_experiment"]["experiment_id"]
    return {
        "info": {
            "run_id": run_id,
            "run_uuid": run_id,
            "experiment_id": experiment_id,
            "status": "FINISHED",
            "start_time": parse_proto_timestamp(info["request_time"]),
            "lifecycle_stage": "active",
        },
        "data": {},
        "inputs": {},
    }
