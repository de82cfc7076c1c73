"""MLflow's client exports spans and the trace info on separate requests that may arrive in either
order (its async export queue); either way the stream completes the trace with all its spans,
not on its idle timeout."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest

from mlflow_dropin.otlp_requests import export_request, mlflow_spans, start_trace_body
from mlflow_dropin.support import Pipeline


def _send_spans(pipeline: Pipeline, trace_hex: str) -> None:
    answer = httpx.post(
        f"{pipeline.url}/v1/traces",
        content=export_request(*mlflow_spans(trace_hex)).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": "0"},
    )
    assert answer.status_code == 200, answer.text


def _send_info(pipeline: Pipeline, trace_hex: str) -> None:
    answer = httpx.post(
        f"{pipeline.url}/api/3.0/mlflow/traces", json=start_trace_body(f"tr-{trace_hex}", "0")
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["trace"]["trace_info"]["tags"]["mlflow.trace.spansLocation"] == "TRACKING_STORE"


def _stored(pipeline: Pipeline, trace_hex: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        answer = httpx.get(
            f"{pipeline.url}/api/3.0/mlflow/traces/get", params={"trace_id": f"tr-{trace_hex}"}
        )
        if answer.status_code == 200:
            return answer.json()["trace"]
        assert time.monotonic() < deadline, pipeline.log_tails()
        time.sleep(0.3)


@pytest.mark.parametrize("info_first", [True, False], ids=["info-then-spans", "spans-then-info"])
def test_the_trace_completes_with_its_spans_whichever_arrives_first(
    pipeline: Pipeline, info_first: bool
) -> None:
    trace_hex = f"{random.getrandbits(128):032x}"
    first, second = (_send_info, _send_spans) if info_first else (_send_spans, _send_info)
    sent = time.monotonic()
    first(pipeline, trace_hex)
    time.sleep(1.0)  # well apart, though within the stream's idle timeout (3 s here)
    second(pipeline, trace_hex)

    trace = _stored(pipeline, trace_hex)
    waited = time.monotonic() - sent
    info = trace["trace_info"]
    assert [span["name"] for span in trace["spans"]] == ["agent", "llm_call"]
    assert info["state"] == "OK"
    assert info["client_request_id"] == "req-1"
    assert info["tags"]["env"] == "prod"
    assert "tracestream.trace.incomplete" not in info["trace_metadata"]  # completed by count
    print(f"searchable {waited:.1f} s after the first request")
