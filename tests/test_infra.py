"""infra/up, infra/down and infra/status: idempotent, pid-file based, and never touch a stranger."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

INFRA = Path(__file__).resolve().parent.parent / "infra"


def _run(command: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INFRA / command), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def local_stack_running() -> None:
    """The tests' own stack, started by infra/ (not an external cluster from the settings)."""
    if _run("status", "-q").returncode != 0:
        message = "the local stack of infra/up is not running"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true)", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def scratch_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a second, private stack on other ports, with its own pid files and data."""
    env = {
        "TRACESTREAM_STACK_DIR": str(tmp_path / "stack"),
        "TRACESTREAM_STACK_KAFKA_PORT": "19092",
        "TRACESTREAM_STACK_KAFKA_CONTROLLER_PORT": "19093",
        "TRACESTREAM_STACK_OPENSEARCH_PORT": "19200",
        "TRACESTREAM_STACK_OPENSEARCH_TRANSPORT_PORT": "19300",
        "TRACESTREAM_STACK_KAFKA_HEAP": "256m",
        "TRACESTREAM_STACK_OPENSEARCH_HEAP": "512m",
    }
    (tmp_path / "stack").mkdir()
    yield env
    _run("down", "--purge", env=env)


def test_up_when_the_stack_runs_is_a_no_op(local_stack_running: None) -> None:
    before = _run("status")

    result = _run("up")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("already running") == 2
    assert _run("status").stdout == before.stdout


def test_status_and_down_detect_stale_pid_files_and_never_kill_a_stranger(
    scratch_stack: dict[str, str],
) -> None:
    stack_dir = Path(scratch_stack["TRACESTREAM_STACK_DIR"])
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # The pid of a live process that is not Kafka, and the pid of no process at all.
        (stack_dir / "kafka.pid").write_text(f"{stranger.pid}\n")
        (stack_dir / "opensearch.pid").write_text("4194303\n")

        status = _run("status", env=scratch_stack)
        down = _run("down", env=scratch_stack)

        assert status.returncode == 1
        assert "kafka       stopped  (stale pid file" in status.stdout
        assert "opensearch  stopped  (stale pid file" in status.stdout
        assert down.returncode == 0, down.stderr
        assert down.stdout.count("stale pid file") == 2
        assert not (stack_dir / "kafka.pid").exists()
        assert not (stack_dir / "opensearch.pid").exists()
        assert stranger.poll() is None, "infra/down killed a process it did not start"
    finally:
        stranger.kill()
        stranger.wait()


def test_up_twice_then_down_then_up_again(scratch_stack: dict[str, str]) -> None:
    stack_dir = Path(scratch_stack["TRACESTREAM_STACK_DIR"])

    first = _run("up", env=scratch_stack)
    assert first.returncode == 0, first.stdout + first.stderr
    pids = [int((stack_dir / f"{name}.pid").read_text()) for name in ("kafka", "opensearch")]
    assert _run("status", "-q", env=scratch_stack).returncode == 0

    second = _run("up", env=scratch_stack)
    assert second.returncode == 0
    assert second.stdout.count("already running") == 2
    assert [int((stack_dir / f"{name}.pid").read_text()) for name in ("kafka", "opensearch")] == pids

    down = _run("down", env=scratch_stack)
    assert down.returncode == 0, down.stderr
    assert not any(_pid_alive(pid) for pid in pids)
    assert not any(_port_open(port) for port in (19092, 19093, 19200, 19300))
    assert _run("status", "-q", env=scratch_stack).returncode == 1

    again = _run("up", env=scratch_stack)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _run("status", "-q", env=scratch_stack).returncode == 0
