"""Alert rules: read from a TOML file, evaluated on completed traces, without Faust or a clock.

A rule is a filter in the search DSL (compiled once by the in-memory backend,
``indexer.predicate``), a condition, an optional group and a cooldown::

    [[rule]]
    name = "refund-tool-errors"
    filter = "span.name = 'refund' AND span.status = 'ERROR'"
    condition = "ratio"        # every | count | ratio | percentile | sum
    threshold = 5              # percent for ratio, ms for percentile
    min_count = 20
    window = "5m"
    group_by = "name"          # or "tags.<key>", "metadata.<key>"
    cooldown = "10m"
    severity = "page"
    webhooks = ["oncall"]      # names of [[webhook]] tables of the same file

:class:`RuleEngine` keeps each rule's windows per group and per events partition (the worker
stores them in a table whose changelog is partitioned like the events topic), and a firing
status per rule and group. :meth:`RuleEngine.observe` takes one revision of a completed trace and
:meth:`RuleEngine.tick` the passing of time; both return the alerts to send (``RuleAlert``
records) and the window keys to write back.

A trace counts once: the engine returns a *mark* of what it counted for the trace (group,
bucket, partition, value per rule), which the worker keeps with the trace and hands back with
its next revision. A revision that changes no rule's answer changes nothing; one that does takes
the old contribution out and puts the new one in, in the trace's first bucket. A replayed
revision (at least once) is recognized by its number and ignored.
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from tracestream.indexer.predicate import Predicate, compile_filter
from tracestream.search_api.dsl import FilterError, parse_filter
from tracestream.stream.windows import MAX_SAMPLES, GroupWindows, Totals, Window, bucket_width_ms

Condition = Literal["every", "count", "ratio", "percentile", "sum"]
CONDITIONS: tuple[str, ...] = ("every", "count", "ratio", "percentile", "sum")
PERCENTILES = (50, 95, 99)
SUM_FIELDS = ("tokens", "cost")
DEFAULT_COOLDOWN_MS = 5 * 60_000
DEFAULT_SEVERITY = "warning"
_KEYS = {
    "name",
    "filter",
    "condition",
    "threshold",
    "window",
    "min_count",
    "percentile",
    "field",
    "group_by",
    "cooldown",
    "severity",
    "webhooks",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


class RuleError(ValueError):
    """A rules file the worker cannot use; the message names the rule, and for a filter the DSL
    refuses, carries the DSL's message and a caret line under the offending token."""

    def __init__(self, rule: str | None, message: str, highlight: str | None = None) -> None:
        where = f"rule {rule!r}" if rule else "rules file"
        text = f"{where}: {message}"
        if highlight:
            text += "\n" + highlight
        super().__init__(text)
        self.rule = rule
        self.highlight = highlight


def parse_duration(value: object, rule: str, key: str) -> int:
    """``"5m"``, ``"30s"``, ``"1h"``, ``"2d"``, ``"500ms"`` or a number of seconds, in ms."""
    if isinstance(value, bool):
        raise RuleError(rule, f'{key} must be a duration such as "5m", got {value!r}')
    if isinstance(value, int | float):
        ms = int(value * 1000)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise RuleError(rule, f'{key} must be a duration such as "30s", "5m", "1h", got {value!r}')
        ms = int(float(match.group(1)) * _UNIT_MS[match.group(2)])
    if ms <= 0:
        raise RuleError(rule, f"{key} must be positive, got {value!r}")
    return ms


