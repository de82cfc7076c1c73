"""Delivering rule alerts to webhooks against the real broker (stream/delivery.py): a RuleAlert on
the alerts topic reaches a receiver on 127.0.0.1, signed, in both body formats; a receiver
answering 500 is retried and the alert dead-lettered with the reason; a private address without
allow_private is never contacted; a deliverer stopped mid-retry commits nothing and its successor
delivers with the same delivery id; a bad webhook table stops `tracestream alerts deliver`."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from commands import run_tracestream
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from waiting import wait_until

from tracestream import schemas
from tracestream.settings import Settings
from tracestream.stream.delivery import AlertDelivery
from tracestream.stream.webhooks import DELIVERY_ID_HEADER, Webhook, delivery_id, verify_signature

SECRET = "delivery-test-secret"


def rule_alert(webhooks: list[str]) -> dict[str, Any]:
    return {
        "alert_id": uuid.uuid4().hex,
        "rule": "refund-tool-errors",
        "severity": "page",
        "state": "FIRING",
        "group": "support_agent",
        "condition": "ratio >= 5% of >= 20 traces over 5m",
        "value": 12.5,
        "threshold": 5.0,
        "window_ms": 300_000,
        "sample_trace_ids": [f"tr-{7:032x}"],
        "at_ms": 1_760_000_000_000,
        "webhooks": webhooks,
    }


def trace_alert() -> dict[str, Any]:
    return {
        "trace_id": f"tr-{1:032x}",
        "revision": 1,
        "trace_name": "support_agent",
        "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "0"},
        "request_time_ms": 1,
        "execution_duration_ms": 1,
        "failed_spans": [],
        "tags": {},
        "metadata": {},
        "alert_time_ms": 2,
    }


class Receiver:
    """An HTTP server on a free 127.0.0.1 port that records each POST and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def settings(kafka_settings: Settings, unique_topic: Callable[..., str], unique_name: str) -> Settings:
    topics = kafka_settings.topics.model_copy(
        update={"alerts": unique_topic(), "dead_letters": unique_topic()}
    )
    webhooks = kafka_settings.webhooks.model_copy(
        update={
            "group_id": f"{unique_name}-webhooks",
            "start_at": "earliest",
            "max_attempts": 3,
            "initial_backoff_s": 0.05,
            "max_backoff_s": 0.1,
            "max_elapsed_s": 10.0,
            "timeout_s": 5.0,
        }
    )
    return kafka_settings.model_copy(update={"topics": topics, "webhooks": webhooks})


def produce(settings: Settings, *records: tuple[str, dict[str, Any]]) -> list[bytes]:
    """Each (kind, record) encoded as the stream writes it; returns the values sent."""
    codecs = {"rule": schemas.rule_alerts_codec(), "trace": schemas.alerts_codec()}
    producer = Producer(settings.kafka.confluent_config())
    values = []
    for kind, record in records:
        value = codecs[kind].encode(record)
        producer.produce(settings.topics.alerts, key=b"refund-tool-errors|support_agent", value=value)
        values.append(value)
    assert producer.flush(10) == 0
    return values


class Running:
    """An AlertDelivery in a thread, stopped and joined on exit."""

    def __init__(self, settings: Settings, webhooks: dict[str, Webhook]) -> None:
        self.delivery = AlertDelivery(settings, webhooks)
        self.thread = threading.Thread(target=self.delivery.run, daemon=True)

    def __enter__(self) -> AlertDelivery:
        self.thread.start()
        return self.delivery

    def __exit__(self, *_: object) -> None:
        self.delivery.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the deliverer did not stop"


