"""The RuleAlert record (issue 20): its fields, its place beside TraceAlert on the alerts topic."""

from __future__ import annotations

import uuid

import pytest

from tracestream import schemas
from tracestream.schemas import DecodeError, DecodeReason

RULE_ALERT = {
    "alert_id": uuid.uuid4().hex,
    "rule": "refund-tool-errors",
    "severity": "page",
    "state": "FIRING",
    "group": "mlflow.trace.user=user-7",
    "condition": "ratio >= 5% of >= 20 traces over 5m",
    "value": 0.08,
    "threshold": 0.05,
    "window_ms": 300_000,
    "sample_trace_ids": ["tr-" + "a" * 32, "tr-" + "b" * 32],
    "at_ms": 1_763_784_000_123,
    "webhooks": ["oncall", "slack-llm"],
}

TRACE_ALERT = {
    "trace_id": "tr-" + "c" * 32,
    "revision": 1,
    "trace_name": "support_agent",
    "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "0"},
    "request_time_ms": 1,
    "execution_duration_ms": 2,
    "failed_spans": [],
    "tags": {},
    "metadata": {},
    "alert_time_ms": 3,
}


def test_a_rule_alert_round_trips_with_exactly_the_agreed_fields() -> None:
    codec = schemas.rule_alerts_codec()
    fields = [f["name"] for f in codec.writer_schema.parsed["fields"]]

    assert fields == list(RULE_ALERT)
    assert codec.decode(codec.encode(RULE_ALERT)) == RULE_ALERT


@pytest.mark.parametrize("state", ["FIRING", "RESOLVED"])
def test_a_rule_alert_without_group_or_window(state: str) -> None:
    codec = schemas.rule_alerts_codec()
    alert = {**RULE_ALERT, "state": state, "group": None, "window_ms": None, "webhooks": []}

    assert codec.decode(codec.encode(alert)) == alert


def test_trace_alert_readers_refuse_rule_alerts_as_another_type_and_the_reverse() -> None:
    # The alerts topic carries both; each record names its writer schema, so a reader of one
    # type skips the other instead of misreading it.
    rule_bytes = schemas.rule_alerts_codec().encode(RULE_ALERT)
    trace_bytes = schemas.alerts_codec().encode(TRACE_ALERT)

    with pytest.raises(DecodeError) as refused:
        schemas.alerts_codec().decode(rule_bytes)
    assert refused.value.reason == DecodeReason.WRONG_TYPE
    with pytest.raises(DecodeError) as refused:
        schemas.rule_alerts_codec().decode(trace_bytes)
    assert refused.value.reason == DecodeReason.WRONG_TYPE
    assert schemas.alerts_codec().decode(trace_bytes) == TRACE_ALERT


def test_rule_alerts_register_under_their_own_subject_beside_trace_alerts() -> None:
    # The topic's <topic>-value subject holds TraceAlert; a second record type there would fail
    # the registry's compatibility check, so RuleAlert uses the record-name strategy.
    rule_codec = schemas.rule_alerts_codec("mock://test-rule-alert-subject", "team.alerts")

    rule_bytes = rule_codec.encode(RULE_ALERT)

    assert rule_bytes[0] == 0
    assert rule_codec._registry is not None
    assert rule_codec._registry.get_subjects() == ["team.alerts-io.tracestream.RuleAlert"]
    assert rule_codec.decode(rule_bytes) == RULE_ALERT
