"""The one place tracestream reads its configuration from.

Every package takes a :class:`Settings`; values come from environment variables with the
``TRACESTREAM_`` prefix, nested groups separated by ``__``::

    TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS=broker-1:9092,broker-2:9092
    TRACESTREAM_KAFKA__SECURITY_PROTOCOL=SASL_SSL
    TRACESTREAM_OPENSEARCH__URL=https://search.internal:9200
    TRACESTREAM_TOPICS__EVENTS_PARTITIONS=24

Defaults point at the local stack that ``infra/up`` starts on 127.0.0.1 (never ``localhost``:
the servers bind IPv4 only and ``localhost`` may resolve to ``::1`` first).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tracestream.envconfig import ENV_PREFIX
from tracestream.kafka_connection import KafkaConnection, SaslMechanism, SecurityProtocol


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "tracestream"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    # Optional Confluent-compatible schema registry; without one, events use Avro
    # single-object encoding with the schemas shipped in schemas/.
    schema_registry_url: str | None = None
    request_timeout_s: float = 10.0

    @model_validator(mode="after")
    def _usable_connection(self) -> KafkaSettings:
        self.connection()  # its checks (SASL needs credentials) are the SDK's too
        return self

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def connection(self) -> KafkaConnection:
        """These settings as the SDK's :class:`KafkaConnection` (one copy of the client config)."""
        values = {
            name: value.get_secret_value() if isinstance(value, SecretStr) else value for name, value in self
        }
        return KafkaConnection(**values)

    def confluent_config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka configuration for confluent-kafka's Producer, Consumer and AdminClient,
        with ``overrides`` (librdkafka property names, e.g. ``{"linger.ms": 5}``) applied last."""
        return self.connection().confluent_config(overrides)

    def aiokafka_config(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (the client Faust runs on)."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.uses_ssl:
            from aiokafka.helpers import create_ssl_context

            config["ssl_context"] = create_ssl_context(
                cafile=self.ssl_ca_location,
                certfile=self.ssl_certificate_location,
                keyfile=self.ssl_key_location,
                password=self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
            )
        return config


class OpenSearchSettings(BaseModel):
    url: str = "http://127.0.0.1:9200"
    username: str | None = None
    password: SecretStr | None = None
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout_s: float = 30.0
    # Every index and template tracestream creates starts with this, so several
    # deployments (or test runs) can share one cluster.
    index_prefix: str = "tracestream"
    # 0 suits a single node; production clusters raise it.
    number_of_replicas: int = 0

    @field_validator("index_prefix")
    @classmethod
    def _valid_index_prefix(cls, value: str) -> str:
        forbidden = ' ,"*\\/<>|?#:'
        if not value or value != value.lower() or value[0] in "-_+" or any(c in value for c in forbidden):
            raise ValueError(f"index_prefix {value!r} is not a valid lowercase OpenSearch index name prefix")
        return value

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``opensearchpy.OpenSearch``."""
        kwargs: dict[str, Any] = {
            "hosts": [self.url],
            "timeout": self.timeout_s,
            "verify_certs": self.verify_certs,
            "ssl_show_warn": self.verify_certs,
        }
        if self.username is not None:
            password = self.password.get_secret_value() if self.password else ""
            kwargs["http_auth"] = (self.username, password)
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        return kwargs


