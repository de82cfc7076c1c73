"""A user's install: the wheel built from this tree, installed (not editable) with its dependencies
from PyPI into a fresh virtualenv, and the pipeline run from that virtualenv end to end.

The suite's own environment is an editable install that reads data files from the working tree, so
it cannot see a file missing from the wheel (issue 15: the Avro schemas were not package data and
`import stream` failed with FileNotFoundError). Every process here runs the installed code: its
working directory is a temporary one, PYTHONPATH is unset, and a test checks where each package
was imported from.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from opensearchpy import OpenSearch
from waiting import wait_until

from tracestream.admin import delete_topics
from tracestream.indexer import IndexNames
from tracestream.main_job import stop_processes
from tracestream.schemas import SPAN_ENDED, TRACE_ENDED, events_codec, events_of
from tracestream.settings import OpenSearchSettings, Settings, isolated_env

ROOT = Path(__file__).resolve().parents[1]
# The installed packages and the folders of the repository they are built from.
PACKAGES = {
    "tracestream": "tracestream",
    "tracestream.producers": "producers",
    "tracestream.stream": "stream",
    "tracestream.indexer": "indexer",
    "tracestream.search_api": "search_api",
    "tracestream.schemas": "schemas",
}
# What is not part of a fresh clone (.gitignore) and never goes into a wheel: left out of the copy
# the wheel is built from. The copy also keeps setuptools' build/ out of the working tree, where a
# stale build/lib from an earlier build would put files into the wheel that the config leaves out.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", ".stack", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".ruff_cache", ".hypothesis", ".tracestream-stream", "mlruns",
)  # fmt: skip

pytestmark = pytest.mark.timeout(900)  # the first test also builds the wheel and installs it

# Run by the wheel's Python: traces a function with the SDK, flushes, then reads the events topic
# back with the installed schemas codec. Prints one JSON object.
TRACED_APP = '''
import json
import time

from confluent_kafka import Consumer

from tracestream import producers as mlflow
from tracestream import schemas
from tracestream.settings import get_settings

trace_ids = []


@mlflow.trace(span_type=mlflow.SpanType.TOOL)
def lookup_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "status": "shipped"}


@mlflow.trace(span_type=mlflow.SpanType.AGENT)
def answer(question: str) -> str:
    trace_ids.append(mlflow.get_active_trace_id())
    mlflow.update_current_trace(tags={"installed_from": "wheel"})
    order = lookup_order("A10234")
    return f"Order {order['order_id']} has {order['status']}."


answer("Where is my order A10234?")
flushed = mlflow.flush(20)

settings = get_settings()
consumer = Consumer(settings.kafka.confluent_config(
    {"group.id": f"{settings.topics.events}-reader", "auto.offset.reset": "earliest",
     "enable.auto.commit": False}
))
consumer.subscribe([settings.topics.events])
codec = schemas.events_codec()
events = []
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not any(kind.endswith("TraceEnded") for kind, _ in events):
    message = consumer.poll(0.5)
    if message is not None and message.error() is None:
        events += schemas.events_of(codec.decode(message.value())["event"])
consumer.close()
print(json.dumps({
    "trace_id": trace_ids[0],
    "flushed": flushed,
    "sdk_stats": repr(mlflow.get_stats()),
    "schemas_file": schemas.__file__,
    "events": [{"kind": kind, "trace_id": r["trace_id"], "name": r.get("name"),
                "span_type": r.get("span_type")} for kind, r in events],
}))
'''


# Run by the Python of the SDK-only install: traces a function with the SDK and flushes; the test
# reads the events back. Prints one JSON object.
SDK_APP = '''
import json
import sys

from tracestream import producers as mlflow

trace_ids = []


@mlflow.trace(span_type=mlflow.SpanType.RETRIEVER)
def search_docs(query: str) -> list[str]:
    return ["refund-policy.md"]


@mlflow.trace(span_type=mlflow.SpanType.AGENT)
def answer(question: str) -> str:
    trace_ids.append(mlflow.get_active_trace_id())
    search_docs(question)
    return "Refunds take 5 days."


answer("How long do refunds take?")
flushed = mlflow.flush(20)
stats = mlflow.get_stats()
print(json.dumps({
    "trace_id": trace_ids[0], "flushed": flushed, "status": stats.status, "delivered": stats.delivered,
    "modules": sorted({name.split(".")[0] for name in sys.modules}),
}))
'''
# What the SDK alone must not bring into an application.
SERVER_LIBRARIES = {"pydantic", "pydantic_settings", "faust", "opensearchpy", "fastapi", "uvicorn", "pandas",
                    "typer", "rich", "httpx", "aiokafka"}  # fmt: skip


@dataclass
class Installed:
    venv: Path
    site_packages: Path
    workdir: Path  # every process's cwd: nothing of the repository is importable from it

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def tracestream(self) -> str:
        return str(self.venv / "bin" / "tracestream")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        return {**env, "PYTHONUNBUFFERED": "1", **(extra or {})}

    def run(
        self, args: list[str], extra_env: dict[str, str] | None = None, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=self.workdir, env=self.env(extra_env), capture_output=True, text=True, timeout=timeout_s
        )


def _checked(result: subprocess.CompletedProcess[str], what: str) -> str:
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this working tree as a fresh clone has it (links copied as the files they name)."""
    copy = tmp_path_factory.mktemp("source") / "tracestream"
    shutil.copytree(ROOT, copy, ignore=NOT_SOURCE)
    return copy


