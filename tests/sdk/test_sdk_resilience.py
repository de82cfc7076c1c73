"""Tracing never blocks or breaks the application, and counts every event it loses."""

from __future__ import annotations

import threading
import time

from tracestream import producers as mlflow
from tracestream.producers.config import ProducerConfig, SdkOptions
from tracestream.producers.processor import SdkStats
from tracestream.producers.testing import InMemoryEventExporter
from tracestream.schemas import SPAN_ENDED


class BlockedExporter(InMemoryEventExporter):
    """Holds every export until released, like a Kafka client that cannot send."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def export(self, events, stats: SdkStats) -> None:
        self.release.wait(10)
        super().export(events, stats)


class ExplodingExporter(InMemoryEventExporter):
    def __init__(self) -> None:
        super().__init__()
        self.explode = True

    def export(self, events, stats: SdkStats) -> None:
        if self.explode:
            raise RuntimeError("exporter bug")
        super().export(events, stats)


@mlflow.trace
def lookup(order_id: int) -> dict:
    return {"order_id": order_id, "status": "shipped"}


def test_a_full_buffer_drops_and_counts_events_without_blocking_the_caller() -> None:
    exporter = BlockedExporter()
    mlflow.configure(
        ProducerConfig(sdk=SdkOptions(max_queue_size=50, max_export_batch_size=10, schedule_delay_ms=1)),
        exporter=exporter,
    )
    try:
        started = time.monotonic()
        results = [lookup(n) for n in range(1_000)]
        elapsed = time.monotonic() - started
        exporter.release.set()
        assert mlflow.flush(5)
        stats = mlflow.get_stats()
    finally:
        mlflow.shutdown()

    assert results[999] == {"order_id": 999, "status": "shipped"}
    # The exporter was blocked for up to 10 s; the calls did not wait for it.
    assert elapsed < 5
    assert stats.emitted == 2_000  # a SpanEnded and a TraceEnded per call
    assert stats.dropped > 0
    assert stats.delivered == len(exporter.events)
    assert stats.emitted == stats.delivered + stats.dropped + stats.failed


def test_an_exporter_that_raises_never_reaches_the_application() -> None:
    exporter = ExplodingExporter()
    mlflow.configure(ProducerConfig(sdk=SdkOptions(schedule_delay_ms=1)), exporter=exporter)
    try:
        assert lookup(1)["status"] == "shipped"
        mlflow.flush(2)
        exporter.explode = False
        assert lookup(2)["status"] == "shipped"
        assert mlflow.flush(5)
    finally:
        mlflow.shutdown()

    # The exporter thread survived the failure and exported the later trace.
    assert [s["attributes"]["mlflow.spanInputs"] for s in exporter.records(SPAN_ENDED)] == ['{"order_id": 2}']


def test_inputs_whose_serialization_raises_are_recorded_as_text(flushed) -> None:
    class BrokenModel:
        def model_dump(self) -> dict:
            raise ValueError("cannot dump")

        def __str__(self) -> str:
            return "BrokenModel(id=3)"

    @mlflow.trace
    def score(model: BrokenModel) -> float:
        return 0.5

    assert score(BrokenModel()) == 0.5

    [span] = flushed().records(SPAN_ENDED)
    assert span["attributes"]["mlflow.spanInputs"] == '{"model": "BrokenModel(id=3)"}'


def test_disabled_tracing_runs_the_function_and_emits_nothing() -> None:
    exporter = InMemoryEventExporter()
    mlflow.configure(ProducerConfig(sdk=SdkOptions(enabled=False)), exporter=exporter)
    try:
        assert lookup(7) == {"order_id": 7, "status": "shipped"}
        with mlflow.start_span("block") as span:
            span.set_inputs({"ignored": True})
        assert mlflow.get_current_active_span() is None
    finally:
        mlflow.shutdown()

    assert exporter.events == []
