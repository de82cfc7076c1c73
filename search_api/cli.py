"""`tracestream traces …`: MLflow's `mlflow traces search|get` at the terminal, plus an export and
a delete by filter.

The commands speak the HTTP API through :class:`TraceClient`, so they work from any machine that
reaches the API, with the same errors a program would get.
"""

from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tracestream.search_api.client import TraceClient, TraceDeletion, TraceSearchError
from tracestream.search_api.console import output_console
from tracestream.search_api.entities import Trace

traces_app = typer.Typer(help="Search, read, export and delete traces through the search API.")

# Errors go to stderr so that `--output json` stays parseable.
err_console = Console(stderr=True)

URL_OPTION = typer.Option(
    None, "--url", help="The search API's base URL (default: http://TRACESTREAM_API__HOST:PORT)."
)
API_KEY_OPTION = typer.Option(
    None, "--api-key", envvar="TRACESTREAM_API_KEY", help="API key (default: the settings' first key)."
)
FILTER_OPTION = typer.Option(
    None, "--filter-string", "--filter", help="MLflow filter, e.g. \"status = 'ERROR'\"."
)
ORDER_BY_OPTION = typer.Option(
    None,
    "--order-by",
    help="Comma-separated order_by clauses, e.g. 'timestamp_ms DESC, request_id'; repeatable.",
)
EXPERIMENT_OPTION = typer.Option(
    None, "--experiment-id", "--location", help="Search only these experiments (repeatable; default: all)."
)
DELETE_EXPERIMENT_OPTION = typer.Option(
    None, "--experiment-id", "--location", help="Delete only in these experiments (repeatable; default: all)."
)
PREVIEW_CHARS = 60


def _order_by(values: list[str] | None) -> list[str] | None:
    """MLflow's CLI takes one comma-separated string; ours also accepts the option repeated."""
    if not values:
        return None
    return [clause.strip() for value in values for clause in value.split(",") if clause.strip()]


def _fail(error: TraceSearchError) -> typer.Exit:
    where = f" (at character {error.position})" if error.position is not None else ""
    # Unwrapped: a message is one line whatever the width, as the errors of `tracestream` are.
    message = f"[red]{escape(error.error_code)}[/red]: {escape(error.message)}{where}"
    err_console.print(message, soft_wrap=True)
    if error.highlight:
        # The filter and the caret line under it, unwrapped so the caret stays in its column.
        err_console.print(escape(error.highlight), soft_wrap=True, highlight=False)
    # A --url or --trace-id the client refuses is a usage error: 2, as click's own.
    return typer.Exit(2 if error.is_usage_error else 1)


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _preview(text: str | None, width: int) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


FIXED_COLUMNS = (("trace_id", 35), ("request_time (UTC)", 19), ("state", 11), ("duration_ms", 11))
# Each column costs its padding and a border: three characters, plus one for the table's edge.
_COLUMN_FRAME = 3


