"""Configuration comes from TRACESTREAM_* environment variables, defaulting to the local stack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from tracestream.settings import Settings, isolated_env


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # Settings also read a .env in the working directory; run from an empty one.
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("TRACESTREAM_"):
            monkeypatch.delenv(name)


def test_defaults_point_at_the_local_stack_on_ipv4_loopback() -> None:
    settings = Settings()

    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.opensearch.url == "http://127.0.0.1:9200"
    assert settings.api.host == "127.0.0.1"
    assert settings.api.api_keys == []


def test_nested_environment_variables_override_each_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS", "kafka-1.internal:9092,kafka-2.internal:9092")
    monkeypatch.setenv("TRACESTREAM_OPENSEARCH__URL", "https://search.internal:9200")
    monkeypatch.setenv("TRACESTREAM_OPENSEARCH__INDEX_PREFIX", "prod-traces")
    monkeypatch.setenv("TRACESTREAM_TOPICS__EVENTS_PARTITIONS", "48")
    monkeypatch.setenv("TRACESTREAM_TOPICS__EVENTS", "llm.events")
    monkeypatch.setenv("TRACESTREAM_API__PORT", "9000")

    settings = Settings()

    assert settings.kafka.bootstrap_servers == "kafka-1.internal:9092,kafka-2.internal:9092"
    assert settings.opensearch.url == "https://search.internal:9200"
    assert settings.opensearch.index_prefix == "prod-traces"
    assert settings.topics.events_partitions == 48
    assert settings.topics.events == "llm.events"
    assert settings.api.port == 9000


def test_api_keys_are_a_comma_separated_list_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACESTREAM_API__API_KEYS", "k-ops-1, k-dashboards-2")

    settings = Settings()

    assert [key.get_secret_value() for key in settings.api.api_keys] == ["k-ops-1", "k-dashboards-2"]
    assert "k-ops-1" not in repr(settings)


def test_sasl_ssl_is_passed_to_both_kafka_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACESTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TRACESTREAM_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("TRACESTREAM_KAFKA__SASL_USERNAME", "tracer")
    monkeypatch.setenv("TRACESTREAM_KAFKA__SASL_PASSWORD", "s3cret")

    kafka = Settings().kafka

    assert kafka.confluent_config({"linger.ms": 5}) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "client.id": "tracestream",
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "tracer",
        "sasl.password": "s3cret",
        "linger.ms": 5,
    }
    aiokafka = kafka.aiokafka_config()
    assert aiokafka["security_protocol"] == "SASL_PLAINTEXT"
    assert aiokafka["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (aiokafka["sasl_plain_username"], aiokafka["sasl_plain_password"]) == ("tracer", "s3cret")


def test_sasl_without_credentials_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACESTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")

    with pytest.raises(ValidationError, match="needs sasl_mechanism, sasl_username and sasl_password"):
        Settings()


def test_opensearch_credentials_and_ca_reach_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACESTREAM_OPENSEARCH__URL", "https://search.internal:9200")
    monkeypatch.setenv("TRACESTREAM_OPENSEARCH__USERNAME", "indexer")
    monkeypatch.setenv("TRACESTREAM_OPENSEARCH__PASSWORD", "pw")
    monkeypatch.setenv("TRACESTREAM_OPENSEARCH__CA_CERTS", "/etc/ssl/search-ca.pem")

    kwargs = Settings().opensearch.client_kwargs()

    assert kwargs["hosts"] == ["https://search.internal:9200"]
    assert kwargs["http_auth"] == ("indexer", "pw")
    assert kwargs["ca_certs"] == "/etc/ssl/search-ca.pem"
    assert kwargs["verify_certs"] is True


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACESTREAM_OPENSEARCH__INDEX_PREFIX", "")

    assert Settings().opensearch.index_prefix == "tracestream"


@pytest.mark.parametrize("prefix", ["Traces", "traces,prod", "_traces", "tr*ces"])
def test_an_index_prefix_opensearch_would_reject_is_refused(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("TRACESTREAM_OPENSEARCH__INDEX_PREFIX", prefix)

    with pytest.raises(ValidationError, match="index_prefix"):
        Settings()


def test_an_isolated_environment_gives_a_run_its_own_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in isolated_env("bench-e2e-1a2b3c", 6, tmp_path / "stream", api_port=18080).items():
        monkeypatch.setenv(key, value)

    settings = Settings()

    assert (settings.topics.events, settings.topics.completed) == (
        "bench-e2e-1a2b3c.events",
        "bench-e2e-1a2b3c.completed",
    )
    assert (settings.topics.events_partitions, settings.topics.completed_partitions) == (6, 6)
    assert settings.stream.app_id == "bench-e2e-1a2b3c-stream"
    assert settings.stream.data_dir == str(tmp_path / "stream")
    assert settings.indexer.group_id == "bench-e2e-1a2b3c-indexer"
    assert settings.opensearch.index_prefix == "bench-e2e-1a2b3c"
    assert settings.api.port == 18080
