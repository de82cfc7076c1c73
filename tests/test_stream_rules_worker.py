"""Alert rules in a real stream worker against the broker (issue 20): each condition fires and each
windowed one resolves, as RuleAlert records on the alerts topic beside the built-in TraceAlerts;
a worker SIGKILLed mid-window is replaced by one that keeps the window (the alert fires once);
the cooldown holds back a second firing of a rule that resolved and breached again; and a rules
file with a bad filter stops the worker at start with the rule's name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from stream_harness import (
    EventSender,
    TopicReader,
    WorkerProcess,
    create_topics,
    delete_all_topics,
    rag_trace,
    send_trace,
    settings_env,
    stream_settings,
)

from tracestream import schemas
from tracestream.settings import Settings

RULES = """
[[rule]]
name = "every-error"
filter = "attributes.status = 'ERROR'"

[[rule]]
name = "error-burst"
filter = "attributes.status = 'ERROR'"
condition = "count"
threshold = 3
window = "6s"
cooldown = "1h"

[[rule]]
name = "error-ratio"
filter = "span.type = 'CHAT_MODEL' AND span.status = 'ERROR'"
condition = "ratio"
threshold = 40
min_count = 5
window = "8s"
group_by = "name"

[[rule]]
name = "slow"
filter = "trace.name = 'support_agent'"
condition = "percentile"
percentile = 95
threshold = 500
window = "8s"