def format_duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Rule:
    name: str
    filter: str
    predicate: Predicate = field(repr=False, compare=False)
    condition: Condition
    threshold: float = 1.0
    window_ms: int | None = None
    min_count: int = 1
    percentile: int = 95
    field: str = "tokens"
    group_by: str | None = None
    cooldown_ms: int = DEFAULT_COOLDOWN_MS
    severity: str = DEFAULT_SEVERITY
    webhooks: tuple[str, ...] = ()

    @property
    def windowed(self) -> bool:
        return self.condition != "every"

    def describe(self) -> str:
        """The condition as the RuleAlert's ``condition`` says it."""
        over = f" over {format_duration(self.window_ms)}" if self.window_ms else ""
        if self.condition == "every":
            return "every matching trace"
        if self.condition == "count":
            return f"count >= {_number(self.threshold)}{over}"
        if self.condition == "ratio":
            return f"ratio >= {_number(self.threshold)}% of >= {self.min_count} traces{over}"
        if self.condition == "percentile":
            return f"p{self.percentile} execution_time_ms > {_number(self.threshold)} ms{over}"
        return f"sum of {self.field} > {_number(self.threshold)}{over}"

    def value_of(self, totals: Totals) -> float | None:
        """The rule's value over a group's window (None: nothing to judge yet)."""
        if self.condition == "count":
            return float(totals.matched)
        if self.condition == "ratio":
            return 100.0 * totals.matched / totals.total if totals.total else None
        if self.condition == "percentile":
            return totals.percentile(self.percentile / 100)
        return totals.amount

    def breached(self, totals: Totals, value: float | None) -> bool:
        if value is None:
            return False
        if self.condition in ("count", "ratio"):
            return value >= self.threshold and (self.condition != "ratio" or totals.total >= self.min_count)
        return value > self.threshold


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    webhooks: tuple[str, ...]  # the names the file's [[webhook]] tables define
    path: str | None = None


def _compile(text: str, compiled: dict[Any, Predicate]) -> Predicate:
    """The filter's predicate; rules whose filters parse to the same AST share one, so the engine
    evaluates it once per trace for all of them."""
    node = parse_filter(text) if text.strip() else None
    try:
        found = compiled.get(node)
    except TypeError:  # an AST that does not hash: compiled for this rule alone
        return compile_filter(node)
    if found is None:
        found = compiled[node] = compile_filter(node)
    return found


