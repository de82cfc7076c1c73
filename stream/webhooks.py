"""Webhooks of the alert rules: their configuration, the bodies sent, and the signature.

A rules file names webhooks in ``[[webhook]]`` tables next to its ``[[rule]]`` tables::

    [[webhook]]
    name = "local"
    url = "http://127.0.0.1:9099/alerts"
    format = "json"                 # or "slack": {"text": ..., "blocks": [...]}
    secret_env = "TRACESTREAM_DEMO_WEBHOOK_SECRET"
    allow_private = true            # else private and loopback addresses are refused (SSRF)

Deliveries are signed the way MLflow signs its webhooks (``mlflow/webhooks/delivery.py``), with
our header prefix: ``X-Tracestream-Delivery-Id``, ``X-Tracestream-Timestamp`` (unix seconds) and
``X-Tracestream-Signature: v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``.
:func:`verify_signature` is the receiver's side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import time
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

DELIVERY_ID_HEADER = "X-Tracestream-Delivery-Id"
TIMESTAMP_HEADER = "X-Tracestream-Timestamp"
SIGNATURE_HEADER = "X-Tracestream-Signature"
SIGNATURE_VERSION = "v1"
# How old a delivery's timestamp may be before a receiver treats it as a replay (MLflow's docs
# suggest five minutes).
DEFAULT_TOLERANCE_S = 300

WebhookFormat = Literal["json", "slack"]
FORMATS: tuple[str, ...] = ("json", "slack")
_KEYS = {"name", "url", "format", "secret_env", "allow_private"}
# Delivery ids are derived from the alert and the webhook, so that a redelivery (a retry, or the
# deliverer restarted before it committed) keeps its id and receivers can drop duplicates.
_DELIVERY_NAMESPACE = uuid.UUID("5d0c1f0e-3a43-4b8e-9a51-7f3f3b8f1c20")


class WebhookConfigError(ValueError):
    """A ``[[webhook]]`` table that cannot be used; the message starts with the webhook's name."""

    def __init__(self, name: str | None, message: str) -> None:
        where = f"webhook {name!r}" if name else "a [[webhook]] table without a name"
        super().__init__(f"{where}: {message}")
        self.name = name


class WebhookBlockedError(Exception):
    """The webhook's address is private, loopback or otherwise not public, and the webhook does
    not allow that (SSRF protection)."""


class SignatureError(ValueError):
    """A delivery whose signature does not verify, or whose timestamp is too old (a replay)."""


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    format: WebhookFormat
    secret: str = field(repr=False)
    secret_env: str
    allow_private: bool = False

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


# --- configuration ------------------------------------------------------------------------------


