"""The whole pipeline as separate processes for reliability tests: stream workers and an indexer
(`tracestream` commands), SDK producers (bench/_e2e_producer.py), all with one run's private
topics, consumer groups and index prefix; servers may be private ones (infra/up on other ports)
that a test stops and starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient
from opensearchpy import OpenSearch

from tracestream.admin import delete_topics, ensure_topics
from tracestream.indexer import IndexNames
from tracestream.main_job import stop_processes
from tracestream.settings import Settings, isolated_env

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PRODUCER = ROOT / "bench" / "_e2e_producer.py"


def infra(command: str, *args: str, env: dict[str, str]) -> None:
    """Run infra/up|down for a private server (its own ports and directory)."""
    result = subprocess.run(
        [str(INFRA / command), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (
        f"infra/{command} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )


@dataclass
class ProducerResult:
    traces: list[dict[str, Any]]
    stats: dict[str, Any]


class Pipeline:
    def __init__(self, workdir: Path, overrides: dict[str, str] | None = None, partitions: int = 4) -> None:
        self.name = f"ts-test-rel-{uuid.uuid4().hex[:8]}"
        self.workdir = workdir
        self.env = {
            **os.environ,
            **isolated_env(self.name, partitions, workdir / "stream"),
            "TRACESTREAM_STREAM__IDLE_TIMEOUT_S": "10",
            # The worker's status line every 10 s, in its log for a failing test to show.
            "TRACESTREAM_STREAM__LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
            **(overrides or {}),
        }
        saved = {k: os.environ.get(k) for k in self.env if k.startswith("TRACESTREAM_")}
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("TRACESTREAM_")})
        try:
            self.settings = Settings()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started_workers = 0

    # ------------------------------------------------------------ processes

    def _start(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, *args], env=env or self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.processes[name] = process
        return process

    def start(self) -> None:
        ensure_topics(self.settings)
        self.start_worker()
        self._start("indexer", ["-m", "tracestream", "indexer", "run"])

    def start_worker(self) -> str:
        name = f"stream-{self.started_workers}"
        env = {**self.env, "TRACESTREAM_STREAM__DATA_DIR": str(self.workdir / name)}
        self._start(name, ["-m", "tracestream", "stream", "worker"], env)
        self.started_workers += 1
        return name

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def running(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def log(self, name: str, lines: int = 40) -> str:
        text = (self.workdir / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def produce(self, traces_per_s: float, seconds: float, spans_per_trace: int = 3, seed: int = 1) -> str:
        """Starts an SDK producer process; returns its name (see :meth:`producer_result`)."""
        name = f"producer-{seed}"
        self._start(
            name,
            [str(PRODUCER), str(traces_per_s), str(seconds), str(spans_per_trace), str(seed),
             str(self.workdir / f"{name}.jsonl")],
        )  # fmt: skip
        return name

    def producer_result(self, name: str, timeout_s: float = 300) -> ProducerResult:
        self.processes[name].wait(timeout_s)
        stats = json.loads((self.workdir / f"{name}.log").read_text().strip().splitlines()[-1])
        traces = [json.loads(line) for line in (self.workdir / f"{name}.jsonl").read_text().splitlines()]
        return ProducerResult(traces, stats)

    def stop(self) -> None:
        stop_processes(list(self.processes.values()), timeout_s=20)

    # ------------------------------------------------------------ results

    def documents(self, client: OpenSearch) -> dict[str, int]:
        """trace id -> revision of every indexed trace."""
        names = IndexNames.from_settings(self.settings)
        if not client.indices.exists_alias(name=names.read_alias):
            return {}
        client.indices.refresh(index=names.read_alias)
        found: dict[str, int] = {}
        body: dict[str, Any] = {
            "size": 5000,
            "_source": ["trace_id", "revision"],
            "sort": [{"trace_order_high": "asc"}, {"trace_order_low": "asc"}],
        }
        while True:
            hits = client.search(index=names.read_alias, body=body)["hits"]["hits"]
            for hit in hits:
                found[hit["_source"]["trace_id"]] = hit["_source"]["revision"]
            if len(hits) < body["size"]:
                return found
            body["search_after"] = hits[-1]["sort"]

    def count(self, client: OpenSearch) -> int:
        names = IndexNames.from_settings(self.settings)
        if not client.indices.exists_alias(name=names.read_alias):
            return 0
        client.indices.refresh(index=names.read_alias)
        return int(client.count(index=names.read_alias)["count"])

    def cleanup(self, client: OpenSearch | None) -> None:
        self.stop()
        if client is not None:
            names = IndexNames.from_settings(self.settings)
            try:
                client.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
                client.indices.delete_index_template(name=names.template, ignore=[404])
            except Exception:  # a private server may be gone already
                pass
        try:
            admin = AdminClient(self.settings.kafka.confluent_config({}))
            topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(self.name)]
            delete_topics(self.settings, topics)
        except Exception:
            pass
