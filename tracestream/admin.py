"""Creates the pipeline's Kafka topics, idempotently, with confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from tracestream.schemas.event_writer import MAX_RECORD_BYTES
from tracestream.settings import Settings

logger = logging.getLogger(__name__)


class TopicOutcome(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    # Exists, but with another partition count than configured. Never changed automatically:
    # adding partitions moves trace ids to other partitions and breaks per-trace ordering.
    PARTITIONS_DIFFER = "exists, partitions differ"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicReport:
    spec: TopicSpec
    outcome: TopicOutcome
    partitions: int


class AdminError(RuntimeError):
    """A topic could not be created or inspected."""


class KafkaUnreachableError(AdminError):
    """No broker answered at the configured bootstrap servers within the request timeout."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"Kafka is unreachable at {address}: {reason}")
        self.address = address
        self.reason = reason


# librdkafka errors that mean no broker could be reached (as opposed to a broker refusing).
_UNREACHABLE_CODES = frozenset(
    {KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
)


class _DebugLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """librdkafka logs every failed connection attempt at ERROR; our callers report the outcome
    themselves, so its own lines are kept at DEBUG (shown with `tracestream --debug`)."""

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)


kafka_client_logger = _DebugLogger(logging.getLogger("tracestream.kafka"), {})


def pipeline_topics(settings: Settings) -> list[TopicSpec]:
    """The topics the pipeline needs, as configured."""
    topics = settings.topics
    rf = topics.replication_factor
    return [
        # Span and trace events, keyed by trace id: an append-only log, kept for a replay window.
        TopicSpec(
            topics.events,
            topics.events_partitions,
            rf,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(topics.events_retention_ms),
                "max.message.bytes": str(MAX_RECORD_BYTES),
            },
        ),
        # Completed traces keyed by trace id, each record a newer revision of the same trace:
        # a changelog of state, so compaction keeps the latest revision per trace; deletion
        # after the retention window bounds it (OpenSearch is the store of record).
        TopicSpec(
            topics.completed,
            topics.completed_partitions,
            rf,
            {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(topics.events_retention_ms),
                "max.message.bytes": str(MAX_RECORD_BYTES),
            },
        ),
        TopicSpec(
            topics.alerts,
            topics.alerts_partitions,
            rf,
            {"cleanup.policy": "delete", "retention.ms": str(topics.events_retention_ms)},
        ),
        # Dead letters keep the original bytes and the reason; kept longer so that a person
        # can look at them and replay them.
        TopicSpec(
            topics.dead_letters,
            topics.dead_letters_partitions,
            rf,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(topics.dead_letters_retention_ms),
                "max.message.bytes": str(MAX_RECORD_BYTES),
            },
        ),
    ]


def admin_client(settings: Settings) -> AdminClient:
    # Without a logger, librdkafka writes its log lines straight to the process's stderr.
    return AdminClient(settings.kafka.confluent_config({"logger": kafka_client_logger}))


def check_reachable(settings: Settings, admin: AdminClient, timeout: float) -> ClusterMetadata:
    """The cluster's metadata, or :class:`KafkaUnreachableError` once ``timeout`` passes without
    a broker answering (CreateTopics would instead wait for a controller and say only
    "Timed out")."""
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        if error.code() in _UNREACHABLE_CODES:
            raise KafkaUnreachableError(settings.kafka.bootstrap_servers, error.str()) from exc
        raise AdminError(f"Kafka at {settings.kafka.bootstrap_servers} refused: {error.str()}") from exc
    finally:
        # Hands librdkafka's queued log lines to the logger.
        admin.poll(0)


def ensure_topics(
    settings: Settings,
    specs: Iterable[TopicSpec] | None = None,
    admin: AdminClient | None = None,
) -> list[TopicReport]:
    """Create every topic in ``specs`` (default: the pipeline's) that does not exist yet.

    Safe to run any number of times and from several processes at once.
    """
    specs = list(pipeline_topics(settings) if specs is None else specs)
    admin = admin or admin_client(settings)
    timeout = settings.kafka.request_timeout_s
    check_reachable(settings, admin, timeout)
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in specs],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created: set[str] = set()
    for spec in specs:
        try:
            futures[spec.name].result()
            created.add(spec.name)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise AdminError(f"could not create topic {spec.name!r}: {error.str()}") from exc

    metadata = _await_topics_ready(admin, [s.name for s in specs], timeout)
    reports = []
    for spec in specs:
        topic = metadata.topics.get(spec.name)
        partitions = len(topic.partitions) if topic is not None else 0
        if spec.name in created:
            outcome = TopicOutcome.CREATED
        elif partitions == spec.partitions:
            outcome = TopicOutcome.EXISTS
        else:
            outcome = TopicOutcome.PARTITIONS_DIFFER
            logger.warning(
                "topic %s has %d partitions, settings ask for %d; left unchanged",
                spec.name,
                partitions,
                spec.partitions,
            )
        reports.append(TopicReport(spec, outcome, partitions))
    return reports


def _await_topics_ready(admin: AdminClient, names: list[str], timeout: float) -> ClusterMetadata:
    """Wait until the broker serves every topic in ``names`` with a leader for each partition.

    CreateTopics returns once the controller has the topic; the broker answering the next
    request may not have it yet, so a client that produces or describes configs right after
    init would see UNKNOWN_TOPIC_OR_PART.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            metadata = admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise AdminError(f"could not list topics: {exc}") from exc
        pending = [
            name
            for name in names
            if (topic := metadata.topics.get(name)) is None
            or topic.error is not None
            or not topic.partitions
            or any(p.leader < 0 for p in topic.partitions.values())
        ]
        if not pending:
            return metadata
        if time.monotonic() >= deadline:
            raise AdminError(f"topics not ready after {timeout:.0f} s: {', '.join(pending)}")
        time.sleep(0.05)


def delete_topics(settings: Settings, names: Iterable[str], admin: AdminClient | None = None) -> None:
    """Delete topics, ignoring those that do not exist."""
    admin = admin or admin_client(settings)
    # A name given twice crashes librdkafka (SIGSEGV in confluent-kafka's delete_topics).
    names = list(dict.fromkeys(names))
    if not names:
        return
    timeout = settings.kafka.request_timeout_s
    futures = admin.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise AdminError(f"could not delete topic {name!r}: {error.str()}") from exc
