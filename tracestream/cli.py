"""The `tracestream` command."""

from __future__ import annotations

import logging
import time

import typer
from rich.table import Table

from tracestream.admin import TopicReport, ensure_topics
from tracestream.errors import DEBUG_KEY, ErrorReportingGroup
from tracestream.health import ServerHealth, check_all
from tracestream.search_api.access import ALL_EXPERIMENTS, Right
from tracestream.search_api.audit import AuditAction, audit_document, operator, write_now
from tracestream.search_api.cli import API_KEY_OPTION, URL_OPTION, traces_app
from tracestream.search_api.console import output_console
from tracestream.search_api.keys import ApiKey, KeysFile, KeyStoreError
from tracestream.settings import get_settings

app = typer.Typer(
    help="tracestream: MLflow-style tracing for production fleets, on Kafka and OpenSearch.",
    # Failures are told in a line or two (tracestream/errors.py); Rich's traceback with every
    # frame's locals would bury the message and print secrets held in the settings.
    cls=ErrorReportingGroup,
    pretty_exceptions_enable=False,
)
admin_app = typer.Typer(help="Create and inspect the pipeline's topics.")
app.add_typer(admin_app, name="admin")
stream_app = typer.Typer(help="The trace-assembly stream (Faust).")
app.add_typer(stream_app, name="stream")
alerts_app = typer.Typer(help="Alerts: failed traces, alert rules and their webhooks.")
app.add_typer(alerts_app, name="alerts")
indexer_app = typer.Typer(help="The indexer: completed traces into OpenSearch.")
app.add_typer(indexer_app, name="indexer")
api_app = typer.Typer(help="The search API (HTTP).")
app.add_typer(api_app, name="api")
app.add_typer(traces_app, name="traces")
demo_app = typer.Typer(help="The demo workload of the main job.")
app.add_typer(demo_app, name="demo")
keys_app = typer.Typer(help="Scoped API keys: the keys file of TRACESTREAM_API__KEYS_FILE.")
app.add_typer(keys_app, name="keys")

console = output_console()


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: bool = typer.Option(
        False, "--debug", envvar="TRACESTREAM_DEBUG", help="On failure, print the traceback; log at debug."
    ),
) -> None:
    if debug:
        ctx.meta[DEBUG_KEY] = True
        logging.getLogger("tracestream").setLevel(logging.DEBUG)
        logging.getLogger("opensearch").setLevel(logging.WARNING)


def _health_table(reports: list[ServerHealth]) -> Table:
    table = Table(title="Servers")
    for column in ("server", "address", "healthy", "details"):
        table.add_column(column)
    for report in reports:
        details = report.error or ", ".join(f"{k}={v}" for k, v in report.details.items())
        healthy = "[green]yes[/green]" if report.healthy else "[red]no[/red]"
        table.add_row(report.server, report.address, healthy, details)
    return table


def _topics_table(reports: list[TopicReport]) -> Table:
    table = Table(title="Topics")
    for column in ("topic", "outcome", "partitions", "cleanup.policy"):
        table.add_column(column)
    for report in reports:
        table.add_row(
            report.spec.name,
            report.outcome.value,
            str(report.partitions),
            report.spec.config.get("cleanup.policy", ""),
        )
    return table


def _wait_healthy(timeout_s: float) -> list[ServerHealth]:
    deadline = time.monotonic() + timeout_s
    while True:
        reports = check_all(get_settings())
        if all(r.healthy for r in reports) or time.monotonic() >= deadline:
            return reports
        time.sleep(1.0)


@app.command()
def health(
    wait: float = typer.Option(0.0, help="Seconds to wait for the servers to become healthy."),
) -> None:
    """Report whether Kafka and OpenSearch are reachable and healthy; exit 1 if not."""
    reports = _wait_healthy(wait)
    console.print(_health_table(reports))
    if not all(r.healthy for r in reports):
        raise typer.Exit(1)


@admin_app.command("init")
def admin_init() -> None:
    """Create the pipeline topics (idempotent)."""
    console.print(_topics_table(ensure_topics(get_settings())))


@stream_app.command("worker")
def stream_worker() -> None:
    """Run a stream worker: events in, completed traces, alerts and dead letters out.
    Start several with the same settings to share the partitions."""
    from tracestream.stream import run_worker
    from tracestream.stream.rules import RuleError

    try:
        run_worker(get_settings())
    except RuleError as exc:
        # A rules file that does not load stops the worker before it starts: never half the rules.
        typer.echo(f"cannot start the stream worker: {exc}", err=True)
        raise typer.Exit(2) from exc


@indexer_app.command("run")
def indexer_run() -> None:
    """Run an indexer: completed traces into the daily traces indices. Start several with the
    same settings to share the partitions."""
    from tracestream.indexer import run_indexer

    run_indexer(get_settings())


