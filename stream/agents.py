"""The stream worker's agents and timer: they read records and ticks, run them through the
assembler (stream/assembler.py) and carry out its outputs on the tables and topics.

Per trace, the state being assembled is kept in memory (``cache``) and written to the ``traces``
table when the assembler says so; after a restart or a rebalance it is rebuilt from the tables.
Timers are the assembler's outputs too: the timer finds the traces whose timer is due and ticks
their own partition through the ticks topic (Faust timers may not modify tables), and the tick
agent, which runs in that partition's context, steps the trace with the tick.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import faust

from tracestream.indexer.document import searched_fields
from tracestream.schemas import DecodeError, events_of
from tracestream.schemas.event_writer import MAX_RECORD_BYTES
from tracestream.settings import Settings
from tracestream.stream.app import build_app
from tracestream.stream.assembler import (
    Config,
    DeadLetterEvent,
    DeadLetterHeld,
    DeadLetterRecord,
    DropChunks,
    EmitRevision,
    EmitTombstone,
    Event,
    IgnoreDeleted,
    InvalidRecord,
    Output,
    Received,
    State,
    StoreChunk,
    Tick,
    TickAction,
    Timer,
    WriteState,
    alert_of,
    completed_trace,
    step,
    timer_of,
    trace_id_of,
)
from tracestream.stream.offset_guard import OffsetGuard
from tracestream.stream.prices import PriceTable
from tracestream.stream.rules import RuleEngine, RuleSet, facts_of, load_rules
from tracestream.stream.sinks import Sinks
from tracestream.stream.stall import stall_report
from tracestream.stream.state import Deleted, Purged, TraceState
from tracestream.stream.tables import RuleTables, TraceTables
from tracestream.stream.topics import declare_topics

logger = logging.getLogger("stream")

# The status line: after this long when the counts changed, else after STATUS_IDLE_S, so an idle
# worker says it is alive without filling its log.
STATUS_EVERY_S = 30.0
STATUS_IDLE_S = 300.0


class TraceTooLarge(Exception):
    """The assembled trace does not fit in one record of the completed topic."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Source:
    """The record being processed, for dead letters: where it was read, its key and value."""

    __slots__ = ("key", "offset", "partition", "topic", "value")

    def __init__(self, message: Any, key: bytes | None, value: bytes | None) -> None:
        self.topic: str = message.topic
        self.partition: int = message.partition
        self.offset: int = message.offset
        self.key = key
        self.value = value

    @property
    def where(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


class TraceAssembler:
    """The stream worker's Faust app, with its topics, tables, agents and timer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        stream = settings.stream
        self.config = Config(
            idle_timeout_ms=int(stream.idle_timeout_s * 1000),
            late_window_ms=int(stream.late_window_s * 1000),
            marker_retention_ms=int(stream.marker_retention_s * 1000),
            deleted_retention_ms=int(stream.deleted_marker_retention_s * 1000),
        )
        self.app = build_app(settings)
        self.topics = declare_topics(self.app, settings)
        self.sinks = Sinks(settings, self.topics)
        self.tables = TraceTables(self.app, settings.topics.events_partitions, self.sinks.events_codec)
        self.cache: dict[str, TraceState] = {}
        self.timers: dict[str, Timer] = {}
        # Alert rules: a file that does not load raises RuleError here, before anything starts.
        self.rule_set: RuleSet | None = load_rules(stream.rules_file) if stream.rules_file else None
        # Prices of models for spans without a cost: read once here (a bad file raises PriceError
        # before anything starts); lookups are cached per model.
        self.prices = PriceTable.load(stream.model_prices_file)
        self.rules: RuleEngine | None = None
        self.rule_tables: RuleTables | None = None
        # Rule state changed since the last checkpoint (stream.rules_checkpoint_s), written by
        # the agent (Faust timers may not write tables): window keys, and marks by trace id
        # (None: delete). Until then the offset guard holds commits back.
        self._dirty_rule_keys: set[str] = set()
        self._pending_marks: dict[str, Any] = {}
        self._rules_checkpointed_at = 0.0
        if self.rule_set is not None and self.rule_set.rules:
            self.rules = RuleEngine(self.rule_set.rules)
            self.rule_tables = RuleTables(self.app, settings.topics.events_partitions)
        self.processed = 0
        # Events of deleted traces, ignored (one log line per trace, at its first).
        self.events_after_delete = 0
        self.ticks_sent = 0
        self.ticks_handled = 0
        # When a record or tick last reached an agent (monotonic), to notice a stalled worker.
        self._progress_at = time.monotonic()
        self._stall_reported_at = 0.0
        self._synced_at = 0.0
        self._reported_at = 0.0
        self._reported_counts: tuple[int, ...] | None = None
        self.app.agent(self.topics.events, name="assemble-traces")(self._process_events)
        self.app.agent(self.topics.ticks, name="trace-ticks")(self._process_ticks)
        self.app.timer(stream.tick_interval_s)(self._find_due_timers)
        self.app.on_partitions_revoked.connect(self._forget_cache)
        self.app.on_partitions_revoked.connect(self._log_revoked)
        self.app.on_partitions_assigned.connect(self._log_assigned)
        self.app.on_rebalance_complete.connect(self._log_ready)
        self.app.on_rebalance_complete.connect(self._restore_rules)
        self.offset_guard = OffsetGuard(self.topics.events.get_topic_name())
        self.app.offset_guard = self.offset_guard
        self.app.on_source_seek = self._on_source_seek  # type: ignore[attr-defined]

    @property
    def emitted(self) -> int:
        return self.sinks.emitted

    # ------------------------------------------------------------ records

    async def _process_events(self, stream: faust.StreamT) -> None:
        guard = self.offset_guard
        async for event in stream.events():
            message = event.message
            self._progress_at = time.monotonic()
            seek_to = guard.admit(message.tp, message.offset)
            if seek_to is not None and seek_to >= 0 and guard.attempts(message.tp) > guard.MAX_SEEKS:
                seek_to = await self._maybe_deleted(message.tp, seek_to, message.offset)
            if seek_to is not None:
                if seek_to >= 0:
                    logger.warning(
                        "stream: %s skipped to offset %d, reading again from %d",
                        message.tp,
                        message.offset,
                        seek_to,
                    )
                    guard.gaps_closed += 1
                    await self._rewind(message.tp, seek_to)
                continue
            source = _Source(message, event.key, event.value)
            try:
                await self._handle_record(source)
            except DecodeError as exc:
                await self._dead_letter(exc.reason.value, str(exc), source)
            except InvalidRecord as exc:
                await self._dead_letter("invalid_event", str(exc), source)
            except TraceTooLarge as exc:
                logger.warning("stream: %s", exc)
                await self._dead_letter("trace_too_large", str(exc), source)
            except Exception as exc:  # one bad event must not stop the worker
                logger.exception(
                    "stream: could not process %s[%d]@%d", message.topic, message.partition, message.offset
                )
                await self._dead_letter("processing_error", repr(exc), source)
            guard.processed(message.tp, message.offset)
            self.processed += 1
            self._maybe_checkpoint_rules()

    async def _maybe_deleted(self, tp: Any, missing: int, offset: int) -> int | None:
        """A gap that seeks did not close: if retention deleted its records, go on after it
        (the guard's answer for ``offset`` then); otherwise seek again."""
        try:
            start = (await self.app.consumer.earliest_offsets(tp))[tp]
        except Exception:  # the partition may have moved away meanwhile
            logger.warning("stream: could not read the log start of %s", tp, exc_info=True)
            return missing
        if start <= missing:
            return missing
        logger.error(
            "stream: records %d-%d of %s were deleted (retention) before they were read; going on from %d",
            missing,
            start - 1,
            tp,
            start,
        )
        self.offset_guard.skip_to(tp, start)
        return self.offset_guard.admit(tp, offset)

    async def _handle_record(self, source: _Source) -> None:
        """One record of the events topic: an event, or a batch of one trace's events."""
        assert source.value is not None
        events: list[Event] = events_of(self.sinks.events_codec.decode(source.value)["event"])
        if not events:
            return
        trace_id = trace_id_of(events)
        now_ms = _now_ms()
        received = Received(trace_id, source.partition, source.offset, source.value, events)
        state, outputs = step(self._state_of(trace_id, now_ms), received, now_ms, self.config)
        await self._carry_out(trace_id, state, outputs, source)

    def _state_of(self, trace_id: str, now_ms: int) -> State:
        state = self.cache.get(trace_id)
        if state is not None:
            return state
        loaded = self.tables.load(trace_id, now_ms)
        if isinstance(loaded, TraceState):
            self._keep(trace_id, loaded)
        return loaded

    def _keep(self, trace_id: str, state: TraceState) -> None:
        self.cache[trace_id] = state
        self.timers.setdefault(trace_id, timer_of(state, self.config))

    # ------------------------------------------------------------ outputs

    async def _carry_out(self, trace_id: str, state: State, outputs: list[Output], source: _Source) -> None:
        """The assembler's outputs, in order (outputs before the state write that records them)."""
        if isinstance(state, TraceState):
            self.cache[trace_id] = state
        else:
            self.cache.pop(trace_id, None)
            self.timers.pop(trace_id, None)
        current: tuple[int, Any] | None = None
        too_large: str | None = None
        for output in outputs:
            if isinstance(output, StoreChunk):
                self.tables.store_chunk(trace_id, output.index, output.value)
                current = (output.index, output.events)
            elif isinstance(output, WriteState):
                self.tables.write_state(trace_id, state)
                if self.rules is not None and not isinstance(state, TraceState):
                    self._pending_marks[trace_id] = None  # no revision of it can follow
            elif isinstance(output, EmitRevision):
                assert isinstance(state, TraceState)
                too_large = (
                    await self._emit(trace_id, output, state.chunks, current, state.partition) or too_large
                )
            elif isinstance(output, Timer):
                if output.action is None:
                    self.timers.pop(trace_id, None)
                else:
                    self.timers[trace_id] = output
            elif isinstance(output, DropChunks):
                self.tables.drop_chunks(trace_id, output.count)
            elif isinstance(output, EmitTombstone):
                await self.sinks.send_tombstone(trace_id, output.first_seen_ms)
            elif isinstance(output, IgnoreDeleted):
                self.events_after_delete += output.events
                if output.first:
                    logger.info(
                        "stream: ignoring events of deleted trace %s (%s[%d]@%d; later ones only counted)",
                        trace_id,
                        *source.where,
                    )
            elif isinstance(output, DeadLetterRecord):
                await self._dead_letter(output.reason.value, output.detail, source)
            elif isinstance(output, DeadLetterEvent):
                await self.sinks.dead_letter_event(
                    output.reason.value, output.detail, source.where, output.kind, output.record
                )
            elif isinstance(output, DeadLetterHeld):
                where = (self.topics.events.get_topic_name(), output.partition, output.offset)
                await self.sinks.dead_letter(
                    output.reason.value, output.detail, where, trace_id.encode(), output.value
                )
        if too_large is not None:
            # Still recorded as emitted (and alerted), so it is dead-lettered once, not at every tick.
            raise TraceTooLarge(too_large)

    async def _emit(
        self,
        trace_id: str,
        emission: EmitRevision,
        chunks: int,
        current: tuple[int, Any] | None,
        partition: int,
    ) -> str | None:
        """Sends the revision (and its alert); why not, when it is too large."""
        now_ms = _now_ms()
        trace = completed_trace(
            trace_id, emission, self.tables.spans_of(trace_id, chunks, current), now_ms, self.prices
        )
        size = await self.sinks.send_completed(trace, emission.first_seen_ms)
        if emission.alert:
            await self.sinks.send_alert(alert_of(trace, now_ms))
        if size is None:
            if self.rules is not None:
                await self._evaluate_rules(trace, emission.first_seen_ms, partition, now_ms)
            return None
        return (
            f"trace {trace_id} revision {emission.revision} has {len(trace['spans'])} spans and is {size} "
            f"bytes as a CompletedTrace; the completed topic takes at most {MAX_RECORD_BYTES}"
        )

    async def _dead_letter(self, reason: str, detail: str, source: _Source) -> None:
        await self.sinks.dead_letter(reason, detail, source.where, source.key, source.value)

    # ------------------------------------------------------------ alert rules

    async def _evaluate_rules(self, trace: Any, first_seen_ms: int, partition: int, now_ms: int) -> None:
        """Every rule against one revision: its searched fields are built once for all rules."""
        assert self.rules is not None and self.rule_tables is not None
        indexer = self.settings.indexer
        document = searched_fields(
            trace, indexer.max_indexed_span_content_bytes, first_seen_ms, indexer.max_clock_skew_s * 1000
        )
        trace_id = trace["trace_id"]
        mark = (
            self._pending_marks[trace_id]
            if trace_id in self._pending_marks
            else self.rule_tables.marks.get(trace_id)
        )
        outcome, new_mark = self.rules.observe(facts_of(trace), document, partition, now_ms, mark)
        if new_mark != mark:
            self._pending_marks[trace_id] = new_mark
            self.offset_guard.hold()
        if outcome.dirty:
            self._dirty_rule_keys |= outcome.dirty
            self.offset_guard.hold()
        for alert in outcome.alerts:
            await self.sinks.send_rule_alert(alert)

    def _maybe_checkpoint_rules(self) -> None:
        if self.rules is not None and (
            self._progress_at - self._rules_checkpointed_at >= self.settings.stream.rules_checkpoint_s
        ):
            self._checkpoint_rules()

    def _checkpoint_rules(self) -> None:
        """Writes the rule windows and marks changed since the last checkpoint (in an agent: the
        tables need the current record); commits may then pass the records that changed them."""
        assert self.rules is not None and self.rule_tables is not None
        self._rules_checkpointed_at = time.monotonic()
        windows = self.rule_tables.windows
        for key in self._dirty_rule_keys:
            record = self.rules.record_of(key)
            if record is None:
                windows.pop(key, None)
            else:
                windows[key] = record
        marks = self.rule_tables.marks
        for trace_id, mark in self._pending_marks.items():
            if mark is None:
                marks.pop(trace_id, None)
            else:
                marks[trace_id] = mark
        self._dirty_rule_keys = set()
        self._pending_marks = {}
        self.offset_guard.release()

    async def _tick_rules(self, now_ms: int) -> None:
        """Windows slide without traces: firing groups whose value fell back resolve."""
        if self.rules is None:
            return
        outcome = self.rules.tick(now_ms)
        if outcome.dirty:
            self._dirty_rule_keys |= outcome.dirty
            self.offset_guard.hold()
        for alert in outcome.alerts:
            await self.sinks.send_rule_alert(alert)

    def _restore_rules(self, *args: Any, **kwargs: Any) -> None:
        """After recovery: the windows of this worker's partitions, from the table."""
        if self.rule_set is None or self.rule_tables is None:
            return
        try:
            owned = set(self._events_partitions(self.app.consumer.assignment()))
            engine = RuleEngine(self.rule_set.rules)
            for key, record in list(self.rule_tables.windows.items()):
                if json.loads(key)[2] in owned:
                    engine.restore(key, record)
        except Exception:  # must never fail Faust's recovery; the windows start empty instead
            logger.exception("stream: could not restore the alert rules' windows")
            return
        partitions = self.settings.topics.events_partitions
        if owned and len(owned) < partitions:
            logger.warning(
                "stream: alert rules see the traces of this worker's %d of %d events partitions "
                "(%s): a count, ratio, percentile or sum applies to them, not to the whole "
                "stream; run one stream worker when rules are set (docs/operating.md#alert-rules)",
                len(owned),
                partitions,
                ", ".join(map(str, sorted(owned))),
            )
        # Rule state not checkpointed is dropped with the old engine: its records were not
        # committed, so they are read again.
        self.rules = engine
        self._dirty_rule_keys = set()
        self._pending_marks = {}

    # ------------------------------------------------------------ time

    async def _find_due_timers(self) -> None:
        """Timer: ticks the traces whose timer is due (no table writes here), logs the status."""
        self._log_status()
        self._check_progress()
        for tp, offset in self.offset_guard.overdue_seeks():
            # The records after a seek did not come (nothing newer arrived to notice): again.
            await self._rewind(tp, offset)
        if self.app.rebalancing:
            # Until recovery ends ("Worker ready") the tables are being restored: a state built
            # from them now could miss spans, and the next span would then be written over one
            # (its index is the chunk count), so the trace would never complete by count.
            return
        now = time.time()
        # A full pass over the traces table: after a rebalance (``_synced_at`` is reset), and
        # otherwise rarely, to forget old purge markers; it runs in the event loop.
        if now - self._synced_at > 600:
            await self._sync_cache_from_tables()
            self._synced_at = now
        now_ms = int(now * 1000)
        await self._tick_rules(now_ms)
        for trace_id, timer in list(self.timers.items()):
            if timer.at_ms > now_ms or timer.action is None:
                continue
            state = self.cache.get(trace_id)
            if state is None:
                del self.timers[trace_id]
                continue
            # Ticked again after an idle timeout if the tick's step does not set the timer anew.
            self.timers[trace_id] = Timer(timer.action, now_ms + self.config.idle_timeout_ms)
            await self._tick(trace_id, state.partition, timer.action)

    def _log_status(self) -> None:
        now = time.monotonic()
        dead = self.sinks.dead_lettered
        counts = (
            self.processed,
            self.emitted,
            len(self.cache),
            self.offset_guard.gaps_closed,
            dead.total(),
            self.sinks.tombstones,
            self.events_after_delete,
        )
        every_s = STATUS_EVERY_S if counts != self._reported_counts else STATUS_IDLE_S
        if now - self._reported_at < every_s:
            return
        self._reported_at = now
        self._reported_counts = counts
        # The rebalancing and flow flags say why a worker that stops making progress waits.
        logger.info(
            "stream: %d records processed, %d traces emitted, %d traces in memory, "
            "%d gaps read again, %d dead-lettered%s, %d tombstones sent, %d events after delete "
            "(rebalancing: %s, flow active: %s)",
            self.processed,
            self.emitted,
            len(self.cache),
            self.offset_guard.gaps_closed,
            dead.total(),
            f" ({', '.join(f'{reason} {n}' for reason, n in sorted(dead.items()))})" if dead else "",
            self.sinks.tombstones,
            self.events_after_delete,
            self.app.rebalancing,
            self.app.flow_control.is_active(),
        )

    def _lag(self) -> int:
        """Records of the events topic's assigned partitions not yet read (as far as known)."""
        consumer = self.app.consumer
        events = self.topics.events.get_topic_name()
        guard = self.offset_guard
        lag = 0
        for tp in consumer.assignment():
            if tp.topic != events:
                continue
            highwater = consumer.highwater(tp)
            position = guard.next_offsets.get(tp, guard.starts.get(tp))
            if highwater is not None and position is not None:
                lag += max(0, highwater - position)
        return lag

    def _check_progress(self) -> None:
        """Logs what a worker is waiting for when nothing has reached its agents for a minute
        although records or ticks are waiting for them."""
        now = time.monotonic()
        stall_after_s = self.settings.stream.stall_after_s
        if now - self._progress_at < stall_after_s or now - self._stall_reported_at < 5 * stall_after_s:
            return
        try:
            lag = self._lag()
        except Exception:  # between generations: no assignment to read
            return
        unhandled_ticks = self.ticks_sent - self.ticks_handled
        if lag or unhandled_ticks > 0:
            self._stall_reported_at = now
            logger.error(
                "stream: no progress for %.0f s with %d records and %d ticks waiting\n%s",
                now - self._progress_at,
                lag,
                unhandled_ticks,
                stall_report(self.app, limit=16),
            )

    async def _sync_cache_from_tables(self) -> None:
        """After a restart or rebalance: traces known to the tables but not in memory, and purge
        and delete markers old enough to forget."""
        now_ms = _now_ms()
        forget_before_ms = now_ms - self.config.marker_retention_ms
        forget_deleted_before_ms = now_ms - self.config.deleted_retention_ms
        events = self.topics.events.get_topic_name()
        # The memory store keeps the keys of partitions that moved to another worker: only
        # this worker's partitions are its to time out.
        owned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == events}
        try:
            for trace_id, state in self.tables.records():
                if state is None or state.partition not in owned:
                    continue
                if isinstance(state, Purged):
                    if state.purged_ms < forget_before_ms:
                        await self._tick(trace_id, state.partition, TickAction.FORGET)
                elif isinstance(state, Deleted):
                    if state.deleted_ms < forget_deleted_before_ms:
                        await self._tick(trace_id, state.partition, TickAction.FORGET)
                elif trace_id not in self.cache:
                    self._state_of(trace_id, now_ms)
        except Exception:  # the table may be recovering; try again next time
            logger.debug("stream: tables not ready for sync", exc_info=True)

    async def _tick(self, trace_id: str, partition: int, action: TickAction) -> None:
        await self.topics.ticks.send(key=trace_id.encode(), value=action.value, partition=partition)
        self.ticks_sent += 1

    async def _process_ticks(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            self.ticks_handled += 1
            self._progress_at = time.monotonic()
            source = _Source(event.message, event.key, event.value)
            trace_id = event.key.decode()
            try:
                now_ms = _now_ms()
                tick = Tick(trace_id, TickAction(event.value))
                state, outputs = step(self._state_of(trace_id, now_ms), tick, now_ms, self.config)
                await self._carry_out(trace_id, state, outputs, source)
            except TraceTooLarge as exc:
                logger.warning("stream: %s", exc)
                await self._dead_letter("trace_too_large", str(exc), source)
            except Exception:
                logger.exception("stream: tick %s for %s failed", event.value, trace_id)
            # A tick's revision counts in the rules too, and the ticks topic commits on its own.
            self._maybe_checkpoint_rules()

    # ------------------------------------------------------------ rebalances

    def _events_partitions(self, tps: Any) -> list[int]:
        events = self.topics.events.get_topic_name()
        return sorted(tp.partition for tp in tps if tp.topic == events)

    def _log_assigned(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        # Changelog and tick partitions follow the events partitions; these say what this worker owns.
        logger.info(
            "stream: assigned partitions %s of %s; recovering the tables",
            self._events_partitions(assigned),
            self.topics.events.get_topic_name(),
        )

    def _log_revoked(self, sender: Any, revoked: Any, **kwargs: Any) -> None:
        if revoked:
            logger.info(
                "stream: revoked partitions %s of %s (rebalancing)",
                self._events_partitions(revoked),
                self.topics.events.get_topic_name(),
            )

    def _log_ready(self, *args: Any, **kwargs: Any) -> None:
        try:
            owned: Any = self._events_partitions(self.app.consumer.assignment())
        except Exception:  # a log line must never fail Faust's recovery (between generations)
            owned = "?"
        logger.info("stream: ready: tables recovered, assembling traces of partitions %s", owned)

    def _forget_cache(self, *args: Any, **kwargs: Any) -> None:
        # Partitions may move to another worker: rebuild from the tables when they come back.
        self.cache.clear()
        self.timers.clear()
        self._synced_at = 0.0
        self.offset_guard.reset()

    async def _rewind(self, tp: Any, offset: int) -> None:
        try:
            await self.app.consumer.rewind(tp, offset)  # type: ignore[attr-defined]
        except Exception:  # the partition may have moved away meanwhile; the guard retries
            logger.warning("stream: could not seek %s back to %d", tp, offset, exc_info=True)

    def _on_source_seek(self, starts: dict[Any, int]) -> None:
        # Called from the consumer's thread: hand over to the event loop's thread.
        events = self.topics.events.get_topic_name()
        starts = {tp: offset for tp, offset in starts.items() if tp.topic == events}
        self.app.loop.call_soon_threadsafe(self.offset_guard.on_source_seek, starts)
