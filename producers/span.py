"""Spans and the in-process state of a trace while its spans run.

A span keeps its attributes JSON-encoded from the moment they are set, as MLflow does, so
later mutation of the caller's objects cannot change what was recorded and ending a span
only has to assemble a record. Spans never raise into the caller: misuse is logged.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from tracestream.producers.encoding import as_text, dump_json, truncate_json
from tracestream.schemas import (
    SPAN_ENDED,
    TRACE_ENDED,
    SpanAttributeKey,
    SpanType,
    TraceTagKey,
    new_span_id,
)
from tracestream.schemas.entities import SpanEvent, SpanStatus, SpanStatusCode
from tracestream.schemas.mlflow_format import derive_from_root, event_attribute_value, trace_state
from tracestream.schemas.records import SpanEnded, TraceEnded, TraceLocation

if TYPE_CHECKING:
    from tracestream.producers.processor import BatchEventProcessor, Event

logger = logging.getLogger("tracestream.producers")


_INT64 = 2**63


def _event_record(event: SpanEvent) -> dict[str, Any]:
    attributes = event.attributes if isinstance(event.attributes, dict) else {}
    return {
        "name": as_text(event.name),
        "time_ns": _time_ns(event.timestamp),
        "attributes": {as_text(k): event_attribute_value(v, dump_json) for k, v in attributes.items()},
    }


def _time_ns(value: Any) -> int:
    """A timestamp in ns the caller passed, or now when it is not a usable one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < _INT64:
        return value
    return time.time_ns()


def _misuse(method: str, argument: Any) -> None:
    logger.warning(
        "tracestream: %s(%s) ignored: not a value tracing can record", method, type(argument).__name__
    )


_SPAN_TYPE_JSON: dict[str, str] = {}


def _span_type_json(span_type: str) -> str:
    encoded = _SPAN_TYPE_JSON.get(span_type)
    if encoded is None:
        encoded = _SPAN_TYPE_JSON[span_type] = dump_json(span_type)
    return encoded


# Guards span counts and open spans of every trace: held for a few instructions, so one
# lock for all traces costs less than allocating one per trace.
_TRACE_LOCK = threading.Lock()

# The last trace whose root span ended: in the process, and in this context (thread or task),
# for MLflow's ``get_last_active_trace_id(thread_local=...)``.
last_trace_id: str | None = None
last_trace_id_in_context: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tracestream_last_active_trace_id", default=None
)


class TraceState:
    """What the SDK tracks of one trace until its root span ends."""

    __slots__ = (
        "base_metadata",
        "client_request_id",
        "ended",
        "ended_span_count",
        "location",
        "metadata",
        "open_spans",
        "processor",
        "registry",
        "request_preview",
        "response_preview",
        "root",
        "span_count",
        "state",
        "tags",
        "trace_id",
        "trace_id_json",
    )

    def __init__(
        self,
        trace_id: str,
        location: TraceLocation,
        base_metadata: dict[str, str],
        processor: BatchEventProcessor,
        registry: dict[str, TraceState],
    ) -> None:
        self.trace_id = trace_id
        self.trace_id_json = dump_json(trace_id)
        self.location = location
        self.processor = processor
        self.registry = registry
        self.root: LiveSpan | None = None
        # Children not ended yet; created with the first child (most traces are small).
        self.open_spans: set[LiveSpan] | None = None
        self.span_count = 0
        self.tags: dict[str, str] = {}
        # The process's automatic metadata (shared, never mutated) and this trace's own.
        self.base_metadata = base_metadata
        self.metadata: dict[str, str] = {}
        self.client_request_id: str | None = None
        self.request_preview: str | None = None
        self.response_preview: str | None = None
        self.state: str | None = None
        self.ended = False
        self.ended_span_count = 0

    def span_ended(self, span: LiveSpan) -> None:
        with _TRACE_LOCK:
            if self.open_spans is not None:
                self.open_spans.discard(span)
            self.span_count += 1
        # The record is built on the exporter thread (the span no longer changes).
        self.processor.emit(span)
        if span is self.root:
            self._root_ended(span)

    def _root_ended(self, root: LiveSpan) -> None:
        global last_trace_id
        with _TRACE_LOCK:
            self.ended = True
            still_open = list(self.open_spans or ())
        self.registry.pop(self.trace_id, None)
        last_trace_id = self.trace_id
        last_trace_id_in_context.set(self.trace_id)
        # A child still open when its root ends would never be emitted: close it, flagged.
        for child in still_open:
            child.set_attribute(SpanAttributeKey.AUTO_CLOSED, True)
            child.end(end_time_ns=root.end_time_ns)
        # The spans of the trace as its root ended: a span started later under it (a task that
        # outlived the request) is late data, not part of this count.
        with _TRACE_LOCK:
            self.ended_span_count = self.span_count
        # Built on the exporter thread: after its root ended, a trace's state no longer changes
        # (later tag changes become TraceTagsChanged events).
        self.processor.emit(self)

    def to_event(self) -> Event:
        return self.trace_id, (TRACE_ENDED, self.to_record())

    def to_record(self) -> TraceEnded:
        root = self.root
        assert root is not None
        metadata = {**self.base_metadata, **self.metadata}
        request_preview, response_preview = derive_from_root(
            root._attributes, metadata, self.request_preview, self.response_preview
        )
        tags = {TraceTagKey.TRACE_NAME: root.name, **self.tags}
        state = self.state or trace_state(root._status_code.value)
        assert root.end_time_ns is not None
        record: TraceEnded = {
            "trace_id": self.trace_id,
            "client_request_id": self.client_request_id,
            "location": self.location,
            "request_time_ms": root.start_time_ns // 1_000_000,
            "execution_duration_ms": (root.end_time_ns - root.start_time_ns) // 1_000_000,
            "state": state,  # type: ignore[typeddict-item]
            "tags": tags,
            "metadata": metadata,
            "request_preview": request_preview,
            "response_preview": response_preview,
            "root_span_id": root.span_id,
            "span_count": self.ended_span_count,
        }
        # Break the root <-> trace reference cycle, so both are freed by reference counting
        # instead of waiting for (and costing) a garbage collection.
        self.root = None
        return record


