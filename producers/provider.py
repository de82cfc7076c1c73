"""The process-wide tracer: settings, processor and the traces in flight.

Created on first use from the environment (``TRACESTREAM_*``, see :mod:`.config`), or explicitly with
:func:`configure`. Flushed at interpreter exit.
"""

from __future__ import annotations

import _thread
import atexit
import logging
import os
import signal
import sys
import threading

from tracestream.envconfig import ConfigError
from tracestream.producers.config import ProducerConfig, SdkOptions
from tracestream.producers.metadata import automatic_metadata
from tracestream.producers.processor import (
    BatchEventProcessor,
    EventExporter,
    SdkStatsSnapshot,
    TracingStatus,
    UnavailableProcessor,
)
from tracestream.producers.span import TraceState
from tracestream.schemas.records import TraceLocation

logger = logging.getLogger("tracestream.producers")


class TracerProvider:
    def __init__(
        self,
        config: ProducerConfig | None,
        exporter: EventExporter | None = None,
        unavailable_reason: str | None = None,
    ) -> None:
        """``unavailable_reason``: tracing could not start; spans run and their events are
        counted as failed (``config`` may then be None: the SDK's defaults apply)."""
        sdk = config.sdk if config is not None else SdkOptions()
        self.config = config
        self.flush_timeout_s = sdk.flush_timeout_s
        self.processor: BatchEventProcessor | UnavailableProcessor
        if unavailable_reason is not None or config is None:
            self.processor = UnavailableProcessor(unavailable_reason or "no settings")
        else:
            if exporter is None:
                from tracestream.producers.exporter import KafkaEventExporter

                exporter = KafkaEventExporter(config)
            self.processor = BatchEventProcessor(
                exporter, sdk.max_queue_size, sdk.max_export_batch_size, sdk.schedule_delay_ms
            )
        experiment_id = _experiment_id if _experiment_id is not None else sdk.experiment_id
        self.location: TraceLocation = {"type": "MLFLOW_EXPERIMENT", "experiment_id": experiment_id}
        self.max_attribute_length = sdk.max_attribute_length
        self.metadata = automatic_metadata()
        # Traces whose root span has not ended, by id: tag changes go into their TraceEnded.
        self.live_traces: dict[str, TraceState] = {}

    def set_experiment_id(self, experiment_id: str) -> None:
        """File the traces started from now on under ``experiment_id`` (running ones keep theirs)."""
        self.location = {"type": "MLFLOW_EXPERIMENT", "experiment_id": experiment_id}

    def new_trace(self, trace_id: str) -> TraceState:
        state = TraceState(trace_id, self.location, self.metadata, self.processor, self.live_traces)
        self.live_traces[trace_id] = state
        return state

    def flush(self, timeout_s: float | None = None) -> bool:
        return self.processor.force_flush(self.flush_timeout_s if timeout_s is None else timeout_s)

    def shutdown(self, timeout_s: float | None = None) -> None:
        self.processor.shutdown(self.flush_timeout_s if timeout_s is None else timeout_s)


_provider: TracerProvider | None = None
_disabled = False
_lock = threading.Lock()
# ``tracing.disable()``: spans are not started (functions run untraced) until ``tracing.enable()``.
_paused = False
# ``set_experiment``: the experiment of new traces, over TRACESTREAM_SDK__EXPERIMENT_ID, until
# the next ``configure``.
_experiment_id: str | None = None


def set_experiment_id(experiment_id: str) -> None:
    global _experiment_id
    with _lock:
        _experiment_id = experiment_id
        if _provider is not None:
            _provider.set_experiment_id(experiment_id)


def experiment_id() -> str:
    """The experiment new traces are filed under."""
    provider = _provider or get_provider()
    if provider is not None:
        return provider.location["experiment_id"] or "0"
    return _experiment_id if _experiment_id is not None else "0"


def set_paused(paused: bool) -> None:
    global _paused
    _paused = paused


def _start_provider(config: ProducerConfig, exporter: EventExporter | None) -> TracerProvider:
    """A provider, or, when its exporter cannot start, one that counts every event as failed.
    The cause is logged once, as an error, in one line (the traceback at debug)."""
    try:
        return TracerProvider(config, exporter)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        logger.debug("tracestream: the exporter could not start", exc_info=True)
        return _unavailable(f"the Kafka exporter could not start ({reason})")


def _unavailable(reason: str) -> TracerProvider:
    logger.error(
        "tracestream: tracing is OFF: %s. Trace events are counted as failed "
        "(producers.get_stats()); the application is not affected.",
        reason,
    )
    return TracerProvider(None, unavailable_reason=reason)


