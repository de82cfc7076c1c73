"""What an instrumented application reads: the SDK's own settings and how to reach the events
topic, from ``TRACESTREAM_SDK__*``, ``TRACESTREAM_KAFKA__*`` and ``TRACESTREAM_TOPICS__EVENTS``.

Settings of the servers (API, OpenSearch, stream, indexer) are never read, so a bad value there
cannot turn tracing off in the applications that share the environment. Standard library only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tracestream.envconfig import ENV_PREFIX, ConfigError, bounded, check_bounds, environment, load
from tracestream.kafka_connection import KafkaConnection

logger = logging.getLogger("tracestream.producers")

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]

EVENTS_TOPIC_VARIABLE = f"{ENV_PREFIX}TOPICS__EVENTS"
DEFAULT_EVENTS_TOPIC = "tracestream.events"


@dataclass(slots=True)
class SdkOptions:
    """``TRACESTREAM_SDK__*``."""

    enabled: bool = True
    # MLflow's default experiment is "0"; traces are filed under this location.
    experiment_id: str = "0"
    # The tracestream API (its MLflow REST drop-in), for the calls that read: set_experiment by
    # name and get_assessment of an assessment this process did not log. Empty: none.
    tracking_uri: str = ""
    # Sent as "Authorization: Bearer ..." when the API requires a key.
    tracking_token: str = ""
    # Events buffered in the process before the exporter thread publishes them; when full,
    # new events are dropped and counted, never blocking the application.
    max_queue_size: int = bounded(100_000, ge=1)
    max_export_batch_size: int = bounded(2_000, ge=1)
    schedule_delay_ms: int = bounded(100, ge=1)
    # Span attribute values (JSON text) longer than this are cut, with a marker.
    max_attribute_length: int = bounded(500_000, ge=64)
    # How long an undeliverable event is retried by the Kafka client before it counts as failed.
    delivery_timeout_ms: int = bounded(120_000, ge=1_000)
    flush_timeout_s: float = bounded(10.0, ge=0)
    linger_ms: int = bounded(20, ge=0)
    compression: Compression = "lz4"
    # The events of one trace in one export batch go out as one EventBatch record (TraceEvent
    # v2). Turn off while a consumer older than v2 still reads the events topic.
    batch_by_trace: bool = True
    max_batch_events: int = bounded(1_000, ge=1)
    # A batch encoding to more than this is split (the topic's records are at most 8 MiB).
    max_batch_bytes: int = bounded(1_048_576, ge=1_024)

    def __post_init__(self) -> None:
        check_bounds(self, "sdk")
        # A batch larger than the buffer can never fill: correct it rather than turn tracing off.
        if self.max_export_batch_size > self.max_queue_size:
            logger.warning(
                "tracestream: %sSDK__MAX_EXPORT_BATCH_SIZE (%d) exceeds %sSDK__MAX_QUEUE_SIZE (%d); "
                "using %d. Set %sSDK__MAX_EXPORT_BATCH_SIZE to at most the queue size to silence this.",
                ENV_PREFIX,
                self.max_export_batch_size,
                ENV_PREFIX,
                self.max_queue_size,
                self.max_queue_size,
                ENV_PREFIX,
            )
            self.max_export_batch_size = self.max_queue_size


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    events_topic: str = DEFAULT_EVENTS_TOPIC
    sdk: SdkOptions = field(default_factory=SdkOptions)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProducerConfig:
        """The configuration in effect: the environment over ``./.env``. Raises
        :class:`~tracestream.envconfig.ConfigError` naming the first bad variable, or OSError
        for an unreadable .env file."""
        variables = environment(environ)
        return cls(
            kafka=load(KafkaConnection, "kafka", variables),
            events_topic=variables.get(EVENTS_TOPIC_VARIABLE, DEFAULT_EVENTS_TOPIC),
            sdk=load(SdkOptions, "sdk", variables),
        )

    def with_sdk(self, **options: object) -> ProducerConfig:
        """This configuration with some SDK options changed."""
        return dataclasses.replace(self, sdk=dataclasses.replace(self.sdk, **options))


__all__ = ["ConfigError", "KafkaConnection", "ProducerConfig", "SdkOptions"]
