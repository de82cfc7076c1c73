"""Run by MLflow's interpreter (tests/mlflow_oracle.py): the unmodified client with scoped keys as
``MLFLOW_TRACKING_TOKEN``, answering what each call returned or MLflow's error code. Payload:
``{"tracking_uri", "ingest_token", "read_token", "experiment_a", "experiment_b", "trace_a", "trace_b"}``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

payload = json.load(sys.stdin)
mlflow.set_tracking_uri(payload["tracking_uri"])
client = MlflowClient()


def as_key(token: str, call: Callable[[], Any]) -> Any:
    """What ``call`` returns with ``token`` as the tracking token, or its MLflow error code."""
    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    try:
        return call()
    except MlflowException as exc:
        return exc.error_code


both = [payload["experiment_a"], payload["experiment_b"]]
answer = {
    "read_search": as_key(
        payload["read_token"], lambda: sorted(t.info.trace_id for t in client.search_traces(locations=both))
    ),
    "read_get_other": as_key(payload["read_token"], lambda: client.get_trace(payload["trace_b"])),
    "read_get_own": as_key(payload["read_token"], lambda: client.get_trace(payload["trace_a"]).info.trace_id),
    "read_delete": as_key(
        payload["read_token"],
        lambda: client.delete_traces(payload["experiment_a"], max_timestamp_millis=2_000_000_000_000),
    ),
    "ingest_search": as_key(payload["ingest_token"], lambda: client.search_traces(locations=both)),
    "ingest_tag_other": as_key(
        payload["ingest_token"], lambda: client.set_trace_tag(payload["trace_b"], "reviewed", "yes")
    ),
}
print(json.dumps(answer))
