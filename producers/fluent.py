"""MLflow's fluent tracing API: ``@trace``, ``start_span``, ``update_current_trace``, feedback.

Every function here shields the application: a failure inside tracing is logged and the
application's own code runs (and raises) exactly as it would untraced.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar, overload
from urllib.parse import quote

from tracestream.producers import provider as _provider_module
from tracestream.producers import routes as _routes
from tracestream.producers import span as _span_module
from tracestream.producers.encoding import as_text, dump_json
from tracestream.producers.processor import RecordEvent
from tracestream.producers.provider import get_provider
from tracestream.producers.span import LiveSpan, NoOpSpan, SpanEvent, SpanStatusCode
from tracestream.schemas import (
    ASSESSMENT_LOGGED,
    TRACE_TAGS_CHANGED,
    SpanAttributeKey,
    SpanType,
    TraceMetadataKey,
    new_assessment_id,
    new_trace_id,
)
from tracestream.schemas.assessments import UPDATES_ASSESSMENT, assessment_deletion
from tracestream.schemas.entities import (
    Assessment,
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Expectation,
    Feedback,
    TraceState,
)
from tracestream.schemas.records import AssessmentLogged

logger = logging.getLogger("tracestream.producers")

P = ParamSpec("P")
R = TypeVar("R")

_current_span: contextvars.ContextVar[LiveSpan | None] = contextvars.ContextVar(
    "tracestream_current_span", default=None
)


# ---------------------------------------------------------------- spans


def _start(
    name: str,
    span_type: str,
    attributes: dict[str, Any] | None,
    parent: LiveSpan | None = None,
    encoded_attributes: dict[str, str] | None = None,
) -> LiveSpan | NoOpSpan:
    """A new span under ``parent`` (default: the current span), or NoOpSpan. Never raises.

    ``encoded_attributes`` are already JSON (a decorator's constant attributes, encoded once).
    """
    try:
        provider = _provider_module._provider or get_provider()
        if provider is None or _provider_module._paused:
            return NoOpSpan()
        parent = parent if parent is not None else _current_span.get()
        # A span under a parent belongs to the parent's trace even after its root ended (a task
        # that outlives its request): the stream makes it a new revision of that trace.
        if parent is None:
            trace = provider.new_trace(new_trace_id())
            span = LiveSpan(trace, name, span_type, None, provider.max_attribute_length)
            trace.root = span
        else:
            span = LiveSpan(parent._trace, name, span_type, parent.span_id, provider.max_attribute_length)
        if encoded_attributes:
            span._attributes.update(encoded_attributes)
        if attributes:
            span.set_attributes(attributes)
        return span
    except Exception:
        logger.exception("tracestream: could not start span %r", name)
        return NoOpSpan()


def _end_ok(span: LiveSpan | NoOpSpan, outputs: Any = None, set_outputs: bool = True) -> None:
    if not isinstance(span, LiveSpan):
        return
    try:
        if set_outputs:
            span.set_outputs(outputs)
        if span._status_code is SpanStatusCode.UNSET:
            span._status_code = SpanStatusCode.OK
        span.end()
    except Exception:
        logger.exception("tracestream: could not end span")


def _end_error(span: LiveSpan | NoOpSpan, exception: BaseException) -> None:
    try:
        span.record_exception(exception)
        span.end()
    except Exception:
        logger.exception("tracestream: could not end span")


def _detach(token: contextvars.Token | None) -> None:
    if token is None:
        return
    try:
        _current_span.reset(token)
    except ValueError:
        # Ended in another context than it started in (e.g. a generator closed elsewhere).
        logger.debug("tracestream: span context reset from another context")


def _attach(span: LiveSpan | NoOpSpan) -> contextvars.Token | None:
    return _current_span.set(span) if isinstance(span, LiveSpan) else None


@contextmanager
def start_span(
    name: str = "span", span_type: str = SpanType.UNKNOWN, attributes: dict[str, Any] | None = None
) -> Iterator[LiveSpan | NoOpSpan]:
    """A span around a block of code, child of the current span (or the root of a new trace).

    An exception leaving the block is recorded on the span (status ERROR) and re-raised.
    """
    span = _start(name, span_type, attributes)
    token = _attach(span)
    try:
        yield span
    except BaseException as exception:
        _detach(token)
        token = None
        if isinstance(exception, Exception):
            _end_error(span, exception)
        else:
            _end_ok(span, set_outputs=False)
        raise
    finally:
        _detach(token)
    if not getattr(span, "_ended", True):
        _end_ok(span, set_outputs=False)


def start_span_no_context(
    name: str,
    span_type: str = SpanType.UNKNOWN,
    parent_span: LiveSpan | None = None,
    attributes: dict[str, Any] | None = None,
    inputs: Any = None,
) -> LiveSpan | NoOpSpan:
    """A span that is not made current; end it with ``span.end()``."""
    span = _start(name, span_type, attributes, parent_span)
    if inputs is not None:
        span.set_inputs(inputs)
    return span


def get_current_active_span() -> LiveSpan | None:
    return _current_span.get()


def get_active_trace_id() -> str | None:
    span = _current_span.get()
    return None if span is None else span.trace_id


# ---------------------------------------------------------------- @trace


_SELF_NAMES = ("self", "cls")


def _input_binder(function: Callable[..., Any]) -> Callable[[tuple, dict], dict[str, Any]]:
    """A fast ``inspect.signature(...).bind`` for the common signature shapes."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return lambda args, kwargs: {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
    params = list(signature.parameters.values())
    kinds = {p.kind for p in params}
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    skip_first = bool(positional) and positional[0] in _SELF_NAMES

    if kinds <= {
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    }:

        def bind(args: tuple, kwargs: dict) -> dict[str, Any]:
            inputs = dict(zip(positional, args, strict=False))
            if kwargs:
                inputs.update(kwargs)
            for name, default in defaults.items():
                if name not in inputs:
                    inputs[name] = default
            if skip_first:
                inputs.pop(positional[0], None)
            return inputs

        return bind

    def bind_general(args: tuple, kwargs: dict) -> dict[str, Any]:
        bound = signature.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        inputs = dict(bound.arguments)
        if skip_first:
            inputs.pop(positional[0], None)
        return inputs

    return bind_general


@overload
def trace(func: Callable[P, R]) -> Callable[P, R]: ...
@overload
def trace(
    func: None = None,
    name: str | None = None,
    span_type: str = SpanType.UNKNOWN,
    attributes: dict[str, Any] | None = None,
    output_reducer: Callable[[list[Any]], Any] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def trace(
    func: Callable[..., Any] | None = None,
    name: str | None = None,
    span_type: str = SpanType.UNKNOWN,
    attributes: dict[str, Any] | None = None,
    output_reducer: Callable[[list[Any]], Any] | None = None,
) -> Any:
    """Trace every call of a function (sync, async, generator or async generator).

    The span is named after the function unless ``name`` is given; its inputs are the bound
    arguments (without ``self``/``cls``), its outputs the return value, or for generators the
    list of yielded items (or ``output_reducer`` of that list).
    """

    def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
        try:
            wrapped = traced(function)
        except Exception:  # e.g. attributes that are not a mapping: run the function untraced
            logger.exception("tracestream: could not trace %r; it runs untraced", function)
            return function
        if _routes._framework_loaded():  # a web framework is loaded: is this a route's endpoint?
            _note_traced(function)
        return wrapped

    def traced(function: Callable[..., Any]) -> Callable[..., Any]:
        span_name = str(name or getattr(function, "__name__", type(function).__name__))
        function_name = getattr(function, "__name__", span_name)
        bind = _input_binder(function)
        static_attributes = dict(attributes or {})
        is_generator = inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)
        if not is_generator:  # MLflow names the function on function spans only
            static_attributes.setdefault(SpanAttributeKey.FUNCTION_NAME, function_name)
        # Encoded once here rather than on every call.
        encoded_attributes = {str(k): dump_json(v) for k, v in static_attributes.items()}

        def begin(args: tuple, kwargs: dict) -> LiveSpan | NoOpSpan:
            span = _start(span_name, span_type, None, encoded_attributes=encoded_attributes)
            try:
                span.set_inputs(bind(args, kwargs))
            except Exception:
                logger.exception("tracestream: could not record the inputs of %s", span_name)
            return span

        if inspect.isasyncgenfunction(function):

            @functools.wraps(function)
            async def async_generator_wrapper(*args: Any, **kwargs: Any) -> Any:
                span = begin(args, kwargs)
                items: list[Any] = []
                generator = function(*args, **kwargs)
                try:
                    while True:
                        token = _attach(span)
                        try:
                            item = await generator.__anext__()
                        except StopAsyncIteration:
                            break
                        finally:
                            _detach(token)
                        _record_chunk(span, items, item)
                        yield item
                except BaseException as exception:
                    _finish_exception(span, exception, items, output_reducer)
                    raise
                _end_ok(span, _reduce(items, output_reducer))

            return async_generator_wrapper

        if inspect.isgeneratorfunction(function):

            @functools.wraps(function)
            def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
                span = begin(args, kwargs)
                items: list[Any] = []
                generator = function(*args, **kwargs)
                try:
                    while True:
                        token = _attach(span)
                        try:
                            item = next(generator)
                        except StopIteration as stop:
                            result = stop.value
                            break
                        finally:
                            _detach(token)
                        _record_chunk(span, items, item)
                        yield item
                except BaseException as exception:
                    _finish_exception(span, exception, items, output_reducer)
                    raise
                _end_ok(span, _reduce(items, output_reducer))
                return result

            return generator_wrapper

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def coroutine_wrapper(*args: Any, **kwargs: Any) -> Any:
                span = begin(args, kwargs)
                token = _attach(span)
                try:
                    result = await function(*args, **kwargs)
                except BaseException as exception:
                    _detach(token)
                    _finish_exception(span, exception)
                    raise
                _detach(token)
                _end_ok(span, result)
                return result

            return coroutine_wrapper

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The hottest path of the SDK: calls inlined where it matters.
            span = begin(args, kwargs)
            token = _current_span.set(span) if span.__class__ is LiveSpan else None
            try:
                result = function(*args, **kwargs)
            except BaseException as exception:
                _detach(token)
                _finish_exception(span, exception)
                raise
            if token is not None:
                _detach(token)
                _end_ok(span, result)
            return result

        return wrapper

    return decorator(func) if func is not None else decorator


def _note_traced(function: Callable[..., Any]) -> None:
    """Warn when ``function`` is already a route's endpoint (``@trace`` above ``@app.post``)."""
    try:
        frame, depth = sys._getframe(2), 1
        while frame is not None and frame.f_globals.get("__name__") == __name__:
            frame, depth = frame.f_back, depth + 1
        caller_globals = frame.f_globals if frame is not None else None
        _routes.note_traced(function, caller_globals, stacklevel=depth + 2)
    except Warning:
        raise  # -W error: the warning raised
    except Exception:
        logger.debug("tracestream: could not check %r against routes", function, exc_info=True)


def _record_chunk(span: LiveSpan | NoOpSpan, items: list[Any], item: Any) -> None:
    try:
        span.add_event(
            SpanEvent(f"mlflow.chunk.item.{len(items)}", attributes={"mlflow.chunk.value": dump_json(item)})
        )
    except Exception:
        logger.exception("tracestream: could not record a generator item")
    items.append(item)


def _reduce(items: list[Any], output_reducer: Callable[[list[Any]], Any] | None) -> Any:
    if output_reducer is None:
        return items
    try:
        return output_reducer(items)
    except Exception:
        logger.exception("tracestream: output_reducer failed; recording the raw items")
        return items


def _finish_exception(
    span: LiveSpan | NoOpSpan,
    exception: BaseException,
    items: list[Any] | None = None,
    output_reducer: Callable[[list[Any]], Any] | None = None,
) -> None:
    if items:
        try:
            span.set_outputs(_reduce(items, output_reducer))
        except Exception:
            logger.exception("tracestream: could not record generator outputs")
    if isinstance(exception, Exception):
        _end_error(span, exception)
    else:  # GeneratorExit, KeyboardInterrupt, CancelledError: the call stopped, not failed
        _end_ok(span, set_outputs=False)


# ---------------------------------------------------------------- traces


def _live_trace(trace_id: str | None):  # -> TraceState | None
    provider = get_provider()
    if provider is None:
        return None
    if trace_id is None:
        span = _current_span.get()
        return None if span is None or span._trace.ended else span._trace
    return provider.live_traces.get(trace_id)


def _text_mapping(value: Any, what: str) -> dict[str, str]:
    """A mapping's keys and values as text; anything else is ignored, with a warning."""
    try:
        return {as_text(k): as_text(v) for k, v in value.items()}
    except Exception:
        logger.warning("tracestream: %s must be a mapping, not %s; ignored", what, type(value).__name__)
        return {}


def update_current_trace(
    tags: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    client_request_id: str | None = None,
    request_preview: str | None = None,
    response_preview: str | None = None,
    state: str | None = None,
    model_id: str | None = None,
    session_id: str | None = None,
    user: str | None = None,
) -> None:
    """Update the trace of the current span; applied when its root span ends."""
    try:
        trace = _live_trace(None)
        if trace is None:
            logger.warning("tracestream: update_current_trace called with no active trace; ignored")
            return
        if tags:
            trace.tags.update(_text_mapping(tags, "tags"))
        if metadata:
            trace.metadata.update(_text_mapping(metadata, "metadata"))
        for key, value in (
            (TraceMetadataKey.MODEL_ID, model_id),
            (TraceMetadataKey.TRACE_SESSION, session_id),
            (TraceMetadataKey.TRACE_USER, user),
        ):
            if value is not None:
                trace.metadata[key] = as_text(value)
        if client_request_id is not None:
            trace.client_request_id = as_text(client_request_id)
        if request_preview is not None:
            trace.request_preview = as_text(request_preview)
        if response_preview is not None:
            trace.response_preview = as_text(response_preview)
        if state is not None:
            normalized = str(getattr(state, "value", state)).upper()
            if normalized not in TraceState.__members__:
                logger.warning("tracestream: unknown trace state %r ignored", state)
            else:
                trace.state = normalized
    except Exception:
        logger.exception("tracestream: update_current_trace failed")


def _tags_changed(trace_id: str, set_tags: dict[str, str], deleted: list[str]) -> None:
    try:
        trace = _live_trace(trace_id)
        if trace is not None:
            trace.tags.update(set_tags)
            for key in deleted:
                trace.tags.pop(key, None)
            return
        provider = get_provider()
        if provider is not None:
            record = {
                "trace_id": trace_id,
                "set": set_tags,
                "deleted": deleted,
                "time_ms": time.time_ns() // 1_000_000,
            }
            provider.processor.emit(RecordEvent(trace_id, TRACE_TAGS_CHANGED, record))
    except Exception:
        logger.exception("tracestream: could not change tags of %s", trace_id)


def set_trace_tag(trace_id: str, key: str, value: Any) -> None:
    """Set a tag on a trace, running or already ended."""
    _tags_changed(as_text(trace_id), {as_text(key): as_text(value)}, [])


def delete_trace_tag(trace_id: str, key: str) -> None:
    _tags_changed(as_text(trace_id), {}, [as_text(key)])


# ---------------------------------------------------------------- assessments


# Recent assessments logged by this process, by the id MLflow's client knows, with the id of
# their current version (an update is a new version: events never change): for
# override_feedback, get_assessment, update_assessment and delete_assessment.
_ASSESSMENTS_KEPT = 10_000
_assessments: OrderedDict[str, tuple[Assessment, str]] = OrderedDict()


def _remember(assessment: Assessment, version_id: str) -> None:
    assert assessment.assessment_id is not None
    _assessments[assessment.assessment_id] = (assessment, version_id)
    _assessments.move_to_end(assessment.assessment_id)
    if len(_assessments) > _ASSESSMENTS_KEPT:
        _assessments.popitem(last=False)


def _log_assessment(
    kind: type[Assessment],
    trace_id: str,
    name: str,
    value: Any,
    source: AssessmentSource | None,
    rationale: str | None,
    metadata: dict[str, Any] | None,
    span_id: str | None,
    error: AssessmentError | Exception | None = None,
    overrides: str | None = None,
    updates: str | None = None,
    create_time_ms: int | None = None,
    valid: bool = True,
) -> Assessment | None:
    """Emit one AssessmentLogged; ``updates``: this is a new version of that assessment (its
    previous version is ``overrides``), shown under its id."""
    try:
        source = source if isinstance(source, AssessmentSource) else AssessmentSource()
        name = as_text(name)
        rationale = None if rationale is None else as_text(rationale)
        span_id = None if span_id is None else as_text(span_id)
        if isinstance(error, Exception):
            error = AssessmentError(type(error).__name__, str(error))
        now_ms = time.time_ns() // 1_000_000
        version_id = new_assessment_id()
        common: dict[str, Any] = {
            "assessment_id": updates or version_id,
            "trace_id": trace_id,
            "name": name,
            "value": value,
            "source": source,
            "metadata": _text_mapping(metadata, "metadata") if metadata else {},
            "span_id": span_id,
            "create_time_ms": create_time_ms or now_ms,
        }
        if updates is not None:
            common["last_update_time_ms"] = now_ms
        assessment: Assessment
        if kind is Feedback:
            assessment = Feedback(
                **common, rationale=rationale, overrides=None if updates else overrides, error=error
            )
        else:
            assessment = Expectation(**common, rationale=rationale)
        record_metadata = dict(common["metadata"])
        if updates is not None:
            record_metadata[UPDATES_ASSESSMENT] = updates
        record: AssessmentLogged = {
            "assessment_id": version_id,
            "trace_id": trace_id,
            "name": name,
            "kind": "FEEDBACK" if kind is Feedback else "EXPECTATION",
            "value_json": None if value is None else dump_json(value),
            "error": None
            if error is None
            else {"error_code": error.error_code, "error_message": error.error_message},
            "source_type": str(getattr(source.source_type, "value", source.source_type)).upper(),  # type: ignore[typeddict-item]
            "source_id": as_text(source.source_id),
            "rationale": rationale,
            "metadata": record_metadata,
            "span_id": span_id,
            "create_time_ms": common["create_time_ms"],
            "last_update_time_ms": now_ms if updates is not None else None,
            "overrides": overrides,
            "valid": valid,
        }
        provider = get_provider()
        if provider is not None:
            provider.processor.emit(RecordEvent(trace_id, ASSESSMENT_LOGGED, record))  # type: ignore[arg-type]
        _remember(assessment, version_id)
        return assessment
    except Exception:
        logger.exception("tracestream: could not log assessment %r on %s", name, trace_id)
        return None


def log_feedback(
    *,
    trace_id: str,
    name: str = "feedback",
    value: Any = None,
    source: AssessmentSource | None = None,
    error: AssessmentError | Exception | None = None,
    rationale: str | None = None,
    metadata: dict[str, Any] | None = None,
    span_id: str | None = None,
) -> Feedback | None:
    """Log feedback (a score, a label, a judge's verdict) on a trace or one of its spans.
    Without a source, the source is CODE/"default", as in MLflow."""
    return _log_assessment(Feedback, trace_id, name, value, source, rationale, metadata, span_id, error)  # type: ignore[return-value]


def log_expectation(
    *,
    trace_id: str,
    name: str,
    value: Any,
    source: AssessmentSource | None = None,
    metadata: dict[str, Any] | None = None,
    span_id: str | None = None,
) -> Expectation | None:
    """Log the expected output (ground truth) for a trace. Without a source, the source is
    HUMAN/"default", as in MLflow."""
    source = source or AssessmentSource(AssessmentSourceType.HUMAN)
    return _log_assessment(Expectation, trace_id, name, value, source, None, metadata, span_id)  # type: ignore[return-value]


def override_feedback(
    *,
    trace_id: str,
    assessment_id: str,
    value: Any,
    rationale: str | None = None,
    source: AssessmentSource | None = None,
    metadata: dict[str, Any] | None = None,
) -> Feedback | None:
    """Replace a feedback: the new one records ``overrides`` and keeps the old one's name; the
    stream marks the old one invalid. The name is known for feedback logged by this process;
    otherwise it is left empty for the stream to take from the overridden assessment."""
    known = _assessments.get(assessment_id)
    name = known[0].name if known is not None else ""
    return _log_assessment(
        Feedback,
        trace_id,
        name,
        value,
        source,
        rationale,
        metadata,
        None,  # type: ignore[return-value]
        overrides=known[1] if known is not None else assessment_id,
    )


def log_assessment(trace_id: str, assessment: Assessment) -> Assessment | None:
    """Log a ``Feedback`` or an ``Expectation`` built beforehand on a trace (MLflow's
    ``log_assessment``); returns it with its id and creation time."""
    try:
        kind = Expectation if assessment.kind == "expectation" else Feedback
        return _log_assessment(
            kind,
            as_text(trace_id),
            assessment.name,
            assessment.value,
            assessment.source,
            assessment.rationale,
            assessment.metadata,
            assessment.span_id,
            assessment.error,
            overrides=assessment.overrides,
        )
    except Exception:
        logger.exception("tracestream: could not log assessment on %s", trace_id)
        return None


def _tracking() -> tuple[str, str] | None:
    """The API's address and token (TRACESTREAM_SDK__TRACKING_URI/_TOKEN), or None."""
    provider = get_provider()
    config = provider.config if provider is not None else None
    if config is None or not config.sdk.tracking_uri.startswith(("http://", "https://")):
        return None
    return config.sdk.tracking_uri, config.sdk.tracking_token


def get_assessment(trace_id: str, assessment_id: str) -> Assessment | None:
    """An assessment as it stands now (MLflow's ``get_assessment``).

    The SDK writes events and reads nothing, so it answers from the assessments this process
    logged, updated or deleted (the last 10,000); for any other it asks the tracestream API when
    ``TRACESTREAM_SDK__TRACKING_URI`` is set. None (with a warning) when the assessment is
    unknown, deleted or cannot be read: MLflow raises there, the SDK never does.
    """
    try:
        trace_id, assessment_id = as_text(trace_id), as_text(assessment_id)
        known = _assessments.get(assessment_id)
        if known is not None:
            if known[1] == "":  # deleted
                logger.warning("tracestream: assessment %s of %s was deleted", assessment_id, trace_id)
                return None
            return known[0]
        tracking = _tracking()
        if tracking is None:
            logger.warning(
                "tracestream: get_assessment(%r, %r): not logged by this process, and no "
                "TRACESTREAM_SDK__TRACKING_URI to ask the API; returning None",
                trace_id,
                assessment_id,
            )
            return None
        from tracestream.producers import rest

        path = f"/api/3.0/mlflow/traces/{quote(trace_id, safe='')}/assessments/"
        answer = rest.call(*tracking, "GET", path + quote(assessment_id, safe=""))
        return Assessment.from_dictionary(answer["assessment"])
    except Exception as exc:
        logger.warning("tracestream: get_assessment(%r, %r) failed: %s", trace_id, assessment_id, exc)
        return None


def update_assessment(trace_id: str, assessment_id: str, assessment: Assessment) -> Assessment | None:
    """Change an assessment (MLflow's ``update_assessment``): its name, value, rationale and
    metadata become those of ``assessment`` (a field left None keeps its old value), its other
    fields stay. Stored as a new version that overrides the current one, as the API's MLflow
    drop-in stores an update; searches and reads show it under ``assessment_id``."""
    try:
        trace_id, assessment_id = as_text(trace_id), as_text(assessment_id)
        known = _assessments.get(assessment_id)
        old = known[0] if known is not None and known[1] else None
        version_id = known[1] if known is not None and known[1] else assessment_id
        kind = Expectation if assessment.kind == "expectation" else Feedback
        metadata = {**((old.metadata or {}) if old else {}), **(assessment.metadata or {})}
        return _log_assessment(
            kind,
            trace_id,
            assessment.name or (old.name if old else ""),
            assessment.value if assessment.value is not None or old is None else old.value,
            old.source if old is not None else assessment.source,
            assessment.rationale if assessment.rationale is not None or old is None else old.rationale,
            metadata,
            old.span_id if old is not None else assessment.span_id,
            assessment.error,
            overrides=version_id,
            updates=assessment_id,
            create_time_ms=old.create_time_ms if old is not None else None,
        )
    except Exception:
        logger.exception("tracestream: could not update assessment %s of %s", assessment_id, trace_id)
        return None


def delete_assessment(trace_id: str, assessment_id: str) -> None:
    """Delete an assessment (MLflow's ``delete_assessment``): a marker that overrides its current
    version, so searches and reads no longer see it."""
    try:
        trace_id, assessment_id = as_text(trace_id), as_text(assessment_id)
        known = _assessments.get(assessment_id)
        now_ms = time.time_ns() // 1_000_000
        version_id = known[1] if known is not None and known[1] else None
        record = assessment_deletion(trace_id, assessment_id, version_id, now_ms)
        provider = get_provider()
        if provider is not None:
            provider.processor.emit(RecordEvent(trace_id, ASSESSMENT_LOGGED, record))  # type: ignore[arg-type]
        if known is not None:
            _assessments[assessment_id] = (known[0], "")  # "": deleted
    except Exception:
        logger.exception("tracestream: could not delete assessment %s of %s", assessment_id, trace_id)


# ---------------------------------------------------------------- traces and experiments


def get_last_active_trace_id(thread_local: bool = False) -> str | None:
    """The id of the last trace whose root span ended in this process, or with
    ``thread_local=True`` in this thread (or asyncio task): MLflow's ``get_last_active_trace_id``."""
    return _span_module.last_trace_id_in_context.get() if thread_local else _span_module.last_trace_id


def flush_trace_async_logging(terminate: bool = False) -> None:
    """Send every buffered event and wait for Kafka (MLflow's name for ``flush``); with
    ``terminate``, also stop the exporter thread (the next span starts tracing again)."""
    try:
        if terminate:
            _provider_module.shutdown()
        else:
            _provider_module.flush()
    except Exception:
        logger.exception("tracestream: flush_trace_async_logging failed")


@dataclass(frozen=True)
class Experiment:
    """The experiment ``set_experiment`` chose (the fields of MLflow's the SDK knows)."""

    experiment_id: str
    name: str | None = None
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)


