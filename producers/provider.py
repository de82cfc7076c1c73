"""The process-wide tracer: settings, processor and the traces in flight.

Created on first use from the settings (``TRACESTREAM_*``), or explicitly with
:func:`configure`. Flushed at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import threading

from producers.metadata import automatic_metadata
from producers.processor import BatchEventProcessor, EventExporter, SdkStatsSnapshot
from producers.span import TraceState
from schemas.records import TraceLocation
from tracestream.settings import Settings, get_settings

logger = logging.getLogger("producers")


class TracerProvider:
    def __init__(self, settings: Settings, exporter: EventExporter | None = None) -> None:
        if exporter is None:
            from producers.exporter import KafkaEventExporter

            exporter = KafkaEventExporter(settings)
        sdk = settings.sdk
        self.settings = settings
        self.processor = BatchEventProcessor(
            exporter, sdk.max_queue_size, sdk.max_export_batch_size, sdk.schedule_delay_ms
        )
        self.location: TraceLocation = {"type": "MLFLOW_EXPERIMENT", "experiment_id": sdk.experiment_id}
        self.max_attribute_length = sdk.max_attribute_length
        self.metadata = automatic_metadata()
        # Traces whose root span has not ended, by id: tag changes go into their TraceEnded.
        self.live_traces: dict[str, TraceState] = {}

    def new_trace(self, trace_id: str) -> TraceState:
        state = TraceState(trace_id, self.location, self.metadata, self.processor, self.live_traces)
        self.live_traces[trace_id] = state
        return state

    def flush(self, timeout_s: float | None = None) -> bool:
        timeout = self.settings.sdk.flush_timeout_s if timeout_s is None else timeout_s
        return self.processor.force_flush(timeout)

    def shutdown(self, timeout_s: float | None = None) -> None:
        timeout = self.settings.sdk.flush_timeout_s if timeout_s is None else timeout_s
        self.processor.shutdown(timeout)


_provider: TracerProvider | None = None
_disabled = False
_lock = threading.Lock()


def configure(
    settings: Settings | None = None, exporter: EventExporter | None = None
) -> TracerProvider | None:
    """Set up tracing explicitly (optional: the first span does it from the environment).

    A previous provider is flushed and shut down first. Returns None when the settings
    disable tracing.
    """
    global _provider, _disabled
    settings = settings or get_settings()
    with _lock:
        previous, _provider = _provider, None
        if previous is not None:
            previous.shutdown()
        _disabled = not settings.sdk.enabled
        if not _disabled:
            _provider = TracerProvider(settings, exporter)
        return _provider


def get_provider() -> TracerProvider | None:
    """The provider, created on first use; None when tracing is disabled or cannot start."""
    global _provider, _disabled
    provider = _provider
    if provider is not None or _disabled:
        return None if _disabled else provider
    with _lock:
        if _provider is None and not _disabled:
            try:
                settings = get_settings()
                if not settings.sdk.enabled:
                    _disabled = True
                    return None
                _provider = TracerProvider(settings)
            except Exception:  # bad configuration must not break the application
                logger.exception("tracestream: tracing could not start and is disabled")
                _disabled = True
                return None
        return _provider


def flush(timeout_s: float | None = None) -> bool:
    """Publish everything buffered and wait for Kafka, up to ``timeout_s``. True when all is sent."""
    provider = _provider
    return True if provider is None else provider.flush(timeout_s)


def get_stats() -> SdkStatsSnapshot:
    """Counters of emitted, enqueued, delivered, dropped and failed events."""
    provider = _provider
    if provider is None:
        return SdkStatsSnapshot(0, 0, 0, 0, 0)
    return provider.processor.stats_snapshot()


def shutdown(timeout_s: float | None = None) -> None:
    global _provider
    with _lock:
        provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown(timeout_s)


@atexit.register
def _flush_at_exit() -> None:
    provider = _provider
    if provider is not None:
        try:
            if not provider.flush():
                logger.warning("tracestream: some trace events were still unsent at exit: %s", get_stats())
        except Exception:
            logger.exception("tracestream: flush at exit failed")
