"""The stream's Faust app: brokers, credentials, store and producer settings, from the settings.

Its topics are declared in stream/topics.py, its tables in stream/tables.py, its agents and timer
in stream/agents.py; stream/worker.py runs it.
"""

from __future__ import annotations

from typing import Any

import faust

from tracestream.schemas.event_writer import MAX_RECORD_BYTES
from tracestream.settings import Settings
from tracestream.stream.transport import App


def store_url(settings: Settings) -> str:
    choice = settings.stream.store
    if choice == "memory":
        return "memory://"
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        if choice == "rocksdb":
            raise
        return "memory://"
    return "rocksdb://"


def _broker_credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return None
    ssl_context = kafka.aiokafka_config().get("ssl_context")
    if kafka.security_protocol.startswith("SASL_"):
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


def build_app(settings: Settings) -> App:
    stream = settings.stream
    topics = settings.topics
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.kafka.bootstrap_servers.split(","))
    return App(
        stream.app_id,
        broker=brokers,
        broker_credentials=_broker_credentials(settings),
        store=store_url(settings),
        datadir=stream.data_dir,
        topic_partitions=topics.events_partitions,
        topic_replication_factor=topics.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        broker_session_timeout=stream.session_timeout_s,
        broker_heartbeat_interval=max(1.0, stream.session_timeout_s / 4),
        stream_buffer_maxsize=stream.stream_buffer_maxsize,
        producer_acks=-1,
        # Each record writes one or two changelog records: without linger each produce
        # request carried about 3 records, and the sends were a large part of the time.
        producer_linger=0.005,
        producer_max_batch_size=512 * 1024,
        # Faust's default (1 MB) would refuse any trace above it; the topics accept 8 MiB.
        producer_max_request_size=MAX_RECORD_BYTES,
        web_enabled=False,
        table_standby_replicas=0,
    )
