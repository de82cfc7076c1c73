"""The Faust app that assembles traces from the events topic.

State, per partition of the events topic, in tables backed by changelog topics:

* ``spans``     ``"<trace id>:<n>"`` -> the n-th chunk of the trace: a record of the events
                topic (one span, or a batch of the trace's events) that brought at least one
                new span, as received (bytes). Written once per record: the cost of a span does
                not grow with its trace, and a batch of spans costs one write.
* ``traces``    ``"<trace id>"`` -> a small JSON record: when it was first seen, its
                TraceEnded, tag changes, assessments, the revision emitted (and how many spans
                it had), and whether it is finalized or purged. Written at most once per record
                and only when a trace-level fact changes, never per span.

The span ids and chunk count of active traces are cached in memory; after a restart or a
rebalance they are rebuilt from the ``spans`` table (reading ``<id>:0``, ``<id>:1``, ...).

Timeouts: Faust timers may not modify tables, so the timer only finds idle traces and sends
a tick (keyed by trace id, to the trace's own partition) to an internal topic; the tick
agent, which runs in that partition's context, finalizes or purges the trace.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from mode.utils.times import want_seconds

from tracestream import schemas
from tracestream.admin import TopicSpec, ensure_topics
from tracestream.schemas import SPAN_ENDED, TRACE_ENDED, DecodeError, events_of
from tracestream.schemas.event_writer import MAX_RECORD_BYTES
from tracestream.settings import Settings
from tracestream.stream.derive import assemble, failed_spans
from tracestream.stream.stall import stall_report
from tracestream.stream.state import (
    Expiry,
    Next,
    after_record,
    apply_events,
    ended_of,
    incomplete,
    mark_emitted,
    new_state,
    on_idle,
)
from tracestream.stream.transport import App

logger = logging.getLogger("stream")

# The status line: after this long when the counts changed, else after STATUS_IDLE_S, so an idle
# worker says it is alive without filling its log.
STATUS_EVERY_S = 30.0
STATUS_IDLE_S = 300.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"  # the messages say "stream: ..."

TICK_EXPIRE = b"expire"
TICK_PURGE = b"purge"
TICK_FORGET = b"forget"


@dataclass
class TraceCache:
    """What the worker keeps in memory of a trace it is assembling."""

    partition: int
    span_ids: set[str] = field(default_factory=set)
    # Records stored in the spans table (each brought at least one new span).
    chunks: int = 0
    last_activity: float = field(default_factory=time.time)
    ticked_at: float = 0.0
    # When the trace was last emitted (epoch ms); 0 while it is still being assembled.
    finalized_ms: int = 0
    # Built from the tables (after a restart or a rebalance) rather than by this worker's own
    # processing, and whether its current revision was emitted again since (see _replayed).
    restored: bool = False
    reemitted: bool = False


def _item_key(trace_id: str, n: int) -> bytes:
    """The key of a trace's n-th chunk in the spans table."""
    return f"{trace_id}:{n}".encode()


class TraceTooLarge(Exception):
    """The assembled trace does not fit in one record of the completed topic."""


class InvalidEvent(Exception):
    """An event that decodes but cannot be used (a batch mixing trace ids)."""


class LateEvent(Exception):
    """An event for a trace whose state was already purged (after the late window)."""


def _store_url(settings: Settings) -> str:
    choice = settings.stream.store
    if choice == "memory":
        return "memory://"
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        if choice == "rocksdb":
            raise
        return "memory://"
    return "rocksdb://"


def _broker_credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return None
    ssl_context = kafka.aiokafka_config().get("ssl_context")
    if kafka.security_protocol.startswith("SASL_"):
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


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
        self._seeks: dict[Any, tuple[int, int, float]] = {}  # tp -> (offset, attempts, at)
        self.gaps_closed = 0

    def guards(self, tp: Any) -> bool:
        return bool(tp.topic == self.topic)

    def reset(self) -> None:
        self.next_offsets.clear()
        self.starts.clear()
        self._done.clear()
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
        self._seeks.pop(tp, None)

    def processed(self, tp: Any, offset: int) -> None:
        """The record at ``offset`` (admitted) has been handled, outputs sent."""
        self._done[tp] = offset + 1

    def commit_offset(self, tp: Any) -> int | None:
        """Where a consumer may resume ``tp`` without missing a record: every record below it
        was handled, in order; None when none has been since the partition was assigned."""
        return self._done.get(tp)


