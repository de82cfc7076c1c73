"""Real MLflow as a test oracle, run in its own environment (.venv-mlflow, made by `make test`):
MLflow is not a dependency of tracestream, and its pins must not shape ours.

A test hands a script and JSON input to MLflow's interpreter and gets JSON back. Without that
environment the test is skipped on a developer's machine and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_VERSION = "3.17.2"


def mlflow_python() -> Path:
    """The interpreter that has mlflow installed (TRACESTREAM_MLFLOW_PYTHON overrides)."""
    python = Path(os.environ.get("TRACESTREAM_MLFLOW_PYTHON", ROOT / ".venv-mlflow" / "bin" / "python"))
    if not python.exists():
        reason = f"MLflow's environment {python} is missing (make .venv-mlflow/.installed creates it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true)", pytrace=False)
        pytest.skip(reason)
    return python


def run_in_mlflow(script: Path, payload: Any, workdir: Path, timeout_s: float = 600) -> Any:
    """Run ``script`` with MLflow's interpreter in ``workdir``; ``payload`` is its JSON stdin,
    its stdout's last line is the JSON answer."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"  # its async queue drops traces under load
    result = subprocess.run(
        [str(mlflow_python()), str(script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=timeout_s,
    )
    if result.returncode != 0:
        raise AssertionError(f"{script.name} failed under MLflow:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
