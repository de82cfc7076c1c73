"""The span tree: nesting, async tasks, threads, generators and exceptions."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tracestream import producers as mlflow
from tracestream.schemas import SPAN_ENDED, TRACE_ENDED, is_span_id, is_trace_id


def spans_by_name(exporter) -> dict[str, dict]:
    return {span["name"]: span for span in exporter.records(SPAN_ENDED)}


def test_nested_calls_form_one_trace_with_parent_links(flushed) -> None:
    @mlflow.trace(span_type=mlflow.SpanType.RETRIEVER)
    def retrieve(query: str) -> list[str]:
        return ["Paris is the capital of France."]

    @mlflow.trace(span_type=mlflow.SpanType.LLM)
    def generate(question: str, context: list[str]) -> str:
        return "Paris."

    @mlflow.trace(span_type=mlflow.SpanType.AGENT)
    def answer(question: str) -> str:
        return generate(question, retrieve(question))

    assert answer("What is the capital of France?") == "Paris."

    exporter = flushed()
    spans = spans_by_name(exporter)
    root = spans["answer"]
    assert is_trace_id(root["trace_id"]) and is_span_id(root["span_id"])
    assert root["parent_span_id"] is None
    assert spans["retrieve"]["parent_span_id"] == root["span_id"]
    assert spans["generate"]["parent_span_id"] == root["span_id"]
    assert {s["trace_id"] for s in spans.values()} == {root["trace_id"]}
    assert json.loads(spans["generate"]["attributes"]["mlflow.spanInputs"]) == {
        "question": "What is the capital of France?",
        "context": ["Paris is the capital of France."],
    }
    assert spans["generate"]["attributes"]["mlflow.spanType"] == '"LLM"'
    [trace_end] = exporter.records(TRACE_ENDED)
    assert trace_end["span_count"] == 3
    assert trace_end["root_span_id"] == root["span_id"]
    assert trace_end["tags"]["mlflow.traceName"] == "answer"
    assert trace_end["state"] == "OK"
    assert trace_end["location"] == {"type": "MLFLOW_EXPERIMENT", "experiment_id": "42"}


def test_the_trace_ended_event_comes_after_all_its_spans(flushed) -> None:
    @mlflow.trace
    def step(n: int) -> int:
        return n

    @mlflow.trace
    def pipeline() -> int:
        return sum(step(n) for n in range(5))

    pipeline()

    kinds = [kind for _, (kind, _) in flushed().events]
    assert kinds == [SPAN_ENDED] * 6 + [TRACE_ENDED]


def test_every_event_is_keyed_by_its_trace_id(flushed) -> None:
    @mlflow.trace
    def call() -> None:
        with mlflow.start_span("inner"):
            pass

    call()
    call()

    events = flushed().events
    assert all(key == record["trace_id"] for key, (_, record) in events)
    assert len({key for key, _ in events}) == 2


def test_start_span_blocks_nest_under_the_current_span(flushed) -> None:
    with mlflow.start_span("workflow", span_type=mlflow.SpanType.CHAIN) as outer:
        outer.set_inputs({"ticket": 4711})
        with mlflow.start_span("classify", attributes={"model": "small"}) as inner:
            assert mlflow.get_current_active_span() is inner
            inner.set_outputs("billing")
        assert mlflow.get_current_active_span() is outer
    assert mlflow.get_current_active_span() is None

    spans = spans_by_name(flushed())
    assert spans["classify"]["parent_span_id"] == spans["workflow"]["span_id"]
    assert spans["classify"]["attributes"]["model"] == '"small"'
    assert spans["classify"]["attributes"]["mlflow.spanOutputs"] == '"billing"'


def test_concurrent_asyncio_tasks_keep_their_own_parents(flushed) -> None:
    @mlflow.trace
    async def tool(name: str) -> str:
        await asyncio.sleep(0.01)
        with mlflow.start_span(f"{name}.request"):
            await asyncio.sleep(0.01)
        return name

    @mlflow.trace
    async def agent() -> list[str]:
        return list(await asyncio.gather(tool("search"), tool("calculator")))

    assert asyncio.run(agent()) == ["search", "calculator"]

    records = flushed().records(SPAN_ENDED)
    spans = {s["name"]: s for s in records}
    tools = {s["span_id"]: s for s in records if s["name"] == "tool"}
    assert len(tools) == 2
    assert all(t["parent_span_id"] == spans["agent"]["span_id"] for t in tools.values())
    for name in ("search", "calculator"):
        request = spans[f"{name}.request"]
        parent = tools[request["parent_span_id"]]
        assert json.loads(parent["attributes"]["mlflow.spanInputs"]) == {"name": name}


def test_separate_asyncio_runs_are_separate_traces(flushed) -> None:
    @mlflow.trace
    async def handle(request_id: int) -> int:
        return request_id

    async def serve() -> None:
        await asyncio.gather(*(handle(i) for i in range(3)))

    asyncio.run(serve())

    assert len({s["trace_id"] for s in flushed().records(SPAN_ENDED)}) == 3


def test_thread_pool_work_joins_the_trace_through_with_trace_context(flushed) -> None:
    @mlflow.trace
    def embed(chunk: str) -> int:
        return len(chunk)

    @mlflow.trace
    def index(chunks: list[str]) -> list[int]:
        with ThreadPoolExecutor(max_workers=3) as pool:
            return list(pool.map(mlflow.with_trace_context(embed), chunks))

    assert index(["a", "bb", "ccc", "dddd"]) == [1, 2, 3, 4]

    exporter = flushed()
    spans = exporter.records(SPAN_ENDED)
    root = next(s for s in spans if s["name"] == "index")
    embeds = [s for s in spans if s["name"] == "embed"]
    assert len(embeds) == 4
    assert all(s["parent_span_id"] == root["span_id"] and s["trace_id"] == root["trace_id"] for s in embeds)
    [trace_end] = exporter.records(TRACE_ENDED)
    assert trace_end["span_count"] == 5


def test_thread_pool_work_without_the_helper_starts_its_own_traces(flushed) -> None:
    @mlflow.trace
    def embed(chunk: str) -> int:
        return len(chunk)

    @mlflow.trace
    def index(chunks: list[str]) -> list[int]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(embed, chunks))

    index(["a", "bb"])

    assert len(flushed().records(TRACE_ENDED)) == 3


def test_a_generator_span_covers_the_iteration_and_records_the_items(flushed) -> None:
    @mlflow.trace(span_type=mlflow.SpanType.LLM)
    def stream_tokens(prompt: str):
        with mlflow.start_span("tokenize"):
            pass
        yield from ["Hel", "lo", "!"]

    @mlflow.trace
    def chat() -> str:
        text = ""
        for token in stream_tokens("Say hello"):
            # Between items the caller's span is current again, not the generator's.
            assert mlflow.get_current_active_span().name == "chat"
            text += token
        return text

    assert chat() == "Hello!"

    spans = spans_by_name(flushed())
    stream = spans["stream_tokens"]
    assert json.loads(stream["attributes"]["mlflow.spanOutputs"]) == ["Hel", "lo", "!"]
    assert [e["name"] for e in stream["events"]] == [
        "mlflow.chunk.item.0",
        "mlflow.chunk.item.1",
        "mlflow.chunk.item.2",
    ]
    assert spans["tokenize"]["parent_span_id"] == stream["span_id"]
    assert stream["parent_span_id"] == spans["chat"]["span_id"]


def test_an_async_generator_with_an_output_reducer(flushed) -> None:
    @mlflow.trace(output_reducer=lambda chunks: "".join(chunks))
    async def stream_answer(question: str):
        for chunk in ("The answer", " is 42."):
            await asyncio.sleep(0)
            yield chunk

    async def consume() -> list[str]:
        return [chunk async for chunk in stream_answer("meaning of life?")]

    assert asyncio.run(consume()) == ["The answer", " is 42."]

    span = spans_by_name(flushed())["stream_answer"]
    assert span["attributes"]["mlflow.spanOutputs"] == '"The answer is 42."'
    assert span["status_code"] == "OK"


def test_an_exception_marks_the_span_and_trace_as_error_and_is_re_raised(flushed) -> None:
    class RateLimitError(Exception):
        pass

    @mlflow.trace(span_type=mlflow.SpanType.LLM)
    def call_model(prompt: str) -> str:
        raise RateLimitError("429: slow down")

    @mlflow.trace
    def agent() -> str:
        try:
            return call_model("hi")
        except RateLimitError:
            raise ValueError("model unavailable") from None

    with pytest.raises(ValueError, match="model unavailable"):
        agent()

    exporter = flushed()
    spans = spans_by_name(exporter)
    model = spans["call_model"]
    assert model["status_code"] == "ERROR"
    assert model["status_message"] == "RateLimitError: 429: slow down"
    [event] = model["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "RateLimitError"
    assert event["attributes"]["exception.message"] == "429: slow down"
    assert "Traceback" in event["attributes"]["exception.stacktrace"]
    assert spans["agent"]["status_code"] == "ERROR"
    [trace_end] = exporter.records(TRACE_ENDED)
    assert trace_end["state"] == "ERROR"


def test_a_failing_generator_keeps_the_items_it_yielded(flushed) -> None:
    @mlflow.trace
    def pages():
        yield 1
        raise ConnectionError("socket closed")

    with pytest.raises(ConnectionError):
        list(pages())

    span = spans_by_name(flushed())["pages"]
    assert span["status_code"] == "ERROR"
    assert span["attributes"]["mlflow.spanOutputs"] == "[1]"


def test_a_span_started_under_an_ended_root_joins_the_root_trace_as_late_data(flushed) -> None:
    with mlflow.start_span("request") as root:
        pass
    late = mlflow.start_span_no_context("late", parent_span=root)
    late.end()

    exporter = flushed()
    spans = spans_by_name(exporter)
    assert spans["late"]["trace_id"] == root.trace_id
    assert spans["late"]["parent_span_id"] == root.span_id
    [ended] = exporter.records(TRACE_ENDED)
    assert ended["span_count"] == 1, "the count is of the spans there when the root ended"


def test_a_task_that_outlives_its_root_stays_in_the_root_trace(flushed) -> None:
    @mlflow.trace
    async def send_receipt() -> str:
        await asyncio.sleep(0.01)
        return "sent"

    @mlflow.trace
    async def handle_order() -> str:
        asyncio.get_running_loop().create_task(send_receipt())
        return "accepted"

    async def serve() -> None:
        await handle_order()
        await asyncio.sleep(0.1)

    asyncio.run(serve())

    spans = spans_by_name(flushed())
    assert spans["send_receipt"]["trace_id"] == spans["handle_order"]["trace_id"]
    assert spans["send_receipt"]["parent_span_id"] == spans["handle_order"]["span_id"]
