"""Delivering rule alerts to webhooks: `tracestream alerts deliver`.

A plain confluent-kafka consumer of the alerts topic, in a process of its own (the main job starts
one next to the stream worker). It is not a Faust agent in the worker: a webhook that is slow or
down would hold the worker's event loop for the length of its retries, or need its own queue and
executor there, and trace assembly must never wait on a receiver. As its own consumer group it
also scales and restarts apart from the stream.

Each ``RuleAlert`` record is POSTed, signed (:mod:`tracestream.stream.webhooks`), to every webhook
it names; failures are retried with exponential backoff; a delivery that still fails is
dead-lettered (reason ``webhook_failed``, the last status or error in the detail). A record's
offset is stored for commit only once each of its deliveries is delivered or dead-lettered
(librdkafka commits stored offsets), so a restart re-sends, with the same delivery ids, what was
in flight and loses nothing. ``TraceAlert`` records on the same topic are skipped.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from tracestream import schemas
from tracestream.admin import ensure_topics, kafka_client_logger, pipeline_topics
from tracestream.dead_letters import DeadLetterWriter
from tracestream.settings import Settings, WebhookSettings
from tracestream.stream.webhooks import (
    Webhook,
    WebhookBlockedError,
    check_destination,
    delivery_id,
    render_body,
    signed_headers,
)

logger = logging.getLogger(__name__)

CONSUMER_NAME = "webhooks"
POLL_S = 0.5
# Answers worth another attempt: timeouts, too early or too many, and server errors.
RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_elapsed_s: float = 120.0
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: WebhookSettings) -> RetryPolicy:
        return cls(
            settings.max_attempts,
            settings.initial_backoff_s,
            settings.max_backoff_s,
            settings.max_elapsed_s,
            settings.timeout_s,
        )

    def backoff_s(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based): exponential, capped, with
        jitter in its upper half so that deliverers restarted together do not retry in step."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class DeliveryResult:
    webhook: str
    delivery_id: str
    delivered: bool
    attempts: int
    elapsed_s: float
    status: int | None = None  # the last HTTP status answered, if any
    error: str | None = None  # the last failure, if any
    blocked: bool = False  # refused by the SSRF check
    interrupted: bool = False  # stopped before it could finish: neither delivered nor failed

    def describe(self) -> str:
        last = f"HTTP {self.status}" if self.status is not None else "no answer"
        if self.error:
            last = f"{last}: {self.error}"
        return f"{self.attempts} attempt(s) in {self.elapsed_s:.1f} s, last {last}"


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


class WebhookSender:
    """POSTs one alert to one webhook, signed, with retries. Thread-safe."""

    def __init__(
        self,
        policy: RetryPolicy,
        stop: threading.Event | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.policy = policy
        self._stop = stop or threading.Event()
        # No proxies from the environment (the SSRF check must see the real destination) and no
        # redirects (one could point at a private address).
        self._client = client or httpx.Client(
            timeout=policy.timeout_s, trust_env=False, follow_redirects=False
        )

    def close(self) -> None:
        self._client.close()

    def _attempt(self, webhook: Webhook, delivery: str, body: bytes) -> httpx.Response:
        # Connect to the address the SSRF check approved, not to the name again (DNS rebinding);
        # the Host header and TLS's server name stay the webhook's host, so certificates verify.
        address = check_destination(webhook)
        url = httpx.URL(webhook.url)
        headers = signed_headers(webhook.secret, delivery, body)
        headers["Host"] = url.netloc.decode("ascii")
        extensions = {"sni_hostname": webhook.host} if url.scheme == "https" else {}
        return self._client.post(
            url.copy_with(host=address), content=body, headers=headers, extensions=extensions
        )

    def send(self, webhook: Webhook, alert: Mapping[str, Any]) -> DeliveryResult:
        body = render_body(webhook, alert)
        delivery = delivery_id(alert["alert_id"], webhook.name)
        policy = self.policy
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        attempts = 0

        def result(**outcome: Any) -> DeliveryResult:
            return DeliveryResult(
                webhook.name, delivery, attempts=attempts, elapsed_s=time.monotonic() - started,
                status=status, error=error, **outcome,
            )  # fmt: skip

        while True:
            attempts += 1
            retry_after: float | None = None
            try:
                response = self._attempt(webhook, delivery, body)
            except WebhookBlockedError as exc:
                error = str(exc)
                return result(delivered=False, blocked=True)
            except (httpx.TransportError, OSError) as exc:  # refused, timed out, DNS: may pass
                error = f"{type(exc).__name__}: {exc}"
            else:
                status, error = response.status_code, None
                if response.is_success:
                    return result(delivered=True)
                error = response.text[:200] or response.reason_phrase
                if status not in RETRYABLE_STATUS and status < 500:
                    return result(delivered=False)  # 3xx/4xx: a retry would get the same answer
                retry_after = _retry_after_s(response)
            wait_s = policy.backoff_s(attempts)
            if retry_after is not None:
                wait_s = min(max(wait_s, retry_after), policy.max_backoff_s)
            if attempts >= policy.max_attempts or time.monotonic() - started + wait_s > policy.max_elapsed_s:
                return result(delivered=False)
            logger.info("webhook %s: %s; retrying in %.1f s", webhook.name, error or f"HTTP {status}", wait_s)
            if self._stop.wait(wait_s):
                return result(delivered=False, interrupted=True)


@dataclass
class DeliveryStats:
    alerts: int = 0
    delivered: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # records that are no RuleAlert, by reason


class AlertDelivery:
    """The consumer: alerts topic in, webhook POSTs and dead letters out."""

    def __init__(
        self,
        settings: Settings,
        webhooks: Mapping[str, Webhook],
        sender: WebhookSender | None = None,
    ) -> None:
        self.settings = settings
        self.webhooks = dict(webhooks)
        self._stop = threading.Event()
        self.policy = RetryPolicy.from_settings(settings.webhooks)
        self.sender = sender or WebhookSender(self.policy, self._stop)
        registry = settings.kafka.schema_registry_url
        self._codec = schemas.rule_alerts_codec(registry, settings.topics.alerts)
        self.stats = DeliveryStats()
        self.ready = threading.Event()  # set once partitions are assigned (tests wait on it)
        self._consumer: Consumer | None = None
        self._dead_letters: DeadLetterWriter | None = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Consume until :meth:`stop` is called."""
        names = {self.settings.topics.alerts, self.settings.topics.dead_letters}
        ensure_topics(self.settings, [s for s in pipeline_topics(self.settings) if s.name in names])
        config = self.settings.webhooks
        policy = self.policy
        # One record may wait out every named webhook's retries before the next poll.
        busy_ms = int((policy.max_elapsed_s + policy.timeout_s) * 1000 * max(1, len(self.webhooks)))
        self._consumer = Consumer(
            self.settings.kafka.confluent_config(
                {
                    "group.id": config.group_id,
                    "auto.offset.reset": config.start_at,
                    # At least once: an offset is stored only once its record is done, and only
                    # stored offsets are committed (every 5 s, on revoke and on close).
                    "enable.auto.commit": True,
                    "enable.auto.offset.store": False,
                    "max.poll.interval.ms": max(300_000, busy_ms + 60_000),
                    "logger": kafka_client_logger,
                }
            )
        )
        self._dead_letters = DeadLetterWriter(self.settings, CONSUMER_NAME, {"logger": kafka_client_logger})
        self._consumer.subscribe([self.settings.topics.alerts], on_assign=self._on_assign)
        logger.info(
            "delivering rule alerts from %s to %d webhook(s): %s",
            self.settings.topics.alerts,
            len(self.webhooks),
            ", ".join(sorted(self.webhooks)) or "none",
        )
        try:
            while not self.stopping:
                message = self._consumer.poll(POLL_S)
                if message is None:
                    continue
                if message.error() is not None:
                    logger.debug("alerts topic: %s", message.error())
                    continue
                if self._handle(message):
                    self._consumer.store_offsets(message=message)
                else:
                    # Not finished (stopping mid-retry, or a dead letter not written): read it
                    # again, from here or by the next owner.
                    self._rewind(message)
        finally:
            self._consumer.close()  # commits the stored offsets
            self._dead_letters.close()
            self.sender.close()
            logger.info(
                "stopped: %d alerts, %d delivered, dead letters %s, skipped %s",
                self.stats.alerts,
                self.stats.delivered,
                dict(self.stats.dead_lettered),
                dict(self.stats.skipped),
            )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("assigned %s", [p.partition for p in partitions])
        self.ready.set()

    def _rewind(self, message: Message) -> None:
        assert self._consumer is not None
        try:
            self._consumer.seek(TopicPartition(message.topic(), message.partition(), message.offset()))
        except KafkaException as exc:
            logger.warning("cannot rewind %s[%d] (%s)", message.topic(), message.partition(), exc)
        self._stop.wait(1.0)

    def _handle(self, message: Message) -> bool:
        """Deliver one record; True once it is done with (delivered, dead-lettered or skipped)."""
        try:
            alert = self._codec.decode(message.value() or b"")
        except schemas.DecodeError as exc:
            # The alerts topic also carries TraceAlert records (a wrong_type here); they are not
            # ours to deliver or to dead-letter.
            self.stats.skipped[exc.reason.value] += 1
            if exc.reason != schemas.DecodeReason.WRONG_TYPE:
                logger.warning(
                    "skipped %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(), exc
                )
            return True
        self.stats.alerts += 1
        dead_letters = False
        for name in alert.get("webhooks") or []:
            webhook = self.webhooks.get(name)
            if webhook is None:
                self._dead_letter(message, "webhook_unknown", f"webhook {name!r} is not configured here")
                dead_letters = True
                continue
            result = self.sender.send(webhook, alert)
            if result.interrupted:
                return False
            if result.delivered:
                self.stats.delivered += 1
                logger.info(
                    "delivered %s %s to %s (%s)", alert["state"], alert["rule"], name, result.delivery_id
                )
                continue
            reason = "webhook_blocked" if result.blocked else "webhook_failed"
            self._dead_letter(
                message,
                reason,
                f"webhook {name!r} ({webhook.url}), delivery {result.delivery_id}: {result.describe()}",
            )
            dead_letters = True
        return not dead_letters or self._flush_dead_letters()

    def _dead_letter(self, message: Message, reason: str, detail: str) -> None:
        assert self._dead_letters is not None
        self._dead_letters.write(message, reason, detail)
        self.stats.dead_lettered[reason] += 1

    def _flush_dead_letters(self) -> bool:
        """Dead letters must be durable before the offset that carried them is stored."""
        assert self._dead_letters is not None
        if not self._dead_letters.flush():
            logger.error("dead letters not delivered; the alert will be read again")
            return False
        return True


def run_delivery(settings: Settings, webhooks: Mapping[str, Webhook]) -> None:
    """Run a deliverer in the foreground until SIGINT/SIGTERM."""
    delivery = AlertDelivery(settings, webhooks)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: delivery.stop())
    delivery.run()
