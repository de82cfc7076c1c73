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

    assert provider is not None and provider.settings is not None
    assert provider.settings.sdk.max_export_batch_size == 10
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


def test_schemas_that_cannot_be_loaded_count_events_as_failed(tmp_path: Path) -> None:
    """The install that lost its .avsc files (a wheel without package data): the schemas package
    is there, its avro/ folder is not."""
    packages = tmp_path / "packages"
    without_data = shutil.ignore_patterns("avro", "__pycache__")
    shutil.copytree(REPO / "schemas", packages / "schemas", ignore=without_data)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRACESTREAM_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(packages), str(REPO)])
    # Kafka is never reached: the exporter fails before it makes a client.
    environment["TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS"] = "127.0.0.1:1"

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["result"] == "billing"
    assert report["status"] == "failed"
    assert "Avro schemas are missing" in report["error"]
    assert (report["emitted"], report["failed"], report["flushed"]) == (2, 2, False)
    off = [line for line in done.stderr.splitlines() if "tracing is OFF" in line]
    assert len(off) == 1
    assert "Traceback" not in done.stderr
