"""Request bodies are bounded as sent and as inflated: a real `tracestream api serve` process
answers 413 to a gzip bomb and to oversized bodies, without its memory growing, and still
accepts an ordinary OTLP export (published to a private events topic on the real Kafka)."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mlflow_dropin.otlp_requests import export_request, mlflow_spans
from tracestream.admin import delete_topics, ensure_topics
from tracestream.settings import Settings, isolated_env

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
LIMIT = 20 * MiB  # the defaults of TRACESTREAM_API__MAX_REQUEST_BODY_BYTES and _INFLATED_
# What the server may grow by while refusing a body: far below the GiB a bomb inflates to.
FLAT_BYTES = 100 * 1000 * 1000


@dataclass
class ApiServer:
    url: str
    pid: int
    port: int

    def _status_kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def reset_peak_memory(self) -> int:
        """Resets the process's peak RSS (VmHWM) and returns its RSS now, in bytes."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return self._status_kb("VmRSS") * 1024

    def peak_memory(self) -> int:
        return self._status_kb("VmHWM") * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def api_server(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    run = f"ts-test-limits-{uuid.uuid4().hex[:8]}"
    logs = tmp_path_factory.mktemp("limits")
    port = _free_port()
    env = {**os.environ, **isolated_env(run, 1, logs / "stream", api_port=port)}
    env["TRACESTREAM_API__HOST"] = "127.0.0.1"
    settings = Settings(
        topics={
            "events": f"{run}.events",
            "completed": f"{run}.completed",
            "alerts": f"{run}.alerts",
            "dead_letters": f"{run}.deadletters",
            "events_partitions": 1,
            "completed_partitions": 1,
        }
    )
    ensure_topics(settings)
    log_path = logs / "api.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tracestream", "api", "serve"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = ApiServer(f"http://127.0.0.1:{port}", process.pid, port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{server.url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"the API did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        topics = settings.topics
        delete_topics(settings, [topics.events, topics.completed, topics.alerts, topics.dead_letters])


def gzip_bomb(compressed_bytes: int) -> Iterator[bytes]:
    """A gzip stream of zeros, about 1,000 times its size inflated, made without compressing
    them: after a full flush the deflate block of one MiB of zeros is the same bytes every
    time, so it is repeated. The stream has no trailer; a server reading it stops long before."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    yield deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    block = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    for _ in range(compressed_bytes // len(block)):
        yield block


def test_a_gzip_bomb_is_refused_with_413_while_the_servers_memory_stays_flat(api_server: ApiServer) -> None:
    before = api_server.reset_peak_memory()

    # ~10 MB compressed (under the limit as sent), ~10 GiB inflated; sent chunked
    response = httpx.post(
        f"{api_server.url}/v1/traces",
        content=gzip_bomb(10 * 1000 * 1000),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        timeout=60,
    )

    assert response.status_code == 413
    assert response.json()["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
    assert f"inflates beyond the limit of {LIMIT} bytes" in response.json()["message"]
    assert api_server.peak_memory() - before < FLAT_BYTES


def test_a_body_declaring_more_than_the_limit_is_refused_before_it_is_sent(api_server: ApiServer) -> None:
    # 300 MB announced; not a byte of it sent: the answer must come from the headers alone
    head = (
        "POST /v1/traces HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{api_server.port}\r\n"
        "Content-Type: application/x-protobuf\r\n"
        "Content-Length: 300000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", api_server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"}" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"413"
    assert b'"error_code":"RESOURCE_LIMIT_EXCEEDED"' in rest
    assert f"exceeds the limit of {LIMIT} bytes".encode() in rest


def test_a_chunked_body_past_the_limit_is_refused_without_being_kept(api_server: ApiServer) -> None:
    before = api_server.reset_peak_memory()
    # 300 MB of a trace info, chunked: no Content-Length to refuse it by
    chunks = (b'{"trace": {"trace_info": {"request_preview": "' + b"x" * (MiB - 64) for _ in range(300))

    response = httpx.post(
        f"{api_server.url}/api/3.0/mlflow/traces",
        content=chunks,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )

    assert response.status_code == 413
    assert response.json()["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
    assert api_server.peak_memory() - before < FLAT_BYTES


def test_an_ordinary_compressed_export_is_still_accepted(api_server: ApiServer) -> None:
    body = gzip.compress(export_request(*mlflow_spans()).SerializeToString())

    response = httpx.post(
        f"{api_server.url}/v1/traces",
        content=body,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        timeout=30,
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
