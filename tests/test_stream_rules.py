"""Alert rules without a broker (issue 20): the rules file, each condition firing and resolving,
cooldown, group_by, revisions and replays, and windows surviving a restart through their records."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tracestream.indexer.document import searched_fields
from tracestream.schemas.samples import completed_trace
from tracestream.stream.rules import (
    Mark,
    Outcome,
    RuleEngine,
    RuleError,
    Status,
    alert_key,
    facts_of,
    group_of,
    load_rules,
    parse_rules,
    window_key,
)
from tracestream.stream.windows import (
    GroupWindows,
    RunningTotals,
    Totals,
    Window,
    bucket_start,
    histogram_index,
    histogram_value,
    merge,
)

T0 = 1_800_000_000_000
_RNG = random.Random(20)


def trace(
    n: int,
    state: str = "OK",
    user: str = "user-1",
    name: str = "support_agent",
    duration_ms: int = 100,
    tokens: int = 10,
    revision: int = 1,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    base = completed_trace(_RNG, min_spans=1, max_spans=2, min_io_bytes=10, max_io_bytes=40)
    t = copy.deepcopy(base)
    t["trace_id"] = f"tr-{n:032x}"
    t["revision"] = revision
    info = t["info"]
    info["trace_id"] = t["trace_id"]
    info["state"] = state
    info["execution_duration_ms"] = duration_ms
    info["tags"] = {"mlflow.traceName": name, **(tags or {})}
    info["metadata"] = {
        **{k: v for k, v in info["metadata"].items() if k != "mlflow.trace.tokenUsage"},
        "mlflow.trace.user": user,
        "mlflow.trace.tokenUsage": json.dumps(
            {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens}
        ),
    }
    return t


def engine(toml_rules: str) -> RuleEngine:
    import tomllib

    return RuleEngine(parse_rules(tomllib.loads(toml_rules)).rules)


class Feed:
    """Feeds traces to an engine as the worker does: a mark kept per trace."""

    def __init__(self, rules: str) -> None:
        self.engine = engine(rules)
        self.marks: dict[str, Mark | None] = {}
        self.alerts: list[dict[str, Any]] = []

    def send(self, t: dict[str, Any], now_ms: int, partition: int = 0) -> list[dict[str, Any]]:
        outcome, mark = self.engine.observe(
            facts_of(t), searched_fields(t, 131_072), partition, now_ms, self.marks.get(t["trace_id"])
        )
        self.marks[t["trace_id"]] = mark
        self.alerts.extend(outcome.alerts)
        return outcome.alerts

    def tick(self, now_ms: int) -> list[dict[str, Any]]:
        outcome = self.engine.tick(now_ms)
        self.alerts.extend(outcome.alerts)
        return outcome.alerts


ERRORS = "filter = \"attributes.status = 'ERROR'\""


# --- the rules file ---------------------------------------------------------------------------


def test_a_rules_file_loads_every_kind_of_rule(tmp_path: Any) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        f"""
[[webhook]]
name = "oncall"
url = "https://example.com/hook"
secret_env = "X"

[[rule]]
name = "errors"
{ERRORS}

[[rule]]
name = "error-rate"
filter = "span.name = 'refund' AND span.status = 'ERROR'"
condition = "ratio"
threshold = 5
min_count = 20
window = "5m"
group_by = "name"
cooldown = "10m"
severity = "page"
webhooks = ["oncall"]

[[rule]]
name = "slow"
filter = ""
condition = "percentile"
percentile = 99
threshold = 8000
window = "5m"

