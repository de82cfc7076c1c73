"""A trace's state in the stream, typed, and its record in the ``traces`` table.

The state is immutable: :func:`tracestream.stream.assembler.step` returns a new one. Part of it
is kept in the ``traces`` table (a JSON record, see :meth:`TraceState.to_record`); the rest
(span ids, chunk count, last activity, replay flags) lives in the worker's memory and is rebuilt
from the ``spans`` table after a restart or a rebalance.

The table record keeps the keys and meaning it had before the state was typed, so a worker
restarts on an existing changelog as is: ``first_ms``, ``partition``, ``revision``, ``ended``
(the TraceEnded; base64 Avro in records written before TraceEvent v2), ``tags_set``,
``tags_deleted``, ``assessments``, ``held`` (records of a trace not seen yet, as
``{"offset", "value": base64}``), and once emitted ``finalized``, ``finalized_ms``,
``incomplete``, ``emitted_spans``, ``alerted``; since TraceEvent v4 ``linked_run_ids`` and
``linked_prompts`` when the trace has links. A purged trace's record is a marker:
``{"purged": true, "revision", "purged_ms", "partition"}`` (and ``first_ms`` since v4); a deleted
trace's is ``{"deleted": true, "deleted_ms", "partition", "first_ms"}`` (``first_ms`` when known,
``reported`` once a later event of the trace was logged). Keys added later have defaults, so
records written before them load as they were.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tracestream import schemas
from tracestream.schemas import events_of
from tracestream.schemas.records import AssessmentLogged, TraceEnded

_LEGACY_CODEC = schemas.events_codec()


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """A record of the events topic kept as received: tags or assessments of a trace not seen
    yet, dead-lettered whole if the trace never comes."""

    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class Emitted:
    """The last revision emitted."""

    at_ms: int
    incomplete: bool
    # Distinct spans it had: spans replayed after a lost chunk are not news up to this count.
    spans: int


@dataclass(frozen=True, slots=True)
class TraceState:
    """A trace being assembled, or emitted and still within its late window."""

    partition: int
    # When this stream first saw the trace (its clock), for the indexer's clock-skew check.
    first_ms: int
    revision: int = 0
    ended: TraceEnded | None = None
    tags_set: Mapping[str, str] = field(default_factory=dict)
    tags_deleted: tuple[str, ...] = ()
    assessments: tuple[AssessmentLogged, ...] = ()
    held: tuple[HeldRecord, ...] = ()
    emitted: Emitted | None = None
    alerted: bool = False
    # Runs and prompt versions (name/version) linked to the trace, in first-linked order.
    linked_run_ids: tuple[str, ...] = ()
    linked_prompts: tuple[str, ...] = ()
    # In memory only, rebuilt after a restart: the distinct spans received, the records stored
    # in the spans table (each brought at least one new span), and when a record last came.
    span_ids: frozenset[str] = frozenset()
    chunks: int = 0
    last_activity_ms: int = 0
    # Built from the tables rather than by this worker's own processing, and whether its
    # current revision was emitted again since (see the assembler's replay rule).
    restored: bool = False
    reemitted: bool = False

    @property
    def spans(self) -> int:
        return len(self.span_ids)

    @property
    def complete(self) -> bool:
        """The root ended and the spans it counted are all here. Spans started after the root
        ended (tasks that outlived it) are not in its count, so more than counted is complete."""
        return self.ended is not None and self.spans >= self.ended["span_count"]

    @property
    def unseen(self) -> bool:
        """No span and no end of the trace yet: only tags or assessments sent for its id."""
        return not self.span_ids and self.ended is None

    def to_record(self) -> dict[str, Any]:
        """The ``traces`` table's JSON record."""
        record: dict[str, Any] = {
            "first_ms": self.first_ms,
            "partition": self.partition,
            "revision": self.revision,
        }
        if self.ended is not None:
            record["ended"] = self.ended
        if self.tags_set or self.tags_deleted:
            record["tags_set"] = dict(self.tags_set)
            record["tags_deleted"] = list(self.tags_deleted)
        if self.assessments:
            record["assessments"] = list(self.assessments)
        if self.held:
            record["held"] = [
                {"offset": h.offset, "value": base64.b64encode(h.value).decode()} for h in self.held
            ]
        if self.emitted is not None:
            record.update(
                finalized=True,
                finalized_ms=self.emitted.at_ms,
                incomplete=self.emitted.incomplete,
                emitted_spans=self.emitted.spans,
            )
        if self.alerted:
            record["alerted"] = True
        if self.linked_run_ids:
            record["linked_run_ids"] = list(self.linked_run_ids)
        if self.linked_prompts:
            record["linked_prompts"] = list(self.linked_prompts)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TraceState:
        ended = record.get("ended")
        if isinstance(ended, str):  # written before TraceEvent v2: the encoded event
            ended = events_of(_LEGACY_CODEC.decode(base64.b64decode(ended))["event"])[0][1]
        emitted = None
        if record.get("finalized"):
            emitted = Emitted(
                at_ms=record.get("finalized_ms", 0),
                incomplete=bool(record.get("incomplete")),
                spans=record.get("emitted_spans", 0),
            )
        return cls(
            partition=record.get("partition", 0),
            first_ms=record.get("first_ms", 0),
            revision=record.get("revision", 0),
            ended=ended,
            tags_set=dict(record.get("tags_set", {})),
            tags_deleted=tuple(record.get("tags_deleted", ())),
            assessments=tuple(record.get("assessments", ())),
            held=tuple(HeldRecord(h["offset"], base64.b64decode(h["value"])) for h in record.get("held", ())),
            emitted=emitted,
            alerted=bool(record.get("alerted")),
            linked_run_ids=tuple(record.get("linked_run_ids", ())),
            linked_prompts=tuple(record.get("linked_prompts", ())),
        )


