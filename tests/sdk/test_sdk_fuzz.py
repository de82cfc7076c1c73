"""Tracing never raises into the application, whatever it is given, and one bad value never
costs the rest: text that UTF-8 cannot carry (lone surrogates) is replaced at the SDK's boundary.

Hypothesis drives the span and fluent API with None, wrong types, surrogates, NUL, huge values
and objects whose ``str()`` fails, in any order, also after the span ended.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracestream import producers as mlflow
from tracestream.producers.config import ProducerConfig, SdkOptions
from tracestream.producers.testing import InMemoryEventExporter
from tracestream.schemas import ASSESSMENT_LOGGED, SPAN_ENDED, TRACE_ENDED


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    def __repr__(self) -> str:  # hypothesis prints examples with repr()
        return "Unprintable()"


# Every character, surrogates (category Cs) and NUL included.
any_text = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(
    ["x\ud83dy", "lone-\ud800", "\x00", "\udfff\ud800", "ok"]
)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text | st.binary(max_size=8)
anything = st.recursive(
    scalars | st.just(Unprintable()) | st.just("z" * 200_000),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text | st.integers(), inner, max_size=3),
    max_leaves=8,
)

span_calls = st.one_of(
    st.tuples(st.just("set_attribute"), st.tuples(anything, anything)),
    st.tuples(st.just("set_attributes"), st.tuples(anything)),
    st.tuples(st.just("set_inputs"), st.tuples(anything)),
    st.tuples(st.just("set_outputs"), st.tuples(anything)),
    st.tuples(st.just("set_span_type"), st.tuples(anything)),
    st.tuples(st.just("set_status"), st.tuples(anything, anything)),
    st.tuples(st.just("add_event"), st.tuples(anything, anything, anything)),
    st.tuples(st.just("record_exception"), st.tuples(anything)),
    st.tuples(st.just("get_attribute"), st.tuples(anything)),
    st.tuples(st.just("end"), st.tuples(anything, anything, anything, anything)),
)


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemoryEventExporter]:
    memory = InMemoryEventExporter()
    mlflow.configure(ProducerConfig(sdk=SdkOptions(schedule_delay_ms=5)), exporter=memory)
    yield memory
    mlflow.shutdown()


def _names_of(exporter: InMemoryEventExporter, kind: str) -> list[Any]:
    return [record.get("name") for record in exporter.records(kind)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=anything, span_type=anything, attributes=anything, calls=st.lists(span_calls, max_size=8))
def test_span_calls_with_any_arguments_never_raise_and_never_lose_the_span(
    exporter: InMemoryEventExporter, name: Any, span_type: Any, attributes: Any, calls: list
) -> None:
    before = mlflow.get_stats()
    with mlflow.start_span("request") as root:
        root.set_attribute("probe", "kept")
        span = mlflow.start_span_no_context(name, span_type, parent_span=root, attributes=attributes)
        for method, arguments in calls:
            getattr(span, method)(*arguments)
        span.end()
        for method, arguments in calls:  # again, after the end
            getattr(span, method)(*arguments)
    assert mlflow.flush(5)

    after = mlflow.get_stats()
    assert after.failed == before.failed, "no event was lost to encoding"
    assert after.emitted - before.emitted == 3  # two spans and the TraceEnded


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tags=anything, metadata=anything, value=anything, feedback_name=anything, rationale=anything)
def test_trace_level_calls_with_any_arguments_never_raise(
    exporter: InMemoryEventExporter, tags: Any, metadata: Any, value: Any, feedback_name: Any, rationale: Any
) -> None:
    with mlflow.start_span("conversation") as span:
        mlflow.update_current_trace(tags=tags, metadata=metadata, client_request_id=value)
        mlflow.set_trace_tag(span.trace_id, feedback_name, value)
        trace_id = span.trace_id
    mlflow.set_trace_tag(trace_id, feedback_name, value)
    mlflow.delete_trace_tag(trace_id, feedback_name)
    mlflow.log_feedback(
        trace_id=trace_id, name=feedback_name, value=value, rationale=rationale, metadata=metadata
    )
    before_failed = mlflow.get_stats().failed
    assert mlflow.flush(5)
    assert mlflow.get_stats().failed == before_failed


@settings(max_examples=100, deadline=None)
@given(func_name=anything, attributes=anything, argument=anything)
def test_trace_decorator_with_any_arguments_runs_the_function(
    func_name: Any, attributes: Any, argument: Any
) -> None:
    def echo(value: Any) -> Any:
        return value

    traced = mlflow.trace(name=func_name, span_type=func_name, attributes=attributes)(echo)

    assert traced(argument) is argument


def test_a_lone_surrogate_in_a_tag_keeps_the_trace_and_all_its_tags(exporter: InMemoryEventExporter) -> None:
    with mlflow.start_span("checkout") as span:
        mlflow.update_current_trace(tags={"probe": "M-17", "bad": "x\ud83dy"})
        trace_id = span.trace_id
    assert mlflow.flush(5)

    [ended] = [r for r in exporter.records(TRACE_ENDED) if r["trace_id"] == trace_id]
    assert ended["state"] == "OK"
    assert ended["tags"]["probe"] == "M-17"
    assert ended["tags"]["bad"] == "x\ufffdy"


def test_a_span_named_with_a_lone_surrogate_is_kept(exporter: InMemoryEventExporter) -> None:
    with mlflow.start_span("lone-\ud800-surrogate", attributes={"query\udc80": "caf\udce9"}):
        pass
    assert mlflow.flush(5)

    [span] = [r for r in exporter.records(SPAN_ENDED) if r["name"] == "lone-\ufffd-surrogate"]
    assert span["attributes"]["query\ufffd"] == '"caf\ufffd"'


def test_a_surrogate_pair_split_in_two_code_points_becomes_the_character(
    exporter: InMemoryEventExporter,
) -> None:
    with mlflow.start_span("reply") as span:
        mlflow.log_feedback(trace_id=span.trace_id, name="mood \ud83d\ude00", value=True)
    assert mlflow.flush(5)

    assert "mood \U0001f600" in _names_of(exporter, ASSESSMENT_LOGGED)


def test_set_attributes_none_is_ignored(exporter: InMemoryEventExporter) -> None:
    with mlflow.start_span("lookup") as span:
        span.set_attributes(None)  # type: ignore[arg-type]
        span.set_attribute("order", 1182)
    assert mlflow.flush(5)

    [record] = [r for r in exporter.records(SPAN_ENDED) if r["span_id"] == span.span_id]
    assert record["attributes"]["order"] == "1182"
