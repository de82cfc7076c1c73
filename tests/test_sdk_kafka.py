"""The SDK against a real broker: every event arrives, decodes, and equals what was sent."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from confluent_kafka import Consumer

from tracestream import producers as mlflow
from tracestream import schemas
from tracestream.kafka_connection import KafkaConnection
from tracestream.producers.config import ProducerConfig, SdkOptions
from tracestream.producers.exporter import KafkaEventExporter
from tracestream.producers.processor import SdkStats
from tracestream.settings import Settings

TRACES = 10_000


class RecordingKafkaExporter(KafkaEventExporter):
    """The real exporter, keeping a copy of each event it publishes."""

    def __init__(self, config: ProducerConfig) -> None:
        super().__init__(config)
        self.sent: list[tuple[str, tuple[str, dict]]] = []

    def export(self, events, stats: SdkStats) -> None:
        self.sent.extend(events)
        super().export(events, stats)


def _identity(event: tuple[str, dict]) -> tuple[str, str, str]:
    kind, record = event
    return kind, record["trace_id"], record.get("span_id") or record.get("assessment_id") or ""


@mlflow.trace(span_type=mlflow.SpanType.RETRIEVER)
def retrieve(query: str) -> list[dict]:
    return [{"id": "doc-17", "text": f"Shipping policy for {query}"}]


@mlflow.trace(span_type=mlflow.SpanType.LLM)
def generate(question: str, documents: list[dict]) -> str:
    mlflow.get_current_active_span().set_attribute(
        "mlflow.chat.tokenUsage", {"input_tokens": 310, "output_tokens": 42, "total_tokens": 352}
    )
    return f"Answer to {question!r} from {len(documents)} document(s)."


HANDLED_TRACE_IDS: list[str] = []


@mlflow.trace(span_type=mlflow.SpanType.AGENT)
def support_agent(question: str, n: int) -> str:
    HANDLED_TRACE_IDS.append(mlflow.get_active_trace_id())
    mlflow.update_current_trace(metadata={"mlflow.trace.session": f"session-{n % 97}"})
    if n % 50 == 0:
        raise TimeoutError("upstream model timed out")
    return generate(question, retrieve(question))


def test_ten_thousand_traces_reach_kafka_and_decode_equal_to_what_was_sent(
    kafka_settings: Settings, unique_topic: Callable[..., str], unique_name: str
) -> None:
    topic = unique_topic(partitions=3)
    config = ProducerConfig(
        kafka=kafka_settings.kafka.connection(), events_topic=topic, sdk=SdkOptions(experiment_id="7")
    )
    exporter = RecordingKafkaExporter(config)
    mlflow.configure(config, exporter=exporter)
    try:
        for n in range(TRACES):
            with contextlib.suppress(TimeoutError):
                support_agent(f"where is order {n}?", n)
            if n % 1000 == 0:
                mlflow.log_feedback(trace_id=HANDLED_TRACE_IDS[-1], name="resolved", value=n % 3 == 0)
        assert mlflow.flush(60)
        stats = mlflow.get_stats()
    finally:
        mlflow.shutdown()

    assert stats.delivered == stats.emitted == len(exporter.sent)
    assert (stats.dropped, stats.failed) == (0, 0)

    received = _consume_all(kafka_settings, topic, unique_name)
    codec = schemas.events_codec()
    decoded = {}
    for key, value in received:
        for event in schemas.events_of(codec.decode(value)["event"]):
            assert key == event[1]["trace_id"]
            decoded[_identity(event)] = event
    sent = {_identity(event): event for _, event in exporter.sent}
    assert len(sent) == len(exporter.sent)
    assert decoded.keys() == sent.keys()
    mismatched = [k for k in sent if decoded[k] != sent[k]]
    assert mismatched == []
    kinds = [kind for kind, _, _ in sent]
    assert kinds.count(schemas.TRACE_ENDED) == TRACES
    assert kinds.count(schemas.ASSESSMENT_LOGGED) == TRACES // 1000
    # A trace's spans flushed together travel as one record.
    assert len(received) < len(exporter.sent) / 2


def _consume_all(settings: Settings, topic: str, group: str) -> list[tuple[str, bytes]]:
    consumer = Consumer(
        settings.kafka.confluent_config(
            {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
        )
    )
    consumer.subscribe([topic])
    received: list[tuple[str, bytes]] = []
    idle_polls = 0
    try:
        while idle_polls < 5:
            batch = consumer.consume(num_messages=5_000, timeout=1.0)
            idle_polls = 0 if batch else idle_polls + 1
            for message in batch:
                assert message.error() is None, message.error()
                received.append((message.key().decode(), message.value()))
    finally:
        consumer.close()
    return received


def test_with_kafka_unreachable_the_app_runs_on_and_every_lost_event_is_counted() -> None:
    # Nothing listens on port 1: the client can never connect, as with a stopped broker.
    config = ProducerConfig(
        kafka=KafkaConnection(bootstrap_servers="127.0.0.1:1"),
        sdk=SdkOptions(delivery_timeout_ms=1_500, schedule_delay_ms=5),
    )
    mlflow.configure(config)
    try:
        answers = 0
        for n in range(2_000):
            try:
                support_agent("is the broker up?", n + 1)
                answers += 1
            except TimeoutError:
                pass
        mlflow.flush(15)
        stats = mlflow.get_stats()
    finally:
        mlflow.shutdown(0)

    assert answers == 2_000 - 2_000 // 50
    assert stats.emitted == 4 * 2_000 - 2 * (2_000 // 50)
    assert stats.delivered == 0
    assert stats.undelivered == stats.emitted