[[rule]]
name = "budget"
filter = "metadata.`mlflow.trace.user` LIKE 'user-%'"
condition = "sum"
field = "tokens"
threshold = 200000
window = "1h"
group_by = "metadata.mlflow.trace.user"
"""
    )
    rules = load_rules(path)

    assert [r.name for r in rules.rules] == ["errors", "error-rate", "slow", "budget"]
    assert rules.webhooks == ("oncall",)
    ratio = rules.rules[1]
    assert (ratio.window_ms, ratio.cooldown_ms, ratio.severity, ratio.webhooks) == (
        300_000,
        600_000,
        "page",
        ("oncall",),
    )
    assert ratio.describe() == "ratio >= 5% of >= 20 traces over 5m"
    assert rules.rules[2].describe() == "p99 execution_time_ms > 8000 ms over 5m"
    assert rules.rules[3].describe() == "sum of tokens > 200000 over 1h"


def test_a_filter_the_dsl_rejects_names_the_rule_with_the_dsls_message_and_caret() -> None:
    with pytest.raises(RuleError) as refused:
        parse_rules(
            {
                "rule": [
                    {"name": "ok", "filter": ""},
                    {"name": "broken", "filter": "attributes.status = ERROR"},
                ]
            }
        )

    message = str(refused.value)
    assert message.startswith("rule 'broken': filter: ")
    assert refused.value.rule == "broken"
    assert refused.value.highlight is not None and "^" in refused.value.highlight
    assert "attributes.status = ERROR" in message


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"name": "r", "filter": "", "condition": "count", "threshold": 3}, "needs a window"),
        ({"name": "r", "filter": "", "condition": "count", "window": "5m"}, "numeric threshold"),
        ({"name": "r", "filter": "", "condition": "median", "window": "5m"}, "condition must be one of"),
        ({"name": "r", "filter": "", "condition": "ratio", "window": "5m", "threshold": 500}, "percentage"),
        (
            {
                "name": "r",
                "filter": "",
                "condition": "percentile",
                "window": "5m",
                "threshold": 1,
                "percentile": 90,
            },
            "percentile must be",
        ),
        ({"name": "r", "filter": "", "condition": "count", "window": "soon", "threshold": 1}, "duration"),
        ({"name": "r", "filter": "", "group_by": "user"}, "group_by"),
        ({"name": "r", "filter": "", "webhooks": ["nowhere"]}, "undefined webhooks"),
        ({"name": "r", "filter": "", "colour": "red"}, "unknown keys"),
        ({"name": "r", "filter": "", "threshold": 3}, "no meaning"),
    ],
)
def test_a_bad_rule_is_refused_with_its_name(table: dict[str, Any], says: str) -> None:
    with pytest.raises(RuleError, match=says) as refused:
        parse_rules({"rule": [table]})
    assert str(refused.value).startswith("rule 'r': ")


def test_a_file_that_is_not_toml_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[[rule]\nname = 'x'\n")
    with pytest.raises(RuleError, match="not valid TOML"):
        load_rules(path)


def test_two_rules_with_one_name_are_refused() -> None:
    with pytest.raises(RuleError, match="defined twice"):
        parse_rules({"rule": [{"name": "a", "filter": ""}, {"name": "a", "filter": ""}]})


# --- conditions -------------------------------------------------------------------------------


def test_every_fires_on_each_matching_trace_outside_the_cooldown() -> None:
    feed = Feed(f'[[rule]]\nname = "errors"\n{ERRORS}\ncooldown = "1m"\n')

    assert feed.send(trace(1, "OK"), T0) == []
    [alert] = feed.send(trace(2, "ERROR"), T0 + 1000)
    assert (alert["state"], alert["group"], alert["sample_trace_ids"]) == ("FIRING", None, [f"tr-{2:032x}"])
    assert alert["condition"] == "every matching trace"
    assert feed.send(trace(3, "ERROR"), T0 + 30_000) == []  # within the cooldown
    assert [a["state"] for a in feed.send(trace(4, "ERROR"), T0 + 61_001)] == ["FIRING"]


def test_count_fires_at_the_threshold_and_resolves_once_when_the_window_slides() -> None:
    feed = Feed(f'[[rule]]\nname = "burst"\n{ERRORS}\ncondition = "count"\nthreshold = 3\nwindow = "1m"\n')

    assert feed.send(trace(1, "ERROR"), T0) == []
    assert feed.send(trace(2, "OK"), T0 + 1000) == []
    assert feed.send(trace(3, "ERROR"), T0 + 2000) == []
    [fired] = feed.send(trace(4, "ERROR"), T0 + 3000)
    assert (fired["state"], fired["value"], fired["threshold"], fired["window_ms"]) == (
        "FIRING",
        3.0,
        3.0,
        60_000,
    )
    assert len(fired["sample_trace_ids"]) == 3
    assert feed.send(trace(5, "ERROR"), T0 + 4000) == []  # still firing: no second alert
    assert feed.tick(T0 + 30_000) == []
    [resolved] = feed.tick(T0 + 64_000)  # the first errors left the window
    assert resolved["state"] == "RESOLVED"
    assert feed.tick(T0 + 70_000) == []  # resolved once


def test_ratio_needs_its_minimum_count_then_fires_and_resolves() -> None:
    feed = Feed(
        f'[[rule]]\nname = "rate"\n{ERRORS}\ncondition = "ratio"\n'
        'threshold = 20\nmin_count = 10\nwindow = "5m"\n'
    )

    for n in range(5):
        assert feed.send(trace(n, "ERROR"), T0 + n) == []  # 100 %, but only 5 traces
    for n in range(5, 9):
        assert feed.send(trace(n, "OK"), T0 + n) == []
    [fired] = feed.send(trace(9, "OK"), T0 + 9)
    assert fired["state"] == "FIRING" and fired["value"] == pytest.approx(50.0)
    assert fired["condition"] == "ratio >= 20% of >= 10 traces over 5m"
    for n in range(10, 40):
        alerts = feed.send(trace(n, "OK"), T0 + n)
        if alerts:
            break
    assert [a["state"] for a in alerts] == ["RESOLVED"]
    assert alerts[0]["value"] < 20


def test_percentile_of_execution_time_fires_above_the_threshold_and_resolves() -> None:
    feed = Feed(
        '[[rule]]\nname = "slow"\nfilter = "trace.name = \'support_agent\'"\ncondition = "percentile"\n'
        'percentile = 95\nthreshold = 1000\nwindow = "1m"\n'
    )

    for n in range(19):
        assert feed.send(trace(n, duration_ms=100), T0 + n) == []
    assert feed.send(trace(19, duration_ms=5000, name="other"), T0 + 19) == []  # does not match
    assert feed.send(trace(20, duration_ms=5000), T0 + 20) == []  # p95 of 20 is the 19th: 100 ms
    [fired] = feed.send(trace(21, duration_ms=5000), T0 + 21)
    assert fired["state"] == "FIRING" and fired["value"] == pytest.approx(5000, rel=0.05)
    [resolved] = feed.tick(T0 + 70_000)
    assert resolved["state"] == "RESOLVED"


def test_sum_of_tokens_per_user_fires_per_group() -> None:
    feed = Feed(
        '[[rule]]\nname = "budget"\nfilter = ""\ncondition = "sum"\nfield = "tokens"\nthreshold = 1000\n'
        'window = "1h"\ngroup_by = "metadata.mlflow.trace.user"\n'
    )

    assert feed.send(trace(1, user="user-7", tokens=600), T0) == []
    assert feed.send(trace(2, user="user-8", tokens=600), T0 + 1) == []
    [fired] = feed.send(trace(3, user="user-7", tokens=600), T0 + 2)
    assert (fired["group"], fired["value"]) == ("mlflow.trace.user=user-7", 1200.0)
    assert alert_key(fired) == b"budget|mlflow.trace.user=user-7"
    [other] = feed.send(trace(4, user="user-8", tokens=500), T0 + 3)
    assert other["group"] == "mlflow.trace.user=user-8"


def test_a_trace_without_the_group_key_does_not_count() -> None:
    feed = Feed(
        '[[rule]]\nname = "team"\nfilter = ""\ncondition = "count"\nthreshold = 1\nwindow = "1m"\n'
        'group_by = "tags.team"\n'
    )

    assert feed.send(trace(1), T0) == []
    [fired] = feed.send(trace(2, tags={"team": "care"}), T0 + 1)
    assert fired["group"] == "team=care"


def test_cooldown_holds_back_a_second_firing_of_the_same_group() -> None:
    feed = Feed(
        f'[[rule]]\nname = "burst"\n{ERRORS}\ncondition = "count"\nthreshold = 1\nwindow = "10s"\n'
        'cooldown = "1m"\n'
    )

    assert [a["state"] for a in feed.send(trace(1, "ERROR"), T0)] == ["FIRING"]
    assert [a["state"] for a in feed.tick(T0 + 25_000)] == ["RESOLVED"]
    assert feed.send(trace(2, "ERROR"), T0 + 30_000) == []  # breached again within the cooldown
    assert [a["state"] for a in feed.send(trace(3, "ERROR"), T0 + 61_000)] == ["FIRING"]


# --- revisions --------------------------------------------------------------------------------


def test_a_revision_that_changes_no_answer_changes_nothing_and_a_replay_is_ignored() -> None:
    feed = Feed(f'[[rule]]\nname = "burst"\n{ERRORS}\ncondition = "count"\nthreshold = 2\nwindow = "1m"\n')

    first = trace(1, "ERROR")
    assert feed.send(first, T0) == []
    assert feed.send(first, T0 + 10) == []  # replayed: not counted again
    assert feed.send(trace(1, "ERROR", revision=2), T0 + 20) == []  # same answer: not counted again
    [fired] = feed.send(trace(2, "ERROR"), T0 + 30)
    assert fired["value"] == 2.0


def test_a_revision_that_stops_matching_takes_the_trace_out_and_resolves() -> None:
    feed = Feed(f'[[rule]]\nname = "burst"\n{ERRORS}\ncondition = "count"\nthreshold = 2\nwindow = "1m"\n')

    feed.send(trace(1, "ERROR"), T0)
    [fired] = feed.send(trace(2, "ERROR"), T0 + 10)
    assert fired["state"] == "FIRING"
    [resolved] = feed.send(trace(2, "OK", revision=2), T0 + 20)
    assert (resolved["state"], resolved["value"]) == ("RESOLVED", 1.0)


def test_every_resolves_when_the_trace_it_fired_for_stops_matching() -> None:
    feed = Feed(f'[[rule]]\nname = "errors"\n{ERRORS}\n')

    assert [a["state"] for a in feed.send(trace(1, "ERROR"), T0)] == ["FIRING"]
    assert [a["state"] for a in feed.send(trace(1, "OK", revision=2), T0 + 5)] == ["RESOLVED"]


# --- state across a restart -------------------------------------------------------------------


def test_windows_and_status_come_back_from_their_records() -> None:
    rules = (
        f'[[rule]]\nname = "burst"\n{ERRORS}\ncondition = "count"\nthreshold = 3\nwindow = "1m"\n'
        'cooldown = "1h"\n'
    )
    feed = Feed(rules)
    table: dict[str, Any] = {}

    def write(outcome_dirty: set[str]) -> None:
        for key in outcome_dirty:
            table[key] = feed.engine.record_of(key)

    for n, partition in ((1, 0), (2, 3)):
        outcome, _ = feed.engine.observe(
            facts_of(trace(n, "ERROR")), searched_fields(trace(n, "ERROR"), 131_072), partition, T0 + n
        )
        write(outcome.dirty)
    restarted = engine(rules)
    for key, record in json.loads(json.dumps(table)).items():
        restarted.restore(key, record)
    t = trace(3, "ERROR")
    outcome, _ = restarted.observe(facts_of(t), searched_fields(t, 131_072), 1, T0 + 10)
    [fired] = outcome.alerts
    assert fired["value"] == 3.0  # the two partitions' windows and this one merged
    for key in outcome.dirty:
        table[key] = restarted.record_of(key)

    again = engine(rules)
    for key, record in json.loads(json.dumps(table)).items():
        again.restore(key, record)
    assert [a["state"] for a in again.tick(T0 + 70_000).alerts] == ["RESOLVED"]  # it knew it was firing


def test_the_latency_histogram_is_within_five_percent() -> None:
    for value in (1.0, 7.0, 120.0, 8_000.0, 3_600_000.0):
        assert histogram_value(histogram_index(value)) == pytest.approx(value, rel=0.05)
    totals = Totals(latency={histogram_index(v): 1 for v in range(1, 101)})
    totals.latency = {}
    for v in range(1, 101):
        i = histogram_index(v * 10.0)
        totals.latency[i] = totals.latency.get(i, 0) + 1
    assert totals.percentile(0.95) == pytest.approx(950, rel=0.05)
    assert totals.percentile(0.5) == pytest.approx(500, rel=0.05)


# --- the evaluator's running totals (the per-rule cost, issue 20) ------------------------------

WINDOW_MS = 10_000  # buckets of 1 s
_ALL = -(10**15)  # a "now" at which every bucket is live: merge() then totals every bucket


def _same_totals(running: Totals, merged: Totals) -> None:
    assert (running.matched, running.total, running.latency) == (merged.matched, merged.total, merged.latency)
    assert running.amount == pytest.approx(merged.amount, rel=1e-9, abs=1e-9)
    for q in (0.5, 0.95, 0.99):
        assert running.percentile(q) == merged.percentile(q)


_window_op = st.one_of(
    st.tuples(
        st.just("add"),
        st.integers(0, 2),  # partition
        st.integers(0, 30),  # bucket (seconds)
        st.booleans(),  # matched
        st.one_of(st.none(), st.sampled_from([5.0, 80.0, 81.0, 900.0, 12_000.0])),
        st.sampled_from([0.0, 1.0, 0.1, 457.0, 2.5e-3]),
        st.sampled_from([1, 1, 1, -1]),
    ),
    st.tuples(st.just("prune"), st.integers(0, 45)),
    st.tuples(st.just("restore"), st.integers(0, 2)),
    st.just(("drop_empty",)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_window_op, max_size=60))
def test_running_totals_equal_a_full_merge_after_random_adds_removals_prunes_and_restores(
    ops: list[tuple[Any, ...]],
) -> None:
    windows = GroupWindows(WINDOW_MS)
    now = T0
    for op in ops:
        if op[0] == "add":
            _, partition, second, matched, latency, amount, sign = op
            start = T0 + second * 1000
            if sign > 0 and op[1] % 2:
                windows.count(partition, start, matched, latency, amount, "t")
            else:
                windows.add(partition, start, matched, latency, amount, "t", sign)
        elif op[0] == "prune":
            now = max(now, T0 + op[1] * 1000)
            pruned = windows.prune(now)
            assert all(
                start + 1000 > now - WINDOW_MS for w in windows.partitions.values() for start in w.buckets
            )
            _same_totals(windows.totals, merge(windows.partitions.values(), now))
            assert len(set(pruned)) == len(pruned)
        elif op[0] == "restore" and op[1] in windows.partitions:
            record = json.loads(json.dumps(windows.partitions[op[1]].to_record()))
            windows.put(op[1], Window.from_record(record))
        elif op[0] == "drop_empty":
            windows.drop_empty()
        # Whatever happened, the running total is every bucket's.
        _same_totals(windows.totals, merge(windows.partitions.values(), _ALL))
        starts = [s for w in windows.partitions.values() for s in w.buckets]
        assert windows.oldest is None or not starts or windows.oldest <= min(starts)


class MergingEngine(RuleEngine):
    """The oracle: the engine as it was before it was made cheap, every rule in turn (its group,
    its filter, its contribution), and a group judged by merging every bucket of its partitions'
    windows."""

    def observe(
        self, facts: Any, document: Any, partition: int, now_ms: int, mark: Mark | None = None
    ) -> tuple[Any, Mark | None]:
        outcome = Outcome()
        if mark is not None and mark.get("r", 0) >= facts.revision:
            return outcome, mark
        before = (mark or {}).get("c", {})
        after = {}
        for rule in self.rules:
            old = before.get(rule.name)
            group = group_of(rule, facts)
            matched = group is not None and rule.predicate(document)
            new = None
            if group is not None and (matched or rule.condition == "ratio"):
                start = (
                    old[1]
                    if old is not None
                    else (bucket_start(now_ms, rule.window_ms) if rule.window_ms else 0)
                )
                at_partition = old[2] if old is not None else partition
                new = [group, start, at_partition, matched, facts.execution_time_ms, facts.amount(rule.field)]
            if new is not None:
                after[rule.name] = new
            if new == old:
                continue
            if rule.condition == "every":
                self._every(rule, facts, old, new, now_ms, outcome)
                continue
            touched: list[str] = []
            for contribution, sign in ((old, -1), (new, 1)):
                if contribution is None:
                    continue
                c_group, c_start, c_partition, c_matched, c_latency, c_amount = contribution
                window = self._group(rule, c_group).window(c_partition)
                window.add(c_start, c_matched, c_latency, c_amount, facts.trace_id, sign)  # no total
                outcome.dirty.add(window_key(rule.name, c_group, c_partition))
                if c_group not in touched:
                    touched.append(c_group)
            for g in touched:
                self._judge(rule, g, partition, now_ms, outcome)
        return outcome, ({"r": facts.revision, "c": after} if after else None)

    def tick(self, now_ms: int) -> Any:
        outcome = Outcome()
        for (name, group), windows in list(self.windows.items()):
            partitions = windows.partitions
            status = self.status.get((name, group))
            if status is not None and status.firing:
                at = self._status_partition.get((name, group), next(iter(partitions)))
                self._judge(self._by_name[name], group, at, now_ms, outcome)
            for partition, window in list(partitions.items()):
                if window.prune(now_ms):
                    outcome.dirty.add(window_key(name, group, partition))
                if not window.buckets:
                    del partitions[partition]
            if not partitions:
                del self.windows[(name, group)]
        return outcome

    def _judge(self, rule: Any, group: str, partition: int, now_ms: int, outcome: Any) -> None:
        windows = self.windows.get((rule.name, group))
        partitions = windows.partitions if windows is not None else {}
        for p, window in partitions.items():
            if window.prune(now_ms):
                outcome.dirty.add(window_key(rule.name, group, p))
        if windows is not None:  # this engine keeps no running total: the fast one's checks read it
            windows.totals = RunningTotals()
            for window in partitions.values():
                for bucket in window.buckets.values():
                    windows.totals.add_bucket(bucket)
        totals = merge(partitions.values(), now_ms)
        value = rule.value_of(totals)
        breached = rule.breached(totals, value)
        status = self.status.get((rule.name, group), Status())
        if breached and not status.firing:
            if status.fired_ms is not None and now_ms - status.fired_ms < rule.cooldown_ms:
                return
            self._set(rule, group, partition, Status(True, now_ms, now_ms), outcome)
            outcome.alerts.append(
                self._alert(rule, group, "FIRING", value or 0.0, now_ms, self._samples(windows))
            )
        elif not breached and status.firing:
            self._set(rule, group, partition, Status(False, status.fired_ms, now_ms), outcome)
            outcome.alerts.append(
                self._alert(rule, group, "RESOLVED", value or 0.0, now_ms, self._samples(windows))
            )


ORACLE_RULES = f"""
[[rule]]
name = "errors"
{ERRORS}
cooldown = "5s"

