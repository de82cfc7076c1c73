"""The events topic's records: a batch of events as few records as the size limits allow.

The one writer of the events topic, shared by the SDK's exporter and the MLflow drop-in's
publisher, so both write the same records: the events of one trace go out as one ``EventBatch``
record (TraceEvent v2) of up to ``max_events`` events that encodes to at most ``max_bytes``
(halved until it does), a lone event as itself. One event that cannot be encoded costs only
itself: its batch is written one event at a time and it is reported as a failure. Pure functions
over a codec; producing the records, and what a failure costs, is the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from tracestream.schemas.codec import AvroCodec
from tracestream.schemas.errors import EncodeError
from tracestream.schemas.records import EVENT_BATCH

# The topics accept records up to this size (``max.message.bytes``, set by ``tracestream admin
# init``): one LLM span can carry megabytes of prompt and completion, beyond the broker's 1 MB default.
MAX_RECORD_BYTES = 8 * 1024 * 1024
# A Kafka record costs the stream the same whatever it carries, but a large one holds its
# partition longer: batches are cut at these sizes by default.
MAX_BATCH_EVENTS = 1_000
MAX_BATCH_BYTES = 1_048_576

Event = tuple[str, dict[str, Any]]  # (union branch, e.g. schemas.SPAN_ENDED; record)


class Record(NamedTuple):
    key: str  # the trace id
    value: bytes
    events: int  # how many events it carries


class Failure(NamedTuple):
    key: str
    event: Event
    error: EncodeError


class Encoded(NamedTuple):
    records: list[Record]
    failures: list[Failure]


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(value: Any) -> Any:
    """``value`` with every string's lone surrogates replaced by U+FFFD (and split surrogate
    pairs joined), containers copied only where something changed. Such strings (from
    ``surrogateescape`` decoding, or JSON with a lone escape) are not UTF-8, so Avro cannot
    write them."""
    if isinstance(value, str):
        if value.isascii() or _SURROGATE.search(value) is None:
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        changed = False
        cleaned = {}
        for key, item in value.items():
            new_key, new_item = without_surrogates(key), without_surrogates(item)
            changed = changed or new_key is not key or new_item is not item
            cleaned[new_key] = new_item
        return cleaned if changed else value
    if isinstance(value, (list, tuple)):
        items = [without_surrogates(item) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def encode_event(codec: AvroCodec, kind: str, record: Any) -> bytes:
    """``record`` of union branch ``kind`` encoded; a record that cannot be written only because
    of lone surrogates is written with U+FFFD in their place, so one bad character never costs
    a span or a trace's metadata."""
    try:
        return codec.encode_union(kind, record)
    except EncodeError:
        cleaned = without_surrogates(record)
        if cleaned is record:
            raise
        return codec.encode_union(kind, cleaned)


def group_by_trace(events: Iterable[tuple[str, Event]]) -> dict[str, list[Event]]:
    """The events of each trace (key), in their order."""
    grouped: dict[str, list[Event]] = {}
    for key, event in events:
        found = grouped.get(key)
        if found is None:
            grouped[key] = [event]
        else:
            found.append(event)
    return grouped


def encode_events(
    codec: AvroCodec,
    events: Iterable[tuple[str, Event]],
    *,
    by_trace: bool = True,
    max_events: int = MAX_BATCH_EVENTS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> Encoded:
    """``(trace id, event)`` pairs as records keyed by trace id, each trace's in its order;
    ``by_trace=False`` writes every event as a record of its own (for consumers older than v2)."""
    records: list[Record] = []
    failures: list[Failure] = []
    # Never a batch the topic would refuse, whatever the caller's limit.
    max_bytes = min(max_bytes, MAX_RECORD_BYTES)
    if not by_trace:
        for key, event in events:
            _encode_into(codec, key, [event], max_bytes, records, failures)
        return Encoded(records, failures)
    for key, trace_events in group_by_trace(events).items():
        if len(trace_events) <= max_events:
            _encode_into(codec, key, trace_events, max_bytes, records, failures)
            continue
        for start in range(0, len(trace_events), max_events):
            _encode_into(codec, key, trace_events[start : start + max_events], max_bytes, records, failures)
    return Encoded(records, failures)


def _encode_into(
    codec: AvroCodec,
    key: str,
    events: list[Event],
    max_bytes: int,
    records: list[Record],
    failures: list[Failure],
) -> None:
    """One record of ``events`` (all of trace ``key``); split when it cannot be one."""
    try:
        if len(events) == 1:
            value = encode_event(codec, *events[0])
        else:
            value = encode_event(codec, EVENT_BATCH, {"trace_id": key, "events": events})
    except EncodeError as exc:
        if len(events) == 1:
            failures.append(Failure(key, events[0], exc))
            return
        # One bad event must not take the others with it.
        for event in events:
            _encode_into(codec, key, [event], max_bytes, records, failures)
        return
    if len(value) > max_bytes:
        if len(events) > 1:
            half = len(events) // 2
            _encode_into(codec, key, events[:half], max_bytes, records, failures)
            _encode_into(codec, key, events[half:], max_bytes, records, failures)
            return
        if len(value) > MAX_RECORD_BYTES:
            # The broker would refuse it: reported here, the same way for every writer.
            error = EncodeError(
                f"{events[0][0]} encodes to {len(value)} bytes; the topic takes at most {MAX_RECORD_BYTES}"
            )
            failures.append(Failure(key, events[0], error))
            return
    records.append(Record(key, value, len(events)))