def parse_webhooks(
    tables: object, environ: Mapping[str, str] | None = None, resolve: bool = True
) -> dict[str, Webhook]:
    """The ``[[webhook]]`` tables of a rules file (TOML's list of tables), by name.

    Every problem raises :class:`WebhookConfigError` naming the webhook: a missing or duplicate
    name, an unknown key, a URL that is not http(s), an unknown format, a secret variable that is
    unset, or (with ``resolve``) a literal or resolved private address without ``allow_private``.
    """
    env = os.environ if environ is None else environ
    if tables is None:
        return {}
    if not isinstance(tables, list):
        raise WebhookConfigError(None, "webhook must be an array of tables ([[webhook]])")
    webhooks: dict[str, Webhook] = {}
    for table in tables:
        if not isinstance(table, dict):
            raise WebhookConfigError(None, "each [[webhook]] must be a table")
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise WebhookConfigError(None, "name must be a non-empty string")
        if name in webhooks:
            raise WebhookConfigError(name, "defined twice")
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise WebhookConfigError(name, f"unknown keys {unknown} (known: {sorted(_KEYS)})")
        url = table.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookConfigError(name, f"url must be an http:// or https:// URL with a host, got {url!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError on a port out of range
        except ValueError as exc:
            raise WebhookConfigError(name, f"url {url!r}: {exc}") from exc
        fmt = table.get("format", "json")
        if fmt not in FORMATS:
            raise WebhookConfigError(name, f"format must be one of {list(FORMATS)}, got {fmt!r}")
        secret_env = table.get("secret_env")
        if not isinstance(secret_env, str) or not secret_env:
            raise WebhookConfigError(name, "secret_env must name the environment variable holding the secret")
        secret = env.get(secret_env, "")
        if not secret:
            raise WebhookConfigError(name, f"the environment variable {secret_env} (its secret) is not set")
        allow_private = table.get("allow_private", False)
        if not isinstance(allow_private, bool):
            raise WebhookConfigError(name, f"allow_private must be true or false, got {allow_private!r}")
        webhook = Webhook(name, url, fmt, secret, secret_env, allow_private)
        if resolve:
            try:
                check_destination(webhook)
            except WebhookBlockedError as exc:
                raise WebhookConfigError(name, str(exc)) from exc
            except OSError:
                pass  # DNS down at start: checked again on every delivery
        webhooks[name] = webhook
    return webhooks


def load_webhooks(
    path: str | Path, environ: Mapping[str, str] | None = None, resolve: bool = True
) -> dict[str, Webhook]:
    """The webhooks of a rules file (its ``[[webhook]]`` tables; the rules are read elsewhere)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise WebhookConfigError(None, f"cannot read the rules file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise WebhookConfigError(None, f"the rules file {path} is not valid TOML: {exc}") from exc
    return parse_webhooks(data.get("webhook"), environ, resolve)


# --- SSRF: only public addresses unless allowed -------------------------------------------------


def is_public_address(address: str) -> bool:
    """Whether an IP address is globally routable: not private, loopback, link-local (cloud
    metadata at 169.254.169.254), shared, reserved, unspecified or multicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_destination(webhook: Webhook) -> str:
    """Resolves the webhook's host and returns the address to connect to.

    Unless the webhook allows private addresses, every address the name resolves to must be
    public (else :class:`WebhookBlockedError`). The sender connects to the address returned, not
    to the name again, so a DNS answer that changes between check and connection (rebinding)
    cannot reach a private address. Raises OSError when the name does not resolve."""
    infos = socket.getaddrinfo(webhook.host, webhook.port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not webhook.allow_private:
        private = [a for a in addresses if not is_public_address(a)]
        if private:
            raise WebhookBlockedError(
                f"{webhook.host} resolves to a non-public address ({', '.join(private)}); "
                "set allow_private = true to send to it"
            )
    return addresses[0]


# --- signing ------------------------------------------------------------------------------------


def delivery_id(alert_id: str, webhook_name: str) -> str:
    """The same id for every attempt and redelivery of one alert to one webhook."""
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, f"{alert_id}\x00{webhook_name}"))


def sign(secret: str, delivery: str, timestamp: int | str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<delivery>.<timestamp>.<body>">``, as MLflow signs."""
    content = f"{delivery}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signed_headers(secret: str, delivery: str, body: bytes, now_s: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now_s is None else now_s)
    return {
        "Content-Type": "application/json",
        DELIVERY_ID_HEADER: delivery,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, delivery, timestamp, body),
    }


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now_s: float | None = None,
) -> str:
    """Checks a delivery as a receiver gets it; returns its delivery id.

    Raises :class:`SignatureError` when a header is missing, the timestamp is further than
    ``tolerance_s`` from now (a replayed delivery), or no ``v1`` signature in the header matches
    the body (tampered, or another secret). Compare in constant time; header names are
    case-insensitive. Receivers should also drop delivery ids they have already handled."""
    lowered = {key.lower(): value for key, value in headers.items()}
    delivery = lowered.get(DELIVERY_ID_HEADER.lower())
    timestamp = lowered.get(TIMESTAMP_HEADER.lower())
    signatures = lowered.get(SIGNATURE_HEADER.lower())
    if not delivery or not timestamp or not signatures:
        raise SignatureError("missing delivery id, timestamp or signature header")
    try:
        sent_s = int(timestamp)
    except ValueError as exc:
        raise SignatureError(f"timestamp {timestamp!r} is not unix seconds") from exc
    now = time.time() if now_s is None else now_s
    if abs(now - sent_s) > tolerance_s:
        raise SignatureError(
            f"timestamp {sent_s} is {now - sent_s:.0f} s from now (tolerance {tolerance_s:g} s)"
        )
    expected = sign(secret, delivery, sent_s, body)
    # Several space-separated signatures are allowed, so a sender can rotate its secret.
    if not any(hmac.compare_digest(expected, given) for given in signatures.split()):
        raise SignatureError("signature does not match the body")
    return delivery


