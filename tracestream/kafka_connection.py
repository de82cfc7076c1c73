"""How to reach Kafka: the ``TRACESTREAM_KAFKA__*`` settings as librdkafka configuration.

Standard library only: the SDK builds its producer from this, and the servers' pydantic
``KafkaSettings`` delegate to it, so both sides turn the same variables into the same client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tracestream.envconfig import ConfigError, secret, variable_name

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "tracestream"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = secret()
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = secret()
    # Optional Confluent-compatible schema registry; without one, events use Avro
    # single-object encoding with the schemas shipped in tracestream.schemas.
    schema_registry_url: str | None = None
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        has_credentials = self.sasl_mechanism and self.sasl_username and self.sasl_password
        if self.security_protocol.startswith("SASL_") and not has_credentials:
            raise ConfigError(
                variable_name("kafka", "security_protocol"),
                f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password "
                "(TRACESTREAM_KAFKA__SASL_*)",
            )

    def confluent_config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka configuration for confluent-kafka's Producer, Consumer and AdminClient,
        with ``overrides`` (librdkafka property names, e.g. ``{"linger.ms": 5}``) applied last."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password
        optional = {
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        config.update({key: value for key, value in optional.items() if value is not None})
        config.update(overrides or {})
        return config
