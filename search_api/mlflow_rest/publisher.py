"""Publishing the drop-in's writes to the events topic, and waiting until Kafka has them.

An MLflow client that gets a 200 considers its spans, trace info, tags or assessments stored,
so a request is answered only once every event it produced is acknowledged by the brokers
(``acks=all``); otherwise it gets a 503 and the client's own retries take over.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer

from tracestream import schemas
from tracestream.schemas.event_writer import MAX_RECORD_BYTES, encode_events
from tracestream.schemas.event_writer import Event as Event
from tracestream.search_api.search import SearchError
from tracestream.settings import Settings

logger = logging.getLogger(__name__)

# How long a request waits for Kafka's acknowledgement before it is answered with a 503.
DELIVERY_TIMEOUT_S = 30.0


@dataclass
class _Delivery:
    """The acknowledgements one request waits for."""

    pending: int
    done: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, error: KafkaError | None, message: Message) -> None:
        with self.lock:
            if error is not None:
                self.errors.append(error.str())
            self.pending -= 1
            if self.pending <= 0:
                self.done.set()


class EventPublisher:
    """A Kafka producer shared by the API's request threads; a background thread serves its
    delivery reports. Created on the first write, so a read-only API never connects to Kafka."""

    def __init__(self, settings: Settings, timeout_s: float = DELIVERY_TIMEOUT_S) -> None:
        self.topic = settings.topics.events
        self.timeout_s = timeout_s
        self._codec = schemas.events_codec(settings.kafka.schema_registry_url, topic=self.topic)
        self._producer = Producer(
            settings.kafka.confluent_config(
                {
                    "enable.idempotence": True,
                    "acks": "all",
                    "compression.type": "lz4",
                    "linger.ms": 5,
                    "message.max.bytes": MAX_RECORD_BYTES,
                    "message.timeout.ms": int(timeout_s * 1000),
                }
            )
        )
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="mlflow-rest-kafka", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    def publish(self, trace_events: list[tuple[str, Event]]) -> None:
        """Produce ``(trace id, event)`` pairs in order (one trace's events keep their order:
        they share the trace id as key) and return once all are acknowledged."""
        if not trace_events:
            return
        # The SDK's writer: a trace's events in as few records as fit (the stream reads a
        # batch far faster than its events one by one).
        encoded = encode_events(self._codec, trace_events)
        if encoded.failures:
            # The client is told rather than answered 200 for events that were not stored.
            failure = encoded.failures[0]
            raise SearchError(400, "INVALID_PARAMETER_VALUE", f"cannot store the request: {failure.error}")
        records = encoded.records
        delivery = _Delivery(len(records))
        for key, value, _ in records:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=delivery.report)
            except BufferError as exc:
                raise self._unavailable("the Kafka client's queue is full") from exc
            except Exception as exc:  # e.g. a record larger than message.max.bytes
                raise SearchError(400, "INVALID_PARAMETER_VALUE", f"cannot store the request: {exc}") from exc
        if not delivery.done.wait(self.timeout_s + 5):
            raise self._unavailable("Kafka did not acknowledge the events in time")
        if delivery.errors:
            raise self._unavailable(f"Kafka refused the events: {delivery.errors[0]}")

    @staticmethod
    def _unavailable(reason: str) -> SearchError:
        logger.warning("mlflow drop-in: %s", reason)
        return SearchError(
            503, "TEMPORARILY_UNAVAILABLE", f"the event log is unavailable ({reason}); retry later"
        )

    def close(self) -> None:
        self._closed.set()
        self._poller.join(2)
        self._producer.flush(5)
