"""The SDK's own configuration: the same TRACESTREAM_* variables as the servers', read without
pydantic."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tracestream.envconfig import ConfigError
from tracestream.kafka_connection import KafkaConnection
from tracestream.producers.config import ProducerConfig
from tracestream.settings import KafkaSettings, Settings


def test_the_sdk_and_the_servers_read_the_same_kafka_variables_with_the_same_defaults() -> None:
    sdk_defaults = {field.name: field.default for field in dataclasses.fields(KafkaConnection)}
    server_defaults = {name: field.default for name, field in KafkaSettings.model_fields.items()}
    assert sdk_defaults == server_defaults
    assert ProducerConfig().events_topic == Settings().topics.events


def test_the_sdk_reads_its_options_kafka_and_events_topic_from_the_environment(tmp_path: Path) -> None:
    config = ProducerConfig.from_env({
        "TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS": "broker-1:9092,broker-2:9092",
        "TRACESTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "TRACESTREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "TRACESTREAM_KAFKA__SASL_USERNAME": "support-agent",
        "TRACESTREAM_KAFKA__SASL_PASSWORD": "s3cret",
        "TRACESTREAM_TOPICS__EVENTS": "prod.events",
        "TRACESTREAM_SDK__MAX_QUEUE_SIZE": "5000",
        "TRACESTREAM_SDK__BATCH_BY_TRACE": "false",
        "TRACESTREAM_SDK__FLUSH_TIMEOUT_S": "2.5",
        "TRACESTREAM_SDK__COMPRESSION": "zstd",
    })  # fmt: skip

    assert config.events_topic == "prod.events"
    assert (config.sdk.max_queue_size, config.sdk.batch_by_trace) == (5000, False)
    assert (config.sdk.flush_timeout_s, config.sdk.compression) == (2.5, "zstd")
    client = config.kafka.confluent_config()
    assert client["bootstrap.servers"] == "broker-1:9092,broker-2:9092"
    assert (client["security.protocol"], client["sasl.mechanism"]) == ("sasl_ssl", "SCRAM-SHA-512")
    assert "s3cret" not in repr(config), "a logged configuration shows no password"


def test_the_servers_build_the_same_client_configuration_from_the_same_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = {
        "TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS": "broker-1:9093",
        "TRACESTREAM_KAFKA__SECURITY_PROTOCOL": "SSL",
        "TRACESTREAM_KAFKA__SSL_CA_LOCATION": "/etc/kafka/ca.pem",
        "TRACESTREAM_KAFKA__SSL_KEY_PASSWORD": "k3y",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    assert Settings().kafka.confluent_config() == ProducerConfig.from_env(variables).kafka.confluent_config()


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("TRACESTREAM_SDK__MAX_QUEUE_SIZE", "0", "must be at least 1"),
        ("TRACESTREAM_SDK__MAX_QUEUE_SIZE", "lots", "must be an integer"),
        ("TRACESTREAM_SDK__ENABLED", "maybe", "must be true or false"),
        ("TRACESTREAM_SDK__COMPRESSION", "brotli", "must be one of none, gzip, snappy, lz4, zstd"),
        ("TRACESTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL", "needs sasl_mechanism"),
    ],
)
def test_a_bad_value_is_an_error_naming_its_variable(variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        ProducerConfig.from_env({variable: value})

    assert str(error.value).startswith(f"{variable}: ")
    assert problem in str(error.value)


def test_the_environment_wins_over_a_dotenv_file_and_empty_values_count_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "# local overrides\n"
        "export TRACESTREAM_TOPICS__EVENTS='dev.events'\n"
        "TRACESTREAM_SDK__EXPERIMENT_ID=12  # the support team's experiment\n"
        "TRACESTREAM_SDK__LINGER_MS=50\n"
    )
    monkeypatch.chdir(tmp_path)

    environ = {"TRACESTREAM_SDK__LINGER_MS": "5", "TRACESTREAM_SDK__SCHEDULE_DELAY_MS": ""}
    config = ProducerConfig.from_env(environ)

    assert (config.events_topic, config.sdk.experiment_id) == ("dev.events", "12")
    assert (config.sdk.linger_ms, config.sdk.schedule_delay_ms) == (5, 100)
