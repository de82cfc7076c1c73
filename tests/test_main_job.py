"""The main job (`tracestream run`, the README's `make run`) end to end on the real stack: the demo
fleet's traces become searchable, failures reach the alerts, and it stops what it started."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from commands import run_tracestream
from opensearchpy import OpenSearch
from rich.console import Console

from tracestream.admin import delete_topics
from tracestream.indexer import IndexNames
from tracestream.main_job import print_search_examples, search_examples
from tracestream.settings import Settings, isolated_env

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def run_env(kafka_settings: Settings, opensearch: OpenSearch, tmp_path: Path) -> Iterator[dict[str, str]]:
    run = f"ts-test-run-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **isolated_env(run, 2, tmp_path / "stream", api_port=_free_port()),
        "COLUMNS": "200",
    }
    yield env
    settings = Settings()
    names = IndexNames(run)
    opensearch.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
    opensearch.indices.delete_index_template(name=names.template, ignore=[404])
    # The pipeline topics and the stream's changelog and internal topics all start with the run's name.
    delete_topics(settings, _topics_named(settings, run))


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _topics_named(settings: Settings, prefix: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka.confluent_config({}))
    return [name for name in admin.list_topics(timeout=10).topics if name.startswith(prefix)]


def test_the_main_job_makes_the_demo_fleets_traces_searchable_and_alerts_on_failures(
    run_env: dict[str, str],
) -> None:
    started = time.monotonic()
    job = subprocess.Popen(
        [sys.executable, "-m", "tracestream", "run", "--agents", "2", "--rate", "4", "--duration", "60"],
        env=run_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    children: set[int] = set()
    api = f"http://127.0.0.1:{run_env['TRACESTREAM_API__PORT']}"
    errors_found = 0
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and job.poll() is None:
            children.update(_children(job.pid))
            try:
                response = httpx.post(
                    f"{api}/api/v1/traces/search",
                    json={"filter": "status = 'ERROR' AND span.status = 'ERROR'", "include_spans": False},
                )
                if response.status_code == 200:
                    errors_found = len(response.json()["traces"])
            except httpx.TransportError:
                pass
            time.sleep(2)
        output, _ = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.send_signal(signal.SIGINT)
            job.wait(60)
    print(output[-3000:])
    print(f"main job ran {time.monotonic() - started:.0f} s; {errors_found=} children={sorted(children)}")

    assert job.returncode == 0, output[-3000:]
    assert "traces are searchable" in output
    assert errors_found > 0, "failed demo traces should be searchable by their failing span"
    assert len(re.findall(r"^ALERT tr-[0-9a-f]{32} support_agent failed in ", output, re.MULTILINE)) > 0
    indexed = int(re.search(r"stopped\. (\d+) traces indexed", output).group(1))
    assert indexed > 100  # two agents at 4 traces/s for a minute, less the start-up
    assert len(children) == 6  # stream, indexer, api, the demo rules' webhook deliverer, two agents
    assert not any(_alive(child) for child in children)


def test_run_with_the_api_port_taken_fails_at_once_naming_the_setting(run_env: dict[str, str]) -> None:
    with socket.socket() as other_api:
        other_api.bind(("127.0.0.1", 0))
        other_api.listen()
        env = {**run_env, "TRACESTREAM_API__PORT": str(other_api.getsockname()[1])}

        # Before the fix the job ran its whole --duration and then said nothing about the port.
        job = run_tracestream("run", "--agents", "0", "--duration", "30", env=env, timeout_s=120)

    assert job.returncode == 1
    assert "in use" in job.stderr and "TRACESTREAM_API__PORT" in job.stderr, job.stderr
    assert "started" not in job.stdout  # no process was started
    assert "searchable" not in job.stdout


def test_the_try_commands_are_printed_whole_on_lines_of_their_own() -> None:
    settings = Settings()
    output = io.StringIO()
    console = Console(file=output, width=60)  # narrower than every command

    print_search_examples(console, settings, "traces are searchable (12 s after start); try")

    lines = output.getvalue().splitlines()
    commands = [command for group in search_examples(settings).values() for command in group]
    assert len(commands) >= 5
    for command in commands:
        assert command in lines  # pasted as printed, it is the whole command
