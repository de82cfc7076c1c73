"""`tracestream alerts rules test RULE --since 24h` (issue 20, item 5): a rule of the rules file
replayed over indexed traces through a real search API process, printing when it would have
fired and resolved.

The traces of the last three hours: a healthy `support_agent` every five minutes, and two bursts
of six failed `refund_tool` calls ten seconds apart, 100 and 60 minutes ago, each after four
successful `refund_tool` calls in the four minutes before it."""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from searching.support import ApiProcess, running_api, write_traces
from tracestream.cli import app
from tracestream.schemas.records import CompletedTrace
from tracestream.schemas.samples import completed_trace
from tracestream.settings import Settings

MINUTE = 60_000
NOW = int(time.time() * 1000) // MINUTE * MINUTE
BURSTS = (NOW - 100 * MINUTE, NOW - 60 * MINUTE)
BURST_SIZE = 6
_RNG = random.Random(2020)

RULES = """
[[rule]]
name = "error-burst"
filter = "status = 'ERROR'"
condition = "count"
threshold = 5
window = "10m"
cooldown = "1m"

[[rule]]
name = "error-burst-quiet"
filter = "status = 'ERROR'"
condition = "count"
threshold = 5
window = "10m"
cooldown = "2h"

[[rule]]
name = "refund-error-rate"
filter = "status = 'ERROR'"
condition = "ratio"
threshold = 50
min_count = 2
window = "10m"
group_by = "name"
cooldown = "1m"

[[rule]]
name = "slow-agent"
filter = "name = 'support_agent'"
condition = "percentile"
percentile = 95
threshold = 60000
window = "10m"
"""


def _trace(end_ms: int, state: str, name: str, duration_ms: int = 1_000) -> CompletedTrace:
    trace = copy.deepcopy(completed_trace(_RNG, min_spans=1, max_spans=2, min_io_bytes=10, max_io_bytes=40))
    info = trace["info"]
    info["state"] = state
    info["request_time_ms"] = end_ms - duration_ms
    info["execution_duration_ms"] = duration_ms
    info["tags"] = {**info["tags"], "mlflow.traceName": name}
    trace["completed_time_ms"] = end_ms
    return trace


def _burst_errors(start_ms: int) -> list[CompletedTrace]:
    return [_trace(start_ms + n * 10_000, "ERROR", "refund_tool") for n in range(BURST_SIZE)]


def _traces() -> list[CompletedTrace]:
    traces = [_trace(NOW - 170 * MINUTE + n * 5 * MINUTE + 7_000, "OK", "support_agent") for n in range(34)]
    for start in BURSTS:
        traces += [_trace(start - k * MINUTE, "OK", "refund_tool") for k in range(1, 5)]
        traces += _burst_errors(start)
    return traces


TRACES = _traces()


def _nth_error_end(burst: int, n: int) -> int:
    """The end time of the n-th (1-based) failed call of a burst."""
    return BURSTS[burst] + (n - 1) * 10_000


def _since(minutes: int) -> str:
    """``--since`` reaching ``minutes`` before NOW (the data's clock, read when the module was
    imported): the suite may reach this module a quarter of an hour after collecting it."""
    elapsed = math.ceil((time.time() * 1000 - NOW) / MINUTE)
    return f"{minutes + elapsed}m"


@pytest.fixture(scope="module")
def api(opensearch: OpenSearch, settings: Settings) -> Iterator[ApiProcess]:
    write_traces(opensearch, settings, TRACES)
    with running_api(settings) as process:
        yield process


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.toml"
    path.write_text(RULES)
    return path


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["alerts", "rules", "test", *args])
    return result.exit_code, result.stdout, result.stderr


def _backtest(api: ApiProcess, rules_file: Path, rule: str, *args: str) -> tuple[list[dict], dict]:
    code, out, err = _cli(rule, "--rules", str(rules_file), "--url", api.base_url, "--json", *args)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines.pop()["summary"]
    return lines, summary


def _transitions(alerts: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(a["state"], a["at_ms"]) for a in alerts]


def test_a_burst_of_errors_fires_the_count_rule_at_its_fifth_error_and_resolves_once_the_window_slid_past(
    api: ApiProcess, rules_file: Path
) -> None:
    alerts, summary = _backtest(api, rules_file, "error-burst", "--since", _since(180))

    states = [a["state"] for a in alerts]
    assert states == ["FIRING", "RESOLVED", "FIRING", "RESOLVED"]
    for burst, (fired, resolved) in enumerate((alerts[0:2], alerts[2:4])):
        assert fired["at_ms"] == _nth_error_end(burst, 5)
        assert fired["value"] == 5 and fired["threshold"] == 5
        # Below five once the burst's second error left the 10-minute window (to one 30 s bucket).
        second = _nth_error_end(burst, 2)
        assert second + 10 * MINUTE <= resolved["at_ms"] <= second + 10 * MINUTE + 30_000
        assert resolved["value"] < 5
    assert summary["scanned"] == summary["matched"] == 2 * BURST_SIZE
    assert (summary["fired"], summary["resolved"], summary["truncated"]) == (2, 2, False)


