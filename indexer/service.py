"""`tracestream indexer run`: completed traces from Kafka into OpenSearch, at least once,
idempotently, committing offsets only after the batch is durable."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from tracestream import schemas
from tracestream.admin import ensure_topics, pipeline_topics
from tracestream.dead_letters import DeadLetterWriter
from tracestream.indexer.document import TraceDocument, build_document
from tracestream.indexer.mapping import IndexNames
from tracestream.indexer.store import TraceWriter, WriteInterrupted, ensure_index_template, opensearch_client
from tracestream.schemas import TraceMetadataKey
from tracestream.settings import Settings

logger = logging.getLogger(__name__)

CONSUMER_NAME = "indexer"


@dataclass
class IndexerStats:
    batches: int = 0
    records: int = 0
    written: int = 0
    stale: int = 0
    dead_lettered: int = 0
    bulk_retries: int = 0
    # Revisions of a trace superseded by a later one in the same batch: never sent.
    superseded: int = 0
    # Tombstones (deleted traces): documents deleted, and deleted traces that had none.
    deleted: int = 0
    deleted_absent: int = 0
    # Records whose request time was too far from when the stream first saw the trace: put in
    # the first-seen day's index and flagged (see IndexNames.for_trace).
    clock_skewed: int = 0
    last_commit_time: float = field(default=0.0)


class Indexer:
    """One indexer process. Several with the same group id share the completed topic's partitions."""

    def __init__(self, settings: Settings, client: OpenSearch | None = None) -> None:
        self.settings = settings
        self.config = settings.indexer
        self.names = IndexNames.from_settings(settings)
        self.client = client or opensearch_client(settings)
        self.writer = TraceWriter(self.client, settings)
        self.codec = schemas.completed_codec(settings.kafka.schema_registry_url, settings.topics.completed)
        self.stats = IndexerStats()
        self._stop = threading.Event()
        self._revoked = False
        self._carry: list[Message] = []
        self._consumer: Consumer | None = None
        self._dead_letters: DeadLetterWriter | None = None
        self._max_clock_skew_ms = self.config.max_clock_skew_s * 1000

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _prepare(self) -> None:
        """Topics and the index template, waiting for OpenSearch if it is not up yet."""
        topics = {self.settings.topics.completed, self.settings.topics.dead_letters}
        ensure_topics(self.settings, [s for s in pipeline_topics(self.settings) if s.name in topics])
        backoff = self.config.retry_initial_backoff_s
        while not self.stopping:
            try:
                ensure_index_template(self.client, self.settings)
                return
            except (OpenSearchConnectionError, TransportError) as exc:
                logger.warning("cannot create the index template yet (%s); retrying in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.config.retry_max_backoff_s)

    def run(self) -> None:
        """Consume until :meth:`stop` is called."""
        self._prepare()
        if self.stopping:
            return
        self._consumer = Consumer(
            self.settings.kafka.confluent_config(
                {
                    "group.id": self.config.group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    # A batch may wait minutes for OpenSearch; the consumer keeps polling
                    # (paused) meanwhile, so this only guards against a hung process.
                    "max.poll.interval.ms": 600_000,
                    "fetch.max.bytes": max(52_428_800, self.config.batch_max_bytes * 2),
                }
            )
        )
        self._dead_letters = DeadLetterWriter(self.settings, CONSUMER_NAME, {"linger.ms": 5})
        self._consumer.subscribe(
            [self.settings.topics.completed], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            while not self.stopping:
                batch = self._collect()
                if batch:
                    self._process(batch)
        finally:
            self._consumer.close()
            self._dead_letters.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("assigned %s", [p.partition for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The batch in flight may hold records of these partitions; their new owner will
        # read them again from the last commit, so this process must not commit them.
        self._revoked = True
        self._carry.clear()
        logger.info("revoked %s", [p.partition for p in partitions])

    # ------------------------------------------------------------ batches

    def _collect(self) -> list[Message]:
        """Records up to the batch's count and byte bounds, waiting at most the linger time
        once the first one is there."""
        assert self._consumer is not None
        batch, self._carry = self._carry, []
        size = sum(len(m.value() or b"") for m in batch)
        deadline = None
        while len(batch) < self.config.batch_max_docs and size < self.config.batch_max_bytes:
            if deadline is None:
                timeout = 0.5 if not batch else self.config.batch_linger_ms / 1000
                if batch:
                    deadline = time.monotonic() + timeout
            else:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
            messages = self._consumer.consume(self.config.batch_max_docs - len(batch), timeout)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        logger.warning("consumer error: %s", error)
                    continue
                batch.append(message)
                size += len(message.value() or b"")
            if not messages and not batch:
                break
            if self.stopping:
                break
            if deadline is None and batch:
                deadline = time.monotonic() + self.config.batch_linger_ms / 1000
        return batch

    def _process(self, batch: list[Message]) -> None:
        self._revoked = False
        latest: dict[str, tuple[TraceDocument, Message]] = {}
        deleted: dict[str, Message] = {}
        skewed: list[TraceDocument] = []
        for message in batch:
            if message.value() is None:
                self._tombstone(message, deleted)
                continue
            document = self._document(message)
            if document is None:
                continue
            if document.clock_skewed:
                skewed.append(document)
            previous = latest.get(document.trace_id)
            if previous is None or previous[0].revision < document.revision:
                latest[document.trace_id] = (document, message)
                if previous is not None:
                    self.stats.superseded += 1
            else:
                self.stats.superseded += 1
        if skewed:
            self.stats.clock_skewed += len(skewed)
            # One line a batch, however many: a fleet with a broken clock must not flood the log.
            logger.warning(
                "%d traces have a request time more than %d s from when they were first seen "
                "(e.g. %s); indexed into %s and flagged %s",
                len(skewed),
                self.config.max_clock_skew_s,
                skewed[0].trace_id,
                skewed[0].index,
                TraceMetadataKey.CLOCK_SKEWED,
            )
        # A deletion is final: a revision of the trace in the same batch, before or after its
        # tombstone, is not written.
        for trace_id in deleted:
            if latest.pop(trace_id, None) is not None:
                self.stats.superseded += 1
        documents = [document for document, _ in latest.values()]
        try:
            report = self.writer.write(documents, self._wait, list(deleted))
        except WriteInterrupted:
            self._resume()
            return
        self._resume()
        for rejection in report.rejected or ():
            trace_id = rejection.item.trace_id
            message = deleted[trace_id] if trace_id in deleted else latest[trace_id][1]
            self._dead_letter(
                message, "rejected_by_opensearch", f"HTTP {rejection.status}: {rejection.reason}"
            )
        if not self._flush_dead_letters():
            self._rewind(batch)
            return
        self.stats.batches += 1
        self.stats.records += len(batch)
        self.stats.written += report.written
        self.stats.stale += report.stale
        self.stats.deleted += report.deleted
        self.stats.deleted_absent += report.deleted_absent
        if deleted:
            logger.info(
                "deleted %d traces: %d documents removed, %d traces had none",
                len(deleted),
                report.deleted,
                report.deleted_absent,
            )
        self.stats.bulk_retries += report.retries
        if not self._revoked:
            self._commit(batch)

    def _tombstone(self, message: Message, deleted: dict[str, Message]) -> None:
        """A record without a value: the stream deleted the trace its key names."""
        key = message.key()
        try:
            trace_id = key.decode() if key else ""
        except UnicodeDecodeError:
            trace_id = ""
        if not trace_id:
            self._dead_letter(message, "unindexable", "a tombstone without a trace id as its key")
            return
        deleted[trace_id] = message

    def _document(self, message: Message) -> TraceDocument | None:
        value = message.value()
        try:
            trace = self.codec.decode(value)
        except schemas.DecodeError as exc:
            self._dead_letter(message, exc.reason.value, str(exc))
            return None
        try:
            return build_document(
                trace,
                self.names,
                self.config.max_indexed_span_content_bytes,
                _first_seen_ms(message),
                self._max_clock_skew_ms,
            )
        except (ValueError, OverflowError, OSError, KeyError, TypeError) as exc:
            self._dead_letter(message, "unindexable", f"{type(exc).__name__}: {exc}")
            return None

    def _wait(self, seconds: float) -> bool:
        """Between bulk retries: consumption paused, but the consumer keeps polling so that it
        stays in the group however long OpenSearch is away."""
        assert self._consumer is not None
        deadline = time.monotonic() + seconds
        while not self.stopping and not self._revoked:
            self._consumer.pause(self._consumer.assignment())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            message = self._consumer.poll(min(remaining, 1.0))
            if message is not None and message.error() is None:
                self._carry.append(message)
        return False

    def _resume(self) -> None:
        assert self._consumer is not None
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.resume(assignment)

    def _commit(self, batch: list[Message]) -> None:
        assert self._consumer is not None
        next_offsets: dict[tuple[str, int], int] = {}
        for message in batch:
            key = (message.topic(), message.partition())
            next_offsets[key] = max(next_offsets.get(key, 0), message.offset() + 1)
        offsets = [
            TopicPartition(topic, partition, offset) for (topic, partition), offset in next_offsets.items()
        ]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
            self.stats.last_commit_time = time.time()
        except KafkaException as exc:
            # A rebalance got there first; the records are written, and replaying them is harmless.
            logger.warning("offset commit failed (%s); the next owner replays these records", exc)

    def _rewind(self, batch: list[Message]) -> None:
        """Read ``batch`` again: seek each partition back to its first record in it."""
        assert self._consumer is not None
        first: dict[tuple[str, int], int] = {}
        for message in batch:
            key = (message.topic(), message.partition())
            first[key] = min(first.get(key, message.offset()), message.offset())
        self._carry.clear()
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                logger.warning("cannot rewind %s[%d] (%s)", topic, partition, exc)

    # ------------------------------------------------------------ dead letters

    def _dead_letter(self, message: Message, reason: str, detail: str) -> None:
        assert self._dead_letters is not None
        self._dead_letters.write(message, reason, detail)
        self.stats.dead_lettered += 1

    def _flush_dead_letters(self) -> bool:
        """Dead letters must be durable before the offsets that carried them are committed."""
        assert self._dead_letters is not None
        if not self._dead_letters.flush():
            logger.error("dead letters not delivered; the batch will be read again")
            return False
        return True


def _first_seen_ms(message: Message) -> int | None:
    """The stream's FIRST_SEEN_HEADER of a record, or None (a record of an older stream)."""
    for key, value in message.headers() or ():
        if key == schemas.FIRST_SEEN_HEADER and value is not None and value.isdigit():
            return int(value)
    return None


def run_indexer(settings: Settings) -> None:
    """Run an indexer in the foreground until SIGINT/SIGTERM."""
    indexer = Indexer(settings)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: indexer.stop())
    indexer.run()