class TopicSettings(BaseModel):
    events: str = "tracestream.events"
    completed: str = "tracestream.traces.completed"
    alerts: str = "tracestream.alerts"
    dead_letters: str = "tracestream.deadletters"
    events_partitions: int = Field(default=6, ge=1)
    completed_partitions: int = Field(default=6, ge=1)
    alerts_partitions: int = Field(default=1, ge=1)
    dead_letters_partitions: int = Field(default=1, ge=1)
    # 1 for the single local broker; production clusters use 3.
    replication_factor: int = Field(default=1, ge=1)
    events_retention_ms: int = 7 * 24 * 3600 * 1000
    dead_letters_retention_ms: int = 30 * 24 * 3600 * 1000


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Accepted values of the X-API-Key header, comma-separated in the environment;
    # empty means no authentication (local use).
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Signs page tokens, so a tampered token is refused. Every replica of the API must share it;
    # a token only carries sort values, so a forged one could at worst skip ahead.
    page_token_secret: SecretStr = SecretStr("tracestream-page-token")
    max_filter_length: int = Field(default=10_000, ge=1)
    max_results_limit: int = Field(default=1_000, ge=1)
    # Origins allowed to call the API from a browser; empty: CORS off.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A request body as sent (Content-Length, else counted as it arrives) and, for a gzip or
    # deflate body, as inflated: 413 beyond either. 20 MiB is the OpenTelemetry Collector's
    # default for both; the checks keep a compression bomb from exhausting the API's memory.
    max_request_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_inflated_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    keys_file: str | None = Field(
        default=None,
        description="The scoped API keys (JSON, written by `tracestream keys`), re-read when it changes; "
        "set, the data endpoints need a key even while it holds none",
    )
    keys_check_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often (s) a request may check whether the keys file changed: a revoked key "
        "is refused this long after `tracestream keys revoke` at the latest",
    )
    auth_max_failures: int = Field(
        default=10,
        ge=1,
        description="Invalid keys a client address may send in a minute before it is refused (429)",
    )
    auth_lockout_s: float = Field(
        default=60.0,
        gt=0,
        description="How long (s) a client address that sent too many invalid keys is refused",
    )
    audit_enabled: bool = Field(
        default=True,
        description="Record reads of whole traces, exports, deletions and key changes in the index "
        "<index prefix>-audit",
    )
    audit_max_trace_ids: int = Field(
        default=100, ge=0, description="Trace ids an audit record lists at most (its count is exact)"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value


class StreamSettings(BaseModel):
    """The trace-assembly stream (stream/, a Faust app)."""

    app_id: str = "tracestream-stream"
    # A trace whose spans stop arriving is finalized after this long without activity.
    idle_timeout_s: float = Field(default=30.0, gt=0)
    # How long a finalized trace's spans are kept, so a late span can produce a new revision.
    late_window_s: float = Field(default=600.0, gt=0)
    # How long a small marker of a purged trace is kept, so that later events for it are
    # dead-lettered instead of starting a second, partial trace.
    marker_retention_s: float = Field(default=86_400.0, gt=0)
    # How long the marker of a deleted trace (TraceDeleted) is kept: while it lives, every later
    # event of the trace (span, end, tag, assessment, link) is ignored and counted, so a deleted
    # trace never comes back; after it, such an event would start the trace anew.
    deleted_marker_retention_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="How long a deleted trace's marker is kept (s); its later events are ignored meanwhile",
    )
    # "auto": RocksDB (rocksdict) when installed, else memory. Both are backed by changelog topics.
    store: Literal["auto", "rocksdb", "memory"] = "auto"
    data_dir: str = ".tracestream-stream"
    # How fast the group notices a dead worker and moves its partitions.
    session_timeout_s: float = Field(default=10.0, gt=0)
    tick_interval_s: float = Field(default=1.0, gt=0)
    stream_buffer_maxsize: int = Field(default=16_384, ge=1)
    # A worker whose agents get nothing for this long while records or ticks wait for them
    # logs what it is waiting for.
    stall_after_s: float = Field(default=60.0, gt=0)
    # The level of Faust's and aiokafka's own lines, "info" or "warning"; the worker's own lines
    # (start-up, partitions, status) are at INFO whatever this is.
    log_level: str = "warning"
    # A TOML file of alert rules ([[rule]]) and the webhooks they name ([[webhook]]); read by
    # the stream worker (evaluation), the webhook deliverer and `tracestream alerts rules`.
    # None: only the built-in error alert.
    rules_file: str | None = None
    # How often the rules' changed windows and marks are written to their tables: a window
    # changed by every trace is written once per interval, not once per trace. Offsets are not
    # committed past a record whose rule state is not written yet, so a crash replays it.
    rules_checkpoint_s: float = Field(default=2.0, gt=0, le=60)
    # A JSON file of model prices ({"providers": {provider: {model: {"input_per_million_tokens":
    # ..., "output_per_million_tokens": ..., ...}}}}) for spans that have a model and token usage
    # but no cost: its models are added to the shipped table (MLflow's bundled prices) or replace
    # theirs. None: the shipped table alone.
    model_prices_file: str | None = None