@dataclass(frozen=True, slots=True)
class Purged:
    """What is left of a trace after its late window: later events are dead-lettered rather
    than starting a partial second trace, until the marker is forgotten."""

    partition: int
    revision: int
    purged_ms: int
    # When the stream first saw the trace (0: a marker written before v4), for the tombstone's
    # header if the trace is deleted later.
    first_ms: int = 0

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "purged": True,
            "revision": self.revision,
            "purged_ms": self.purged_ms,
            "partition": self.partition,
        }
        if self.first_ms:
            record["first_ms"] = self.first_ms
        return record


@dataclass(frozen=True, slots=True)
class Deleted:
    """What is left of a deleted trace: its later events are ignored (a deletion is final, so
    they are not dead-lettered for a replay either) until the marker is forgotten."""

    partition: int
    deleted_ms: int
    # When the stream first saw the trace (0: unknown), the header of the tombstone sent again
    # when the trace is deleted again.
    first_ms: int = 0
    # A later event of the trace was logged: the next ones are only counted.
    reported: bool = False

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"deleted": True, "deleted_ms": self.deleted_ms, "partition": self.partition}
        if self.first_ms:
            record["first_ms"] = self.first_ms
        if self.reported:
            record["reported"] = True
        return record


Marker = Purged | Deleted


def state_from_record(record: Mapping[str, Any] | None) -> TraceState | Marker | None:
    """The state a ``traces`` table record holds (None: no record)."""
    if not record:
        return None
    if record.get("deleted"):
        return Deleted(
            record.get("partition", 0),
            record.get("deleted_ms", 0),
            record.get("first_ms", 0),
            bool(record.get("reported")),
        )
    if record.get("purged"):
        return Purged(
            record.get("partition", 0),
            record.get("revision", 0),
            record.get("purged_ms", 0),
            record.get("first_ms", 0),
        )
    return TraceState.from_record(record)