def test_cooldown_keeps_the_second_burst_from_firing_again(api: ApiProcess, rules_file: Path) -> None:
    alerts, summary = _backtest(api, rules_file, "error-burst-quiet", "--since", _since(180))

    # The second burst, 40 minutes after the first fired, is inside the rule's 2 h cooldown.
    assert _transitions(alerts)[0] == ("FIRING", _nth_error_end(0, 5))
    assert [a["state"] for a in alerts] == ["FIRING", "RESOLVED"]
    assert summary["fired"] == 1


def test_a_ratio_rule_counts_every_trace_of_its_group_not_only_the_failed_ones(
    api: ApiProcess, rules_file: Path
) -> None:
    alerts, summary = _backtest(api, rules_file, "refund-error-rate", "--since", _since(180))

    firing = [a for a in alerts if a["state"] == "FIRING"]
    # Four successful calls precede each burst: 50 % is reached at the fourth error (4 of 8),
    # not at the second (min_count 2) as it would be if only failed calls were read.
    assert [(a["at_ms"], a["group"], a["value"]) for a in firing] == [
        (_nth_error_end(0, 4), "name=refund_tool", 50.0),
        (_nth_error_end(1, 4), "name=refund_tool", 50.0),
    ]
    assert [a["state"] for a in alerts] == ["FIRING", "RESOLVED", "FIRING", "RESOLVED"]
    assert summary["scanned"] == len(TRACES)
    assert summary["matched"] == 2 * BURST_SIZE


def test_since_leaves_out_the_traces_that_ended_before_it(api: ApiProcess, rules_file: Path) -> None:
    # 80 minutes back: the first burst (100 minutes ago) is out, the second (60) in.
    alerts, summary = _backtest(api, rules_file, "error-burst", "--since", _since(80))
    assert _transitions(alerts)[0] == ("FIRING", _nth_error_end(1, 5))
    assert summary["fired"] == 1 and summary["scanned"] == BURST_SIZE

    alerts, summary = _backtest(api, rules_file, "error-burst", "--since", _since(30))
    assert alerts == []
    assert (summary["scanned"], summary["fired"]) == (0, 0)


def test_a_rule_that_never_breaches_reports_the_traces_it_scanned_and_no_transition(
    api: ApiProcess, rules_file: Path
) -> None:
    alerts, summary = _backtest(api, rules_file, "slow-agent", "--since", _since(180))
    assert alerts == []
    assert summary["scanned"] == summary["matched"] == 34


def test_the_table_shows_each_transition_and_a_summary(api: ApiProcess, rules_file: Path) -> None:
    code, out, err = _cli(
        "error-burst", "--rules", str(rules_file), "--url", api.base_url, "--since", _since(180)
    )

    assert code == 0, err
    assert "Backtest of 'error-burst': count >= 5 over 10m" in out
    assert out.count("FIRING") == 2 and out.count("RESOLVED") == 2
    first = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(_nth_error_end(0, 5) / 1000))
    assert first in out
    assert "12 traces matching the filter scanned" in out
    assert "Would have fired 2 times and resolved 2 times." in out
    assert "TRUNCATED" not in out


def test_max_traces_replays_the_newest_traces_and_says_it_truncated(
    api: ApiProcess, rules_file: Path
) -> None:
    alerts, summary = _backtest(api, rules_file, "error-burst", "--since", _since(180), "--max-traces", "6")
    # The newest six matching traces: the second burst only.
    assert summary["truncated"] is True
    assert (summary["in_range"], summary["scanned"]) == (2 * BURST_SIZE, BURST_SIZE)
    assert summary["replay_from_ms"] == _nth_error_end(1, 1)
    assert _transitions(alerts)[0] == ("FIRING", _nth_error_end(1, 5))

    code, out, _ = _cli(
        "error-burst",
        "--rules",
        str(rules_file),
        "--url",
        api.base_url,
        "--since",
        _since(180),
        "--max-traces",
        "6",
    )
    assert code == 0
    assert "TRUNCATED: the range holds 12 traces matching the filter; only the newest 6" in out


def test_an_unknown_rule_exits_2_naming_the_rules_of_the_file(rules_file: Path) -> None:
    code, out, err = _cli("error-brust", "--rules", str(rules_file), "--url", "http://127.0.0.1:9")

    assert code == 2
    assert "no rule named 'error-brust'" in err
    assert "error-burst, error-burst-quiet, refund-error-rate, slow-agent" in err
    assert out == ""


def test_a_since_that_is_no_duration_exits_2(rules_file: Path) -> None:
    code, _, err = _cli("error-burst", "--rules", str(rules_file), "--since", "yesterday")
    assert code == 2
    assert "--since" in err


def test_an_unreachable_api_exits_1_with_the_reason(rules_file: Path) -> None:
    code, _, err = _cli("error-burst", "--rules", str(rules_file), "--url", "http://127.0.0.1:9")
    assert code == 1
    assert "unreachable" in err
