"""The main job (`tracestream run`, the README's `make run`): the whole pipeline on the local stack
with a demo workload, until Ctrl-C.

It starts, as child processes, a stream worker, an indexer, the search API and a few demo agent
processes emitting traces through the SDK; tails the alerts topic in this process; prints
ready-to-paste searches once the first traces are searchable; and stops everything it started
when interrupted (agents first, so that they flush what they traced).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.text import Text

from tracestream.settings import ENV_PREFIX, Settings

if TYPE_CHECKING:
    from tracestream.stream.alerts import AlertTail
    from tracestream.stream.receiver import AlertReceiver, Received

STOP_TIMEOUT_S = 15.0
# The example alert rules the demo fleet runs with, when TRACESTREAM_STREAM__RULES_FILE is unset,
# and the local webhook receiver their webhook points at.
DEMO_RULES_FILE = Path(__file__).with_name("demo_rules.toml")
DEMO_SECRET_ENV = "TRACESTREAM_DEMO_WEBHOOK_SECRET"
DEMO_RECEIVER_PORT = 9099


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tracestream", *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: the terminal's Ctrl-C reaches only us, and we stop children in order.
            start_new_session=True,
        )
        log.close()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM each, wait up to ``timeout_s`` for all of them, SIGKILL what is left."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_children(children: list[Child], timeout_s: float = STOP_TIMEOUT_S) -> None:
    stop_processes([c.process for c in children if c.process is not None], timeout_s)


def api_base_url(settings: Settings) -> str:
    host = settings.api.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{settings.api.port}"


class PortInUseError(OSError):
    """The search API's address is taken by another process."""


def check_api_port_free(settings: Settings) -> None:
    """Raise :class:`PortInUseError` if the API could not listen on settings.api.host:port.

    Otherwise another process (often an earlier run's API) answers the job's readiness probe and
    the job announces traces as searchable before its own API fails to start."""
    host, port = settings.api.host, settings.api.port
    if port == 0:  # the OS picks a free port
        return
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by a finished process counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise PortInUseError(
                exc.errno,
                f"the search API's address {host}:{port} is in use by another process ({exc.strerror}); "
                f"stop it, or choose another port with {ENV_PREFIX}API__PORT",
            ) from exc


def search_examples(settings: Settings) -> dict[str, list[str]]:
    """Searches to paste into another terminal: commands by group title."""
    base = api_base_url(settings)
    cli = ".venv/bin/tracestream traces"
    groups = {
        # Opened in a browser: the trace explorer's search page, and its live view of alerts.
        "Browser (the trace explorer)": [f"{base}/", f"{base}/?view=live"],
        "curl": [
            f"curl -s {base}/api/v1/traces/search -H 'content-type: application/json' "
            '-d \'{"filter": "status = \\u0027ERROR\\u0027", "max_results": 3, "include_spans": false}\'',
            f"curl -s '{base}/api/v1/traces/export?filter=span.type%20%3D%20%27TOOL%27' | head -c 600",
        ],
        "CLI": [
            f"{cli} search --filter-string \"attributes.status = 'ERROR'\" --max-results 5",
            f"{cli} search --filter-string \"span.type = 'TOOL' AND span.status = 'ERROR'\" --output json",
            f"{cli} search --filter-string \"trace.text LIKE '%refund%'\" --order-by 'execution_time_ms'",
            f"{cli} export --filter-string 'feedback.user_satisfaction <= 2' -o low.ndjson",
        ],
        "Python (MLflow's search_traces, returning pandas)": [
            '.venv/bin/python -c "from tracestream import search_api; '
            "df = search_api.search_traces(filter_string='tags.env = \\\"demo\\\"', max_results=500); "
            "print(df.groupby('state')['execution_duration'].describe())\"",
        ],
    }
    return groups


def print_search_examples(console: Console, settings: Settings, title: str) -> None:
    """Each command on a line of its own, never wrapped by rich, so that it can be pasted whole
    whatever the terminal's width (a panel would break commands inside their quotes)."""
    console.print(Rule(title, align="left"))
    for group, commands in search_examples(settings).items():
        console.print(Text(group, style="bold"))
        for command in commands:
            console.print(Text(command), soft_wrap=True)
        console.print()


