"""Faust's aiokafka transport with fixes: a partition without a committed offset is rewound too;
the app's OffsetGuard owns the read offsets and commits of its source topic (see below).

Why: during a rebalance, Faust may take records out of aiokafka's fetcher and then drop them
(the flow is stopped, or the partition is not active yet: ``Consumer.getmany`` and
``Consumer._wait_next_records`` in faust/transport/consumer.py). aiokafka's position has moved
past them by then, and Faust relies on ``seek_to_committed`` ("Seek stream partitions to
committed offsets" after recovery) to go back. But aiokafka's ``seek_to_committed`` only seeks
partitions whose committed offset is above 0 (``if offset and offset > 0``), so a partition
nobody has committed yet keeps the advanced position and the dropped records are never
processed. That is what happened when a worker was SIGKILLed before its first commit (every
``broker_commit_interval``, 2.8 s): the survivor took its partitions over, fetched them from the
beginning during recovery, dropped the records, and then waited at the end of the partitions
forever ("Worker ready", and no events).

The fix: partitions of the stream's source topics (not the tables' changelogs, whose positions
the recovery manages itself) that have no committed offset are sent back to where a consumer
without a committed offset starts (``consumer_auto_offset_reset``). Records processed before the
rebalance and not yet committed are processed again, which the at-least-once design handles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import faust
from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, TransportT

logger = logging.getLogger("stream")


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        return await self.call_thread(self._seek_to_committed_or_reset)

    async def _seek_to_committed_or_reset(self) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        committed: Mapping[TopicPartition, int | None] = await consumer.seek_to_committed()
        changelogs = self.app.tables.changelog_topics
        uncommitted = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
        starts = {tp: offset for tp, offset in committed.items() if offset and tp.topic not in changelogs}
        if uncommitted:
            logger.debug("stream: no committed offset, resetting %s", uncommitted)
            if self.app.conf.consumer_auto_offset_reset == "latest":
                await consumer.seek_to_end(*uncommitted)
                starts.update(await consumer.end_offsets(uncommitted))
            else:
                await consumer.seek_to_beginning(*uncommitted)
                starts.update(await consumer.beginning_offsets(uncommitted))
        # Where each source partition now resumes: the worker checks that its first record
        # comes from there (see stream.offset_guard.OffsetGuard).
        on_seek = getattr(self.app, "on_source_seek", None)
        if on_seek is not None:
            on_seek({TP(tp.topic, tp.partition): offset for tp, offset in starts.items()})
        return committed  # type: ignore[return-value]


class SourceOffsets(Protocol):
    """What the app knows of the partitions it checks itself (stream.offset_guard.OffsetGuard)."""

    def guards(self, tp: TP) -> bool: ...

    def commit_offset(self, tp: TP) -> int | None: ...


class _ReadOffsets(dict):
    """Faust's read offsets, with none for the partitions the app checks itself.

    Why: Faust drops a fetched record below the last offset it delivered, as a re-delivery.
    When the app seeks a partition back to records that never reached it, the records still
    being delivered from before the seek raise that offset again, and the records the seek
    asked for were dropped: seen as a gap of 2,458 records that 5 seeks in a row could not
    close. Re-deliveries of a guarded partition reach the app, which handles them.
    """

    def __init__(self, app: Any) -> None:
        super().__init__()
        self._app = app

    def __getitem__(self, tp: TP) -> int | None:
        # Read for every record delivered: the app's attribute, not a lookup with a default.
        guard: SourceOffsets | None = self._app.offset_guard
        if guard is not None and guard.guards(tp):
            return None
        return self.get(tp)


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = _ReadOffsets(self.app)

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for ``tp``: for a partition the app checks, where it says.

        Why: Faust's is the end of the first run of acknowledged offsets, where offsets it
        saw skipped count as acknowledged and so do records the app set aside to read again
        after a seek; a worker killed after such a commit would leave the records in between
        unprocessed for good.
        """
        guard: SourceOffsets | None = getattr(self.app, "offset_guard", None)
        if guard is None or not guard.guards(tp):
            return super()._new_offset(tp)
        offset = guard.commit_offset(tp)
        if offset is not None:
            # Faust's acknowledgements of this partition are not used: forget the old ones.
            acked = self._acked[tp]
            acked[:] = [n for n in acked if n >= offset]
            self._acked_index[tp] = set(acked)
        return offset

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def rewind(self, tp: TP, offset: int) -> None:
        """Read ``tp`` again from ``offset``: seeks in the consumer's own thread, as Faust's
        recovery does. (Faust's read offset, which would drop the records read again, is
        ignored for the guarded partitions this is used for: see :class:`_ReadOffsets`.)"""
        await self._thread.seek_wait({tp: offset})  # type: ignore[attr-defined]


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """A Faust app whose consumer uses :class:`Transport` (kafka:// broker URLs only)."""

    # Set by the app that checks the offsets of its source partitions itself.
    offset_guard: SourceOffsets | None = None

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> TransportT:
        return Transport(self.conf.broker_producer, self)
