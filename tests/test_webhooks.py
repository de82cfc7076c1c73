"""Webhooks of the alert rules without Kafka (stream/webhooks.py, delivery.py's sender,
receiver.py): the configuration and its refusals, the MLflow-style signature and its checks, the
two body formats, the SSRF check, retries against a local HTTP server, and the demo receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tracestream.stream.delivery import RetryPolicy, WebhookSender
from tracestream.stream.receiver import AlertReceiver, describe
from tracestream.stream.webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    Webhook,
    WebhookBlockedError,
    WebhookConfigError,
    check_destination,
    delivery_id,
    is_public_address,
    json_body,
    load_webhooks,
    parse_webhooks,
    render_body,
    sign,
    signed_headers,
    slack_body,
    verify_signature,
)

SECRET = "s3cret-for-tests"
ENV = {"HOOK_SECRET": SECRET}


def rule_alert(**changes: Any) -> dict[str, Any]:
    alert = {
        "alert_id": "5f1c0c3e9d5b4a7e8f00112233445566",
        "rule": "refund-tool-errors",
        "severity": "page",
        "state": "FIRING",
        "group": "support_agent",
        "condition": "ratio >= 5% of >= 20 traces over 5m",
        "value": 7.5,
        "threshold": 5.0,
        "window_ms": 300_000,
        "sample_trace_ids": [f"tr-{n:032x}" for n in range(3)],
        "at_ms": 1_760_000_000_000,
        "webhooks": ["local"],
    }
    alert.update(changes)
    return alert


def table(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "local",
        "url": "http://127.0.0.1:9099/alerts",
        "format": "json",
        "secret_env": "HOOK_SECRET",
        "allow_private": True,
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


# --- signing ------------------------------------------------------------------------------------


def test_the_signature_is_mlflows_scheme_over_id_timestamp_and_body() -> None:
    body = b'{"a":1}'
    headers = signed_headers(SECRET, "d-1", body, now_s=1_700_000_000)

    expected = hmac.new(SECRET.encode(), b'd-1.1700000000.{"a":1}', hashlib.sha256).digest()
    assert headers[SIGNATURE_HEADER] == "v1," + base64.b64encode(expected).decode()
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    assert headers[DELIVERY_ID_HEADER] == "d-1"
    assert verify_signature(SECRET, headers, body, now_s=1_700_000_010) == "d-1"


def test_header_names_are_case_insensitive_and_several_signatures_allow_rotation() -> None:
    body = b"{}"
    headers = {k.lower(): v for k, v in signed_headers(SECRET, "d-2", body).items()}
    headers["x-tracestream-signature"] = (
        f"{sign('old', 'd-2', headers['x-tracestream-timestamp'], body)} "
        + (headers["x-tracestream-signature"])
    )

    assert verify_signature(SECRET, headers, body) == "d-2"


@pytest.mark.parametrize(
    ("case", "secret", "body", "now_offset_s", "message"),
    [
        ("tampered body", SECRET, b'{"value":1}', 0, "does not match"),
        ("wrong secret", "another", b'{"value":0}', 0, "does not match"),
        ("stale timestamp (replay)", SECRET, b'{"value":0}', 301, "from now"),
        ("timestamp from the future", SECRET, b'{"value":0}', -301, "from now"),
    ],
)
def test_verification_rejects(case: str, secret: str, body: bytes, now_offset_s: float, message: str) -> None:
    sent_s = 1_700_000_000
    headers = signed_headers(SECRET, "d-3", b'{"value":0}', now_s=sent_s)

    with pytest.raises(SignatureError, match=message):
        verify_signature(secret, headers, body, tolerance_s=300, now_s=sent_s + now_offset_s)


def test_verification_rejects_missing_headers_and_a_bad_timestamp() -> None:
    headers = signed_headers(SECRET, "d-4", b"{}")
    for missing in (DELIVERY_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        with pytest.raises(SignatureError, match="missing"):
            verify_signature(SECRET, {k: v for k, v in headers.items() if k != missing}, b"{}")
    with pytest.raises(SignatureError, match="unix seconds"):
        verify_signature(SECRET, {**headers, TIMESTAMP_HEADER: "yesterday"}, b"{}")


def test_a_delivery_keeps_its_id_across_redeliveries_and_differs_per_webhook() -> None:
    assert delivery_id("a1", "local") == delivery_id("a1", "local")
    assert delivery_id("a1", "local") != delivery_id("a1", "slack")
    assert delivery_id("a1", "local") != delivery_id("a2", "local")


# --- bodies -------------------------------------------------------------------------------------


def test_the_json_body_is_shaped_like_mlflows_webhook_payload() -> None:
    body = json_body(rule_alert())

    assert body["entity"] == "rule_alert"
    assert body["action"] == "firing"
    assert body["timestamp"] == "2025-10-09T08:53:20.000Z"
    assert body["data"]["rule"] == "refund-tool-errors"
    assert body["data"]["group"] == "support_agent"
    assert body["data"]["value"] == 7.5
    assert body["data"]["sample_trace_ids"][0] == f"tr-{0:032x}"


def test_the_slack_body_has_text_and_blocks() -> None:
    body = slack_body(rule_alert(state="RESOLVED", group=None, window_ms=3_600_000))

    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith(":white_check_mark: RESOLVED refund-tool-errors (page)")
    assert "over 1h" in body["text"]
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "RESOLVED: refund-tool-errors"},
    }
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert "*Value*\n7.5" in fields and "*Window*\n1h" in fields
    assert not any(f.startswith("*Group*") for f in fields)
    assert body["blocks"][2]["elements"][0]["text"].startswith("Sample traces: `tr-")


def test_render_body_follows_the_webhooks_format() -> None:
    slack = Webhook("s", "https://hooks.example.com/x", "slack", SECRET, "HOOK_SECRET")
    generic = Webhook("g", "https://hooks.example.com/x", "json", SECRET, "HOOK_SECRET")

    assert "blocks" in json.loads(render_body(slack, rule_alert()))
    assert json.loads(render_body(generic, rule_alert()))["entity"] == "rule_alert"


# --- configuration ------------------------------------------------------------------------------


def test_a_rules_file_gives_its_webhooks(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[webhook]]\nname = "local"\nurl = "http://127.0.0.1:9099/alerts"\nformat = "json"\n'
        'secret_env = "HOOK_SECRET"\nallow_private = true\n\n'
        '[[webhook]]\nname = "slack"\nurl = "https://hooks.slack.com/services/T/B/X"\nformat = "slack"\n'
        'secret_env = "HOOK_SECRET"\n\n'
        '[[rule]]\nname = "r"\nfilter = "status = \'ERROR\'"\nwebhooks = ["local"]\n'
    )

    webhooks = load_webhooks(path, ENV, resolve=False)

    assert sorted(webhooks) == ["local", "slack"]
    assert webhooks["local"].allow_private and webhooks["local"].port == 9099
    assert webhooks["slack"].format == "slack" and not webhooks["slack"].allow_private
    assert webhooks["slack"].secret == SECRET and SECRET not in repr(webhooks["slack"])


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ([table(url="ftp://127.0.0.1/x")], "webhook 'local': url must be an http"),
        ([table(url="http:///nohost")], "webhook 'local': url must be"),
        ([table(format="teams")], "webhook 'local': format must be one of"),
        ([table(secret_env=None)], "webhook 'local': secret_env must name"),
        ([table(secret_env="UNSET_SECRET")], "webhook 'local': the environment variable UNSET_SECRET"),
        ([table(allow_private="yes")], "webhook 'local': allow_private must be true or false"),
        ([table(secert_env="x")], "webhook 'local': unknown keys \\['secert_env'\\]"),
        ([table(), table()], "webhook 'local': defined twice"),
        ([table(name="")], "a \\[\\[webhook\\]\\] table without a name"),
        ([table(url="http://10.0.0.8/hook", allow_private=None)], "webhook 'local': .*non-public address"),
        ([table(url="http://169.254.169.254/latest", allow_private=False)], "webhook 'local': .*non-public"),
    ],
)
def test_a_bad_webhook_fails_with_its_name(tables: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(WebhookConfigError, match=message):
        parse_webhooks(tables, ENV)


def test_a_rules_file_that_is_not_toml_fails_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[[webhook]\nname=")

    with pytest.raises(WebhookConfigError, match="is not valid TOML"):
        load_webhooks(path, ENV)


# --- SSRF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.10", False),
        ("172.16.5.4", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("224.0.0.1", False),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_a_private_destination_is_refused_unless_allowed() -> None:
    blocked = Webhook("local", "http://127.0.0.1:9/x", "json", SECRET, "HOOK_SECRET", allow_private=False)
    allowed = Webhook("local", "http://127.0.0.1:9/x", "json", SECRET, "HOOK_SECRET", allow_private=True)

    with pytest.raises(WebhookBlockedError, match="allow_private"):
        check_destination(blocked)
    assert check_destination(allowed) == "127.0.0.1"


# --- the sender ---------------------------------------------------------------------------------


class Scripted:
    """A local HTTP server answering the statuses given, in order (the last one repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                scripted.requests.append((dict(self.headers.items()), body))
                status = scripted.statuses[min(len(scripted.requests), len(scripted.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"oops" if status >= 400 else b"done")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[Scripted] = []

    def make(statuses: list[int]) -> Scripted:
        servers.append(Scripted(statuses))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.02, max_backoff_s=0.05, max_elapsed_s=10, timeout_s=5)


def test_a_failing_answer_is_retried_with_the_same_delivery_id_until_it_passes(scripted: Any) -> None:
    server = scripted([500, 503, 200])
    webhook = Webhook("local", server.url, "json", SECRET, "HOOK_SECRET", allow_private=True)

    result = WebhookSender(FAST).send(webhook, rule_alert())

    assert result.delivered and result.attempts == 3 and result.status == 200
    ids = {headers[DELIVERY_ID_HEADER] for headers, _ in server.requests}
    assert ids == {delivery_id(rule_alert()["alert_id"], "local")}
    for headers, body in server.requests:
        verify_signature(SECRET, headers, body)


def test_retries_stop_at_max_attempts_with_the_last_status(scripted: Any) -> None:
    server = scripted([500])
    webhook = Webhook("local", server.url, "json", SECRET, "HOOK_SECRET", allow_private=True)

    result = WebhookSender(FAST).send(webhook, rule_alert())

    assert not result.delivered and result.attempts == 4 == len(server.requests)
    assert result.status == 500 and "HTTP 500" in result.describe()


def test_a_client_error_is_not_retried(scripted: Any) -> None:
    server = scripted([401])
    webhook = Webhook("local", server.url, "json", SECRET, "HOOK_SECRET", allow_private=True)

    result = WebhookSender(FAST).send(webhook, rule_alert())

    assert not result.delivered and result.attempts == 1 and result.status == 401


def test_retries_stop_at_max_elapsed(scripted: Any) -> None:
    server = scripted([503])
    webhook = Webhook("local", server.url, "json", SECRET, "HOOK_SECRET", allow_private=True)
    policy = RetryPolicy(max_attempts=100, initial_backoff_s=0.2, max_backoff_s=0.2, max_elapsed_s=0.5)

    started = time.monotonic()
    result = WebhookSender(policy).send(webhook, rule_alert())

    assert not result.delivered and 2 <= result.attempts <= 4
    assert time.monotonic() - started < 1.5


def test_a_refused_connection_is_retried_and_reported(scripted: Any) -> None:
    server = scripted([200])
    url = server.url
    server.close()  # nothing listens there any more
    webhook = Webhook("local", url, "json", SECRET, "HOOK_SECRET", allow_private=True)

    result = WebhookSender(FAST).send(webhook, rule_alert())

    assert not result.delivered and result.attempts == 4 and result.status is None
    assert "ConnectError" in (result.error or "")


def test_a_blocked_destination_is_never_contacted(scripted: Any) -> None:
    server = scripted([200])
    webhook = Webhook("local", server.url, "json", SECRET, "HOOK_SECRET", allow_private=False)

    result = WebhookSender(FAST).send(webhook, rule_alert())

    assert result.blocked and not result.delivered and result.attempts == 1
    assert server.requests == []


def test_stopping_interrupts_the_backoff(scripted: Any) -> None:
    server = scripted([500])
    webhook = Webhook("local", server.url, "json", SECRET, "HOOK_SECRET", allow_private=True)
    stop = threading.Event()
    policy = RetryPolicy(max_attempts=10, initial_backoff_s=5, max_backoff_s=5, max_elapsed_s=60)
    threading.Timer(0.3, stop.set).start()

    started = time.monotonic()
    result = WebhookSender(policy, stop).send(webhook, rule_alert())

    assert result.interrupted and not result.delivered and time.monotonic() - started < 3


# --- the receiver -------------------------------------------------------------------------------


def test_the_receiver_accepts_signed_deliveries_once_and_rejects_forged_ones() -> None:
    lines: list[str] = []
    webhook_body = render_body(Webhook("local", "http://x/", "json", SECRET, "E"), rule_alert())
    with AlertReceiver(SECRET, on_delivery=lambda r: lines.append(describe(r))) as receiver:
        headers = signed_headers(SECRET, "d-9", webhook_body)
        first = httpx.post(receiver.url, content=webhook_body, headers=headers)
        again = httpx.post(receiver.url, content=webhook_body, headers=headers)
        forged = httpx.post(
            receiver.url, content=webhook_body, headers=signed_headers("guess", "d-10", webhook_body)
        )

    assert (first.status_code, again.status_code, forged.status_code) == (200, 200, 401)
    assert lines[0].startswith("WEBHOOK FIRING refund-tool-errors [support_agent] (page)")
    assert lines[1].endswith("(redelivery, ignored)")
    assert lines[2].startswith("REJECTED delivery d-10: signature does not match")
    assert [r.verified for r in receiver.received] == [True, True, False]
