"""What the SDK reads when it starts, and what it reports when it cannot start.

The SDK reads only its own settings (TRACESTREAM_SDK__*, TRACESTREAM_KAFKA__*, the events topic):
a bad value of a server's setting in the same environment must not turn tracing off. When tracing
cannot start, the application runs as before and every event counts as failed, with the cause in
``get_stats()`` and one error line in the log.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracestream import producers as mlflow
from tracestream.producers.processor import TracingStatus
from tracestream.producers.testing import InMemoryEventExporter
from tracestream.schemas import SPAN_ENDED, TRACE_ENDED

REPO = Path(__file__).resolve().parents[2]


@mlflow.trace
def classify(ticket: str) -> str:
    return "billing" if "invoice" in ticket else "other"


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """A clean TRACESTREAM_* environment in a directory of its own (for .env files); tracing is
    configured from it by the test and shut down afterwards."""
    for name in list(os.environ):
        if name.startswith("TRACESTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    mlflow.shutdown()
    yield monkeypatch
    mlflow.shutdown()


def test_invalid_server_settings_in_the_environment_leave_tracing_on(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("TRACESTREAM_API__PORT", "abc")
    environment.setenv("TRACESTREAM_STREAM__IDLE_TIMEOUT_S", "-5")
    exporter = InMemoryEventExporter()
    mlflow.configure(exporter=exporter)

    assert classify("invoice 1182 is wrong") == "billing"
    assert mlflow.flush(5)

    stats = mlflow.get_stats()
    assert (stats.status, stats.delivered, stats.failed) == (TracingStatus.ACTIVE, 2, 0)
    assert [record["name"] for record in exporter.records(SPAN_ENDED)] == ["classify"]


def test_invalid_server_settings_in_a_dotenv_file_leave_tracing_on(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("TRACESTREAM_OPENSEARCH__NUMBER_OF_REPLICAS=one\n")
    exporter = InMemoryEventExporter()
    mlflow.configure(exporter=exporter)

    classify("where is my parcel")
    assert mlflow.flush(5)

    assert mlflow.get_stats().status is TracingStatus.ACTIVE
    assert len(exporter.records(TRACE_ENDED)) == 1


def test_a_batch_size_above_the_queue_size_is_corrected_and_named_once(
    environment: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    environment.setenv("TRACESTREAM_SDK__MAX_QUEUE_SIZE", "10")
    exporter = InMemoryEventExporter()
    with caplog.at_level(logging.WARNING):
        provider = mlflow.configure(exporter=exporter)

    classify("invoice 7")
    assert mlflow.flush(5)

    assert provider is not None and provider.config is not None
    assert provider.config.sdk.max_export_batch_size == 10
    assert mlflow.get_stats().delivered == 2
    warnings = [r.getMessage() for r in caplog.records if "MAX_EXPORT_BATCH_SIZE" in r.getMessage()]
    assert len(warnings) == 1
    assert "TRACESTREAM_SDK__MAX_QUEUE_SIZE" in warnings[0]


def test_an_invalid_sdk_setting_counts_every_event_as_failed_and_says_which(
    environment: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    environment.setenv("TRACESTREAM_KAFKA__SECURITY_PROTOCOL", "bogus")
    with caplog.at_level(logging.WARNING):
        mlflow.configure()
        assert classify("invoice 1") == "billing"
        classify("other")

    stats = mlflow.get_stats()
    assert stats.status is TracingStatus.FAILED
    assert "TRACESTREAM_KAFKA__SECURITY_PROTOCOL" in (stats.error or "")
    assert (stats.emitted, stats.failed, stats.delivered) == (4, 4, 0)
    assert not mlflow.flush(1), "nothing was sent, so a flush cannot report success"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "tracing is OFF" in errors[0].getMessage()
    assert errors[0].exc_info is None, "the cause in one line, not a traceback"


def test_tracing_turned_off_by_its_setting_says_so(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("TRACESTREAM_SDK__ENABLED", "false")
    mlflow.configure()

    classify("invoice 2")

    stats = mlflow.get_stats()
    assert stats.status is TracingStatus.DISABLED
    assert stats.emitted == 0


SCRIPT = """
import json
from tracestream import producers as mlflow

@mlflow.trace
def classify(ticket):
    return "billing"

result = classify("invoice 9")
stats = mlflow.get_stats()
print(json.dumps({"result": result, "status": stats.status, "error": stats.error,
                  "emitted": stats.emitted, "failed": stats.failed, "flushed": mlflow.flush(1)}))
"""


def run_script(script: str, tmp_path: Path, packages: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter, from ``packages`` when given (before the install)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRACESTREAM_")}
    if packages is not None:
        environment["PYTHONPATH"] = str(packages)
    # Kafka is never reached: the exporter fails before it makes a client.
    environment["TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_tracing_failed_loudly(done: subprocess.CompletedProcess[str], cause: str) -> None:
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["result"] == "billing"
    assert report["status"] == "failed"
    assert cause in report["error"]
    assert (report["emitted"], report["failed"], report["flushed"]) == (2, 2, False)
    off = [line for line in done.stderr.splitlines() if "tracing is OFF" in line]
    assert len(off) == 1
    assert "Traceback" not in done.stderr


def test_schemas_that_cannot_be_loaded_count_events_as_failed(tmp_path: Path) -> None:
    """The install that lost its .avsc files (a wheel without package data): the schemas package
    is there, its avro/ folder is not."""
    packages = tmp_path / "packages"
    without_data = shutil.ignore_patterns("avro", "__pycache__")
    # tracestream/schemas and the other packages are links in the repository: copied as files.
    shutil.copytree(REPO / "tracestream", packages / "tracestream", ignore=without_data)
    assert not list(packages.rglob("*.avsc"))

    done = run_script(SCRIPT, tmp_path, packages)

    assert_tracing_failed_loudly(done, "Avro schemas are missing")


def test_an_encoder_that_cannot_be_imported_counts_events_as_failed(tmp_path: Path) -> None:
    """fastavro broken or missing in the application's environment: the SDK still imports, the
    application runs, and every event counts as failed."""
    without_fastavro = 'import sys\nsys.modules["fastavro"] = None  # import fastavro now fails\n'

    done = run_script(without_fastavro + SCRIPT, tmp_path)

    assert_tracing_failed_loudly(done, "fastavro")
