"""The batching processor between the tracing API and an exporter.

The application thread only appends to a bounded deque; a daemon thread takes batches off it
and hands them to the exporter, which encodes and publishes them. When the deque is full the
event is dropped and counted: the application never waits for Kafka.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

logger = logging.getLogger("tracestream.producers")

# (trace id used as the Kafka key, (union branch full name, record))
Event = tuple[str, tuple[str, dict[str, Any]]]


class QueuedEvent(Protocol):
    """What the application thread enqueues: an object that builds its event on the exporter
    thread (a span, a finished trace). It must not change once emitted. Enqueuing the object
    itself, not a tuple around it, keeps the garbage collector's work per span small."""

    def to_event(self) -> Event: ...


class RecordEvent:
    """An event whose record is already built (tag changes, assessments)."""

    __slots__ = ("key", "kind", "record")

    def __init__(self, key: str, kind: str, record: dict[str, Any]) -> None:
        self.key, self.kind, self.record = key, kind, record

    def to_event(self) -> Event:
        return self.key, (self.kind, self.record)


class EventExporter(Protocol):
    """Publishes batches of events. Must not raise; failures are counted through ``stats``."""

    def export(self, events: list[Event], stats: SdkStats) -> None: ...

    def flush(self, timeout_s: float) -> int:
        """Wait for published events to be acknowledged; return how many are still pending."""
        ...

    def poll(self) -> None:
        """Serve delivery reports, if the exporter has any."""
        ...

    def outstanding(self) -> int:
        """Events handed to the transport and neither acknowledged nor failed yet."""
        ...

    def after_fork(self) -> None:
        """Called in a forked child: the parent's transport is unusable there; start a new one."""
        ...

    def shutdown(self) -> None: ...


class TracingStatus(StrEnum):
    ACTIVE = "active"  # events are exported
    DISABLED = "disabled"  # turned off by TRACESTREAM_SDK__ENABLED=false: nothing is recorded
    FAILED = "failed"  # could not start (bad setting, schemas or client): every event counts as failed


class SdkStats:
    """Counters of what became of the events the SDK produced, updated off the hot path:
    the application thread counts only drops; the exporter thread counts what it takes from
    the buffer and hands to the transport, per batch; the transport reports only failures
    (delivered = handed - failed in delivery - still outstanding)."""

    __slots__ = ("_lock", "dropped", "exported", "failed", "handed", "lost_in_delivery", "refused")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.refused = 0  # the buffer was full
        self.exported = 0  # taken from the buffer by the exporter thread
        self.handed = 0  # accepted by the transport (the Kafka client's queue)
        self.lost_in_delivery = 0  # handed, then reported failed by the transport
        self.dropped = 0  # refused + the Kafka client's own queue was full
        self.failed = 0  # could not be encoded or produced

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)


@dataclass(frozen=True)
class SdkStatsSnapshot:
    """Once flushed, ``emitted == delivered + dropped + failed``: ``dropped`` never reached the
    Kafka client (a full buffer), ``failed`` reached it but was not delivered (or could not
    be encoded)."""

    emitted: int
    enqueued: int
    delivered: int
    dropped: int
    failed: int
    status: TracingStatus = TracingStatus.ACTIVE
    # Why tracing is not active, when it is not.
    error: str | None = None

    @property
    def undelivered(self) -> int:
        return self.dropped + self.failed

    @property
    def pending(self) -> int:
        return self.emitted - self.delivered - self.dropped - self.failed


