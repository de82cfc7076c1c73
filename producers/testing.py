"""An exporter that keeps events in memory, for tests of instrumented code (like OTel's
InMemorySpanExporter). Every event is Avro-encoded and decoded on the way, so what it
holds is exactly what Kafka consumers would read."""

from __future__ import annotations

import threading
from typing import Any

from tracestream import schemas
from tracestream.producers.processor import Event, SdkStats
from tracestream.schemas.event_writer import encode_event


class InMemoryEventExporter:
    def __init__(self) -> None:
        self._codec = schemas.events_codec()
        self._events: list[tuple[str, tuple[str, dict[str, Any]]]] = []
        self._lock = threading.Lock()

    def export(self, events: list[Event], stats: SdkStats) -> None:
        decoded = []
        for key, event in events:
            try:
                decoded.append((key, self._codec.decode(encode_event(self._codec, *event))["event"]))
            except schemas.SchemaError:
                stats.add(failed=1)
        with self._lock:
            self._events.extend(decoded)
        stats.add(handed=len(decoded))

    def flush(self, timeout_s: float) -> int:
        return 0

    def poll(self) -> None:
        return None

    def outstanding(self) -> int:
        return 0

    def after_fork(self) -> None:
        return None

    def shutdown(self) -> None:
        return None

    @property
    def events(self) -> list[tuple[str, tuple[str, dict[str, Any]]]]:
        """(key, (kind, record)) in publication order."""
        with self._lock:
            return list(self._events)

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [record for _, (event_kind, record) in self.events if event_kind == kind]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