def traces_table(traces: list[Trace], width: int) -> Table:
    """The columns `mlflow traces search` shows, with times and durations made readable. Ids and
    times are never cut; the previews get what is left of ``width`` (none in a narrow terminal)."""
    fixed = sum(w + _COLUMN_FRAME for _, w in FIXED_COLUMNS) + 1
    preview_width = min(PREVIEW_CHARS, (width - fixed) // 2 - _COLUMN_FRAME)
    show_previews = preview_width >= 12
    table = Table()
    for column, column_width in FIXED_COLUMNS:
        table.add_column(column, no_wrap=True, min_width=column_width)
    if show_previews:
        for column in ("request", "response"):
            table.add_column(column, no_wrap=True, max_width=preview_width)
    for trace in traces:
        info = trace.info
        state = info.state.value
        row = [
            info.trace_id,
            _time(info.request_time),
            f"[red]{state}[/red]" if state == "ERROR" else state,
            "" if info.execution_duration is None else str(info.execution_duration),
        ]
        if show_previews:
            row += [
                escape(_preview(info.request_preview, preview_width)),
                escape(_preview(info.response_preview, preview_width)),
            ]
        table.add_row(*row)
    return table


@traces_app.command("search")
def search(
    filter_string: str | None = FILTER_OPTION,
    order_by: list[str] | None = ORDER_BY_OPTION,
    max_results: int = typer.Option(100, "--max-results", min=1, help="Traces in this page (at most 1,000)."),
    page_token: str | None = typer.Option(None, "--page-token", help="The next page's token."),
    experiment_ids: list[str] | None = EXPERIMENT_OPTION,
    include_spans: bool = typer.Option(True, "--include-spans/--no-include-spans", help="Return span data."),
    output: str = typer.Option("table", "--output", help="table or json."),
    url: str | None = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """One page of traces matching the filter. In table output the next page's token is printed
    after the table; in JSON output it is the `next_page_token` field."""
    if output not in ("table", "json"):
        raise typer.BadParameter("must be 'table' or 'json'", param_hint="--output")
    try:
        with TraceClient(url, api_key) as client:
            page = client.search_traces(
                filter_string=filter_string,
                max_results=max_results,
                order_by=_order_by(order_by),
                page_token=page_token,
                locations=experiment_ids or None,
                include_spans=include_spans,
            )
    except TraceSearchError as error:
        raise _fail(error) from error
    if output == "json":
        payload: dict[str, Any] = {"traces": [t.to_dict() for t in page], "next_page_token": page.token}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    console = output_console()  # piped: wide, so that no column is dropped
    console.print(traces_table(page, console.width))
    console.print(f"{len(page)} traces")
    if page.token:
        console.print(f"Next page token: {page.token}", soft_wrap=True)


@traces_app.command("get")
def get(
    trace_id: str = typer.Option(..., "--trace-id", help="The trace's id (tr-…)."),
    url: str | None = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """Print one trace, with its spans and assessments, as MLflow's trace JSON; exit 1 if unknown."""
    try:
        with TraceClient(url, api_key) as client:
            trace = client.get_trace(trace_id)
    except TraceSearchError as error:
        raise _fail(error) from error
    if trace is None:
        err_console.print(f"[red]RESOURCE_DOES_NOT_EXIST[/red]: Trace with ID {escape(trace_id)} not found.")
        raise typer.Exit(1)
    typer.echo(json.dumps(trace.to_dict(), ensure_ascii=False, indent=2))


def _open_output(path: str) -> AbstractContextManager[BinaryIO]:
    if path == "-":
        return nullcontext(typer.get_binary_stream("stdout"))
    return Path(path).open("wb")


@traces_app.command("export")
def export(
    output_path: str = typer.Option(..., "--output", "-o", help="NDJSON file to write ('-': stdout)."),
    filter_string: str | None = FILTER_OPTION,
    order_by: list[str] | None = ORDER_BY_OPTION,
    experiment_ids: list[str] | None = EXPERIMENT_OPTION,
    include_spans: bool = typer.Option(True, "--include-spans/--no-include-spans", help="Export span data."),
    url: str | None = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """Every matching trace, one MLflow trace JSON per line, from one consistent view of the index.
    Lines are written as they arrive: memory stays flat however many traces match. A failed export
    exits 1 and leaves the lines written so far, followed by nothing else."""
    to_stdout = output_path == "-"
    written = 0
    try:
        with (
            TraceClient(url, api_key) as client,
            client.open_export(
                filter_string, _order_by(order_by), experiment_ids or None, include_spans
            ) as export_stream,
            _open_output(output_path) as out,
            Progress(
                TextColumn("exporting"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                disable=to_stdout,
            ) as progress,
        ):
            task = progress.add_task("export", total=export_stream.total)
            for line in export_stream.lines:
                out.write(line)
                out.write(b"\n")
                written += 1
                if written % 100 == 0:
                    progress.update(task, completed=written)
            progress.update(task, completed=written)
    except TraceSearchError as error:
        err_console.print(f"{written} traces written before the failure")
        raise _fail(error) from error
    if not to_stdout:
        err_console.print(f"{written} traces written to {output_path}")


def _interactive() -> bool:
    """Whether a person can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


def _print_deletion(deletion: TraceDeletion, output: str) -> None:
    if output == "json":
        typer.echo(json.dumps(deletion.__dict__, indent=2))
        return
    console = output_console()
    verb = "Would delete" if deletion.dry_run else "Deleted"
    console.print(f"{verb} {deletion.traces_deleted} of {deletion.traces_matched} matching traces")
    if deletion.dry_run:
        for trace_id in deletion.trace_ids:
            console.print(trace_id, soft_wrap=True)
        if deletion.trace_ids_truncated:
            console.print(f"… the first {len(deletion.trace_ids)} listed, oldest first")
    left = deletion.traces_matched - deletion.traces_deleted
    if not deletion.dry_run and left > 0:
        # Deleted traces leave the index within seconds; a run before then would find them again.
        console.print(f"{left} more match: run the command again in a few seconds to delete them")


@traces_app.command("delete")
def delete(
    filter_string: str = typer.Option(
        ...,
        "--filter-string",
        "--filter",
        help='MLflow filter of the traces to delete, e.g. "timestamp_ms < 1700000000000".',
    ),
    experiment_ids: list[str] | None = DELETE_EXPERIMENT_OPTION,
    max_traces: int | None = typer.Option(
        None,
        "--max-traces",
        min=1,
        help="Delete at most this many, oldest first (the API deletes at most 100,000 a request).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show how many traces and which would go."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking."),
    output: str = typer.Option("table", "--output", help="table or json."),
    url: str | None = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """Delete the traces matching a filter, for good, oldest first: searches stop returning them
    within seconds, and a late span or tag does not bring them back. Without --yes it shows how
    many would go and asks; when no one can answer (stdin is not a terminal) it refuses (exit 2)."""
    if output not in ("table", "json"):
        raise typer.BadParameter("must be 'table' or 'json'", param_hint="--output")
    if not dry_run and not yes and not _interactive():
        err_console.print(
            "[red]Refusing to delete without --yes[/red]: stdin is not a terminal, so no one can confirm. "
            "See what would go with --dry-run.",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    locations = experiment_ids or None
    try:
        with TraceClient(url, api_key) as client:
            if not dry_run and not yes:
                preview = client.delete_traces(filter_string, locations, max_traces, dry_run=True)
                if preview.traces_deleted == 0:
                    _print_deletion(preview, output)
                    return
                question = (
                    f"Delete {preview.traces_deleted} of {preview.traces_matched} matching traces, for good?"
                )
                if not typer.confirm(question, err=True):
                    err_console.print("Nothing deleted")
                    raise typer.Exit(1)
                # No more than were shown: the oldest first, as the preview counted them.
                max_traces = preview.traces_deleted
            deletion = client.delete_traces(filter_string, locations, max_traces, dry_run=dry_run)
    except TraceSearchError as error:
        raise _fail(error) from error
    _print_deletion(deletion, output)