def _provider_from(config: ProducerConfig | None, exporter: EventExporter | None) -> TracerProvider | None:
    """A provider for ``config`` (default: the environment's); None when it disables tracing."""
    if config is None:
        try:
            config = ProducerConfig.from_env()
        except ConfigError as exc:
            return _unavailable(f"invalid setting: {exc}")
        except Exception as exc:  # e.g. an unreadable .env file
            return _unavailable(f"the settings could not be read ({type(exc).__name__}: {exc})")
    if not config.sdk.enabled:
        return None
    return _start_provider(config, exporter)


def configure(
    config: ProducerConfig | None = None, exporter: EventExporter | None = None
) -> TracerProvider | None:
    """Set up tracing explicitly (optional: the first span does it from the environment).

    A previous provider is flushed and shut down first. Returns None when the settings
    disable tracing. Never raises: when tracing cannot start, the provider counts every
    event as failed and ``get_stats()`` says why.
    """
    global _provider, _disabled, _experiment_id
    with _lock:
        previous, _provider = _provider, None
        if previous is not None:
            previous.shutdown()
        _experiment_id = None
        _provider = _provider_from(config, exporter)
        _disabled = _provider is None
        return _provider


def get_provider() -> TracerProvider | None:
    """The provider, created on first use from the environment; None when tracing is disabled."""
    global _provider, _disabled
    provider = _provider
    if provider is not None or _disabled:
        return None if _disabled else provider
    with _lock:
        if _provider is None and not _disabled:
            _provider = _provider_from(None, None)
            _disabled = _provider is None
            if _forked_child and _provider is not None:
                _flush_before_exit_of_forked_child(_provider, during_fork=False)
        return _provider


def flush(timeout_s: float | None = None) -> bool:
    """Publish everything buffered and wait for Kafka, up to ``timeout_s``. True when all is sent."""
    provider = _provider
    return True if provider is None else provider.flush(timeout_s)


def get_stats() -> SdkStatsSnapshot:
    """Counters of emitted, enqueued, delivered, dropped and failed events, and whether
    tracing is active, disabled by its setting, or failed to start (with why)."""
    provider = _provider or get_provider()
    if provider is None:
        return SdkStatsSnapshot(0, 0, 0, 0, 0, TracingStatus.DISABLED, "TRACESTREAM_SDK__ENABLED is false")
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
            if provider.flush():
                return
            stats = provider.processor.stats_snapshot()
            if stats.status is TracingStatus.FAILED:
                logger.error(
                    "tracestream: tracing was off (%s): %d trace events lost", stats.error, stats.failed
                )
            else:
                logger.warning("tracestream: some trace events were still unsent at exit: %s", stats)
        except Exception:
            logger.exception("tracestream: flush at exit failed")


_forked_child = False


def _after_fork_in_child() -> None:
    global _forked_child
    _forked_child = True
    provider = _provider
    if provider is not None:
        _flush_before_exit_of_forked_child(provider, during_fork=True)


def _flush_before_exit_of_forked_child(provider: TracerProvider, during_fork: bool) -> None:
    """Forked workers rarely leave through atexit: multiprocessing's leave through os._exit,
    and a Pool used as a context manager ends its workers with SIGTERM. Flush on both ways out."""
    multiprocessing_util = sys.modules.get("multiprocessing.util")
    if multiprocessing_util is not None:
        if during_fork:
            # multiprocessing's bootstrap clears the exit hooks a child inherits: register ours
            # after it, from its after-fork hooks.
            multiprocessing_util.register_after_fork(provider, _register_multiprocessing_exit_flush)
        else:
            _register_multiprocessing_exit_flush(provider)
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _flush_then_terminate)
    except ValueError:  # not the main thread: signals cannot be handled here
        pass


def _register_multiprocessing_exit_flush(_: TracerProvider) -> None:
    sys.modules["multiprocessing.util"].Finalize(None, _flush_at_exit, exitpriority=100)


def _flush_then_terminate(signum: int, frame: object) -> None:
    # Installed only where SIGTERM had its default action. A handler runs between two bytecodes
    # of the main thread, which may hold a lock the flush needs (the processor's, logging's):
    # flush on a thread of its own (a bare one: starting a threading.Thread takes locks too),
    # then take the default action. A second SIGTERM meanwhile terminates at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _thread.start_new_thread(_flush_and_terminate, ())


def _flush_and_terminate() -> None:
    try:
        flush()  # bounded by TRACESTREAM_SDK__FLUSH_TIMEOUT_S, as at exit
    finally:
        os.kill(os.getpid(), signal.SIGTERM)


os.register_at_fork(after_in_child=_after_fork_in_child)
