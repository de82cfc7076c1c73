from __future__ import annotations

from collections.abc import Iterator

import pytest

from tracestream import producers
from tracestream.producers.config import ProducerConfig, SdkOptions
from tracestream.producers.testing import InMemoryEventExporter


@pytest.fixture
def exporter() -> Iterator[InMemoryEventExporter]:
    """Tracing configured with an in-memory exporter (events still go through Avro)."""
    memory = InMemoryEventExporter()
    config = ProducerConfig(sdk=SdkOptions(experiment_id="42", schedule_delay_ms=5))
    producers.configure(config, exporter=memory)
    yield memory
    producers.shutdown()


@pytest.fixture
def flushed(exporter: InMemoryEventExporter):
    """Call to flush and get the exporter's events."""

    def flush() -> InMemoryEventExporter:
        assert producers.flush(5)
        return exporter

    return flush