[[rule]]
name = "user-tokens"
filter = ""
condition = "sum"
field = "tokens"
threshold = 2000
window = "8s"
group_by = "metadata.mlflow.trace.user"
"""


class RuleAlerts:
    """Reads the alerts topic from the start; keeps the RuleAlerts and counts the TraceAlerts."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topics.alerts
        self.consumer = Consumer(
            settings.kafka.confluent_config(
                {"group.id": f"rules-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
            )
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
        self.rules = schemas.rule_alerts_codec()
        self.errors = schemas.alerts_codec()
        self.alerts: list[dict[str, Any]] = []
        self.keys: list[bytes] = []
        self.trace_alerts = 0
        self.trace_alert_records: list[dict[str, Any]] = []

    def _read(self) -> None:
        for message in self.consumer.consume(num_messages=500, timeout=0.5):
            if message.error() is not None:
                continue
            try:
                self.alerts.append(self.rules.decode(message.value()))
                self.keys.append(message.key())
            except schemas.DecodeError as exc:
                assert exc.reason == schemas.DecodeReason.WRONG_TYPE
                # the built-in alert, unchanged
                self.trace_alert_records.append(self.errors.decode(message.value()))
                self.trace_alerts += 1

    def wait_for(self, rule: str, state: str, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for alert in self.alerts:
                if alert["rule"] == rule and alert["state"] == state:
                    return alert
            self._read()
        raise AssertionError(f"no {state} alert of {rule} within {timeout_s}s; read {self.alerts}")

    def wait_for_trace_alert(self, trace_id: str, timeout_s: float = 60) -> dict[str, Any]:
        """The built-in TraceAlert of an ERROR trace: its ``alert_time_ms`` is the moment the
        worker evaluated the rules on the trace (the same clock reading)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for alert in self.trace_alert_records:
                if alert["trace_id"] == trace_id:
                    return alert
            self._read()
        raise AssertionError(f"no TraceAlert of {trace_id} within {timeout_s}s")

    def read_for(self, seconds: float) -> None:
        """Reads whatever else arrives for ``seconds`` (to see that an alert does not)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read()

    def states(self, rule: str) -> list[str]:
        return [a["state"] for a in self.alerts if a["rule"] == rule]

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture(scope="module")
def rules_pipeline(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, WorkerProcess]]:
    name = f"rules-{uuid.uuid4().hex[:8]}"
    rules_file = tmp_path_factory.mktemp("rules") / "rules.toml"
    rules_file.write_text(RULES)
    settings = stream_settings(
        kafka_settings, name, tmp_path_factory.mktemp("stream"), rules_file=str(rules_file)
    )
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path_factory.mktemp("logs") / "worker.log")
    try:
        yield settings, worker
    finally:
        worker.stop()
        delete_all_topics(settings)


def test_each_condition_fires_and_each_window_resolves(
    rules_pipeline: tuple[Settings, WorkerProcess],
) -> None:
    settings, worker = rules_pipeline
    sender = EventSender(settings)
    reader = RuleAlerts(settings)
    try:
        # Three failing and two fine traces of user u-77 (457 tokens and 900 ms each).
        for error in (True, True, True, False, False):
            _, spans, ended = rag_trace(error=error)
            send_trace(sender, spans, ended)
        sender.flush()

        every = reader.wait_for("every-error", "FIRING", 120)
        assert every["condition"] == "every matching trace" and len(every["sample_trace_ids"]) == 1
        burst = reader.wait_for("error-burst", "FIRING")
        assert (burst["value"], burst["threshold"], burst["window_ms"]) == (3.0, 3.0, 6000)
        assert len(burst["sample_trace_ids"]) == 3
        ratio = reader.wait_for("error-ratio", "FIRING")
        assert ratio["group"] == "name=support_agent" and ratio["value"] >= 40
        slow = reader.wait_for("slow", "FIRING")
        assert slow["value"] == pytest.approx(900, rel=0.05)
        tokens = reader.wait_for("user-tokens", "FIRING")
        assert tokens["group"] == "mlflow.trace.user=u-77" and tokens["value"] > 2000
        # No more traces: each window slides past them and each rule resolves, once.
        resolved = reader.wait_for("error-burst", "RESOLVED", 30)
        assert resolved["value"] < 3
        for rule in ("error-ratio", "slow", "user-tokens"):
            reader.wait_for(rule, "RESOLVED", 30)
        assert b"error-burst|" in reader.keys and b"user-tokens|mlflow.trace.user=u-77" in reader.keys
        assert reader.trace_alerts == 3  # today's TraceAlert for each ERROR trace stays
        reader.read_for(3)
        for rule in ("error-burst", "error-ratio", "slow", "user-tokens"):
            assert [a["state"] for a in reader.alerts if a["rule"] == rule] == ["FIRING", "RESOLVED"], rule
    except AssertionError:
        print(worker.log_tail())
        raise
    finally:
        reader.close()


def test_a_bad_rule_stops_the_worker_at_start_with_its_name(kafka_settings: Settings, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        '[[rule]]\nname = "fine"\nfilter = ""\n\n'
        '[[rule]]\nname = "typo-in-filter"\nfilter = "attributes.status = ERROR"\n'
    )
    settings = stream_settings(
        kafka_settings, f"badrules-{uuid.uuid4().hex[:8]}", tmp_path, rules_file=str(rules_file)
    )
    done = subprocess.run(
        [sys.executable, "-m", "tracestream", "stream", "worker"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert "rule 'typo-in-filter': filter: " in done.stderr
    assert "attributes.status = ERROR\n" in done.stderr and "^^^^^" in done.stderr
    assert "Traceback" not in done.stderr


# --- a worker SIGKILLed mid-window, and the cooldown ------------------------------------------


@contextmanager
def rules_worker_settings(
    kafka_settings: Settings, tmp_path: Path, prefix: str, rules: str
) -> Iterator[Settings]:
    """A pipeline of its own (topics, app id) whose workers read ``rules``; its topics go after."""
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(rules)
    settings = stream_settings(
        kafka_settings, f"{prefix}-{uuid.uuid4().hex[:8]}", tmp_path / "data", rules_file=str(rules_file)
    )
    create_topics(settings)
    try:
        yield settings
    finally:
        delete_all_topics(settings)


def _json(raw: bytes | None) -> Any:
    """A key or value of a JSON table's changelog (a key is a JSON string holding JSON)."""
    if raw is None:
        return None
    value = json.loads(raw)
    return json.loads(value) if isinstance(value, str) else value


def wait_until_counted(settings: Settings, rule: str, matched: int, timeout_s: float = 60) -> None:
    """Until the rule's window, as the ``rule_windows`` changelog holds it (latest record per key,
    summed over the events partitions), counts ``matched`` matching traces, and the worker has
    committed its offsets of the events topic up to the end: what a SIGKILL then loses is only
    what is in memory (the windows), and a replacement reads no event of those traces again."""
    app_id = settings.stream.app_id
    changelog = f"{app_id}-rule_windows-changelog"
    reader = Consumer(
        settings.kafka.confluent_config(
            {"group.id": f"counted-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        )
    )
    offsets = Consumer(settings.kafka.confluent_config({"group.id": app_id, "enable.auto.commit": False}))
    try:
        events = [TopicPartition(settings.topics.events, p) for p in range(settings.topics.events_partitions)]
        latest: dict[tuple[Any, ...], Any] = {}
        assigned = False
        counted = committed = ends = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not assigned:  # the worker creates its changelogs as it starts
                found = reader.list_topics(changelog, timeout=10).topics.get(changelog)
                if found is None or found.error is not None or not found.partitions:
                    time.sleep(0.5)
                    continue
                reader.assign(
                    [TopicPartition(changelog, p, OFFSET_BEGINNING) for p in sorted(found.partitions)]
                )
                assigned = True
            for message in reader.consume(num_messages=500, timeout=0.5):
                if message.error() is None:
                    latest[tuple(_json(message.key()))] = _json(message.value())
            counted = sum(
                bucket[1]
                for (name, _group, _partition), record in latest.items()
                if name == rule and record is not None and "win" in record
                for bucket in record["win"]["b"]
            )
            ends = [offsets.get_watermark_offsets(tp, timeout=10)[1] for tp in events]
            committed = [tp.offset for tp in offsets.committed(events, timeout=10)]
            if counted == matched and all(
                c >= end or end == 0 for c, end in zip(committed, ends, strict=True)
            ):
                return
        raise AssertionError(f"{rule}: counted {counted} of {matched}; committed {committed} of {ends}")
    finally:
        reader.close()
        offsets.close()


KILL_RULES = """
[[rule]]
name = "burst"
filter = "attributes.status = 'ERROR'"
condition = "count"
threshold = 3
window = "2m"
cooldown = "1h"
"""


def send_traces(sender: EventSender, errors: list[bool]) -> list[str]:
    ids = []
    for error in errors:
        trace_id, spans, ended = rag_trace(error=error)
        send_trace(sender, spans, ended)
        ids.append(trace_id)
    sender.flush()
    return ids


def wait_until_emitted(completed: TopicReader, trace_ids: list[str], timeout_s: float = 120) -> None:
    completed.wait_for(lambda rs: set(trace_ids) <= {r["trace_id"] for r in rs}, timeout_s)


@pytest.mark.parametrize("checkpointed", [True, False], ids=["after-its-checkpoint", "before-its-checkpoint"])
def test_a_worker_killed_mid_window_is_replaced_by_one_that_keeps_the_window_and_fires_once(
    kafka_settings: Settings, tmp_path: Path, checkpointed: bool
) -> None:
    """Two of the three errors the rule needs, a SIGKILL, a new worker, the third error: one
    FIRING, with all three traces.

    ``after-its-checkpoint``: the window is in the rule_windows changelog and the offsets are
    committed past the traces, so only the restored window (``_restore_rules``) has them (the
    test fails without it). ``before-its-checkpoint``: killed as soon as the traces are emitted,
    nothing later came to checkpoint the rules, so the offsets were held back and the new worker
    reads the traces again and counts them once."""
    with rules_worker_settings(kafka_settings, tmp_path, "rules-kill", KILL_RULES) as settings:
        sender = EventSender(settings)
        reader = RuleAlerts(settings)
        completed = TopicReader(
            settings, settings.topics.completed, schemas.completed_codec(), f"kill-{uuid.uuid4().hex[:8]}"
        )
        first = WorkerProcess(settings, tmp_path / "worker-a.log")
        second: WorkerProcess | None = None
        try:
            before = send_traces(sender, [True, True])  # threshold - 1 matching traces
            wait_until_emitted(completed, before)
            if checkpointed:
                # The next record after stream.rules_checkpoint_s writes the rule state; a trace
                # that no rule counts then holds nothing back, so the commits pass all of it.
                time.sleep(settings.stream.rules_checkpoint_s + 0.5)
                send_traces(sender, [False])
                wait_until_counted(settings, "burst", 2, timeout_s=60)
            reader.read_for(1)
            assert reader.states("burst") == []  # 2 of 3: not yet
            first.kill()  # SIGKILL, mid-window

            second = WorkerProcess(settings, tmp_path / "worker-b.log")
            if not checkpointed:
                # The replayed traces go out again (the same revision) and are counted again.
                completed.wait_for(lambda rs: sum(r["trace_id"] in before for r in rs) >= 4, 120)
                reader.read_for(2)
                assert reader.states("burst") == []  # counted once: still 2 of 3
            [third] = send_traces(sender, [True])
            fired = reader.wait_for("burst", "FIRING", 120)
            assert (fired["value"], fired["threshold"]) == (3.0, 3.0)
            assert set(fired["sample_trace_ids"]) == {*before, third}
            reader.read_for(5)
            assert reader.states("burst") == ["FIRING"]  # once
        except AssertionError:
            print("--- worker a\n" + first.log_tail())
            if second is not None:
                print("--- worker b\n" + second.log_tail())
            raise
        finally:
            reader.close()
            completed.close()
            if second is not None:
                second.stop()
            first.stop()


COOLDOWN_MS = 12_000
COOLDOWN_RULES = f"""
[[rule]]
name = "every-error"
filter = "attributes.status = 'ERROR'"
cooldown = "{COOLDOWN_MS // 1000}s"

[[rule]]
name = "flap"
filter = "attributes.status = 'ERROR'"
condition = "count"
threshold = 1
window = "3s"
cooldown = "{COOLDOWN_MS // 1000}s"
"""


def test_the_cooldown_holds_back_a_second_firing_until_it_has_passed(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """Cooldown (stream/rules.py): a rule fires for a group at most once per cooldown, counted
    from its last firing; a breach within it sends nothing (a windowed rule then fires on the
    first trace that finds it breached after the cooldown)."""
    with rules_worker_settings(kafka_settings, tmp_path, "rules-cooldown", COOLDOWN_RULES) as settings:
        sender = EventSender(settings)
        reader = RuleAlerts(settings)
        worker = WorkerProcess(settings, tmp_path / "worker.log")

        def error_trace() -> str:
            trace_id, spans, ended = rag_trace(error=True)
            send_trace(sender, spans, ended)
            sender.flush()
            return trace_id

        try:
            error_trace()
            fired = reader.wait_for("flap", "FIRING", 120)
            reader.wait_for("every-error", "FIRING")
            reader.wait_for("flap", "RESOLVED", 15)  # the 3 s window slid past it
            assert reader.states("every-error") == ["FIRING"]

            within = reader.wait_for_trace_alert(error_trace())
            evaluated = within["alert_time_ms"] - fired["at_ms"]
            assert evaluated < COOLDOWN_MS, f"evaluated {evaluated} ms after firing: not within the cooldown"
            reader.read_for(2)
            assert reader.states("flap") == ["FIRING", "RESOLVED"]  # breached again: held back
            assert reader.states("every-error") == ["FIRING"]

            wait_s = (fired["at_ms"] + COOLDOWN_MS) / 1000 - time.time() + 0.5
            time.sleep(max(0.0, wait_s))
            after = reader.wait_for_trace_alert(error_trace())
            assert after["alert_time_ms"] - fired["at_ms"] >= COOLDOWN_MS
            reader.read_for(2)
            assert reader.states("flap") == ["FIRING", "RESOLVED", "FIRING"]
            assert reader.states("every-error") == ["FIRING", "FIRING"]
            again = [a for a in reader.alerts if a["rule"] == "flap"][-1]
            assert again["sample_trace_ids"][-1] == after["trace_id"]
        except AssertionError:
            print(worker.log_tail())
            raise
        finally:
            reader.close()
            worker.stop()