class TraceAssembler:
    """The stream's logic, bound to one Faust app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        stream = settings.stream
        topics = settings.topics
        registry = settings.kafka.schema_registry_url
        self.events_codec = schemas.events_codec(registry, topics.events)
        self.completed_codec = schemas.completed_codec(registry, topics.completed)
        self.alerts_codec = schemas.alerts_codec(registry, topics.alerts)
        self.dead_letters_codec = schemas.dead_letters_codec(registry, topics.dead_letters)
        brokers = ";".join(f"kafka://{b.strip()}" for b in settings.kafka.bootstrap_servers.split(","))
        self.app = App(
            stream.app_id,
            broker=brokers,
            broker_credentials=_broker_credentials(settings),
            store=_store_url(settings),
            datadir=stream.data_dir,
            topic_partitions=topics.events_partitions,
            topic_replication_factor=topics.replication_factor,
            key_serializer="raw",
            value_serializer="raw",
            broker_session_timeout=stream.session_timeout_s,
            broker_heartbeat_interval=max(1.0, stream.session_timeout_s / 4),
            stream_buffer_maxsize=stream.stream_buffer_maxsize,
            producer_acks=-1,
            # Each record writes one or two changelog records: without linger each produce
            # request carried about 3 records, and the sends were a large part of the time.
            producer_linger=0.005,
            producer_max_batch_size=512 * 1024,
            # Faust's default (1 MB) would refuse any trace above it; the topics accept 8 MiB.
            producer_max_request_size=MAX_RECORD_BYTES,
            web_enabled=False,
            table_standby_replicas=0,
        )
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.events_topic = self.app.topic(topics.events, **raw)
        self.completed_topic = self.app.topic(topics.completed, **raw)
        self.alerts_topic = self.app.topic(topics.alerts, **raw)
        self.dead_letters_topic = self.app.topic(topics.dead_letters, **raw)
        self.ticks_topic = self.app.topic(
            ticks_topic_name(settings), internal=True, partitions=topics.events_partitions, **raw
        )
        # Keys and values of these two are bytes, with the app's raw serializers: a schema with
        # a JSON key made Faust's changelog recovery decode these values as text.
        partitions = topics.events_partitions
        self.spans = self.app.Table(
            "spans", default=None, key_type=bytes, value_type=bytes, partitions=partitions
        )
        json_values = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
        self.traces = self.app.Table("traces", default=None, schema=json_values, partitions=partitions)
        self.cache: dict[str, TraceCache] = {}
        self.processed = 0
        self.emitted = 0
        self.dead_lettered: Counter[str] = Counter()
        self.ticks_sent = 0
        self.ticks_handled = 0
        # When a record or tick last reached an agent (monotonic), to notice a stalled worker.
        self._progress_at = time.monotonic()
        self._stall_reported_at = 0.0
        self._synced_at = 0.0
        self._reported_at = 0.0
        self._reported_counts: tuple[int, ...] | None = None
        self.app.agent(self.events_topic, name="assemble-traces")(self._process_events)
        self.app.agent(self.ticks_topic, name="trace-ticks")(self._process_ticks)
        self.app.timer(stream.tick_interval_s)(self._find_idle_traces)
        self.app.on_partitions_revoked.connect(self._forget_cache)
        self.app.on_partitions_revoked.connect(self._log_revoked)
        self.app.on_partitions_assigned.connect(self._log_assigned)
        self.app.on_rebalance_complete.connect(self._log_ready)
        self.offset_guard = OffsetGuard(self.events_topic.get_topic_name())
        self.app.offset_guard = self.offset_guard
        self.app.on_source_seek = self._on_source_seek  # type: ignore[attr-defined]

    # ------------------------------------------------------------ events

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
            try:
                await self._handle(event.key, event.value, message)
            except DecodeError as exc:
                await self._dead_letter(exc.reason.value, str(exc), message, event.key, event.value)
            except InvalidEvent as exc:
                await self._dead_letter("invalid_event", str(exc), message, event.key, event.value)
            except LateEvent as exc:
                await self._dead_letter("late_after_retention", str(exc), message, event.key, event.value)
            except TraceTooLarge as exc:
                logger.warning("stream: %s", exc)
                await self._dead_letter("trace_too_large", str(exc), message, event.key, event.value)
            except Exception as exc:  # one bad event must not stop the worker
                logger.exception(
                    "stream: could not process %s[%d]@%d", message.topic, message.partition, message.offset
                )
                await self._dead_letter("processing_error", repr(exc), message, event.key, event.value)
            guard.processed(message.tp, message.offset)
            self.processed += 1

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

    async def _handle(self, key: bytes | None, value: bytes, message: Any) -> None:
        """One record of the events topic: an event, or a batch of one trace's events.

        The table writes are one per record, not one per event: the record's bytes go to the
        ``spans`` table as one chunk when they bring a new span, and the trace's state is
        written once at the end.
        """
        events = events_of(self.events_codec.decode(value)["event"])
        if not events:
            return
        trace_id = events[0][1]["trace_id"]
        if any(record["trace_id"] != trace_id for _, record in events):
            raise InvalidEvent(f"a batch of {len(events)} events mixes trace ids (first: {trace_id})")
        state = self.traces.get(trace_id)
        if state is not None and state.get("purged"):
            raise LateEvent(f"{events[0][0]} for {trace_id}, whose state was purged after the late window")
        partition = message.partition
        cache = self._cache_for(trace_id, partition, state)
        cache.last_activity = time.time()
        created = state is None
        if state is None:
            state = new_state(partition, int(time.time() * 1000))
        applied = apply_events(state, cache.span_ids, events)
        applied.changed |= created
        for other in applied.conflicting_ends:
            await self._dead_letter_event(
                "duplicate_trace_id",
                f"TraceEnded of root span {other['root_span_id']} for {trace_id}, which already ended "
                f"with root span {state['ended']['root_span_id']}: two traces share the id",
                message,
                TRACE_ENDED,
                other,
            )
        chunk = None
        if applied.new_spans:
            chunk = (cache.chunks, events)
            self.spans[_item_key(trace_id, cache.chunks)] = value
            cache.chunks += 1

        spans = len(cache.span_ids)
        step = after_record(state, spans, applied)
        if step is Next.EMIT:
            await self._emit(trace_id, state, cache, incomplete(state, spans), chunk=chunk)
        elif step is Next.REPLAYED:
            await self._replayed(trace_id, state, cache)
        elif step is Next.HOLD:
            # Kept as received, to be dead-lettered whole if the trace never comes.
            held = state.setdefault("held", [])
            held.append({"offset": message.offset, "value": base64.b64encode(value).decode()})
            self.traces[trace_id] = state
        elif step is Next.STORE:
            self.traces[trace_id] = state

    async def _replayed(self, trace_id: str, state: dict[str, Any], cache: TraceCache) -> None:
        """Nothing new for a trace restored from the tables: emit its revision again, once.

        Why: the tables' changelog and the outputs are separate records, so a worker that dies
        right after emitting can leave a changelog saying "revision n emitted" while the
        CompletedTrace itself was never written. Faust flushes the outputs before it commits
        offsets, so the events after the committed offset, which the next owner replays,
        include the one that completed the trace: it arrives as a duplicate, and emitting the
        same revision again (idempotent downstream, keyed by trace id and revision) makes sure
        it is out. Alerts go again with it, at least once too.
        """
        if cache.restored and not cache.reemitted:
            cache.reemitted = True
            await self._emit(trace_id, state, cache, incomplete=bool(state.get("incomplete")), again=True)

    def _cache_for(self, trace_id: str, partition: int, state: dict[str, Any] | None) -> TraceCache:
        cache = self.cache.get(trace_id)
        if cache is None:
            cache = self.cache[trace_id] = TraceCache(partition)
            if state is not None:
                cache.restored = True
                cache.finalized_ms = state.get("finalized_ms", 0) if state.get("finalized") else 0
                # Rebuild after a restart or rebalance from the spans table.
                n = 0
                while (stored := self.spans.get(_item_key(trace_id, n))) is not None:
                    for kind, record in events_of(self.events_codec.decode(stored)["event"]):
                        if kind == SPAN_ENDED:
                            cache.span_ids.add(record["span_id"])  # type: ignore[typeddict-item]
                    n += 1
                cache.chunks = n
        return cache

    # ------------------------------------------------------------ output

    def _spans_of(
        self, trace_id: str, cache: TraceCache, chunk: tuple[int, list[tuple[str, Any]]] | None
    ) -> list[dict[str, Any]]:
        """The trace's distinct spans, from its chunks (the current record's already decoded)."""
        spans: dict[str, dict[str, Any]] = {}
        decode = self.events_codec.decode
        for n in range(cache.chunks):
            if chunk is not None and chunk[0] == n:
                events = chunk[1]
            else:
                events = events_of(decode(self.spans[_item_key(trace_id, n)])["event"])
            for kind, record in events:
                if kind == SPAN_ENDED:
                    spans.setdefault(record["span_id"], record)
        return list(spans.values())

    async def _emit(
        self,
        trace_id: str,
        state: dict[str, Any],
        cache: TraceCache,
        incomplete: bool,
        again: bool = False,
        chunk: tuple[int, list[tuple[str, Any]]] | None = None,
    ) -> None:
        """Emit the next revision of the trace, or (``again``) the current one once more."""
        revision = state.get("revision", 0) + (0 if again else 1)
        now_ms = int(time.time() * 1000)
        spans = self._spans_of(trace_id, cache, chunk)
        trace = assemble(
            trace_id,
            revision,
            spans,  # type: ignore[arg-type]
            ended_of(state),
            state.get("assessments", ()),
            state.get("tags_set"),
            state.get("tags_deleted", ()),
            incomplete=incomplete,
            now_ms=now_ms,
        )
        key = trace_id.encode()
        value = self.completed_codec.encode(trace)
        # A trace too large for the completed topic is still finalized at this revision (and
        # alerted), so that it is dead-lettered once, not again at every later tick.
        too_large = len(value) > MAX_RECORD_BYTES
        if not too_large:
            # When this stream first saw the trace, the same on every revision: the indexer
            # places a trace whose client clock is off by its day (IndexNames.for_trace).
            first_ms = state.get("first_ms")
            headers = None if first_ms is None else {schemas.FIRST_SEEN_HEADER: b"%d" % first_ms}
            await self.completed_topic.send(key=key, value=value, headers=headers)
        if trace["info"]["state"] == "ERROR" and (again or not state.get("alerted")):
            await self.alerts_topic.send(key=key, value=self.alerts_codec.encode(self._alert(trace, now_ms)))
            state["alerted"] = True
        self.emitted += 1
        if not again:
            mark_emitted(state, revision, now_ms, incomplete, len(spans))
            cache.finalized_ms = now_ms
            self.traces[trace_id] = state
        if too_large:
            raise TraceTooLarge(
                f"trace {trace_id} revision {revision} has {len(trace['spans'])} spans and is {len(value)} "
                f"bytes as a CompletedTrace; the completed topic takes at most {MAX_RECORD_BYTES}"
            )

    def _alert(self, trace: dict[str, Any], now_ms: int) -> dict[str, Any]:
        info = trace["info"]
        return {
            "trace_id": trace["trace_id"],
            "revision": trace["revision"],
            "trace_name": info["tags"].get("mlflow.traceName"),
            "location": info["location"],
            "request_time_ms": info["request_time_ms"],
            "execution_duration_ms": info["execution_duration_ms"],
            "failed_spans": failed_spans(trace),  # type: ignore[arg-type]
            "tags": info["tags"],
            "metadata": {k: v for k, v in info["metadata"].items() if not k.startswith("mlflow.trace.size")},
            "alert_time_ms": now_ms,
        }

    async def _dead_letter(
        self, reason: str, detail: str, message: Any, key: bytes | None, value: bytes | None
    ) -> None:
        source = (message.topic, message.partition, message.offset)
        await self._send_dead_letter(reason, detail, *source, key, value)

    async def _dead_letter_event(
        self, reason: str, detail: str, message: Any, kind: str, record: dict[str, Any]
    ) -> None:
        """One event of a record, alone (a batch's other events were used): replayable as is."""
        value = self.events_codec.encode_union(kind, record)
        await self._dead_letter(reason, detail, message, record["trace_id"].encode(), value)

    async def _dead_letter_held(self, trace_id: str, state: dict[str, Any]) -> None:
        """The records held for a trace that never came, each as received."""
        waited_s = self.settings.stream.late_window_s
        for held in state.get("held", ()):
            await self._send_dead_letter(
                "unknown_trace",
                f"tags or assessments for {trace_id}: no span or end of that trace arrived within "
                f"the late window ({waited_s:g} s)",
                self.events_topic.get_topic_name(),
                state.get("partition", 0),
                held["offset"],
                trace_id.encode(),
                base64.b64decode(held["value"]),
            )

    async def _send_dead_letter(
        self,
        reason: str,
        detail: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
    ) -> None:
        record = {
            "reason": reason,
            "detail": detail[:2000],
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "key": key,
            "value": value,
            "consumer": "stream",
            "time_ms": int(time.time() * 1000),
        }
        await self.dead_letters_topic.send(key=key, value=self.dead_letters_codec.encode(record))
        self.dead_lettered[reason] += 1

    # ------------------------------------------------------------ time

    async def _find_idle_traces(self) -> None:
        """Timer: finds traces to finalize or purge and ticks their partition (no table writes here)."""
        now = time.time()
        stream = self.settings.stream
        dead = self.dead_lettered
        counts = (self.processed, self.emitted, len(self.cache), self.offset_guard.gaps_closed, dead.total())
        every_s = STATUS_EVERY_S if counts != self._reported_counts else STATUS_IDLE_S
        if now - self._reported_at >= every_s:
            self._reported_at = now
            self._reported_counts = counts
            # The rebalancing and flow flags say why a worker that stops making progress waits.
            logger.info(
                "stream: %d records processed, %d traces emitted, %d traces in memory, "
                "%d gaps read again, %d dead-lettered%s (rebalancing: %s, flow active: %s)",
                self.processed,
                self.emitted,
                len(self.cache),
                self.offset_guard.gaps_closed,
                dead.total(),
                f" ({', '.join(f'{reason} {n}' for reason, n in sorted(dead.items()))})" if dead else "",
                self.app.rebalancing,
                self.app.flow_control.is_active(),
            )
        self._check_progress()
        for tp, offset in self.offset_guard.overdue_seeks():
            # The records after a seek did not come (nothing newer arrived to notice): again.
            await self._rewind(tp, offset)
        if self.app.rebalancing:
            # Until recovery ends ("Worker ready") the tables are being restored: a cache built
            # from them now could miss spans, and the next span would then be written over one
            # (its index is the cached count), so the trace would never complete by count.
            return
        # A full pass over the traces table: after a rebalance (``_synced_at`` is reset), and
        # otherwise rarely, to forget old purge markers; it runs in the event loop.
        if now - self._synced_at > 600:
            await self._sync_cache_from_tables()
            self._synced_at = now
        # Memory only: no table read per trace and tick.
        for trace_id, cache in list(self.cache.items()):
            if now - cache.ticked_at < stream.idle_timeout_s:
                continue  # ticked recently; the tick agent has not acted (or need not act) yet
            if not cache.finalized_ms:
                if now - cache.last_activity >= stream.idle_timeout_s:
                    cache.ticked_at = now
                    await self._tick(trace_id, cache.partition, TICK_EXPIRE)
            elif now * 1000 - cache.finalized_ms >= stream.late_window_s * 1000:
                cache.ticked_at = now
                await self._tick(trace_id, cache.partition, TICK_PURGE)

    def _lag(self) -> int:
        """Records of the events topic's assigned partitions not yet read (as far as known)."""
        consumer = self.app.consumer
        events = self.events_topic.get_topic_name()
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
        markers old enough to forget."""
        forget_before_ms = (time.time() - self.settings.stream.marker_retention_s) * 1000
        events = self.events_topic.get_topic_name()
        # The memory store keeps the keys of partitions that moved to another worker: only
        # this worker's partitions are its to time out.
        owned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == events}
        try:
            for trace_id, state in list(self.traces.items()):
                if not state or state.get("partition", 0) not in owned:
                    continue
                if state.get("purged"):
                    if state.get("purged_ms", 0) < forget_before_ms:
                        await self._tick(trace_id, state.get("partition", 0), TICK_FORGET)
                elif trace_id not in self.cache:
                    self._cache_for(trace_id, state.get("partition", 0), state)
        except Exception:  # the table may be recovering; try again next time
            logger.debug("stream: tables not ready for sync", exc_info=True)

    async def _tick(self, trace_id: str, partition: int, action: bytes) -> None:
        await self.ticks_topic.send(key=trace_id.encode(), value=action, partition=partition)
        self.ticks_sent += 1

    async def _process_ticks(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            self.ticks_handled += 1
            self._progress_at = time.monotonic()
            trace_id = event.key.decode()
            try:
                await self._handle_tick(trace_id, event.value, event.message.partition)
            except TraceTooLarge as exc:
                logger.warning("stream: %s", exc)
                await self._dead_letter("trace_too_large", str(exc), event.message, event.key, event.value)
            except Exception:
                logger.exception("stream: tick %s for %s failed", event.value, trace_id)

    async def _handle_tick(self, trace_id: str, action: bytes, partition: int) -> None:
        # Ticks may be delivered again (at-least-once, or replayed after a rebalance): every
        # action checks its own deadline rather than trusting that the tick is recent.
        stream = self.settings.stream
        now = time.time()
        state = self.traces.get(trace_id)
        if state is not None and state.get("purged") and action == TICK_FORGET:
            if state.get("purged_ms", 0) < (now - stream.marker_retention_s) * 1000:
                del self.traces[trace_id]
            return
        if state is None or state.get("purged"):
            self.cache.pop(trace_id, None)
            return
        cache = self._cache_for(trace_id, partition, state)
        if action == TICK_EXPIRE:
            spans = len(cache.span_ids)
            expiry = on_idle(
                state, spans, now, cache.last_activity, stream.idle_timeout_s, stream.late_window_s
            )
            if expiry is Expiry.EMIT_INCOMPLETE:
                await self._emit(trace_id, state, cache, incomplete(state, spans))
            elif expiry is Expiry.DEAD_LETTER_HELD:
                await self._dead_letter_held(trace_id, state)
                # Forgotten: never a trace, so a trace of that id arriving later starts afresh.
                del self.traces[trace_id]
                self.cache.pop(trace_id, None)
        elif (
            action == TICK_PURGE
            and state.get("finalized")
            and now * 1000 - state.get("finalized_ms", 0) >= stream.late_window_s * 1000
        ):
            for n in range(cache.chunks):
                self.spans.pop(_item_key(trace_id, n), None)
            self.traces[trace_id] = {
                "purged": True,
                "revision": state.get("revision", 0),
                "purged_ms": int(time.time() * 1000),
                "partition": partition,
            }
            self.cache.pop(trace_id, None)

    def _events_partitions(self, tps: Any) -> list[int]:
        events = self.events_topic.get_topic_name()
        return sorted(tp.partition for tp in tps if tp.topic == events)

    def _log_assigned(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        # Changelog and tick partitions follow the events partitions; these say what this worker owns.
        logger.info(
            "stream: assigned partitions %s of %s; recovering the tables",
            self._events_partitions(assigned),
            self.events_topic.get_topic_name(),
        )

    def _log_revoked(self, sender: Any, revoked: Any, **kwargs: Any) -> None:
        if revoked:
            logger.info(
                "stream: revoked partitions %s of %s (rebalancing)",
                self._events_partitions(revoked),
                self.events_topic.get_topic_name(),
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
        self._synced_at = 0.0
        self.offset_guard.reset()

    async def _rewind(self, tp: Any, offset: int) -> None:
        try:
            await self.app.consumer.rewind(tp, offset)  # type: ignore[attr-defined]
        except Exception:  # the partition may have moved away meanwhile; the guard retries
            logger.warning("stream: could not seek %s back to %d", tp, offset, exc_info=True)

    def _on_source_seek(self, starts: dict[Any, int]) -> None:
        # Called from the consumer's thread: hand over to the event loop's thread.
        events = self.events_topic.get_topic_name()
        starts = {tp: offset for tp, offset in starts.items() if tp.topic == events}
        self.app.loop.call_soon_threadsafe(self.offset_guard.on_source_seek, starts)


def ticks_topic_name(settings: Settings) -> str:
    return f"{settings.stream.app_id}-ticks"


def create_app(settings: Settings) -> TraceAssembler:
    return TraceAssembler(settings)


def ensure_internal_topics(assembler: TraceAssembler) -> None:
    """Create Faust's internal topics (changelogs, ticks, leader) before Faust starts.

    Why: Faust creates them at start-up through its producer's client, but its consumer's
    client may have read the cluster metadata before they existed (seen with one worker, and
    with two workers starting together, one creating the topics the other had just looked
    for). Until that client's metadata is refreshed (minutes), the group leader assigns no
    partition of a missing topic ("Ignoring missing topic"), and a table whose changelog is
    missing fails every write with PartitionsMismatch ("changelog ... has 0 partitions"): events
    went to the dead-letter topic and idle traces were never finalized. Created here, through
    another client and waited for, they are in the metadata Faust's clients read first.
    """
    settings = assembler.settings
    rf = settings.topics.replication_factor
    specs = []
    for table in (assembler.spans, assembler.traces):
        changelog = table.changelog_topic
        flags = (("compact", changelog.compacting), ("delete", changelog.deleting))
        cleanup = [flag for flag, on in flags if on]
        config = {"cleanup.policy": ",".join(cleanup)} if cleanup else {}
        if changelog.retention:
            config["retention.ms"] = str(int(want_seconds(changelog.retention) * 1000))
        specs.append(TopicSpec(changelog.get_topic_name(), changelog.partitions or 1, rf, config))
    stream = settings.stream
    # Ticks are only useful for a few timeouts; replaying old ones is harmless but slow.
    ticks_retention_ms = int(max(stream.late_window_s, stream.idle_timeout_s, 1800) * 2 * 1000)
    specs.append(
        TopicSpec(
            ticks_topic_name(settings),
            settings.topics.events_partitions,
            rf,
            {"cleanup.policy": "delete", "retention.ms": str(ticks_retention_ms)},
        )
    )
    specs.append(TopicSpec(f"{stream.app_id}-__assignor-__leader", 1, rf))
    ensure_topics(settings, specs)


def _log_own_lines_at_info(settings: Settings) -> None:
    """The worker's own lines (start-up, assignment, status) at INFO whatever Faust's level.

    Faust's log level (``stream.log_level``, "warning" by default) is its root handler's level
    too: the worker's INFO lines went nowhere and a normal run printed nothing. They get a
    handler of their own; Faust and aiokafka stay at ``log_level``, where they are not chatty."""
    handler = logging.StreamHandler()  # stderr, as the indexer's lines
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.handlers[:] = [handler]
    faust_level = logging.getLevelNamesMapping().get(settings.stream.log_level.upper(), logging.WARNING)
    logger.setLevel(min(logging.INFO, faust_level))
    logger.propagate = False  # the root handler (Faust's) would print the warnings twice
    # Faust's services log "Starting..."/"Stopping..." through our transport module's logger.
    logging.getLogger("tracestream.stream.transport").setLevel(faust_level)


def run_worker(settings: Settings) -> None:
    """Run a worker until stopped (SIGINT/SIGTERM). Several workers share the partitions."""
    _log_own_lines_at_info(settings)
    assembler = create_app(settings)
    # Kafka unreachable: ensure_topics raises, the command says so in a line or two (no start line).
    ensure_internal_topics(assembler)
    topics = settings.topics
    logger.info(
        "stream: worker of app %s starting: events %s (%d partitions) -> completed %s, alerts %s, "
        "dead letters %s; store %s in %s; Kafka at %s",
        settings.stream.app_id,
        topics.events,
        topics.events_partitions,
        topics.completed,
        topics.alerts,
        topics.dead_letters,
        _store_url(settings),
        settings.stream.data_dir,
        settings.kafka.bootstrap_servers,
    )
    worker = faust.Worker(assembler.app, loglevel=settings.stream.log_level, quiet=True)
    # At a log level of WARNING or above, Faust's start-up spinner sets the root logger to DEBUG
    # and animates on every record: each debug call of aiokafka and Faust then built a record
    # (about 3 per event, 7% of the worker's time) and wrote escape codes to the log.
    worker.spinner = None
    worker.execute_from_commandline()
