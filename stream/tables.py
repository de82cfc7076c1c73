"""The stream's tables, backed by changelog topics, one partition per partition of the events topic.

* ``spans``   ``"<trace id>:<n>"`` -> the n-th chunk of the trace: a record of the events topic
              (one span, or a batch of the trace's events) that brought at least one new span, as
              received (bytes). Written once per record: the cost of a span does not grow with
              its trace, and a batch of spans costs one write.
* ``traces``  ``"<trace id>"`` -> the trace's state as a small JSON record
              (:meth:`TraceState.to_record`, or a purge marker), written only when a trace-level
              fact changes, never per span.

The parts of a state kept in memory (span ids, chunk count) are rebuilt from the ``spans`` table
after a restart or a rebalance (reading ``<id>:0``, ``<id>:1``, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import faust

from tracestream import schemas
from tracestream.schemas import SPAN_ENDED, events_of
from tracestream.schemas.records import SpanEnded
from tracestream.stream.assembler import Event, State
from tracestream.stream.state import TraceState, state_from_record


def chunk_key(trace_id: str, n: int) -> bytes:
    """The key of a trace's n-th chunk in the spans table."""
    return f"{trace_id}:{n}".encode()


class TraceTables:
    def __init__(self, app: faust.App, partitions: int, events_codec: schemas.AvroCodec) -> None:
        self._events_codec = events_codec
        # Keys and values of the spans table are bytes, with the app's raw serializers: a schema
        # with a JSON key made Faust's changelog recovery decode these values as text.
        self.spans = app.Table("spans", default=None, key_type=bytes, value_type=bytes, partitions=partitions)
        json_values = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
        self.traces = app.Table("traces", default=None, schema=json_values, partitions=partitions)

    def _chunk_events(self, trace_id: str, n: int) -> list[tuple[str, Any]] | None:
        stored = self.spans.get(chunk_key(trace_id, n))
        if stored is None:
            return None
        return events_of(self._events_codec.decode(stored)["event"])

    def load(self, trace_id: str, now_ms: int) -> State:
        """The trace's state from the tables; a state being assembled gets its span ids back, and
        a fresh idle period (its last activity is not kept)."""
        state = state_from_record(self.traces.get(trace_id))
        if not isinstance(state, TraceState):
            return state
        span_ids: set[str] = set()
        n = 0
        while (events := self._chunk_events(trace_id, n)) is not None:
            span_ids.update(record["span_id"] for kind, record in events if kind == SPAN_ENDED)
            n += 1
        return replace(state, span_ids=frozenset(span_ids), chunks=n, last_activity_ms=now_ms, restored=True)

    def records(self) -> Iterator[tuple[str, State]]:
        """Every trace of the table (a pass over the whole table: rarely)."""
        for trace_id, record in list(self.traces.items()):
            state = state_from_record(record)
            if state is not None:
                yield trace_id, state

    def write_state(self, trace_id: str, state: State) -> None:
        if state is None:
            self.traces.pop(trace_id, None)
        else:
            self.traces[trace_id] = state.to_record()

    def store_chunk(self, trace_id: str, index: int, value: bytes) -> None:
        self.spans[chunk_key(trace_id, index)] = value

    def drop_chunks(self, trace_id: str, count: int) -> None:
        for n in range(count):
            self.spans.pop(chunk_key(trace_id, n), None)

    def spans_of(
        self, trace_id: str, chunks: int, current: tuple[int, Sequence[Event]] | None = None
    ) -> list[SpanEnded]:
        """The trace's distinct spans from its chunks (``current``: a chunk already decoded)."""
        spans: dict[str, SpanEnded] = {}
        decode = self._events_codec.decode
        for n in range(chunks):
            if current is not None and current[0] == n:
                events = current[1]
            else:
                events = events_of(decode(self.spans[chunk_key(trace_id, n)])["event"])
            for kind, record in events:
                if kind == SPAN_ENDED:
                    spans.setdefault(record["span_id"], record)  # type: ignore[typeddict-item,arg-type]
        return list(spans.values())


class RuleTables:
    """The alert rules' state (stream/rules.py), partitioned like the events topic.

    * ``rule_windows``  ``[rule, group, partition]`` (JSON) -> that partition's window of the
                        rule for the group, and the group's firing status where it was decided;
                        written when a trace changes a window, so a restarted worker keeps them.
    * ``rule_marks``    ``"<trace id>"`` -> what the rules counted for the trace, so a later
                        revision counts only where its answer changes and a replay not again;
                        dropped with the trace's state.
    """

    def __init__(self, app: faust.App, partitions: int) -> None:
        json_values = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
        self.windows = app.Table("rule_windows", default=None, schema=json_values, partitions=partitions)
        self.marks = app.Table("rule_marks", default=None, schema=json_values, partitions=partitions)
