"""Health of the servers tracestream depends on, for `tracestream health` and the main job."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException

from tracestream.admin import admin_client
from tracestream.settings import Settings


@dataclass(frozen=True)
class ServerHealth:
    server: str
    address: str
    healthy: bool
    details: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def kafka_health(settings: Settings, timeout_s: float = 5.0) -> ServerHealth:
    address = settings.kafka.bootstrap_servers
    admin = admin_client(settings)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        return ServerHealth("kafka", address, False, error=f"unreachable: {exc.args[0].str()}")
    finally:
        admin.poll(0)  # librdkafka's log lines to the logger, at debug
    brokers = ", ".join(f"{b.id}@{b.host}:{b.port}" for b in metadata.brokers.values())
    return ServerHealth(
        "kafka",
        address,
        healthy=bool(metadata.brokers),
        details={
            "cluster_id": str(metadata.cluster_id),
            "brokers": brokers,
            "topics": str(len(metadata.topics)),
        },
    )


def opensearch_health(settings: Settings, timeout_s: float = 5.0) -> ServerHealth:
    address = settings.opensearch.url
    client = OpenSearch(**{**settings.opensearch.client_kwargs(), "timeout": timeout_s, "max_retries": 0})
    try:
        info = client.info()
        health = client.cluster.health()
    except (OpenSearchException, OSError) as exc:
        return ServerHealth("opensearch", address, False, error=f"unreachable: {exc}")
    finally:
        client.close()
    status = health["status"]
    return ServerHealth(
        "opensearch",
        address,
        healthy=status in ("green", "yellow"),
        details={
            "version": info["version"]["number"],
            "cluster": health["cluster_name"],
            "status": status,
            "nodes": str(health["number_of_nodes"]),
        },
    )


def check_all(settings: Settings) -> list[ServerHealth]:
    return [kafka_health(settings), opensearch_health(settings)]
