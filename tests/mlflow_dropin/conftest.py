"""A whole private pipeline for the drop-in tests: topics, a stream worker, an indexer and the
API, as processes on the real stack, with names no other test or run uses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import require_server
from opensearchpy import OpenSearch

from mlflow_dropin.support import Pipeline
from tracestream.admin import admin_client, delete_topics, ensure_topics
from tracestream.indexer import IndexNames
from tracestream.search_api.mlflow_rest.experiments import experiments_index
from tracestream.settings import Settings, isolated_env

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="package")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    require_server("kafka")
    require_server("opensearch")
    run = f"ts-test-mlflow-{uuid.uuid4().hex[:8]}"
    logs = tmp_path_factory.mktemp("pipeline")
    port = _free_port()
    env = {
        **os.environ,
        **isolated_env(run, 2, logs / "stream", api_port=port),
        "TRACESTREAM_STREAM__STORE": "memory",
        "TRACESTREAM_STREAM__IDLE_TIMEOUT_S": "3",
        "TRACESTREAM_STREAM__TICK_INTERVAL_S": "0.5",
        "TRACESTREAM_INDEXER__BATCH_LINGER_MS": "50",
        "TRACESTREAM_API__HOST": "127.0.0.1",
    }
    settings = Settings(
        **{
            "topics": {
                "events": f"{run}.events",
                "completed": f"{run}.completed",
                "alerts": f"{run}.alerts",
                "dead_letters": f"{run}.deadletters",
                "events_partitions": 2,
                "completed_partitions": 2,
            },
            "stream": {"app_id": f"{run}-stream"},
            "opensearch": {"index_prefix": run},
        }
    )
    ensure_topics(settings)
    processes = []
    for name, args in (
        ("stream", ["stream", "worker"]),
        ("indexer", ["indexer", "run"]),
        ("api", ["api", "serve"]),
    ):
        log = (logs / f"{name}.log").open("ab")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tracestream", *args],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
        log.close()
    running = Pipeline(f"http://127.0.0.1:{port}", settings, logs)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{running.url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise AssertionError(f"the pipeline did not start:\n{running.log_tails()}")
            time.sleep(0.2)
        yield running
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        client = OpenSearch(**settings.opensearch.client_kwargs())
        names = IndexNames(run)
        client.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
        client.indices.delete(index=experiments_index(settings), ignore_unavailable=True)
        client.indices.delete_index_template(name=names.template, ignore=[404])
        client.close()
        topics = admin_client(settings).list_topics(timeout=10).topics
        delete_topics(settings, [topic for topic in topics if topic.startswith(run)])