def _rule(
    table: Mapping[str, Any], webhooks: set[str], seen: set[str], compiled: dict[Any, Predicate] | None = None
) -> Rule:
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(None, "every [[rule]] needs a name (a non-empty string)")
    if name in seen:
        raise RuleError(name, "defined twice")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise RuleError(name, f"unknown keys {unknown} (known: {sorted(_KEYS)})")
    text = table.get("filter")
    if not isinstance(text, str):
        raise RuleError(name, "filter must be a filter string of the search language")
    try:
        # Parsed and compiled here, so a filter the search API would refuse never reaches a trace.
        predicate = _compile(text, {} if compiled is None else compiled)
    except FilterError as exc:
        raise RuleError(name, f"filter: {exc}", exc.highlight(text)) from exc
    condition = table.get("condition", "every")
    if condition not in CONDITIONS:
        raise RuleError(name, f"condition must be one of {list(CONDITIONS)}, got {condition!r}")
    kwargs: dict[str, Any] = {}
    if condition != "every":
        if "window" not in table:
            raise RuleError(name, f'a {condition} condition needs a window (such as "5m")')
        kwargs["window_ms"] = parse_duration(table["window"], name, "window")
        threshold = table.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise RuleError(name, f"a {condition} condition needs a numeric threshold, got {threshold!r}")
        kwargs["threshold"] = float(threshold)
    else:
        for key in ("window", "threshold", "min_count", "percentile", "field"):
            if key in table:
                raise RuleError(name, f"{key} has no meaning for the condition 'every'")
    if condition == "ratio":
        if not 0 < kwargs["threshold"] <= 100:
            raise RuleError(
                name, f"a ratio's threshold is a percentage in (0, 100], got {kwargs['threshold']:g}"
            )
        min_count = table.get("min_count", 1)
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise RuleError(name, f"min_count must be a positive integer, got {min_count!r}")
        kwargs["min_count"] = min_count
    elif "min_count" in table:
        raise RuleError(name, "min_count is for the condition 'ratio'")
    if condition == "percentile":
        percentile = table.get("percentile", 95)
        if percentile not in PERCENTILES:
            raise RuleError(name, f"percentile must be one of {list(PERCENTILES)}, got {percentile!r}")
        kwargs["percentile"] = percentile
    elif "percentile" in table:
        raise RuleError(name, "percentile is for the condition 'percentile'")
    if condition == "sum":
        sum_field = table.get("field", "tokens")
        if sum_field not in SUM_FIELDS:
            raise RuleError(name, f"field must be one of {list(SUM_FIELDS)}, got {sum_field!r}")
        kwargs["field"] = sum_field
    elif "field" in table:
        raise RuleError(name, "field is for the condition 'sum'")
    group_by = table.get("group_by")
    if group_by is not None and not (
        group_by == "name"
        or (
            isinstance(group_by, str)
            and group_by.partition(".")[0] in ("tags", "metadata")
            and group_by.partition(".")[2]
        )
    ):
        raise RuleError(name, f'group_by must be "name", "tags.<key>" or "metadata.<key>", got {group_by!r}')
    severity = table.get("severity", DEFAULT_SEVERITY)
    if not isinstance(severity, str) or not severity:
        raise RuleError(name, f"severity must be a non-empty string, got {severity!r}")
    names = table.get("webhooks", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RuleError(name, f"webhooks must be a list of webhook names, got {names!r}")
    undefined = [n for n in names if n not in webhooks]
    if undefined:
        defined = ", ".join(sorted(webhooks)) or "none"
        raise RuleError(
            name, f"names undefined webhooks {undefined} (the file's [[webhook]] tables: {defined})"
        )
    cooldown_ms = (
        parse_duration(table["cooldown"], name, "cooldown") if "cooldown" in table else DEFAULT_COOLDOWN_MS
    )
    return Rule(
        name=name,
        filter=text,
        predicate=predicate,
        condition=condition,
        group_by=group_by,
        cooldown_ms=cooldown_ms,
        severity=severity,
        webhooks=tuple(names),
        **kwargs,
    )


def parse_rules(data: Mapping[str, Any], path: str | None = None) -> RuleSet:
    """The rules of a parsed rules file; the first problem raises :class:`RuleError`, so a worker
    never runs with part of its rules."""
    unknown = sorted(set(data) - {"rule", "webhook"})
    if unknown:
        raise RuleError(
            None, f"unknown top-level keys {unknown} (a rules file has [[rule]] and [[webhook]] tables)"
        )
    tables = data.get("rule", [])
    hooks = data.get("webhook", [])
    if not isinstance(tables, list) or not isinstance(hooks, list):
        raise RuleError(None, "rule and webhook must be arrays of tables ([[rule]], [[webhook]])")
    # Only the names: the webhooks themselves (URL, secret, format) are the deliverer's
    # (stream/webhooks.py), which checks them when it starts.
    webhook_names = {h.get("name") for h in hooks if isinstance(h, dict) and isinstance(h.get("name"), str)}
    rules: list[Rule] = []
    seen: set[str] = set()
    compiled: dict[Any, Predicate] = {}
    for table in tables:
        if not isinstance(table, dict):
            raise RuleError(None, "each [[rule]] must be a table")
        rule = _rule(table, webhook_names, seen, compiled)
        seen.add(rule.name)
        rules.append(rule)
    return RuleSet(tuple(rules), tuple(sorted(webhook_names)), path)


def load_rules(path: str | Path) -> RuleSet:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(None, f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(None, f"{path} is not valid TOML: {exc}") from exc
    return parse_rules(data, str(path))


# --- the trace's facts ------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceFacts:
    """What the conditions and groups read of a completed trace (the filter reads its document)."""

    trace_id: str
    revision: int
    name: str | None
    tags: Mapping[str, str]
    metadata: Mapping[str, str]
    execution_time_ms: float | None
    tokens: float
    cost: float

    def amount(self, sum_field: str) -> float:
        return self.tokens if sum_field == "tokens" else self.cost


def _json_total(raw: str | None, key: str) -> float:
    if not raw:
        return 0.0
    try:
        value = json.loads(raw).get(key)
    except (ValueError, AttributeError):
        return 0.0
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def facts_of(trace: Mapping[str, Any]) -> TraceFacts:
    """A CompletedTrace's facts: MLflow's trace-level token usage and cost metadata."""
    info = trace["info"]
    metadata = info["metadata"]
    return TraceFacts(
        trace_id=trace["trace_id"],
        revision=trace["revision"],
        name=info["tags"].get("mlflow.traceName"),
        tags=info["tags"],
        metadata=metadata,
        execution_time_ms=info.get("execution_duration_ms"),
        tokens=_json_total(metadata.get("mlflow.trace.tokenUsage"), "total_tokens"),
        cost=_json_total(metadata.get("mlflow.trace.cost"), "total_cost"),
    )


def group_of(rule: Rule, facts: TraceFacts) -> str | None:
    """``"<key>=<value>"`` (e.g. ``mlflow.trace.user=user-7``), ``""`` without group_by, None when
    the trace has no value for the rule's group (it then does not count for the rule)."""
    spec = rule.group_by
    if spec is None:
        return ""
    if spec == "name":
        return None if facts.name is None else f"name={facts.name}"
    source, key = (facts.tags, spec[5:]) if spec.startswith("tags.") else (facts.metadata, spec[9:])
    value = source.get(key)
    return None if value is None else f"{key}={value}"


# --- evaluation -------------------------------------------------------------------------------


@lru_cache(maxsize=65_536)
def window_key(rule: str, group: str, partition: int) -> str:
    return json.dumps([rule, group, partition])


@dataclass
class Status:
    """A rule's firing status for one group."""

    firing: bool = False
    fired_ms: int | None = None  # when it last fired (the cooldown counts from it)
    changed_ms: int = 0  # when this status was decided (the newest wins when partitions merge)

    def to_list(self) -> list[Any]:
        return [self.firing, self.fired_ms, self.changed_ms]


@dataclass
class Outcome:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)  # window keys to write back


# What a trace counted for per rule: [group, bucket start, partition, matched, latency, amount].
Contribution = list[Any]
Mark = dict[str, Any]  # {"r": revision, "c": {rule name: Contribution}}


class RuleEngine:
    """The rules' windows and firing status, and their evaluation.

    Per trace, a rule costs little where it has nothing to count: each distinct filter is
    evaluated once for all the rules that share it (equal ASTs share a predicate, see
    :func:`parse_rules`), a trace a rule's filter does not match is skipped before its group is
    looked up (a ratio's denominator aside), a group is read once per ``group_by``, and judging a
    group reads its running total (:class:`~tracestream.stream.windows.GroupWindows`) rather than
    merging its buckets."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        self._by_name = {rule.name: rule for rule in self.rules}
        self.windows: dict[tuple[str, str], GroupWindows] = {}  # (rule, group) -> its windows
        self.status: dict[tuple[str, str], Status] = {}
        # Where each (rule, group)'s status is written: the partition whose record holds it.
        self._status_partition: dict[tuple[str, str], int] = {}
        slots: dict[int, int] = {}
        self._predicates: list[Predicate] = []
        # Per rule: (rule, its predicate's slot, is a ratio, is "every", its bucket width).
        self._plan: list[tuple[Rule, int, bool, bool, int]] = []
        for rule in self.rules:
            slot = slots.get(id(rule.predicate))
            if slot is None:
                slot = slots[id(rule.predicate)] = len(self._predicates)
                self._predicates.append(rule.predicate)
            width = bucket_width_ms(rule.window_ms) if rule.window_ms else 0
            self._plan.append((rule, slot, rule.condition == "ratio", rule.condition == "every", width))

    # -- persistence (a table of window key -> record) ------------------------------------------

    def record_of(self, key: str) -> dict[str, Any] | None:
        rule, group, partition = json.loads(key)
        windows = self.windows.get((rule, group))
        window = windows.partitions.get(partition) if windows is not None else None
        status = self.status.get((rule, group))
        record: dict[str, Any] = {"win": window.to_record()} if window is not None else {}
        if status is not None and self._status_partition.get((rule, group)) == partition:
            record["st"] = status.to_list()
        return record or None

    def restore(self, key: str, record: dict[str, Any] | None) -> None:
        """A record of the table, after a restart (the changelog recovered) or a rebalance."""
        rule, group, partition = json.loads(key)
        if rule not in self._by_name or record is None:
            return  # a rule removed from the file: its windows are left to expire
        if "win" in record:
            window = Window.from_record(record["win"])
            if window.window_ms == self._by_name[rule].window_ms:
                self._group(self._by_name[rule], group).put(partition, window)
        if "st" in record:
            firing, fired_ms, changed_ms = record["st"]
            current = self.status.get((rule, group))
            if current is None or changed_ms >= current.changed_ms:
                self.status[(rule, group)] = Status(bool(firing), fired_ms, int(changed_ms))
                self._status_partition[(rule, group)] = partition

    # -- traces ---------------------------------------------------------------------------------

    def observe(
        self,
        facts: TraceFacts,
        document: Mapping[str, Any],
        partition: int,
        now_ms: int,
        mark: Mark | None = None,
    ) -> tuple[Outcome, Mark | None]:
        """One revision of a completed trace (``document``: its searched fields) and what the
        engine counted for its earlier revisions; the alerts, and the trace's new mark (None:
        nothing to keep)."""
        outcome = Outcome()
        if mark is not None and mark.get("r", 0) >= facts.revision:
            return outcome, mark  # a replayed revision: already counted
        before: dict[str, Contribution] = (mark or {}).get("c", {})
        after: dict[str, Contribution] = {}
        matches: list[bool | None] = [None] * len(self._predicates)  # per distinct filter
        groups: dict[str | None, str | None] = {}  # per group_by
        latency = facts.execution_time_ms
        for rule, slot, ratio, every, width in self._plan:
            name = rule.name
            old = before.get(name) if before else None
            if old is None and not ratio:
                # Nothing counted for the trace yet: only a match can change the rule's answer.
                matched = matches[slot]
                if matched is None:
                    matched = matches[slot] = self._predicates[slot](document)
                if not matched:
                    continue
                spec = rule.group_by
                group = groups[spec] if spec in groups else groups.setdefault(spec, group_of(rule, facts))
                if group is None:
                    continue
            else:
                spec = rule.group_by
                group = groups[spec] if spec in groups else groups.setdefault(spec, group_of(rule, facts))
                if group is None:
                    matched = False
                else:
                    matched = matches[slot]
                    if matched is None:
                        matched = matches[slot] = self._predicates[slot](document)
            if old is None:
                if group is None:
                    continue  # not counted before, nor now
                # The trace counts for the rule for the first time: in the bucket of now.
                amount = facts.amount(rule.field)
                start = now_ms - now_ms % width if width else 0
                after[name] = [group, start, partition, matched, latency, amount]
                if every:
                    self._every(rule, facts, None, after[name], now_ms, outcome)
                    continue
                windows = self.windows.get((name, group))
                if windows is None:
                    windows = self.windows[(name, group)] = GroupWindows(rule.window_ms)  # type: ignore[arg-type]
                windows.count(partition, start, matched, latency, amount, facts.trace_id)
                outcome.dirty.add(window_key(name, group, partition))
                self._judge(rule, group, partition, now_ms, outcome, windows)
                continue
            new: Contribution | None = None
            if group is not None and (matched or ratio):
                new = [group, old[1], old[2], matched, latency, facts.amount(rule.field)]
                after[name] = new
            if new == old:
                continue  # this revision does not change the rule's answer for the trace
            if every:
                self._every(rule, facts, old, new, now_ms, outcome)
                continue
            touched: list[str] = []
            for contribution, sign in ((old, -1), (new, 1)):
                if contribution is None:
                    continue
                c_group, c_start, c_partition, c_matched, c_latency, c_amount = contribution
                self._group(rule, c_group).add(
                    c_partition, c_start, c_matched, c_latency, c_amount, facts.trace_id, sign
                )
                outcome.dirty.add(window_key(name, c_group, c_partition))
                if c_group not in touched:
                    touched.append(c_group)
            for g in touched:
                self._judge(rule, g, partition, now_ms, outcome)
        return outcome, ({"r": facts.revision, "c": after} if after else None)

    def _group(self, rule: Rule, group: str) -> GroupWindows:
        assert rule.window_ms is not None
        windows = self.windows.get((rule.name, group))
        if windows is None:
            windows = self.windows[(rule.name, group)] = GroupWindows(rule.window_ms)
        return windows

    def _every(
        self,
        rule: Rule,
        facts: TraceFacts,
        old: Contribution | None,
        new: Contribution | None,
        now_ms: int,
        outcome: Outcome,
    ) -> None:
        """Fires on each newly matching trace (outside the cooldown); a revision that stops
        matching resolves what the trace fired."""
        if new is not None:
            group, partition = new[0], new[2]
            status = self.status.get((rule.name, group), Status())
            if status.fired_ms is not None and now_ms - status.fired_ms < rule.cooldown_ms:
                return
            self._set(rule, group, partition, Status(True, now_ms, now_ms), outcome)
            outcome.alerts.append(self._alert(rule, group, "FIRING", 1.0, now_ms, [facts.trace_id]))
        elif old is not None:
            group, partition = old[0], old[2]
            status = self.status.get((rule.name, group))
            if status is not None and status.firing:
                self._set(rule, group, partition, Status(False, status.fired_ms, now_ms), outcome)
                outcome.alerts.append(self._alert(rule, group, "RESOLVED", 0.0, now_ms, [facts.trace_id]))

    def _set(self, rule: Rule, group: str, partition: int, status: Status, outcome: Outcome) -> None:
        key = (rule.name, group)
        previous = self._status_partition.get(key)
        if previous is not None and previous != partition:
            outcome.dirty.add(window_key(rule.name, group, previous))  # its record loses the status
        self.status[key] = status
        self._status_partition[key] = partition
        outcome.dirty.add(window_key(rule.name, group, partition))

    def _judge(
        self,
        rule: Rule,
        group: str,
        partition: int,
        now_ms: int,
        outcome: Outcome,
        windows: GroupWindows | None = None,
    ) -> None:
        """Fires or resolves the group on its window's value at ``now_ms`` (``windows``: the
        group's, when the caller has them at hand)."""
        if windows is None:
            windows = self.windows.get((rule.name, group))
        if windows is not None:
            oldest = windows.oldest
            if oldest is not None and oldest + windows.width <= now_ms - windows.window_ms:
                for p in windows.prune(now_ms):
                    outcome.dirty.add(window_key(rule.name, group, p))
            totals: Totals = windows.totals
        else:
            totals = Totals()
        value = rule.value_of(totals)
        breached = rule.breached(totals, value)
        status = self.status.get((rule.name, group))
        if breached and (status is None or not status.firing):
            if (
                status is not None
                and status.fired_ms is not None
                and now_ms - status.fired_ms < rule.cooldown_ms
            ):
                return  # fired for this group within the cooldown: not again yet
            self._set(rule, group, partition, Status(True, now_ms, now_ms), outcome)
            outcome.alerts.append(
                self._alert(rule, group, "FIRING", value or 0.0, now_ms, self._samples(windows))
            )
        elif not breached and status is not None and status.firing:
            self._set(rule, group, partition, Status(False, status.fired_ms, now_ms), outcome)
            outcome.alerts.append(
                self._alert(rule, group, "RESOLVED", value or 0.0, now_ms, self._samples(windows))
            )

    @staticmethod
    def _samples(windows: GroupWindows | None) -> list[str]:
        return windows.samples() if windows is not None else []

    def _alert(
        self, rule: Rule, group: str, state: str, value: float, now_ms: int, samples: list[str]
    ) -> dict[str, Any]:
        return {
            "alert_id": uuid.uuid4().hex,
            "rule": rule.name,
            "severity": rule.severity,
            "state": state,
            "group": group or None,
            "condition": rule.describe(),
            "value": float(value),
            "threshold": rule.threshold,
            "window_ms": rule.window_ms,
            "sample_trace_ids": samples[-MAX_SAMPLES:],
            "at_ms": now_ms,
            "webhooks": list(rule.webhooks),
        }

    # -- time -----------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> Outcome:
        """Windows slide without traces: a firing group whose value fell back resolves, and
        expired buckets are dropped."""
        outcome = Outcome()
        for (name, group), windows in list(self.windows.items()):
            rule = self._by_name[name]
            status = self.status.get((name, group))
            if status is not None and status.firing:
                self._judge(
                    rule,
                    group,
                    self._status_partition.get((name, group), next(iter(windows.partitions))),
                    now_ms,
                    outcome,
                )
            for partition in windows.prune(now_ms):
                outcome.dirty.add(window_key(name, group, partition))
            windows.drop_empty()  # their records keep the status alone, or go
            if not windows.partitions:
                del self.windows[(name, group)]
        return outcome


def alert_key(alert: Mapping[str, Any]) -> bytes:
    """The alerts topic's key of a RuleAlert: rule + "|" + group (empty without group_by)."""
    return f"{alert['rule']}|{alert['group'] or ''}".encode()
