"""Alert rules without a broker (issue 20): the rules file, each condition firing and resolving,
cooldown, group_by, revisions and replays, and windows surviving a restart through their records."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from tracestream.indexer.document import searched_fields
from tracestream.schemas.samples import completed_trace
from tracestream.stream.rules import (
    Mark,
    RuleEngine,
    RuleError,
    alert_key,
    facts_of,
    load_rules,
    parse_rules,
)
from tracestream.stream.windows import Totals, histogram_index, histogram_value

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
