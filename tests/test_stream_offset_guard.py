"""The stream worker's check that no record of an events partition is skipped (no servers)."""

from __future__ import annotations

from faust.types import TP

from tracestream.stream.offset_guard import OffsetGuard

EVENTS_0 = TP("llm.events", 0)
EVENTS_1 = TP("llm.events", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_records_in_order_are_processed() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 40})

    assert [guard.admit(EVENTS_0, offset) for offset in (40, 41, 42)] == [None, None, None]


def test_a_skipped_record_sends_the_partition_back_to_it() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 0})
    for offset in range(148):
        guard.admit(EVENTS_0, offset)

    assert guard.admit(EVENTS_0, 149) == 148


def test_a_first_record_above_where_the_consumer_resumed_is_a_gap() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 0, EVENTS_1: 7})

    assert guard.admit(EVENTS_0, 152) == 0
    assert guard.admit(EVENTS_1, 7) is None


def test_records_after_the_gap_are_skipped_while_the_seek_is_under_way() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 10})
    guard.admit(EVENTS_0, 12)

    assert [guard.admit(EVENTS_0, offset) for offset in (13, 14)] == [-1, -1]


def test_records_read_again_after_the_seek_are_processed_in_order() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 10})
    guard.admit(EVENTS_0, 10)
    guard.admit(EVENTS_0, 12)

    assert [guard.admit(EVENTS_0, offset) for offset in (11, 12, 13)] == [None, None, None]


def test_a_redelivered_record_below_the_expected_offset_is_processed_again() -> None:
    guard = OffsetGuard("llm.events")
    for offset in (5, 6, 7):
        guard.admit(EVENTS_0, offset)

    assert guard.admit(EVENTS_0, 5) is None
    assert guard.admit(EVENTS_0, 6) is None


def test_a_gap_is_sought_again_every_two_seconds_while_it_stays_open() -> None:
    clock = Clock()
    guard = OffsetGuard("llm.events", clock)
    guard.on_source_seek({EVENTS_0: 0})
    guard.admit(EVENTS_0, 500)
    for _ in range(OffsetGuard.MAX_SEEKS + 2):
        clock.now += 3  # the records 0-499 did not come after the seek
        assert guard.admit(EVENTS_0, 500) == 0

    assert guard.attempts(EVENTS_0) == OffsetGuard.MAX_SEEKS + 3


def test_records_deleted_by_retention_are_skipped_once_accepted() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 0})
    guard.admit(EVENTS_0, 500)
    guard.skip_to(EVENTS_0, 500)

    assert guard.admit(EVENTS_0, 500) is None
    assert guard.attempts(EVENTS_0) == 0


def test_nothing_is_committable_before_a_record_is_processed() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 40})

    assert guard.commit_offset(EVENTS_0) is None


def test_the_commit_offset_follows_the_records_processed() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 40})
    for offset in (40, 41):
        guard.admit(EVENTS_0, offset)
        guard.processed(EVENTS_0, offset)

    assert guard.commit_offset(EVENTS_0) == 42


def test_records_whose_state_is_held_in_memory_are_not_committed_until_released() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 40, EVENTS_1: 7})
    guard.admit(EVENTS_0, 40)
    guard.processed(EVENTS_0, 40)
    guard.hold()  # the alert rules changed a window they have not written yet
    for offset in (41, 42):
        guard.admit(EVENTS_0, offset)
        guard.processed(EVENTS_0, offset)
    guard.admit(EVENTS_1, 7)
    guard.processed(EVENTS_1, 7)

    assert (guard.commit_offset(EVENTS_0), guard.commit_offset(EVENTS_1)) == (41, None)
    guard.release()  # written: a crash no longer loses what those records counted
    assert (guard.commit_offset(EVENTS_0), guard.commit_offset(EVENTS_1)) == (43, 8)


def test_a_rebalance_drops_a_hold() -> None:
    guard = OffsetGuard("llm.events")
    guard.hold()
    guard.reset()
    guard.on_source_seek({EVENTS_0: 40})
    guard.admit(EVENTS_0, 40)
    guard.processed(EVENTS_0, 40)

    assert guard.commit_offset(EVENTS_0) == 41


def test_records_skipped_while_a_gap_is_read_again_are_not_committed() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 40})
    guard.admit(EVENTS_0, 40)
    guard.processed(EVENTS_0, 40)
    for offset in (45, 46, 47):  # 41-44 were dropped on the way: skipped, to come again
        guard.admit(EVENTS_0, offset)

    assert guard.commit_offset(EVENTS_0) == 41


def test_only_the_events_topic_is_guarded() -> None:
    guard = OffsetGuard("llm.events")

    assert guard.guards(EVENTS_0)
    assert not guard.guards(TP("tracestream-stream-ticks", 0))


def test_a_seek_whose_records_never_come_is_issued_again_by_the_timer() -> None:
    clock = Clock()
    guard = OffsetGuard("llm.events", clock)
    guard.on_source_seek({EVENTS_0: 3})
    guard.admit(EVENTS_0, 9)
    clock.now += 3

    assert guard.overdue_seeks() == [(EVENTS_0, 3)]
    assert guard.overdue_seeks() == []  # just issued again


def test_a_rebalance_forgets_what_was_expected() -> None:
    guard = OffsetGuard("llm.events")
    guard.on_source_seek({EVENTS_0: 0})
    guard.admit(EVENTS_0, 0)
    guard.reset()

    assert guard.admit(EVENTS_0, 90) is None