def set_experiment(
    experiment_name: str | None = None, experiment_id: str | None = None, trace_location: Any = None
) -> Experiment | None:
    """File the traces started from now on under an experiment (MLflow's ``set_experiment``).

    By id, at once. By name, the SDK asks the tracestream API (``TRACESTREAM_SDK__TRACKING_URI``)
    for the experiment's id, creating it when there is none, as MLflow does; without an API to
    ask, it logs an error and the traces stay where they were. A later ``configure`` resets it
    to ``TRACESTREAM_SDK__EXPERIMENT_ID``. Returns the experiment, or None when it could not be set.
    """
    if trace_location is not None:
        logger.warning("tracestream: set_experiment(trace_location=...) is Databricks-only; ignored")
    if (experiment_name is None) == (experiment_id is None):
        logger.error("tracestream: set_experiment needs exactly one of experiment_name and experiment_id")
        return None
    try:
        if experiment_id is not None:
            experiment = Experiment(as_text(experiment_id), experiment_name)
        else:
            experiment = _experiment_by_name(as_text(experiment_name))
            if experiment is None:
                return None
        _provider_module.set_experiment_id(experiment.experiment_id)
        return experiment
    except Exception:
        logger.exception("tracestream: set_experiment failed; traces stay in their experiment")
        return None


