"""The stream worker's check that no record of the events topic is skipped on its way to the
agent, and that the offsets committed never pass a record that was not processed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class OffsetGuard:
    """Makes sure no record of the events topic is skipped on its way to the agent, and that
    the offsets committed never pass a record that was not processed.

    Why: around a rebalance Faust can drop a record it has already fetched (its flow is stopped
    or resumed, its buffers cleared, or its generation changed mid-batch) while the consumer's
    position has moved past it; seen in the two-worker SIGKILL test as one span, once in about
    five runs, never processed. Offsets of the events topic are contiguous (no transactions),
    so a record whose offset is above the next one expected reveals the gap: the partition is
    sought back to the first missing offset and the out-of-order records are skipped, to come
    again in order. Records below the expected offset are re-deliveries (after a seek) and are
    processed again; the stream is idempotent for them.

    Faust's own bookkeeping must not undo this: its read offsets (records below the last one
    delivered are dropped as re-deliveries, which dropped the records a seek back had just
    asked for) and its commits (computed from acknowledgements, with missing offsets counted
    as done) are replaced, for the guarded topic, by :meth:`guards` and :meth:`commit_offset`
    (see stream.transport).
    """

    # A gap still open after this many seeks is checked against the partition's log start:
    # records deleted by retention can never come, any others are sought again.
    MAX_SEEKS = 5

    def __init__(self, topic: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.topic = topic
        self._clock = clock
        self.next_offsets: dict[Any, int] = {}
        self.starts: dict[Any, int] = {}
        self._done: dict[Any, int] = {}
        # What commits may reach: ``_done``, except while state derived from the records since
        # the last checkpoint is only in memory (see :meth:`hold`).
        self._committable: dict[Any, int] = {}
        self._holding = False
        self._seeks: dict[Any, tuple[int, int, float]] = {}  # tp -> (offset, attempts, at)
        self.gaps_closed = 0

    def guards(self, tp: Any) -> bool:
        return bool(tp.topic == self.topic)

    def reset(self) -> None:
        self.next_offsets.clear()
        self.starts.clear()
        self._done.clear()
        self._committable.clear()
        self._holding = False
        self._seeks.clear()

    def on_source_seek(self, starts: dict[Any, int]) -> None:
        """The consumer resumes these partitions at these offsets (after a rebalance)."""
        for tp, offset in starts.items():
            self.starts[tp] = offset
            self.next_offsets.pop(tp, None)

    def overdue_seeks(self) -> list[tuple[Any, int]]:
        """Seeks issued over 2 s ago whose first record has not come; marked as issued again."""
        now = self._clock()
        overdue = []
        for tp, (offset, attempts, at) in list(self._seeks.items()):
            if now - at >= 2.0:
                self._seeks[tp] = (offset, attempts + 1, now)
                overdue.append((tp, offset))
        return overdue

    def admit(self, tp: Any, offset: int) -> int | None:
        """None when the record is the next one (or a re-delivery): process it. Otherwise the
        offset to seek ``tp`` back to; ``-1`` when a seek is already under way."""
        expected = self.next_offsets.get(tp, self.starts.get(tp))
        if expected is None or offset <= expected:
            self.next_offsets[tp] = offset + 1
            self._seeks.pop(tp, None)
            return None
        sought, attempts, at = self._seeks.get(tp, (-1, 0, 0.0))
        now = self._clock()
        if sought == expected and now - at < 2.0:
            return -1
        self._seeks[tp] = (expected, attempts + 1 if sought == expected else 1, now)
        return expected

    def attempts(self, tp: Any) -> int:
        """How many times ``tp`` was sought back for the gap now open (0: none open)."""
        return self._seeks.get(tp, (-1, 0, 0.0))[1]

    def skip_to(self, tp: Any, offset: int) -> None:
        """Accept that the records of ``tp`` below ``offset`` cannot be read (retention)."""
        self.next_offsets[tp] = offset
        self._done[tp] = max(self._done.get(tp, offset), offset)
        if not self._holding:
            self._committable[tp] = self._done[tp]
        self._seeks.pop(tp, None)

    def processed(self, tp: Any, offset: int) -> None:
        """The record at ``offset`` (admitted) has been handled, outputs sent."""
        self._done[tp] = offset + 1
        if not self._holding:
            self._committable[tp] = offset + 1

    def hold(self) -> None:
        """Commits stay where they are: what the records handled from now on changed is kept
        in memory only, until :meth:`release` (a replay after a crash must count them again)."""
        self._holding = True

    def release(self) -> None:
        """Everything handled so far is persisted: commits may reach it."""
        self._committable.update(self._done)
        self._holding = False

    def commit_offset(self, tp: Any) -> int | None:
        """Where a consumer may resume ``tp`` without missing a record: every record below it
        was handled, in order, and persisted; None when none has been since the partition was
        assigned."""
        return self._committable.get(tp)