def dead_letters(settings: Settings, count: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    codec = schemas.dead_letters_codec()
    consumer = Consumer(settings.kafka.confluent_config({"group.id": f"reader-{uuid.uuid4().hex[:8]}"}))
    consumer.assign([TopicPartition(settings.topics.dead_letters, 0, OFFSET_BEGINNING)])
    found: list[dict[str, Any]] = []
    try:

        def read() -> bool:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append(codec.decode(message.value()))
            return len(found) >= count

        wait_until(read, timeout_s, f"{count} dead letter(s)", every_s=0)
    finally:
        consumer.close()
    return found


def committed_offset(settings: Settings) -> int:
    consumer = Consumer(settings.kafka.confluent_config({"group.id": settings.webhooks.group_id}))
    try:
        [partition] = consumer.committed([TopicPartition(settings.topics.alerts, 0)], timeout=10)
        return partition.offset
    finally:
        consumer.close()


def webhook(name: str, url: str, fmt: str = "json", allow_private: bool = True) -> Webhook:
    return Webhook(name, url, fmt, SECRET, "TEST_SECRET", allow_private)  # type: ignore[arg-type]


def test_a_rule_alert_reaches_the_receiver_signed_in_both_formats(
    settings: Settings, receiver: Receiver
) -> None:
    alert = rule_alert(["local", "chat"])
    produce(settings, ("trace", trace_alert()), ("rule", alert))
    webhooks = {
        "local": webhook("local", f"{receiver.base}/json"),
        "chat": webhook("chat", f"{receiver.base}/slack", "slack"),
    }

    with Running(settings, webhooks) as delivery:
        wait_until(lambda: len(receiver.requests) >= 2, 30, "two deliveries")
        wait_until(lambda: delivery.stats.delivered == 2, 10, "both counted")

    by_path = {path: (headers, body) for path, headers, body in receiver.requests}
    assert set(by_path) == {"/json", "/slack"}
    for name, path in (("local", "/json"), ("chat", "/slack")):
        headers, body = by_path[path]
        assert verify_signature(SECRET, headers, body) == delivery_id(alert["alert_id"], name)
    generic = json.loads(by_path["/json"][1])
    assert generic["action"] == "firing" and generic["data"]["alert_id"] == alert["alert_id"]
    assert generic["data"]["value"] == 12.5 and generic["data"]["group"] == "support_agent"
    slack = json.loads(by_path["/slack"][1])
    assert set(slack) == {"text", "blocks"} and "FIRING refund-tool-errors" in slack["text"]
    assert delivery.stats.skipped == {"wrong_type": 1}  # the TraceAlert beside it
    assert committed_offset(settings) == 2  # both records done, and committed at close


def test_a_receiver_answering_500_is_retried_then_the_alert_is_dead_lettered(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.status = 500
    alert = rule_alert(["local"])
    [value] = produce(settings, ("rule", alert))

    with Running(settings, {"local": webhook("local", f"{receiver.base}/hook")}):
        [letter] = dead_letters(settings, 1)

    assert len(receiver.requests) == settings.webhooks.max_attempts == 3
    assert {headers[DELIVERY_ID_HEADER] for _, headers, _ in receiver.requests} == {
        delivery_id(alert["alert_id"], "local")
    }
    assert letter["reason"] == "webhook_failed" and letter["consumer"] == "webhooks"
    assert "webhook 'local'" in letter["detail"] and "3 attempt(s)" in letter["detail"]
    assert "last HTTP 500" in letter["detail"]
    assert letter["value"] == value and letter["source_topic"] == settings.topics.alerts
    assert committed_offset(settings) == 1  # dead-lettered counts as done


def test_a_private_address_without_allow_private_is_dead_lettered_uncontacted(
    settings: Settings, receiver: Receiver
) -> None:
    produce(settings, ("rule", rule_alert(["inside", "missing"])))
    blocked = {"inside": webhook("inside", f"{receiver.base}/hook", allow_private=False)}

    with Running(settings, blocked):
        letters = dead_letters(settings, 2)

    assert receiver.requests == []
    assert sorted(letter["reason"] for letter in letters) == ["webhook_blocked", "webhook_unknown"]
    blocked_letter = next(letter for letter in letters if letter["reason"] == "webhook_blocked")
    assert "non-public address (127.0.0.1)" in blocked_letter["detail"]


def test_a_deliverer_stopped_mid_retry_commits_nothing_and_the_next_delivers_the_same_id(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.status = 503
    alert = rule_alert(["local"])
    produce(settings, ("rule", alert))
    slow = settings.model_copy(
        update={
            "webhooks": settings.webhooks.model_copy(
                update={
                    "max_attempts": 50,
                    "initial_backoff_s": 5.0,
                    "max_backoff_s": 5.0,
                    "max_elapsed_s": 300,
                }
            )
        }
    )
    webhooks = {"local": webhook("local", f"{receiver.base}/hook")}

    with Running(slow, webhooks):
        wait_until(lambda: receiver.requests, 30, "a first attempt")
    assert committed_offset(settings) < 0  # nothing committed: no offset stored

    receiver.status = 200
    with Running(settings, webhooks) as second:
        wait_until(lambda: second.stats.delivered == 1, 30, "the redelivery")

    ids = {headers[DELIVERY_ID_HEADER] for _, headers, _ in receiver.requests}
    assert ids == {delivery_id(alert["alert_id"], "local")}
    assert committed_offset(settings) == 1


def test_a_bad_webhook_table_stops_the_deliverer_at_start_with_its_name(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[webhook]]\nname = "oncall"\nurl = "http://10.1.2.3/hook"\nsecret_env = "TEST_HOOK_SECRET"\n'
    )
    env = {"PATH": "/usr/bin:/bin", "TEST_HOOK_SECRET": "x", "HOME": str(tmp_path)}

    result = run_tracestream("alerts", "deliver", "--rules-file", str(rules), env=env)

    assert result.returncode == 2
    assert "webhook 'oncall'" in result.stderr and "allow_private" in result.stderr