class IndexerSettings(BaseModel):
    """The indexer (indexer/): completed traces into OpenSearch."""

    group_id: str = "tracestream-indexer"
    # One _bulk request holds at most this many traces, this many bytes of documents, and
    # waits at most this long for more records once it has one.
    batch_max_docs: int = Field(default=500, ge=1)
    batch_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # 50 ms and a 500 ms refresh: freshness p99 at 2,000 spans/s went from 2.8 s (200 ms, 1 s)
    # to 2.0 s in bench/e2e.py, with OpenSearch's CPU unchanged.
    batch_linger_ms: int = Field(default=50, ge=0)
    # Backoff between retries of a failing bulk (429, 5xx, connection refused); retried
    # without limit while the indexer runs, consumption paused meanwhile.
    retry_initial_backoff_s: float = Field(default=0.5, gt=0)
    retry_max_backoff_s: float = Field(default=30.0, gt=0)
    # How soon written traces become searchable (OpenSearch's default is 1s).
    refresh_interval: str = "500ms"
    number_of_shards: int = Field(default=1, ge=1)
    # Span JSON beyond this many bytes is stored but not searchable by trace.text / span.content.
    max_indexed_span_content_bytes: int = Field(default=131_072, ge=1024)
    # A trace whose request time (the client's clock) is further than this from when the
    # stream first saw it goes into the daily index of that first-seen day and is flagged
    # (metadata tracestream.trace.clockSkewed), so no client clock can create indices outside
    # first-seen ± this. One day either way: a clock set to local time but sent as UTC is off
    # by at most 14 h, and traces or exporter retries rarely last a day; it bounds the indices
    # a trace can land in to three days around its arrival.
    max_clock_skew_s: int = Field(default=86_400, ge=0)


class WebhookSettings(BaseModel):
    """Delivery of rule alerts to webhooks (`tracestream alerts deliver`, stream/delivery.py)."""

    # The delivery consumers' group on the alerts topic; several deliverers share its partitions.
    group_id: str = "tracestream-webhooks"
    # Where a group with no committed offset starts: "latest" (a new deployment does not
    # re-send the alerts topic's history) or "earliest".
    start_at: Literal["earliest", "latest"] = "latest"
    # One HTTP attempt: connect + send + answer.
    timeout_s: float = Field(default=10.0, gt=0)
    # Retries of a 408/429/5xx answer or a connection failure, with exponential backoff (and
    # jitter) from INITIAL to MAX; a delivery is dead-lettered once MAX_ATTEMPTS attempts or
    # MAX_ELAPSED_S seconds are spent, whichever comes first.
    max_attempts: int = Field(default=6, ge=1)
    initial_backoff_s: float = Field(default=0.5, gt=0)
    max_backoff_s: float = Field(default=30.0, gt=0)
    max_elapsed_s: float = Field(default=120.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    opensearch: OpenSearchSettings = Field(default_factory=OpenSearchSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    indexer: IndexerSettings = Field(default_factory=IndexerSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)


def describe_settings_error(error: ValidationError) -> str:
    """A pydantic error of the settings, one line per bad value, each named by the
    environment variable that sets it."""
    lines = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"] if not isinstance(part, int)]
        variable = ENV_PREFIX + "__".join(location).upper() if location else "the settings"
        given = item.get("input")
        shown = "" if isinstance(given, (dict, BaseModel)) or given is None else f" (got {given!r})"
        lines.append(f"{variable}: {item['msg']}{shown}")
    return "; ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()


def isolated_env(
    name: str, partitions: int, data_dir: str | Path, api_port: int | None = None
) -> dict[str, str]:
    """The environment variables that give one run of the pipeline its own topics, consumer
    groups, stream app id and state directory, index prefix and (optionally) API port, so that
    several runs share one Kafka and OpenSearch without seeing each other (tests, benchmarks)."""
    prefix = ENV_PREFIX
    env = {
        f"{prefix}TOPICS__EVENTS": f"{name}.events",
        f"{prefix}TOPICS__COMPLETED": f"{name}.completed",
        f"{prefix}TOPICS__ALERTS": f"{name}.alerts",
        f"{prefix}TOPICS__DEAD_LETTERS": f"{name}.deadletters",
        f"{prefix}TOPICS__EVENTS_PARTITIONS": str(partitions),
        f"{prefix}TOPICS__COMPLETED_PARTITIONS": str(partitions),
        f"{prefix}STREAM__APP_ID": f"{name}-stream",
        f"{prefix}STREAM__DATA_DIR": str(data_dir),
        f"{prefix}INDEXER__GROUP_ID": f"{name}-indexer",
        f"{prefix}WEBHOOKS__GROUP_ID": f"{name}-webhooks",
        f"{prefix}OPENSEARCH__INDEX_PREFIX": name,
    }
    if api_port is not None:
        env[f"{prefix}API__PORT"] = str(api_port)
    return env