class RateLimitedWarning:
    """Logs at most once per interval, with the number of occurrences since the last log."""

    def __init__(self, interval_s: float = 10.0, quiet_first: bool = False) -> None:
        """``quiet_first``: the first occurrence is not logged (the caller has just said why)."""
        self._interval_s = interval_s
        self._last = time.monotonic() if quiet_first else -interval_s
        self._suppressed = 0
        self._lock = threading.Lock()

    def __call__(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self._interval_s:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        logger.warning(message + " (%d more since the last warning)", *args, suppressed)


class BatchEventProcessor:
    def __init__(
        self,
        exporter: EventExporter,
        max_queue_size: int = 100_000,
        max_export_batch_size: int = 2_000,
        schedule_delay_ms: int = 100,
    ) -> None:
        if max_export_batch_size > max_queue_size:
            raise ValueError("max_export_batch_size must not exceed max_queue_size")
        self.exporter = exporter
        self.stats = SdkStats()
        self._max_queue_size = max_queue_size
        self._max_batch = max_export_batch_size
        self._delay_s = schedule_delay_ms / 1000
        self._warn_full = RateLimitedWarning()
        self._shutdown = False
        self._init_worker()
        # A forked child inherits the deque and the exporter's client but not their threads:
        # start over there. Weakly, so a processor replaced by configure() can be freed.
        after_fork = weakref.WeakMethod(self._after_fork_in_child)
        os.register_at_fork(after_in_child=lambda: (method := after_fork()) and method())

    def _after_fork_in_child(self) -> None:
        if self._shutdown:
            return
        # Counters are per process: the parent's events are the parent's to report.
        self.stats = SdkStats()
        self._warn_full = RateLimitedWarning()
        self.exporter.after_fork()
        self._init_worker()

    def _init_worker(self) -> None:
        self._queue: deque[QueuedEvent] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._worker = threading.Thread(target=self._run, name="tracestream-exporter", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------ application thread

    def emit(self, event: QueuedEvent) -> None:
        queue = self._queue
        if len(queue) >= self._max_queue_size or self._shutdown:
            self.stats.add(refused=1, dropped=1)
            self._warn_full(
                "tracestream: event buffer full (%d events), dropping events", self._max_queue_size
            )
            return
        queue.append(event)
        if len(queue) >= self._max_batch and not self._wake.is_set():
            self._wake.set()

    def stats_snapshot(self) -> SdkStatsSnapshot:
        stats = self.stats
        outstanding = self.exporter.outstanding()
        with stats._lock:
            enqueued = stats.exported + len(self._queue)
            delivered = max(0, stats.handed - stats.lost_in_delivery - outstanding)
            return SdkStatsSnapshot(
                enqueued + stats.refused,
                enqueued,
                delivered,
                stats.dropped,
                stats.failed + stats.lost_in_delivery,
            )

    # ------------------------------------------------------------ worker thread

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait(self._delay_s)
            self._wake.clear()
            self._idle.clear()
            try:
                while queue:
                    batch = []
                    taken = min(self._max_batch, len(queue))
                    for _ in range(taken):
                        queued = queue.popleft()
                        try:
                            batch.append(queued.to_event())
                        except Exception:
                            self.stats.add(failed=1)
                            logger.exception("tracestream: an event could not be built")
                    self.stats.add(exported=taken)
                    self.exporter.export(batch, self.stats)
                self.exporter.poll()
            except Exception:  # the exporter must not raise; if it does, keep the thread alive
                logger.exception("tracestream: exporter failed")
            finally:
                self._idle.set()
            if self._shutdown and not queue:
                return

    # ------------------------------------------------------------ control

    def force_flush(self, timeout_s: float) -> bool:
        """Export everything buffered and wait for Kafka's acknowledgements, up to ``timeout_s``.

        Returns True when nothing is left pending.
        """
        deadline = time.monotonic() + timeout_s
        while self._queue or not self._idle.is_set():
            self._wake.set()
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        remaining = max(0.0, deadline - time.monotonic())
        return self.exporter.flush(remaining) == 0 and not self._queue

    def shutdown(self, timeout_s: float = 10.0) -> None:
        if self._shutdown:
            return
        self.force_flush(timeout_s)
        self._shutdown = True
        self._wake.set()
        self._worker.join(timeout=1.0)
        self.exporter.shutdown()


class UnavailableProcessor:
    """Stands in for the batching processor when tracing could not start: spans still run (the
    application sees no difference), and every event they emit is counted as failed and
    warned about, so the loss shows in ``get_stats()`` and the logs."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.stats = SdkStats()
        self._warn = RateLimitedWarning(quiet_first=True)
        after_fork = weakref.WeakMethod(self._after_fork_in_child)
        os.register_at_fork(after_in_child=lambda: (method := after_fork()) and method())

    def _after_fork_in_child(self) -> None:
        self.stats = SdkStats()
        self._warn = RateLimitedWarning()

    def emit(self, event: QueuedEvent) -> None:
        self.stats.add(failed=1)
        self._warn("tracestream: tracing is off (%s); trace events are being lost", self.reason)

    def stats_snapshot(self) -> SdkStatsSnapshot:
        failed = self.stats.failed
        return SdkStatsSnapshot(failed, 0, 0, 0, failed, TracingStatus.FAILED, self.reason)

    def force_flush(self, timeout_s: float) -> bool:
        """Nothing is ever sent: True only while nothing was lost."""
        return self.stats.failed == 0

    def shutdown(self, timeout_s: float = 10.0) -> None:
        return None