# --- bodies -------------------------------------------------------------------------------------


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The RuleAlert's fields as JSON values (the Avro enum may come as a string or an enum)."""
    state = alert["state"]
    return {
        "alert_id": alert["alert_id"],
        "rule": alert["rule"],
        "severity": alert["severity"],
        "state": getattr(state, "value", state),
        "group": alert.get("group"),
        "condition": alert["condition"],
        "value": alert["value"],
        "threshold": alert["threshold"],
        "window_ms": alert.get("window_ms"),
        "sample_trace_ids": list(alert.get("sample_trace_ids") or []),
        "at_ms": alert["at_ms"],
        "at": _iso(alert["at_ms"]),
        "webhooks": list(alert.get("webhooks") or []),
    }


def _number(value: float) -> str:
    return f"{value:.6g}"


def _window(window_ms: int | None) -> str:
    if not window_ms:
        return ""
    seconds = window_ms / 1000
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def summary(alert: Mapping[str, Any]) -> str:
    """One line: state, rule, severity, group, value against threshold, window."""
    data = _plain(alert)
    group = f" [{data['group']}]" if data["group"] else ""
    window = _window(data["window_ms"])
    over = f" over {window}" if window else ""
    return (
        f"{data['state']} {data['rule']}{group} ({data['severity']}): {data['condition']}: "
        f"value {_number(data['value'])}, threshold {_number(data['threshold'])}{over}"
    )


def json_body(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The generic body, shaped like MLflow's webhook payload: entity, action, timestamp, data."""
    data = _plain(alert)
    return {
        "entity": "rule_alert",
        "action": str(data["state"]).lower(),
        "timestamp": data["at"],
        "data": data,
    }


def slack_body(alert: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` (the notification's fallback) and Block Kit blocks."""
    data = _plain(alert)
    firing = data["state"] == "FIRING"
    icon = ":rotating_light:" if firing else ":white_check_mark:"
    text = f"{icon} {summary(alert)}"
    fields = [
        {"type": "mrkdwn", "text": f"*Rule*\n{data['rule']}"},
        {"type": "mrkdwn", "text": f"*Severity*\n{data['severity']}"},
        {"type": "mrkdwn", "text": f"*Value*\n{_number(data['value'])}"},
        {"type": "mrkdwn", "text": f"*Threshold*\n{_number(data['threshold'])}"},
    ]
    if data["group"]:
        fields.append({"type": "mrkdwn", "text": f"*Group*\n{data['group']}"})
    if data["window_ms"]:
        fields.append({"type": "mrkdwn", "text": f"*Window*\n{_window(data['window_ms'])}"})
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{data['state']}: {data['rule']}"[:150]},
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{icon} `{data['condition']}`"},
            "fields": fields,
        },
    ]
    samples = data["sample_trace_ids"][:5]
    if samples:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "Sample traces: " + ", ".join(f"`{t}`" for t in samples)}
                ],
            }
        )
    return {"text": text, "blocks": blocks}


def render_body(webhook: Webhook, alert: Mapping[str, Any]) -> bytes:
    body = slack_body(alert) if webhook.format == "slack" else json_body(alert)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