def _experiment_by_name(name: str) -> Experiment | None:
    tracking = _tracking()
    if tracking is None:
        logger.error(
            "tracestream: set_experiment(experiment_name=%r) needs TRACESTREAM_SDK__TRACKING_URI (the "
            "tracestream API) to find the experiment's id; traces stay in experiment %s. "
            "Or call set_experiment(experiment_id=...).",
            name,
            _provider_module.experiment_id(),
        )
        return None
    from tracestream.producers import rest

    try:
        by_name = "/api/2.0/mlflow/experiments/get-by-name"
        answer = rest.call(*tracking, "GET", by_name, {"experiment_name": name})
    except rest.RestError as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        created = rest.call(*tracking, "POST", "/api/2.0/mlflow/experiments/create", body={"name": name})
        return Experiment(str(created["experiment_id"]), name)
    found = answer["experiment"]
    if found.get("lifecycle_stage") == "deleted":
        logger.error("tracestream: experiment %r is deleted; restore it first. Traces stay put.", name)
        return None
    tags = {t["key"]: t.get("value", "") for t in found.get("tags") or []}
    return Experiment(str(found["experiment_id"]), found.get("name", name), "active", tags)


# ---------------------------------------------------------------- threads


def with_trace_context(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` bound to the caller's tracing context, for thread pools::

        pool.submit(with_trace_context(retrieve), query)

    Spans started in ``function`` become children of the span current at this call.
    """
    context = contextvars.copy_context()

    @functools.wraps(function)
    def run_in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        # A copy per call: one Context cannot be entered by two threads at once.
        return context.copy().run(function, *args, **kwargs)

    return run_in_context