def format_alert(alert: dict[str, Any]) -> str:
    """One line per alert: the trace, and the deepest failing span with its message and exception."""
    failed = alert.get("failed_spans") or []
    span = failed[-1] if failed else {}
    message = span.get("status_message") or ",".join(span.get("exception_types") or [])
    return (
        f"[red]ALERT[/red] {escape(alert['trace_id'])} {escape(alert.get('trace_name') or '')} "
        f"failed in {escape(span.get('name', '?'))}: {escape(message[:120])}"
    )


class MainJob:
    def __init__(
        self,
        settings: Settings,
        agents: int,
        traces_per_s: float,
        duration_s: float | None,
        log_dir: Path,
        console: Console,
    ) -> None:
        self.settings = settings
        self.duration_s = duration_s
        self.console = console
        self.log_dir = log_dir
        self.stop = threading.Event()
        self.alerts_seen = 0
        self.webhooks_received = 0
        # The demo fleet gets the example rules unless rules are configured; the pipeline alone
        # (--agents 0) runs the configured rules, if any.
        self.demo_rules = agents > 0 and not settings.stream.rules_file
        self.rules_file = str(DEMO_RULES_FILE) if self.demo_rules else settings.stream.rules_file
        self.services = [
            Child("stream", ["stream", "worker"], log_dir / "stream.log"),
            Child("indexer", ["indexer", "run"], log_dir / "indexer.log"),
            Child("api", ["api", "serve"], log_dir / "api.log"),
        ]
        if self.rules_file:
            # Webhook delivery in a process of its own: a receiver never holds up the stream.
            self.services.append(Child("webhooks", ["alerts", "deliver"], log_dir / "webhooks.log"))
        self.agents = [
            Child(
                f"agent-{n}",
                ["demo", "agent", "--agent", str(n), "--rate", str(traces_per_s), "--seed", str(1000 + n)],
                log_dir / f"agent-{n}.log",
            )
            for n in range(agents)
        ]

    def start_alerts_tail(self) -> threading.Thread:
        """Open the job's one alerts consumer, reading alerts produced from now on, and follow
        it in a thread until ``stop``. One consumer for the life of the job: a consumer per read
        would skip the alerts produced between two reads."""
        from tracestream.stream.alerts import AlertTail

        tail = AlertTail(self.settings).open()
        thread = threading.Thread(target=self._follow_alerts, args=(tail,), name="alerts-tail", daemon=True)
        thread.start()
        return thread

    def _follow_alerts(self, tail: AlertTail) -> None:
        try:
            for alert in tail.follow(stop=self.stop):
                self.alerts_seen += 1
                if self.alerts_seen <= 20 or self.alerts_seen % 25 == 0:
                    self.console.print(format_alert(alert))
        except Exception as exc:  # the demo goes on without its alert printout
            self.console.print(f"[yellow]alerts tail stopped: {escape(str(exc))}[/yellow]")
        finally:
            tail.close()

    def start_receiver(self, secret: str) -> AlertReceiver | None:
        """The demo's webhook receiver, in this process: it verifies and prints each delivery."""
        from tracestream.stream.receiver import AlertReceiver

        try:
            receiver = AlertReceiver(secret, DEMO_RECEIVER_PORT, on_delivery=self._print_delivery).start()
        except OSError as exc:  # the demo goes on; its deliveries are dead-lettered
            self.console.print(
                f"[yellow]no webhook receiver: 127.0.0.1:{DEMO_RECEIVER_PORT} is taken "
                f"({exc.strerror})[/yellow]"
            )
            return None
        self.console.print(
            f"alert rules: [bold]{self.rules_file}[/bold]; their webhook is received on {receiver.url}"
        )
        return receiver

    def _print_delivery(self, received: Received) -> None:
        from tracestream.stream.receiver import describe

        self.webhooks_received += 1
        self.console.print(f"[magenta]{escape(describe(received))}[/magenta]")

    def _searchable(self) -> int:
        from tracestream.search_api.client import TraceClient, TraceSearchError

        try:
            with TraceClient(api_base_url(self.settings), timeout_s=5) as client:
                return len(client.search_traces(max_results=1, include_spans=False))
        except TraceSearchError:
            return 0

    def _indexed(self, since_ms: int) -> int | None:
        """Traces of this run in the index (or None if OpenSearch does not answer)."""
        from tracestream.indexer import F, IndexNames, opensearch_client

        try:
            client = opensearch_client(self.settings)
            alias = IndexNames.from_settings(self.settings).read_alias
            body = {"query": {"range": {F.TIMESTAMP_MS: {"gte": since_ms}}}}
            return int(client.count(index=alias, body=body, params={"ignore_unavailable": "true"})["count"])
        except Exception:
            return None

    def _dead(self) -> Child | None:
        return next((c for c in self.services + self.agents if c.exited() is not None), None)

    def run(self) -> int:
        """Runs until Ctrl-C, SIGTERM or the duration; 0 if traces became searchable and no
        process died."""
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.console.print(f"logs of every process: [bold]{self.log_dir}[/bold]")
        receiver: AlertReceiver | None = None
        if self.demo_rules:
            env[f"{ENV_PREFIX}STREAM__RULES_FILE"] = str(DEMO_RULES_FILE)
            env[DEMO_SECRET_ENV] = env.get(DEMO_SECRET_ENV) or secrets.token_hex(16)
            receiver = self.start_receiver(env[DEMO_SECRET_ENV])
        for child in self.services:
            child.start(env)
            self.console.print(f"started {child.name} (pid {child.process.pid})")  # type: ignore[union-attr]
        alerts: threading.Thread | None = None
        try:
            alerts = self.start_alerts_tail()
        except Exception as exc:  # the demo goes on without its alert printout
            self.console.print(f"[yellow]no alerts tail: {escape(str(exc))}[/yellow]")
        for child in self.agents:
            child.start(env)
        self.console.print(f"started {len(self.agents)} demo agents")
        started = time.monotonic()
        started_ms = int(time.time() * 1000)
        shown_examples = False
        last_status = started
        code = 0
        try:
            while not self.stop.is_set():
                if self.duration_s is not None and time.monotonic() - started >= self.duration_s:
                    break
                dead = self._dead()
                if dead is not None:
                    self.console.print(
                        f"[red]{dead.name} exited with code {dead.exited()}; its last log lines:[/red]\n"
                        f"{escape(dead.log_tail())}"
                    )
                    code = 1
                    break
                if not shown_examples and self._searchable():
                    shown_examples = True
                    took = time.monotonic() - started
                    print_search_examples(
                        self.console, self.settings, f"traces are searchable ({took:.0f} s after start); try"
                    )
                if time.monotonic() - last_status >= 15:
                    last_status = time.monotonic()
                    indexed = self._indexed(started_ms)
                    self.console.print(
                        f"[dim]{time.monotonic() - started:.0f} s: {indexed if indexed is not None else '?'} "
                        f"traces indexed, {self.alerts_seen} alerts, {self.webhooks_received} webhooks "
                        "(Ctrl-C stops)[/dim]"
                    )
                self.stop.wait(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            self.console.print("stopping: agents first, so that they flush ...")
            stop_children(self.agents)
            # Give the stream and the indexer a moment to pass on what the agents flushed.
            time.sleep(3)
            stop_children(self.services)
            self.stop.set()
            if alerts is not None:
                alerts.join(3)
            if receiver is not None:
                receiver.stop()
            indexed = self._indexed(started_ms)
            self.console.print(
                f"stopped. {indexed if indexed is not None else '?'} traces indexed, "
                f"{self.alerts_seen} alerts seen. The stack keeps running: infra/down stops it."
            )
        if not shown_examples and code == 0:
            self.console.print("[red]no trace became searchable[/red]")
            code = 1
        return code