@indexer_app.command("retention")
def indexer_retention(
    days: int = typer.Option(..., "--days", min=0, help="Keep this many days of traces before today."),
) -> None:
    """Delete the daily traces indices older than --days days (whole indices)."""
    from tracestream.indexer import delete_indices_older_than, opensearch_client

    settings = get_settings()
    deleted = delete_indices_older_than(opensearch_client(settings), settings, days)
    for index in deleted:
        console.print(f"deleted {index}")
    console.print(f"{len(deleted)} indices deleted")


@indexer_app.command("get")
def indexer_get(trace_id: str) -> None:
    """Print one stored trace as MLflow's trace JSON; exit 1 if it is not there."""
    import json

    from tracestream.indexer import get_trace, opensearch_client

    settings = get_settings()
    trace = get_trace(opensearch_client(settings), settings, trace_id)
    if trace is None:
        console.print(f"[red]trace {trace_id} not found[/red]")
        raise typer.Exit(1)
    typer.echo(json.dumps(trace, ensure_ascii=False, indent=2))


@api_app.command("serve")
def api_serve() -> None:
    """Serve the search API on TRACESTREAM_API__HOST:TRACESTREAM_API__PORT (127.0.0.1:8080)."""
    from tracestream.search_api.api import serve

    serve(get_settings())


@alerts_app.command("tail")
def alerts_tail(
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest alert kept."),
    max_alerts: int = typer.Option(0, "--max", help="Stop after this many alerts (0: never)."),
    timeout: float = typer.Option(0.0, help="Stop after this many seconds (0: never)."),
) -> None:
    """Print alerts as JSON lines, as they arrive. Exits 1 if Kafka does not answer within
    TRACESTREAM_KAFKA__REQUEST_TIMEOUT_S or the alerts topic does not exist."""
    import json

    from tracestream.stream.alerts import AlertTail

    # Kafka unreachable or the topic missing: AdminError, told in a line by ErrorReportingGroup.
    with AlertTail(get_settings(), from_beginning) as tail:
        for alert in tail.follow(max_alerts=max_alerts or None, timeout_s=timeout or None):
            typer.echo(json.dumps(alert, ensure_ascii=False))


rules_app = typer.Typer(help="Alert rules: the [[rule]] tables of TRACESTREAM_STREAM__RULES_FILE.")
alerts_app.add_typer(rules_app, name="rules")


@rules_app.command("list")
def alerts_rules_list(
    rules_file: str = typer.Option(
        "", "--rules-file", help="The rules file (default: TRACESTREAM_STREAM__RULES_FILE)."
    ),
) -> None:
    """Show the alert rules the stream worker evaluates, after the built-in error alert. Exits 2
    if the file does not load (the rule's name and what is wrong with it)."""
    from tracestream.stream.rules import RuleError, format_duration, load_rules

    path = rules_file or get_settings().stream.rules_file
    table = Table(title=f"Alert rules ({path or 'no rules file'})")
    for column in ("rule", "filter", "condition", "group by", "cooldown", "severity", "webhooks"):
        table.add_column(column)
    builtin = ("(built-in)", "attributes.status = 'ERROR'", "every matching trace: a TraceAlert")
    table.add_row(*builtin, "", "", "", "")
    if path:
        try:
            rule_set = load_rules(path)
        except RuleError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from exc
        for rule in rule_set.rules:
            table.add_row(
                rule.name,
                rule.filter or "(every trace)",
                rule.describe(),
                rule.group_by or "",
                format_duration(rule.cooldown_ms),
                rule.severity,
                ", ".join(rule.webhooks),
            )
    console.print(table)