class LiveSpan:
    """A running span, with MLflow's LiveSpan methods."""

    __slots__ = (
        "__weakref__",
        "_attributes",
        "_ended",
        "_events",
        "_max_attribute_length",
        "_status_code",
        "_status_message",
        "_trace",
        "end_time_ns",
        "name",
        "parent_id",
        "span_id",
        "span_type",
        "start_time_ns",
    )

    def __init__(
        self,
        trace: TraceState,
        name: str,
        span_type: str,
        parent_id: str | None,
        max_attribute_length: int,
        start_time_ns: int | None = None,
    ) -> None:
        self._trace = trace
        self.span_id = new_span_id()
        self.parent_id = parent_id
        self.name = name if name.__class__ is str else as_text(name)
        span_type = span_type if span_type.__class__ is str else as_text(span_type)
        self.span_type = span_type
        self.start_time_ns = start_time_ns or time.time_ns()
        self.end_time_ns: int | None = None
        self._status_code = SpanStatusCode.UNSET
        self._status_message = ""
        self._attributes: dict[str, str] = {
            SpanAttributeKey.TRACE_ID: trace.trace_id_json,
            SpanAttributeKey.SPAN_TYPE: _span_type_json(span_type),
        }
        self._events: list[SpanEvent] | None = None
        self._ended = False
        self._max_attribute_length = max_attribute_length
        if parent_id is not None:
            if trace.open_spans is None:
                with _TRACE_LOCK:
                    if trace.open_spans is None:
                        trace.open_spans = set()
            trace.open_spans.add(self)  # a single set operation: atomic under the GIL

    # ------------------------------------------------------------ identity

    @property
    def trace_id(self) -> str:
        return self._trace.trace_id

    @property
    def request_id(self) -> str:
        """MLflow 2.x's name for the trace id."""
        return self._trace.trace_id

    @property
    def status(self) -> SpanStatus:
        return SpanStatus(self._status_code, self._status_message)

    @property
    def attributes(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self._attributes.items()}

    @property
    def events(self) -> list[SpanEvent]:
        return list(self._events or ())

    @property
    def inputs(self) -> Any:
        return self.get_attribute(SpanAttributeKey.INPUTS)

    @property
    def outputs(self) -> Any:
        return self.get_attribute(SpanAttributeKey.OUTPUTS)

    def get_attribute(self, key: str) -> Any:
        try:
            value = self._attributes.get(key)
        except TypeError:  # an unhashable key
            return None
        return None if value is None else json.loads(value)

    # ------------------------------------------------------------ mutation

    def _set_json(self, key: str, encoded: str) -> None:
        if len(encoded) > self._max_attribute_length:
            encoded, _ = truncate_json(encoded, self._max_attribute_length)
            cut = self._attributes.get(SpanAttributeKey.TRUNCATED)
            keys = sorted({*(json.loads(cut) if cut else []), key})
            self._attributes[SpanAttributeKey.TRUNCATED] = dump_json(keys)
        self._attributes[key] = encoded

    def set_attribute(self, key: str, value: Any) -> None:
        if self._ended:
            logger.debug("set_attribute(%r) on ended span %s ignored", key, self.name)
            return
        try:
            self._set_json(key if key.__class__ is str else as_text(key), dump_json(value))
        except Exception:
            _misuse("set_attribute", key)

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        if not attributes:
            return
        try:
            items = list(attributes.items())
        except Exception:
            _misuse("set_attributes", attributes)
            return
        for key, value in items:
            self.set_attribute(key, value)

    def set_inputs(self, inputs: Any) -> None:
        self.set_attribute(SpanAttributeKey.INPUTS, inputs)

    def set_outputs(self, outputs: Any) -> None:
        self.set_attribute(SpanAttributeKey.OUTPUTS, outputs)

    def set_span_type(self, span_type: str) -> None:
        self.span_type = as_text(span_type)
        self._attributes[SpanAttributeKey.SPAN_TYPE] = _span_type_json(self.span_type)

    def set_status(self, status: SpanStatus | SpanStatusCode | str, description: str | None = None) -> None:
        if isinstance(status, SpanStatus):
            code, description = status.status_code, status.description if description is None else description
        else:
            code = status
        try:
            self._status_code = SpanStatusCode(as_text(code).upper().removeprefix("STATUS_CODE_"))
        except ValueError:
            logger.warning("unknown span status %r ignored; use OK, ERROR or UNSET", code)
            return
        self._status_message = as_text(description) if description else ""

    def add_event(
        self, event: SpanEvent | str, attributes: dict[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        if not isinstance(event, SpanEvent):
            attributes = attributes if isinstance(attributes, dict) else {}
            event = SpanEvent(as_text(event), _time_ns(timestamp), attributes)
        if self._events is None:
            self._events = []
        self._events.append(event)

    def record_exception(self, exception: BaseException | str) -> None:
        """Add an ``exception`` event and set the status to ERROR."""
        if isinstance(exception, BaseException):
            self.add_event(SpanEvent.from_exception(exception))
            self.set_status(SpanStatusCode.ERROR, f"{type(exception).__name__}: {exception}")
        else:
            message = as_text(exception)
            self.add_event(SpanEvent("exception", attributes={"exception.message": message}))
            self.set_status(SpanStatusCode.ERROR, message)

    def end(
        self,
        outputs: Any = None,
        attributes: dict[str, Any] | None = None,
        status: SpanStatus | str | None = None,
        end_time_ns: int | None = None,
    ) -> None:
        if self._ended:
            logger.debug("span %s already ended", self.name)
            return
        try:
            if outputs is not None:
                self.set_outputs(outputs)
            if attributes:
                self.set_attributes(attributes)
            if status is not None:
                self.set_status(status)
        except Exception:
            _misuse("end", outputs)
        finally:
            self.end_time_ns = _time_ns(end_time_ns)
            self._ended = True
            self._trace.span_ended(self)

    # ------------------------------------------------------------ export

    def to_event(self) -> Event:
        return self._trace.trace_id, (SPAN_ENDED, self.to_record())

    def to_record(self) -> SpanEnded:
        assert self.end_time_ns is not None
        return {
            "trace_id": self._trace.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_id,
            "name": self.name,
            "span_type": self.span_type,
            "start_time_ns": self.start_time_ns,
            "end_time_ns": self.end_time_ns,
            "status_code": self._status_code.value,  # type: ignore[typeddict-item]
            "status_message": self._status_message,
            "attributes": self._attributes,
            "events": [_event_record(e) for e in self._events or ()],
            "location": self._trace.location,
        }

    def __repr__(self) -> str:
        return f"LiveSpan(name={self.name!r}, span_id={self.span_id!r}, trace_id={self.trace_id!r})"


class NoOpSpan:
    """Returned when tracing is disabled or a span could not be started: accepts every call."""

    trace_id = request_id = span_id = parent_id = name = None
    span_type = SpanType.UNKNOWN
    start_time_ns = end_time_ns = None
    inputs = outputs = None
    attributes: dict[str, Any] = {}  # noqa: RUF012 - read-only by convention
    events: list[SpanEvent] = []  # noqa: RUF012
    status = SpanStatus(SpanStatusCode.UNSET)

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        return None

    get_attribute = set_attribute = set_attributes = set_inputs = set_outputs = _ignore
    set_span_type = set_status = add_event = record_exception = end = _ignore