def build_wheel(project: Path, dist: Path) -> Path:
    """The wheel of ``project``, built as `pip install <project>` builds it."""
    _checked(
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(project)],
            capture_output=True, text=True, timeout=600,
        ),
        "pip wheel",
    )  # fmt: skip
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tracestream: the servers, the client, the CLI and the SDK."""
    return build_wheel(source, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def sdk_wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tracestream-sdk: the SDK alone (sdk/pyproject.toml)."""
    return build_wheel(source / "sdk", tmp_path_factory.mktemp("sdk-dist"))


def install(requirement: str, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh virtualenv with ``requirement`` (the wheel, maybe with extras) and its dependencies
    from PyPI, not editable."""
    venv = tmp_path_factory.mktemp("wheel-venv")
    _checked(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)]), "python -m venv")
    # This environment's pip installs into the new one (--python): that saves bootstrapping pip
    # there. --no-compile: byte-compiling every dependency up front took most of the install time.
    _checked(
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
             "--no-compile", requirement],
            capture_output=True, text=True, timeout=900,
        ),
        "pip install of the wheel",
    )  # fmt: skip
    workdir = tmp_path_factory.mktemp("wheel-cwd")
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, cwd=workdir,
    ).stdout.strip()  # fmt: skip
    return Installed(venv, Path(purelib), workdir)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The server install: `pip install tracestream`."""
    server = install(str(wheel), tmp_path_factory)
    yield server
    shutil.rmtree(server.venv)  # about 260 MB; pytest keeps the temporary directories of three runs


@pytest.fixture(scope="module")
def sdk_installed(sdk_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The SDK alone: `pip install tracestream-sdk`."""
    sdk = install(str(sdk_wheel), tmp_path_factory)
    yield sdk
    shutil.rmtree(sdk.venv)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WheelPipeline:
    name: str
    env: dict[str, str]
    api_url: str
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log_tail(self, name: str, lines: int = 30) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def not_running(self) -> dict[str, str]:
        return {name: self.log_tail(name) for name, p in self.processes.items() if p.poll() is not None}


@pytest.fixture(scope="module")
def pipeline(
    installed: Installed, kafka_settings: Settings, opensearch: OpenSearch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WheelPipeline]:  # fmt: skip
    """Topics created, and a stream worker, an indexer and the API started, by the wheel's
    `tracestream` command, with this run's own topics, groups, index prefix and port."""
    logs = tmp_path_factory.mktemp("wheel-logs")
    name = f"ts-test-wheel-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = {**isolated_env(name, 1, logs / "stream", api_port=port), "TRACESTREAM_STREAM__LOG_LEVEL": "info"}
    run = WheelPipeline(name, env, f"http://127.0.0.1:{port}", logs)
    try:
        _checked(installed.run([installed.tracestream, "admin", "init"], env), "tracestream admin init")
        for process, args in {
            "stream": ["stream", "worker"], "indexer": ["indexer", "run"], "api": ["api", "serve"],
        }.items():  # fmt: skip
            with (logs / f"{process}.log").open("ab") as log:
                run.processes[process] = subprocess.Popen(
                    [installed.tracestream, *args], cwd=installed.workdir, env=installed.env(env),
                    stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
        yield run
    finally:
        stop_processes(list(run.processes.values()), timeout_s=20)
        names = IndexNames.from_settings(Settings(opensearch=OpenSearchSettings(index_prefix=name)))
        opensearch.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
        opensearch.indices.delete_index_template(name=names.template, ignore=[404])
        admin = AdminClient(kafka_settings.kafka.confluent_config({}))
        topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(name)]
        delete_topics(kafka_settings, topics)


@pytest.fixture(scope="module")
def traced(installed: Installed, pipeline: WheelPipeline) -> dict[str, Any]:
    """What TRACED_APP printed, run by the wheel's Python with the pipeline's settings."""
    script = installed.workdir / "traced_app.py"
    script.write_text(TRACED_APP)
    stdout = _checked(installed.run([installed.python, str(script)], pipeline.env), "the traced application")
    return json.loads(stdout.strip().splitlines()[-1])


def test_wheel_ships_every_data_file_of_the_packages(wheel: Path) -> None:
    # The code reads these from its own package tree (schemas/registry.py: schemas/avro/v*/ and
    # FINGERPRINTS); documentation (*.md) is not read.
    data_files = {
        "/".join([*package.split("."), path.relative_to(ROOT / folder).as_posix()])
        for package, folder in PACKAGES.items()
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc", ".md") and "__pycache__" not in path.parts
    }
    assert "tracestream/schemas/avro/FINGERPRINTS" in data_files
    assert any(name.startswith("tracestream/schemas/avro/v1/") for name in data_files)
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    assert sorted(data_files - shipped) == []


@pytest.mark.parametrize("distribution", ["wheel", "sdk_wheel"])
def test_each_wheel_installs_one_import_name(distribution: str, request: pytest.FixtureRequest) -> None:
    with zipfile.ZipFile(request.getfixturevalue(distribution)) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"tracestream"}


def test_the_sdk_wheel_is_the_full_wheels_sdk_files_at_its_version(wheel: Path, sdk_wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as full, zipfile.ZipFile(sdk_wheel) as sdk:
        full_files = {name: full.read(name) for name in full.namelist() if ".dist-info/" not in name}
        sdk_files = {name: sdk.read(name) for name in sdk.namelist() if ".dist-info/" not in name}
    packages = {name.rsplit("/", 1)[0] for name in sdk_files}
    assert packages >= {"tracestream", "tracestream/producers", "tracestream/schemas/avro/v1"}
    assert not packages & {"tracestream/stream", "tracestream/indexer", "tracestream/search_api"}
    # Installed side by side, the two write the same bytes to the same paths.
    assert {name: full_files.get(name) for name in sdk_files} == sdk_files
    assert sdk_wheel.name.split("-")[1] == wheel.name.split("-")[1], "the two versions differ"


def test_sdk_alone_delivers_a_traced_function_to_kafka(
    sdk_installed: Installed, kafka_settings: Settings, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic()
    script = sdk_installed.workdir / "sdk_app.py"
    script.write_text(SDK_APP)
    environment = {
        "TRACESTREAM_TOPICS__EVENTS": topic,
        "TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.kafka.bootstrap_servers,
    }

    stdout = _checked(sdk_installed.run([sdk_installed.python, str(script)], environment), "the SDK-only app")
    report = json.loads(stdout.strip().splitlines()[-1])

    assert (report["flushed"], report["status"], report["delivered"]) == (True, "active", 3), report
    assert SERVER_LIBRARIES.isdisjoint(report["modules"]), "the SDK imported a server library"
    events = read_events(kafka_settings, topic, until_kind=TRACE_ENDED)
    ours = [(kind, record) for kind, record in events if record["trace_id"] == report["trace_id"]]
    spans = {record["name"]: record["span_type"] for kind, record in ours if kind == SPAN_ENDED}
    assert spans == {"answer": "AGENT", "search_docs": "RETRIEVER"}
    assert [kind for kind, _ in ours].count(TRACE_ENDED) == 1


def test_sdk_alone_installs_only_its_two_libraries(sdk_installed: Installed) -> None:
    installed = {path.name.split("-")[0].lower() for path in sdk_installed.site_packages.glob("*.dist-info")}
    assert installed == {"tracestream_sdk", "confluent_kafka", "fastavro"}


def read_events(
    settings: Settings, topic: str, until_kind: str, timeout_s: float = 30
) -> list[tuple[str, dict[str, Any]]]:
    """The events of ``topic`` from the start, until one of ``until_kind`` arrives."""
    consumer = Consumer(settings.kafka.confluent_config(
        {"group.id": f"{topic}-reader", "auto.offset.reset": "earliest", "enable.auto.commit": False}
    ))  # fmt: skip
    consumer.subscribe([topic])
    codec = events_codec()
    events: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not any(kind == until_kind for kind, _ in events):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                events += events_of(codec.decode(message.value())["event"])
    finally:
        consumer.close()
    return events


def test_installed_packages_load_from_the_virtualenv_not_the_working_tree(installed: Installed) -> None:
    probe = (
        "import json, importlib\n"
        "from tracestream import schemas\n"
        f"files = {{p: importlib.import_module(p).__file__ for p in {list(PACKAGES)!r}}}\n"
        "versions = {n: [s.version for s in h] for n, h in schemas.shipped().versions.items()}\n"
        "print(json.dumps({'files': files, 'versions': versions}))\n"
    )
    found = json.loads(_checked(installed.run([installed.python, "-c", probe]), "importing the packages"))
    for package, file in found["files"].items():
        assert Path(file).is_relative_to(installed.site_packages), f"{package} imported from {file}"
    shipped_versions = sorted(int(d.name[1:]) for d in (ROOT / "schemas" / "avro").glob("v*") if d.is_dir())
    assert found["versions"]["TraceEvent"] == shipped_versions
    assert found["versions"]["CompletedTrace"] == shipped_versions


def test_tracestream_command_of_the_wheel_runs(installed: Installed) -> None:
    help_text = _checked(installed.run([installed.tracestream, "--help"]), "tracestream --help")
    for command in ("stream", "indexer", "api", "run"):
        assert command in help_text


def test_traced_function_reaches_kafka_and_decodes_with_the_installed_schemas(
    installed: Installed, traced: dict[str, Any]
) -> None:
    assert Path(traced["schemas_file"]).is_relative_to(installed.site_packages)
    assert traced["flushed"], traced["sdk_stats"]
    ours = [event for event in traced["events"] if event["trace_id"] == traced["trace_id"]]
    spans = {event["name"]: event["span_type"] for event in ours if event["kind"] == SPAN_ENDED}
    assert spans == {"answer": "AGENT", "lookup_order": "TOOL"}, traced
    assert [event["kind"] for event in ours].count(TRACE_ENDED) == 1


def test_pipeline_run_from_the_wheel_makes_the_trace_searchable(
    pipeline: WheelPipeline, traced: dict[str, Any]
) -> None:
    with httpx.Client(base_url=pipeline.api_url, timeout=10) as api:

        def answers(path: str) -> int | None:
            try:
                return api.get(path).status_code
            except httpx.TransportError:  # not listening yet
                return None

        # Also done waiting when a process exited: its log is then the failure message.
        wait_until(lambda: pipeline.not_running() or answers("/healthz") == 200, 60, "the API's /healthz")
        assert pipeline.not_running() == {}
        assert answers("/readyz") == 200

        def found() -> list[dict[str, Any]] | dict[str, str]:
            if pipeline.not_running():
                return pipeline.not_running()
            body = {"filter": "tags.installed_from = 'wheel'", "max_results": 10}
            response = api.post("/api/v1/traces/search", json=body)
            # 4xx/5xx until the indexer has created the index: keep waiting.
            return response.json()["traces"] if response.status_code == 200 else []

        traces = wait_until(found, 90, "the traced function's trace through the wheel's pipeline", 0.5)
    assert pipeline.not_running() == {}, "a process of the wheel's pipeline exited"
    assert [trace["info"]["trace_id"] for trace in traces] == [traced["trace_id"]]
    assert sorted(span["name"] for span in traces[0]["data"]["spans"]) == ["answer", "lookup_order"]