@rules_app.command("test")
def alerts_rules_test(
    rule_name: str = typer.Argument(..., metavar="RULE", help="The rule's name in the rules file."),
    since: str = typer.Option("24h", "--since", help="How far back: 30m, 24h, 7d (traces by end time)."),
    rules_file: str = typer.Option(
        "", "--rules-file", "--rules", help="The rules file (default: TRACESTREAM_STREAM__RULES_FILE)."
    ),
    max_traces: int = typer.Option(
        100_000, "--max-traces", min=1, help="Replay at most this many traces (the newest); says so if cut."
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON lines: one per transition, then a summary."),
    url: str | None = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """Backtest one rule: replay the indexed traces of the last --since through the search API and
    the stream's rule engine, and print when the rule would have fired and resolved. Exits 2 if
    the rules file does not load or has no such rule, 1 if the API fails."""
    from tracestream import backtest
    from tracestream.search_api.client import TraceClient, TraceSearchError
    from tracestream.stream.rules import RuleError, load_rules, parse_duration

    try:
        since_ms = parse_duration(since, "", "--since")
    except RuleError as exc:
        raise typer.BadParameter(
            f'a duration such as "30m", "24h", "7d", got {since!r}', param_hint="--since"
        ) from exc
    path = rules_file or get_settings().stream.rules_file
    if not path:
        typer.echo("error: no rules file: set TRACESTREAM_STREAM__RULES_FILE or pass --rules-file", err=True)
        raise typer.Exit(2)
    try:
        rule_set = load_rules(path)
    except RuleError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    rule = next((r for r in rule_set.rules if r.name == rule_name), None)
    if rule is None:
        known = ", ".join(r.name for r in rule_set.rules) or "none"
        typer.echo(f"error: no rule named {rule_name!r} in {path}; its rules: {known}", err=True)
        raise typer.Exit(2)
    until_ms = int(time.time() * 1000)
    try:
        with TraceClient(url, api_key) as client:
            result = backtest.run_backtest(client, rule, until_ms - since_ms, until_ms, max_traces)
    except TraceSearchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if exc.is_usage_error else 1) from exc
    if as_json:
        import json

        for alert in result.alerts:
            typer.echo(json.dumps(backtest.alert_json(alert), ensure_ascii=False))
        typer.echo(json.dumps(backtest.summary_json(result), ensure_ascii=False))
        if result.truncated:
            typer.echo(backtest.summary_lines(result)[1], err=True)
        return
    console.print(backtest.alerts_table(result))
    for line in backtest.summary_lines(result):
        console.print(line, soft_wrap=True, style="yellow" if line.startswith("TRUNCATED") else None)


@alerts_app.command("deliver")
def alerts_deliver(
    rules_file: str = typer.Option(
        "",
        "--rules-file",
        help="The rules file with the [[webhook]] tables (default: TRACESTREAM_STREAM__RULES_FILE).",
    ),
) -> None:
    """Deliver rule alerts to the webhooks their rules name: signed POSTs, retried with backoff,
    dead-lettered when they keep failing. Start several with the same settings to share the
    partitions. Exits 2 if a webhook's configuration is invalid."""
    from tracestream.stream.delivery import run_delivery
    from tracestream.stream.webhooks import WebhookConfigError, load_webhooks

    settings = get_settings()
    path = rules_file or settings.stream.rules_file
    if not path:
        typer.echo("error: no rules file: set TRACESTREAM_STREAM__RULES_FILE or pass --rules-file", err=True)
        raise typer.Exit(2)
    try:
        webhooks = load_webhooks(path)
    except WebhookConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    run_delivery(settings, webhooks)


@alerts_app.command("receiver")
def alerts_receiver(
    port: int = typer.Option(9099, min=0, max=65535, help="The port to listen on, on 127.0.0.1."),
    secret_env: str = typer.Option(
        "TRACESTREAM_DEMO_WEBHOOK_SECRET", "--secret-env", help="The environment variable holding the secret."
    ),
    tolerance: float = typer.Option(300.0, min=1, help="Reject deliveries whose timestamp is older (s)."),
) -> None:
    """A local webhook receiver: verifies each delivery's signature and prints the alert."""
    import contextlib
    import os
    import threading

    from tracestream.stream.receiver import AlertReceiver, describe

    secret = os.environ.get(secret_env, "")
    if not secret:
        typer.echo(f"error: the environment variable {secret_env} (the webhook secret) is not set", err=True)
        raise typer.Exit(2)
    with AlertReceiver(secret, port, tolerance, on_delivery=lambda r: typer.echo(describe(r))) as receiver:
        typer.echo(f"receiving webhooks on {receiver.url} (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


@app.command()
def run(
    agents: int = typer.Option(3, min=0, help="Demo agent processes emitting traces."),
    rate: float = typer.Option(4.0, min=0.1, help="Traces per second per agent."),
    duration: float = typer.Option(0.0, min=0, help="Stop after this many seconds (0: at Ctrl-C)."),
    wait: float = typer.Option(60.0, help="Seconds to wait for the servers to become healthy."),
) -> None:
    """The main job: the whole pipeline (stream worker, indexer, search API) on the configured
    servers, a demo fleet of agents emitting traces, and the alerts as they happen."""
    import tempfile
    from pathlib import Path

    from tracestream.main_job import MainJob, PortInUseError, check_api_port_free

    try:
        # First: another process's API would answer our readiness probe, then ours fail to bind.
        check_api_port_free(get_settings())
    except PortInUseError as exc:
        typer.echo(f"error: {exc.strerror or exc}", err=True)  # as tracestream/errors.py reports
        raise typer.Exit(1) from exc
    reports = _wait_healthy(wait)
    console.print(_health_table(reports))
    if not all(r.healthy for r in reports):
        console.print(
            "[red]The servers are not healthy: start them with infra/up, or point "
            "TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS / TRACESTREAM_OPENSEARCH__URL at yours.[/red]"
        )
        raise typer.Exit(1)
    admin_init()
    log_dir = Path(tempfile.mkdtemp(prefix="tracestream-run-"))
    job = MainJob(get_settings(), agents, rate, duration or None, log_dir, console)
    raise typer.Exit(job.run())


@demo_app.command("agent")
def demo_agent(
    agent: int = typer.Option(0, help="This agent's number (names its sessions and version)."),
    rate: float = typer.Option(4.0, min=0.01, help="Traces per second."),
    seed: int = typer.Option(0, help="Random seed of the workload."),
    duration: float = typer.Option(0.0, min=0, help="Stop after this many seconds (0: at SIGTERM)."),
) -> None:
    """One demo agent process: simulated support-agent requests traced through the SDK."""
    from tracestream.demo import AgentConfig, run_agent

    served = run_agent(AgentConfig(agent=agent, traces_per_s=rate, seed=seed), duration or None)
    console.print(f"agent {agent}: {served} requests traced")


KEYS_FILE_OPTION = typer.Option(
    None, "--keys-file", help="The keys file (default: TRACESTREAM_API__KEYS_FILE).", show_default=False
)

KEY_EXPERIMENT_OPTION = typer.Option(
    None, "--experiment", "-e", help="An experiment the key applies to (repeat for several)."
)
KEY_RIGHT_OPTION = typer.Option(
    None, "--right", "-r", help="A right of the key: ingest, read, delete, admin (repeat)."
)


def _keys_file(path: str | None) -> KeysFile:
    path = path or get_settings().api.keys_file
    if not path:
        typer.echo("error: no keys file: set TRACESTREAM_API__KEYS_FILE or pass --keys-file", err=True)
        raise typer.Exit(2)
    return KeysFile(path)


def _audit_key_change(action: AuditAction, key: ApiKey) -> None:
    """Records a key change in the audit trail; a warning, not a failure, when OpenSearch is not
    reachable: the change is made either way."""
    from tracestream.indexer import opensearch_client

    settings = get_settings()
    document = audit_document(
        operator(), action, target_key=key.name, rights=key.rights, experiments=key.experiments
    )
    try:
        write_now(opensearch_client(settings), settings, document)
    except Exception as exc:  # any failure of OpenSearch: the warning says what it was
        typer.echo(
            f"warning: the key change is not in the audit trail ({type(exc).__name__}: {exc})", err=True
        )


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="The key's name: who uses it (shown in the audit trail)."),
    experiments: list[str] | None = KEY_EXPERIMENT_OPTION,
    all_experiments: bool = typer.Option(
        False, "--all-experiments", help="Every experiment, present and future."
    ),
    rights: list[Right] | None = KEY_RIGHT_OPTION,
    keys_file: str | None = KEYS_FILE_OPTION,
) -> None:
    """Create a key and print its secret, once: the keys file keeps only its hash."""
    if all_experiments == bool(experiments):
        typer.echo("error: give --experiment (one or more) or --all-experiments", err=True)
        raise typer.Exit(2)
    if not rights:
        typer.echo("error: give at least one --right (ingest, read, delete, admin)", err=True)
        raise typer.Exit(2)
    store = _keys_file(keys_file)
    try:
        key, secret = store.create(name, [ALL_EXPERIMENTS] if all_experiments else experiments or [], rights)
    except KeyStoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _audit_key_change(AuditAction.KEY_CREATE, key)
    console.print(f"created key {key.name!r} in {store.path}: {', '.join(key.rights)} on {_scope(key)}")
    typer.echo(secret)
    console.print("This secret is shown only now and cannot be shown again; store it safely.")