[[rule]]
name = "burst"
{ERRORS}
condition = "count"
threshold = 3
window = "10s"
cooldown = "4s"

[[rule]]
name = "burst-per-user"
{ERRORS}
condition = "count"
threshold = 2
window = "10s"
group_by = "metadata.mlflow.trace.user"
cooldown = "1s"

[[rule]]
name = "rate"
filter = "attributes.status='ERROR'"
condition = "ratio"
threshold = 40
min_count = 3
window = "10s"
group_by = "metadata.mlflow.trace.user"
cooldown = "2s"

[[rule]]
name = "rate-overall"
{ERRORS}
condition = "ratio"
threshold = 50
min_count = 4
window = "10s"
cooldown = "1s"

[[rule]]
name = "slow"
filter = "trace.name = 'support_agent'"
condition = "percentile"
percentile = 95
threshold = 1000
window = "20s"
cooldown = "1s"

[[rule]]
name = "tokens"
filter = ""
condition = "sum"
threshold = 1000
window = "10s"
group_by = "metadata.mlflow.trace.user"
cooldown = "1s"
"""

# A few traces built once (searched_fields is slow), reused under other ids and revisions.
_POOL = [
    (facts_of(t), searched_fields(t, 131_072))
    for t in (
        trace(900 + n, state, user, name, duration, tokens)
        for n, (state, user, name, duration, tokens) in enumerate(
            [
                ("ERROR", "user-1", "support_agent", 100, 400),
                ("OK", "user-1", "support_agent", 2000, 10),
                ("ERROR", "user-2", "support_agent", 5000, 700),
                ("OK", "user-2", "other", 50, 300),
                ("ERROR", "user-3", "other", 1500, 0),
                ("OK", "user-3", "support_agent", 80, 900),
            ]
        )
    )
]

_stream_event = st.one_of(
    st.tuples(st.just("trace"), st.integers(0, len(_POOL) - 1), st.integers(0, 2), st.integers(0, 3000)),
    st.tuples(st.just("revise"), st.integers(0, 40), st.integers(0, len(_POOL) - 1), st.integers(0, 3000)),
    st.tuples(st.just("replay"), st.integers(0, 40)),
    st.tuples(st.just("tick"), st.integers(0, 15_000)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_stream_event, min_size=1, max_size=50))
@example([("trace", 0, 0, 0), ("trace", 0, 1, 10), ("trace", 1, 2, 10)])  # a ratio fired by a non-match
def test_the_engine_sends_the_alerts_of_one_that_merges_every_bucket(events: list[tuple[Any, ...]]) -> None:
    import dataclasses
    import tomllib

    rules = parse_rules(tomllib.loads(ORACLE_RULES)).rules
    fast, oracle = RuleEngine(rules), MergingEngine(rules)
    marks: dict[str, tuple[Any, Any]] = {}
    sent: list[tuple[str, int, int]] = []  # trace id, revision, pool entry
    now = T0

    def strip(outcome: Any) -> list[dict[str, Any]]:
        return [{k: v for k, v in a.items() if k != "alert_id"} for a in outcome.alerts]

    def observe(trace_id: str, revision: int, pool: int, partition: int) -> None:
        facts, document = _POOL[pool]
        facts = dataclasses.replace(facts, trace_id=trace_id, revision=revision)
        fast_mark, oracle_mark = marks.get(trace_id, (None, None))
        got, fast_mark = fast.observe(facts, document, partition, now, fast_mark)
        want, oracle_mark = oracle.observe(facts, document, partition, now, oracle_mark)
        assert strip(got) == strip(want) and got.dirty == want.dirty and fast_mark == oracle_mark
        marks[trace_id] = (fast_mark, oracle_mark)

    for event in events:
        if event[0] == "trace":
            now += event[3]
            trace_id = f"tr-{len(sent):032x}"
            sent.append((trace_id, 1, event[2]))
            observe(trace_id, 1, event[1], event[2])
        elif event[0] in ("revise", "replay") and sent:
            trace_id, revision, partition = sent[event[1] % len(sent)]
            if event[0] == "revise":
                now += event[3]
                sent[event[1] % len(sent)] = (trace_id, revision + 1, partition)
                observe(trace_id, revision + 1, event[2], partition)
            else:
                observe(trace_id, revision, 0, partition)  # nothing: the mark knows it
        elif event[0] == "tick":
            now += event[1]
            got, want = fast.tick(now), oracle.tick(now)
            assert strip(got) == strip(want) and got.dirty == want.dirty
        for key, windows in fast.windows.items():
            _same_totals(windows.totals, merge(windows.partitions.values(), _ALL))
            assert fast.record_of(window_key(key[0], key[1], 0)) == oracle.record_of(
                window_key(key[0], key[1], 0)
            )


def test_rules_with_one_filter_share_its_predicate_and_it_runs_once_per_trace() -> None:
    rules = parse_rules(
        {
            "rule": [
                {"name": "a", "filter": "attributes.status = 'ERROR'"},
                {
                    "name": "b",
                    "filter": "attributes.status='ERROR'",
                    "condition": "count",
                    "threshold": 1,
                    "window": "1m",
                },
                {"name": "c", "filter": "attributes.status = 'OK'"},
            ]
        }
    ).rules
    assert rules[0].predicate is rules[1].predicate and rules[2].predicate is not rules[0].predicate
    engine = RuleEngine(rules)
    calls: list[int] = []
    shared = engine._predicates[0]
    engine._predicates[0] = lambda document: calls.append(1) or shared(document)
    t = trace(1, "ERROR")
    outcome, _ = engine.observe(facts_of(t), searched_fields(t, 131_072), 0, T0)
    assert sorted(a["rule"] for a in outcome.alerts) == ["a", "b"] and len(calls) == 1


def test_a_percentile_follows_the_histogram_when_it_changes() -> None:
    windows = GroupWindows(60_000)
    for n in range(19):
        windows.count(0, T0, True, 100.0, 0.0, f"t{n}")
    assert windows.totals.percentile(0.95) == pytest.approx(100, rel=0.05)
    windows.count(1, T0 + 3000, True, 5000.0, 0.0, "t19")
    windows.count(1, T0 + 3000, True, 5000.0, 0.0, "t20")
    assert windows.totals.percentile(0.95) == pytest.approx(5000, rel=0.05)
    assert windows.prune(T0 + 62_999) == []  # buckets of 3 s: the first leaves at 63 s
    assert windows.prune(T0 + 63_000) == [0]  # only the slow ones remain
    assert windows.totals.percentile(0.5) == pytest.approx(5000, rel=0.05)
    assert windows.prune(T0 + 70_000) == [1]
    assert windows.totals.percentile(0.5) is None and windows.oldest is None
