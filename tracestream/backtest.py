"""`tracestream alerts rules test`: one alert rule replayed over the indexed traces of a time range,
through the search API, to see when it would have fired and resolved before it is enabled.

The traces come from the API's export (``GET /api/v1/traces/export``, info only, no spans), in
the order of their end time, the moment the stream evaluates a trace as it completes. They go
through the stream's own :class:`~tracestream.stream.rules.RuleEngine` (windows, thresholds,
cooldown, groups), and the engine is ticked between traces at each moment a firing group's
window loses a bucket, so a rule resolves when the stream would have resolved it.

The rule's filter is evaluated by the search API, not in memory: the in-memory backend reads a
trace's spans (``span.name = 'refund'``), which the export would then have to carry for every
trace of the range, and both backends give the same traces
(``tests/dsl_differential/test_predicate_agreement.py``). So:

* a ratio rule needs every trace of the range (its denominator): one export of all traces, one
  of the ids matching ``(filter) AND <range>``; the engine's predicate is membership in the
  second;
* any other rule counts only matching traces: one export of ``(filter) AND <range>``.

``max_traces`` bounds what is read: when the range holds more, the newest ``max_traces`` are
replayed and the result says so (``truncated``, and from when the replay starts).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from tracestream.search_api.client import TraceClient, TraceSearchError
from tracestream.search_api.entities import TraceInfo
from tracestream.stream.rules import Rule, RuleEngine, TraceFacts, facts_of
from tracestream.stream.windows import bucket_width_ms

DEFAULT_MAX_TRACES = 100_000
# Newest first, so that a truncated replay keeps the most recent traces.
_ORDER = ["end_time_ms DESC"]


@dataclass(frozen=True)
class ReplayedTrace:
    trace_id: str
    end_ms: int  # request time + execution duration: when the stream saw the trace complete
    facts: TraceFacts


@dataclass
class BacktestResult:
    rule: Rule
    since_ms: int
    until_ms: int
    alerts: list[dict[str, Any]] = field(default_factory=list)
    scanned: int = 0  # traces replayed through the engine
    matched: int = 0  # of them, matching the rule's filter
    in_range: int | None = None  # traces the range holds (all for a ratio rule, else matching ones)
    truncated: bool = False
    replay_from_ms: int | None = None  # the oldest replayed trace's end time
    firing_at_end: list[str] = field(default_factory=list)  # groups still firing at until_ms

    @property
    def fired(self) -> int:
        return sum(1 for alert in self.alerts if alert["state"] == "FIRING")

    @property
    def resolved(self) -> int:
        return sum(1 for alert in self.alerts if alert["state"] == "RESOLVED")


def facts_from_info(info: TraceInfo, revision: int = 1) -> TraceFacts:
    """What the engine reads of a trace, from the search API's trace info (MLflow's JSON): the
    one place the API's representation stands in for the stream's CompletedTrace record."""
    return facts_of(
        {
            "trace_id": info.trace_id,
            "revision": revision,
            "info": {
                "tags": info.tags,
                "metadata": info.trace_metadata,
                "execution_duration_ms": info.execution_duration,
            },
        }
    )


def range_filter(since_ms: int, until_ms: int, rule_filter: str = "") -> str:
    """The search filter of the traces that ended in [since_ms, until_ms], and match ``rule_filter``."""
    window = f"attributes.end_time_ms >= {since_ms} AND attributes.end_time_ms <= {until_ms}"
    return f"({rule_filter}) AND {window}" if rule_filter.strip() else window


def _read(
    client: TraceClient, filter_string: str, limit: int | None
) -> tuple[list[ReplayedTrace], int | None]:
    """Up to ``limit`` traces matching the filter, newest end time first, and how many match."""
    traces: list[ReplayedTrace] = []
    with client.open_export(filter_string, _ORDER, include_spans=False) as export:
        for line in export.lines:
            if limit is not None and len(traces) >= limit:
                break
            try:
                info = TraceInfo.from_dict(json.loads(line)["info"])
            except (KeyError, TypeError, ValueError) as error:
                raise TraceSearchError(f"Malformed trace in the export: {error!r}") from error
            end_ms = info.request_time + (info.execution_duration or 0)
            traces.append(ReplayedTrace(info.trace_id, end_ms, facts_from_info(info)))
        total = export.total
    return traces, total


def _slides(rule: Rule, after_ms: int, until_ms: int) -> Iterator[int]:
    """The moments in (after_ms, until_ms] a window of ``rule`` can lose a bucket: a bucket starts
    at a multiple of its width and counts while start + width > now - window (``Window.live``)."""
    assert rule.window_ms is not None
    width = bucket_width_ms(rule.window_ms)
    offset = rule.window_ms % width
    at = after_ms - (after_ms - offset) % width + width  # the first such moment after after_ms
    while at <= until_ms:
        yield at
        at += width


def replay(
    rule: Rule, traces: list[ReplayedTrace], matching: set[str] | None, until_ms: int
) -> list[dict[str, Any]]:
    """The alerts of ``rule`` over ``traces`` (any order), as the stream would have sent them;
    ``matching``: the ids matching the rule's filter (None: every trace given matches).

    Between two traces the engine is ticked, while a group is firing, at each moment a window
    slides: it resolves when a stream ticking continuously would resolve it. (Without a firing
    group a tick changes nothing: the stream judges a group on a tick only while it fires.)"""
    if matching is None:
        predicate = _matches_all
    else:
        ids = matching

        def predicate(document: Mapping[str, Any]) -> bool:
            return document["trace_id"] in ids

    engine = RuleEngine([dataclasses.replace(rule, predicate=predicate)])
    alerts: list[dict[str, Any]] = []
    firing: set[str | None] = set()

    def sent(new: list[dict[str, Any]]) -> None:
        for alert in new:
            (firing.add if alert["state"] == "FIRING" else firing.discard)(alert["group"])
        alerts.extend(new)

    def advance(from_ms: int, to_ms: int) -> None:
        if not rule.windowed:
            return
        for at in _slides(rule, from_ms, to_ms):
            if not firing:
                return
            sent(engine.tick(at).alerts)

    now: int | None = None
    for trace in sorted(traces, key=lambda t: (t.end_ms, t.trace_id)):
        if now is not None:
            advance(now, trace.end_ms)
        now = trace.end_ms
        outcome, _mark = engine.observe(trace.facts, {"trace_id": trace.trace_id}, 0, trace.end_ms)
        sent(outcome.alerts)
    if now is not None:
        advance(now, until_ms)
    return alerts


def _matches_all(_document: Mapping[str, Any]) -> bool:
    return True


def run_backtest(
    client: TraceClient, rule: Rule, since_ms: int, until_ms: int, max_traces: int = DEFAULT_MAX_TRACES
) -> BacktestResult:
    result = BacktestResult(rule, since_ms, until_ms)
    if rule.condition == "ratio":
        traces, result.in_range = _read(client, range_filter(since_ms, until_ms), max_traces)
        start_ms = min((t.end_ms for t in traces), default=since_ms)
        # Only the replayed range: when truncated, the older matching traces are not needed.
        matching_traces, _ = _read(client, range_filter(start_ms, until_ms, rule.filter), None)
        matching: set[str] | None = {t.trace_id for t in matching_traces}
        result.matched = sum(1 for t in traces if t.trace_id in matching)
    else:
        traces, result.in_range = _read(client, range_filter(since_ms, until_ms, rule.filter), max_traces)
        matching = None
        result.matched = len(traces)
    result.scanned = len(traces)
    result.truncated = result.in_range is not None and result.in_range > len(traces)
    result.replay_from_ms = min((t.end_ms for t in traces), default=None)
    result.alerts = replay(rule, traces, matching, until_ms)
    firing: dict[str, bool] = {}
    for alert in result.alerts:
        firing[alert["group"] or ""] = alert["state"] == "FIRING"
    result.firing_at_end = [group for group, on in firing.items() if on and rule.condition != "every"]
    return result


# --- output -----------------------------------------------------------------------------------


def format_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_value(rule: Rule, value: float) -> str:
    if rule.condition == "ratio":
        return f"{value:.1f}%"
    if rule.condition == "percentile":
        return f"{value:,.0f} ms"
    if rule.condition == "sum" and rule.field == "cost":
        return f"{value:,.4g}"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def alerts_table(result: BacktestResult) -> Table:
    rule = result.rule
    table = Table(title=f"Backtest of {rule.name!r}: {rule.describe()}")
    for column in ("time (UTC)", "state", "group", "value", "threshold", "latest sample"):
        table.add_column(column, no_wrap=column in ("time (UTC)", "latest sample"))
    for alert in result.alerts:
        state = alert["state"]
        samples = alert["sample_trace_ids"]
        table.add_row(
            format_time(alert["at_ms"]),
            "[red]FIRING[/red]" if state == "FIRING" else "[green]RESOLVED[/green]",
            escape(alert["group"] or ""),
            format_value(rule, alert["value"]),
            "" if rule.condition == "every" else format_value(rule, alert["threshold"]),
            samples[-1] if samples else "",
        )
    return table


def summary_lines(result: BacktestResult) -> list[str]:
    rule = result.rule
    span = f"{format_time(result.since_ms)} and {format_time(result.until_ms)} UTC"
    what = "traces" if rule.condition == "ratio" else "traces matching the filter"
    lines = [
        f"{result.scanned:,} {what} scanned (ended between {span}); {result.matched:,} matched the filter."
    ]
    if result.truncated:
        lines.append(
            f"TRUNCATED: the range holds {result.in_range:,} {what}; only the newest {result.scanned:,} "
            f"were replayed (from {format_time(result.replay_from_ms or result.since_ms)} UTC). "
            "Raise --max-traces or shorten --since."
        )
    groups = {alert["group"] or "" for alert in result.alerts if alert["state"] == "FIRING"}
    fired = f"Would have fired {_times(result.fired)}"
    if rule.group_by:
        fired += f" in {len(groups)} group{'' if len(groups) == 1 else 's'}"
    fired += f" and resolved {_times(result.resolved)}"
    if result.firing_at_end:
        fired += f"; still firing at the end: {', '.join(g or '(all)' for g in result.firing_at_end)}"
    lines.append(fired + ".")
    return lines


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def alert_json(alert: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("rule", "state", "at_ms", "group", "value", "threshold", "condition", "window_ms", "severity")
    return {
        **{key: alert[key] for key in keys},
        "time": datetime.fromtimestamp(alert["at_ms"] / 1000, tz=UTC).isoformat(),
        "sample_trace_ids": alert["sample_trace_ids"],
    }


def summary_json(result: BacktestResult) -> dict[str, Any]:
    return {
        "summary": {
            "rule": result.rule.name,
            "since_ms": result.since_ms,
            "until_ms": result.until_ms,
            "scanned": result.scanned,
            "matched": result.matched,
            "in_range": result.in_range,
            "truncated": result.truncated,
            "replay_from_ms": result.replay_from_ms,
            "fired": result.fired,
            "resolved": result.resolved,
            "firing_at_end": result.firing_at_end,
        }
    }
