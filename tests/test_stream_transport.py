"""How the stream worker's consumer keeps Faust's bookkeeping from undoing the OffsetGuard
(no servers: the consumer is built, not started)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faust.types import TP

from tracestream.settings import Settings
from tracestream.stream.agents import TraceAssembler
from tracestream.stream.worker import create_app


@pytest.fixture
def assembler(monkeypatch: pytest.MonkeyPatch) -> Iterator[TraceAssembler]:
    monkeypatch.setenv("TRACESTREAM_TOPICS__EVENTS", "llm.events")
    yield create_app(Settings())


EVENTS_0 = TP("llm.events", 0)


def test_records_of_the_events_topic_are_never_dropped_as_already_read(assembler: TraceAssembler) -> None:
    consumer = assembler.app.consumer
    consumer._read_offset[EVENTS_0] = 4_307  # the last record delivered before a seek back

    assert consumer._read_offset[EVENTS_0] is None


def test_other_topics_keep_fausts_read_offsets(assembler: TraceAssembler) -> None:
    consumer = assembler.app.consumer
    ticks = TP(assembler.topics.ticks.get_topic_name(), 0)
    consumer._read_offset[ticks] = 12

    assert consumer._read_offset[ticks] == 12
    assert consumer._read_offset[TP(assembler.topics.ticks.get_topic_name(), 1)] is None


def test_the_events_topic_is_committed_where_the_records_processed_in_order_end(
    assembler: TraceAssembler,
) -> None:
    consumer = assembler.app.consumer
    guard = assembler.offset_guard
    guard.on_source_seek({EVENTS_0: 40})
    for offset in (40, 41):
        guard.admit(EVENTS_0, offset)
        guard.processed(EVENTS_0, offset)
    for offset in (45, 46):  # 42-44 were dropped on the way: skipped, to be read again
        guard.admit(EVENTS_0, offset)
    # Faust saw 40-46 acknowledged (skipped records are acknowledged too).
    consumer._acked[EVENTS_0].extend(range(40, 47))
    consumer._acked_index[EVENTS_0].update(range(40, 47))

    assert consumer._new_offset(EVENTS_0) == 42
    assert consumer._acked[EVENTS_0] == [42, 43, 44, 45, 46]


def test_nothing_of_the_events_topic_is_committed_before_a_record_is_processed(
    assembler: TraceAssembler,
) -> None:
    consumer = assembler.app.consumer
    assembler.offset_guard.on_source_seek({EVENTS_0: 40})
    consumer._acked[EVENTS_0].extend([45, 46])

    assert consumer._new_offset(EVENTS_0) is None
