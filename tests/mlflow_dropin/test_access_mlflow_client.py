"""The unmodified MLflow client (its own environment) with scoped keys as MLFLOW_TRACKING_TOKEN
(issue 26): what its key allows works, the rest is MLflow's PERMISSION_DENIED, and a trace of an
experiment the key may not read is RESOURCE_DOES_NOT_EXIST, as an unknown one. The API runs as
`tracestream api serve` over a real keys file and a private index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow_oracle import run_in_mlflow
from opensearchpy import OpenSearch
from searching.support import drop, private_settings, running_api, small_traces, write_traces

from tracestream.search_api.access import Right
from tracestream.search_api.keys import KeysFile
from tracestream.settings import Settings

HERE = Path(__file__).resolve().parent
START_MS = 1_763_800_000_000  # 2025-11-22
EXPERIMENT_A, EXPERIMENT_B = "1", "2"


@pytest.fixture(scope="module")
def answer(
    opensearch: OpenSearch, kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    settings = private_settings(kafka_settings)
    traces_a = small_traces(2, seed=41, start_ms=START_MS, experiment_id=EXPERIMENT_A)
    traces_b = small_traces(2, seed=42, start_ms=START_MS + 500, experiment_id=EXPERIMENT_B)
    write_traces(opensearch, settings, traces_a + traces_b)
    workdir = tmp_path_factory.mktemp("access")
    keys = KeysFile(workdir / "keys.json")
    _, ingest_token = keys.create("support-app", [EXPERIMENT_A], [Right.INGEST])
    _, read_token = keys.create("support-dashboard", [EXPERIMENT_A], [Right.READ])
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TRACESTREAM_API__KEYS_FILE", str(workdir / "keys.json"))
            patch.setenv("TRACESTREAM_API__AUDIT_ENABLED", "false")
            with running_api(settings) as api:
                payload = {
                    "tracking_uri": api.base_url,
                    "ingest_token": ingest_token,
                    "read_token": read_token,
                    "experiment_a": EXPERIMENT_A,
                    "experiment_b": EXPERIMENT_B,
                    "trace_a": traces_a[0]["trace_id"],
                    "trace_b": traces_b[0]["trace_id"],
                }
                yield {
                    **run_in_mlflow(HERE / "mlflow_access_app.py", payload, workdir, timeout_s=240),
                    "traces_a": sorted(t["trace_id"] for t in traces_a),
                    "trace_a": traces_a[0]["trace_id"],
                }
    finally:
        drop(opensearch, settings)


def test_a_read_key_searches_only_its_experiment(answer: dict[str, Any]) -> None:
    assert answer["read_search"] == answer["traces_a"]


def test_a_read_key_gets_its_traces_and_not_others(answer: dict[str, Any]) -> None:
    assert answer["read_get_own"] == answer["trace_a"]
    assert answer["read_get_other"] == "RESOURCE_DOES_NOT_EXIST"


def test_what_a_key_may_not_do_is_permission_denied(answer: dict[str, Any]) -> None:
    assert answer["read_delete"] == "PERMISSION_DENIED"
    assert answer["ingest_search"] == "PERMISSION_DENIED"
    assert answer["ingest_tag_other"] == "PERMISSION_DENIED"
