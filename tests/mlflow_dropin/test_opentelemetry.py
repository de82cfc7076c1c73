"""Any OpenTelemetry SDK exporting OTLP/HTTP to ``/v1/traces`` lands in tracestream: its spans
become traces that MLflow's client searches, with the GenAI semantic conventions mapped to
MLflow's span types, inputs/outputs and token usage."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow_oracle import mlflow_python, run_in_mlflow

from mlflow_dropin.support import Pipeline

HERE = Path(__file__).resolve().parent


def _require_otlp_exporter() -> None:
    python = mlflow_python()
    probe = subprocess.run(
        [str(python), "-c", "import opentelemetry.exporter.otlp.proto.http"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        reason = f"{python} lacks opentelemetry-exporter-otlp-proto-http (make .venv-mlflow/.installed)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def test_spans_of_the_opentelemetry_sdk_become_traces_mlflow_searches(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    _require_otlp_exporter()
    report = run_in_mlflow(HERE / "otel_app.py", {"tracking_uri": pipeline.url}, tmp_path, timeout_s=180)
    ok_id, failed_id = report["trace_ids"]
    assert set(report["traces"]) == {ok_id, failed_id}, pipeline.log_tails()

    ok = report["traces"][ok_id]
    assert ok["state"] == "OK"
    assert ok["name"] == "invoke_agent billing"
    assert (ok["user"], ok["session"]) == ("user-9", "session-9")
    # gen_ai.usage.* became MLflow's token usage, on the span and summed over the trace
    assert ok["token_usage"] == {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}
    assert ok["spans"] == {
        "invoke_agent billing": {
            "span_type": "AGENT",
            "parent": None,
            "status": "UNSET",
            "inputs": None,
            "outputs": None,
            "model": None,
            "token_usage": None,
        },
        "chat gpt-4o": {
            "span_type": "CHAT_MODEL",
            "parent": "invoke_agent billing",
            "status": "UNSET",
            "inputs": [{"role": "user", "content": "what is my balance?"}],
            "outputs": [{"role": "assistant", "content": "calling get_balance"}],
            "model": "gpt-4o",
            "token_usage": {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150},
        },
        "execute_tool get_balance": {
            "span_type": "TOOL",
            "parent": "invoke_agent billing",
            "status": "UNSET",
            "inputs": {"account": "A-1"},
            "outputs": None,
            "model": None,
            "token_usage": None,
        },
    }

    failed = report["traces"][failed_id]
    assert failed["state"] == "ERROR"
    assert failed["spans"]["execute_tool get_balance"]["status"] == "ERROR"
    assert report["failed"] == [failed_id]


def _otlp_json_span(
    trace_hex: str, span_hex: str, parent_hex: str | None, name: str, **attributes: Any
) -> dict:
    span: dict[str, Any] = {
        "traceId": trace_hex,
        "spanId": span_hex,
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(time.time_ns() - 50_000_000),
        "endTimeUnixNano": str(time.time_ns()),
        "attributes": [
            {"key": key, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
            for key, v in attributes.items()
        ],
        "status": {"code": 1},
    }
    if parent_hex:
        span["parentSpanId"] = parent_hex
    return span


def test_otlp_json_with_hex_ids_lands_in_the_experiment_named_by_the_header(pipeline: Pipeline) -> None:
    experiment_id = httpx.post(
        f"{pipeline.url}/api/2.0/mlflow/experiments/create", json={"name": f"otlp-json-{random.random()}"}
    ).json()["experiment_id"]
    trace_hex, root_hex, child_hex = f"{random.getrandbits(128):032x}", "a1" * 8, "b2" * 8
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "jobs"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            _otlp_json_span(
                                trace_hex,
                                child_hex,
                                root_hex,
                                "text_completion",
                                **{
                                    "gen_ai.operation.name": "text_completion",
                                    "gen_ai.usage.input_tokens": 7,
                                },
                            ),
                            _otlp_json_span(trace_hex, root_hex, None, "nightly-job"),
                        ]
                    }
                ],
            }
        ]
    }
    answer = httpx.post(
        f"{pipeline.url}/v1/traces", json=body, headers={"x-mlflow-experiment-id": experiment_id}
    )
    assert answer.status_code == 200, answer.text

    deadline = time.monotonic() + 60
    while (
        got := httpx.get(f"{pipeline.url}/api/3.0/mlflow/traces/get", params={"trace_id": f"tr-{trace_hex}"})
    ).status_code == 404:
        assert time.monotonic() < deadline, pipeline.log_tails()
        time.sleep(0.5)
    trace = got.json()["trace"]
    info = trace["trace_info"]
    assert info["trace_location"] == {
        "type": "MLFLOW_EXPERIMENT",
        "mlflow_experiment": {"experiment_id": experiment_id},
    }
    assert info["state"] == "OK"
    assert info["tags"]["mlflow.traceName"] == "nightly-job"
    assert (
        info["trace_metadata"]["mlflow.trace.tokenUsage"]
        == '{"input_tokens": 7, "output_tokens": 0, "total_tokens": 0}'
    )
    assert [span["name"] for span in trace["spans"]] == ["nightly-job", "text_completion"]
    child = {a["key"]: a["value"] for a in trace["spans"][1]["attributes"]}
    assert child["mlflow.spanType"] == {"string_value": "LLM"}
    assert child["mlflow.chat.tokenUsage"] == {
        "kvlist_value": {"values": [{"key": "input_tokens", "value": {"int_value": 7}}]}
    }