def _scope(key: ApiKey) -> str:
    return "all experiments" if ALL_EXPERIMENTS in key.experiments else ", ".join(key.experiments)


@keys_app.command("list")
def keys_list(keys_file: str | None = KEYS_FILE_OPTION) -> None:
    """List the keys: names, rights, experiments, when created and revoked (never secrets)."""
    store = _keys_file(keys_file)
    try:
        keys = store.read()
    except KeyStoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    table = Table(title=f"API keys in {store.path}")
    for column in ("name", "rights", "experiments", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(key.name, ", ".join(key.rights), _scope(key), key.created_at, key.revoked_at or "")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    name: str = typer.Argument(..., help="The key's name."),
    keys_file: str | None = KEYS_FILE_OPTION,
) -> None:
    """Revoke a key: the API refuses it within TRACESTREAM_API__KEYS_CHECK_INTERVAL_S, no restart."""
    store = _keys_file(keys_file)
    try:
        key = store.revoke(name)
    except KeyStoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _audit_key_change(AuditAction.KEY_REVOKE, key)
    console.print(f"revoked key {key.name!r} at {key.revoked_at}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # opensearch-py logs every request at INFO, and a failed one at WARNING with urllib3's
    # traceback; callers report failures themselves (--debug shows these again).
    logging.getLogger("opensearch").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
