"""Sending what the assembler decided: completed traces and the tombstones of deleted ones, alerts
and dead letters, encoded for their topics. Counts what it sent, for the worker's status line."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tracestream import schemas
from tracestream.dead_letters import dead_letter_record
from tracestream.schemas.event_writer import MAX_RECORD_BYTES
from tracestream.schemas.records import CompletedTrace, EventRecord
from tracestream.settings import Settings
from tracestream.stream.topics import Topics


class Sinks:
    def __init__(self, settings: Settings, topics: Topics) -> None:
        registry = settings.kafka.schema_registry_url
        names = settings.topics
        self.events_codec = schemas.events_codec(registry, names.events)
        self._completed_codec = schemas.completed_codec(registry, names.completed)
        self._alerts_codec = schemas.alerts_codec(registry, names.alerts)
        self._dead_letters_codec = schemas.dead_letters_codec(registry, names.dead_letters)
        self._rule_alerts_codec = schemas.rule_alerts_codec(registry, names.alerts)
        self.rule_alerts = 0
        self._topics = topics
        self.emitted = 0
        self.tombstones = 0
        self.dead_lettered: Counter[str] = Counter()

    async def send_completed(self, trace: CompletedTrace, first_seen_ms: int) -> int | None:
        """Sends the trace; None, or its encoded size when it is too large to send."""
        value = self._completed_codec.encode(trace)
        self.emitted += 1
        if len(value) > MAX_RECORD_BYTES:
            return len(value)
        # When this stream first saw the trace, the same on every revision: the indexer places
        # a trace whose client clock is off by its day (IndexNames.for_trace).
        headers = {schemas.FIRST_SEEN_HEADER: b"%d" % first_seen_ms}
        await self._topics.completed.send(key=trace["trace_id"].encode(), value=value, headers=headers)
        return None

    async def send_tombstone(self, trace_id: str, first_seen_ms: int | None) -> None:
        """The deleted trace's tombstone: its key with no value, which compaction keeps until
        ``delete.retention.ms`` and then removes with every revision before it."""
        headers = {} if first_seen_ms is None else {schemas.FIRST_SEEN_HEADER: b"%d" % first_seen_ms}
        await self._topics.completed.send(key=trace_id.encode(), value=None, headers=headers)
        self.tombstones += 1

    async def send_alert(self, alert: dict[str, Any]) -> None:
        await self._topics.alerts.send(key=alert["trace_id"].encode(), value=self._alerts_codec.encode(alert))

    async def send_rule_alert(self, alert: dict[str, Any]) -> None:
        """A RuleAlert, keyed rule|group, so one rule's and group's alerts stay in order."""
        key = f"{alert['rule']}|{alert['group'] or ''}".encode()
        await self._topics.alerts.send(key=key, value=self._rule_alerts_codec.encode(alert))
        self.rule_alerts += 1

    async def dead_letter(
        self,
        reason: str,
        detail: str,
        source: tuple[str, int, int],
        key: bytes | None,
        value: bytes | None,
    ) -> None:
        """``source``: the topic, partition and offset the record was read from."""
        record = dead_letter_record(reason, detail, source, key, value, consumer="stream")
        await self._topics.dead_letters.send(key=key, value=self._dead_letters_codec.encode(record))
        self.dead_lettered[reason] += 1

    async def dead_letter_event(
        self, reason: str, detail: str, source: tuple[str, int, int], kind: str, record: EventRecord
    ) -> None:
        """One event of a record, alone (the batch's other events were used): replayable as is."""
        value = self.events_codec.encode_union(kind, record)
        await self.dead_letter(reason, detail, source, record["trace_id"].encode(), value)
