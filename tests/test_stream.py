"""The trace-assembly stream against the real broker, with a real worker process.

Marker ``stream_worker`` (``pytest -m stream_worker`` runs them alone). They were once deselected
as intermittent: the worker seemed to stop emitting, but it was the readers of this module, which
shared one consumer group and held each other in rebalances (tests/stream_harness.py now assigns
partitions); and Faust's internal topics could be missing from the worker's metadata
(stream/app.py now creates them before Faust starts).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
import zlib
from collections.abc import Iterator

import pytest
from stream_harness import (
    EventSender,
    TopicReader,
    WorkerProcess,
    create_topics,
    delete_all_topics,
    latest_by_trace,
    rag_trace,
    send_trace,
    span,
    stream_settings,
)
from typer.testing import CliRunner
from waiting import wait_until

from tracestream import producers as mlflow
from tracestream import schemas
from tracestream.cli import app
from tracestream.producers.config import ProducerConfig, SdkOptions
from tracestream.schemas import (
    ASSESSMENT_LOGGED,
    SPAN_ENDED,
    TRACE_DELETED,
    TRACE_ENDED,
    TRACE_LINKED,
    TRACE_TAGS_CHANGED,
    new_trace_id,
)
from tracestream.settings import Settings

pytestmark = pytest.mark.stream_worker


class Pipeline:
    def __init__(self, settings: Settings, worker: WorkerProcess) -> None:
        self.settings = settings
        self.worker = worker
        self.sender = EventSender(settings)
        group = f"reader-{uuid.uuid4().hex[:8]}"
        self.completed = TopicReader(settings, settings.topics.completed, schemas.completed_codec(), group)
        self.alerts = TopicReader(settings, settings.topics.alerts, schemas.alerts_codec(), group)
        self.dead_letters = TopicReader(
            settings, settings.topics.dead_letters, schemas.dead_letters_codec(), group
        )

    def trace(self, trace_id: str, revision: int = 1, timeout_s: float = 60) -> dict:
        """The completed trace at (at least) ``revision``."""
        try:
            records = self.completed.wait_for(
                lambda rs: any(r["trace_id"] == trace_id and r["revision"] >= revision for r in rs), timeout_s
            )
        except AssertionError as timeout:
            raise AssertionError(
                f"no revision {revision} of {trace_id}; worker log:\n{self.worker.log_tail()}"
            ) from timeout
        return latest_by_trace(records)[trace_id]

    def revisions(self, trace_id: str) -> list[int]:
        return [r["revision"] for _, r in self.completed.records if r["trace_id"] == trace_id]

    def settled_revisions(self, trace_id: str, seconds: float = 2) -> list[int]:
        """The revisions emitted once the worker had ``seconds`` to emit anything more."""
        time.sleep(seconds)
        self.completed.wait_for(lambda rs: True, timeout_s=1)
        return self.revisions(trace_id)


@pytest.fixture(scope="module")
def pipeline(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    name = f"ts-test-stream-{uuid.uuid4().hex[:8]}"
    settings = stream_settings(kafka_settings, name, tmp_path_factory.mktemp("stream"), late_window_s=20.0)
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path_factory.mktemp("logs") / "worker.log")
    running = Pipeline(settings, worker)
    try:
        # Warm up: the worker has joined the group and assembles traces.
        trace_id, spans, ended = rag_trace()
        send_trace(running.sender, spans, ended)
        running.sender.flush()
        running.trace(trace_id, timeout_s=90)
        yield running
    finally:
        worker.stop()
        for reader in (running.completed, running.alerts, running.dead_letters):
            reader.close()
        delete_all_topics(settings)


def test_the_worker_logs_its_start_partitions_and_status_at_the_default_log_level(pipeline: Pipeline) -> None:
    # The harness runs the worker at the default log level, "warning", which hides Faust's lines.
    assert pipeline.settings.stream.log_level == "warning"
    events = re.escape(pipeline.settings.topics.events)

    log = pipeline.worker.log_path.read_text(errors="replace")

    app_id = re.escape(pipeline.settings.stream.app_id)
    started = rf"INFO stream: worker of app {app_id} starting: events {events} \(3 partitions\)"
    assert re.search(started, log), log
    assert re.search(rf"INFO stream: assigned partitions \[0, 1, 2\] of {events}", log), log
    assert "INFO stream: ready: tables recovered, assembling traces of partitions [0, 1, 2]" in log
    status = r"INFO stream: \d+ records processed, \d+ traces emitted"
    wait_until(lambda: re.search(status, pipeline.worker.log_path.read_text()), 30, "a status line")


def test_a_trace_completes_when_its_end_and_all_its_spans_have_arrived(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace()
    # The end may overtake spans: completion counts distinct spans, whatever the order.
    send_trace(pipeline.sender, spans[:1], ended)
    send_trace(pipeline.sender, spans[1:], None)
    pipeline.sender.flush()

    trace = pipeline.trace(trace_id)

    assert trace["revision"] == 1
    assert {s["span_id"] for s in trace["spans"]} == {s["span_id"] for s in spans}
    info = trace["info"]
    assert info["state"] == "OK"
    assert info["tags"]["mlflow.traceName"] == "support_agent"
    assert info["tags"]["team"] == "care"
    assert json.loads(info["metadata"]["mlflow.trace.tokenUsage"]) == {
        "input_tokens": 420,
        "output_tokens": 37,
        "total_tokens": 457,
    }
    assert json.loads(info["metadata"]["mlflow.trace.sizeStats"])["num_spans"] == 3
    assert "tracestream.trace.incomplete" not in info["metadata"]
    assert info["request_preview"] == '{"question": "Where is my order?"}'


def test_duplicate_span_events_are_counted_once(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace()
    send_trace(pipeline.sender, spans + spans, None)
    send_trace(pipeline.sender, [], ended)
    pipeline.sender.flush()

    trace = pipeline.trace(trace_id)

    assert sorted(s["span_id"] for s in trace["spans"]) == sorted(s["span_id"] for s in spans)
    assert pipeline.settled_revisions(trace_id) == [1]


def test_a_trace_sent_as_one_batch_completes_with_all_its_spans(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace()
    pipeline.sender.send_batch(trace_id, [*((SPAN_ENDED, s) for s in spans), (TRACE_ENDED, ended)])
    pipeline.sender.flush()

    trace = pipeline.trace(trace_id)

    assert trace["revision"] == 1
    assert sorted(s["span_id"] for s in trace["spans"]) == sorted(s["span_id"] for s in spans)
    assert json.loads(trace["info"]["metadata"]["mlflow.trace.tokenUsage"])["total_tokens"] == 457


def test_a_batch_repeating_spans_already_received_adds_nothing(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace()
    pipeline.sender.send_batch(trace_id, [(SPAN_ENDED, s) for s in spans[:2]])
    # A producer retry of the first batch, now with the last span and the end.
    pipeline.sender.send_batch(trace_id, [*((SPAN_ENDED, s) for s in spans), (TRACE_ENDED, ended)])
    pipeline.sender.flush()

    trace = pipeline.trace(trace_id)

    assert sorted(s["span_id"] for s in trace["spans"]) == sorted(s["span_id"] for s in spans)
    assert pipeline.settled_revisions(trace_id) == [1]


def test_a_batch_mixing_trace_ids_is_dead_lettered_whole(pipeline: Pipeline) -> None:
    trace_id, spans, _ = rag_trace()
    other_id, other_spans, _ = rag_trace()
    pipeline.sender.send_batch(trace_id, [(SPAN_ENDED, spans[0]), (SPAN_ENDED, other_spans[0])])
    pipeline.sender.flush()

    letters = pipeline.dead_letters.wait_for(lambda rs: any(r["key"] == trace_id.encode() for r in rs))

    letter = next(r for r in letters if r["key"] == trace_id.encode())
    assert letter["reason"] == "invalid_event"
    assert other_id in letter["detail"] or trace_id in letter["detail"]


def test_a_trace_whose_root_never_ends_is_finalized_in_progress_after_the_idle_timeout(
    pipeline: Pipeline,
) -> None:
    trace_id, spans, _ = rag_trace()
    send_trace(pipeline.sender, spans[1:], None)  # the root never ended
    pipeline.sender.flush()
    sent_ms = time.time() * 1000

    trace = pipeline.trace(trace_id, timeout_s=30)

    assert trace["info"]["state"] == "IN_PROGRESS"
    assert trace["info"]["metadata"]["tracestream.trace.incomplete"] == "true"
    assert len(trace["spans"]) == 2
    assert trace["completed_time_ms"] - sent_ms >= 3_000  # the idle timeout of these tests


def test_a_trace_missing_spans_is_finalized_after_the_timeout_with_its_end_state(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace(error=True)
    send_trace(pipeline.sender, spans[:2], ended)  # span_count says 3
    pipeline.sender.flush()

    trace = pipeline.trace(trace_id, timeout_s=30)

    assert trace["info"]["state"] == "ERROR"
    assert trace["info"]["metadata"]["tracestream.trace.incomplete"] == "true"


def test_a_late_span_makes_a_new_revision_of_the_same_trace(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace()
    send_trace(pipeline.sender, spans, ended)
    pipeline.sender.flush()
    first = pipeline.trace(trace_id)
    root_id = spans[0]["span_id"]
    late = span(
        trace_id,
        "post_process",
        root_id,
        first["info"]["request_time_ms"] + 950,
        first["info"]["request_time_ms"] + 990,
        span_type="PARSER",
        attributes={"mlflow.chat.tokenUsage": '{"input_tokens": 5, "output_tokens": 5, "total_tokens": 10}'},
    )

    pipeline.sender.send(SPAN_ENDED, late)
    pipeline.sender.flush()
    second = pipeline.trace(trace_id, revision=2)

    assert second["revision"] == 2
    assert len(second["spans"]) == 4
    assert json.loads(second["info"]["metadata"]["mlflow.trace.tokenUsage"])["total_tokens"] == 467


def test_tags_and_feedback_after_completion_make_new_revisions(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace()
    send_trace(pipeline.sender, spans, ended)
    pipeline.sender.flush()
    pipeline.trace(trace_id)
    feedback = {
        "assessment_id": schemas.new_assessment_id(),
        "trace_id": trace_id,
        "name": "helpfulness",
        "kind": "FEEDBACK",
        "value_json": "0.4",
        "error": None,
        "source_type": "HUMAN",
        "source_id": "agent-12",
        "rationale": "Did not answer the question.",
        "metadata": {},
        "span_id": None,
        "create_time_ms": int(time.time() * 1000),
        "last_update_time_ms": None,
        "overrides": None,
        "valid": True,
    }
    override = {
        **feedback,
        "assessment_id": schemas.new_assessment_id(),
        "name": "",
        "value_json": "0.9",
        "overrides": feedback["assessment_id"],
        "create_time_ms": feedback["create_time_ms"] + 1,
    }

    pipeline.sender.send(
        TRACE_TAGS_CHANGED,
        {
            "trace_id": trace_id,
            "set": {"reviewed": "yes"},
            "deleted": ["team"],
            "time_ms": int(time.time() * 1000),
        },
    )
    pipeline.sender.send(ASSESSMENT_LOGGED, feedback)
    pipeline.sender.send(ASSESSMENT_LOGGED, override)
    pipeline.sender.flush()
    latest = pipeline.trace(trace_id, revision=4)

    assert latest["info"]["tags"]["reviewed"] == "yes"
    assert "team" not in latest["info"]["tags"]
    by_id = {a["assessment_id"]: a for a in latest["assessments"]}
    assert by_id[feedback["assessment_id"]]["valid"] is False
    assert by_id[override["assessment_id"]]["valid"] is True
    assert by_id[override["assessment_id"]]["name"] == "helpfulness"

    # Delivered again (at least once): the same assessment and tag change are not news.
    pipeline.sender.send(ASSESSMENT_LOGGED, feedback)
    pipeline.sender.send(
        TRACE_TAGS_CHANGED,
        {"trace_id": trace_id, "set": {"reviewed": "yes"}, "deleted": ["team"], "time_ms": 0},
    )
    pipeline.sender.flush()
    assert pipeline.settled_revisions(trace_id, seconds=3) == [1, 2, 3, 4]


def test_an_error_trace_raises_an_alert_with_its_failing_spans(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace(error=True)
    send_trace(pipeline.sender, spans, ended)
    pipeline.sender.flush()

    alerts = pipeline.alerts.wait_for(lambda rs: any(r["trace_id"] == trace_id for r in rs))

    [alert] = [a for a in alerts if a["trace_id"] == trace_id]
    assert alert["trace_name"] == "support_agent"
    assert {f["name"] for f in alert["failed_spans"]} == {"support_agent", "ChatOpenAI"}
    llm = next(f for f in alert["failed_spans"] if f["name"] == "ChatOpenAI")
    assert llm["exception_types"] == ["TimeoutError"]
    assert llm["status_message"] == "TimeoutError: model timed out"
    assert alert["tags"]["team"] == "care"


def test_alerts_tail_prints_the_alert_as_a_json_line(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_id, spans, ended = rag_trace(error=True)
    send_trace(pipeline.sender, spans, ended)
    pipeline.sender.flush()
    pipeline.alerts.wait_for(lambda rs: any(r["trace_id"] == trace_id for r in rs))
    monkeypatch.setattr("tracestream.cli.get_settings", lambda: pipeline.settings)

    result = CliRunner().invoke(app, ["alerts", "tail", "--from-beginning", "--timeout", "15"])

    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.output.splitlines()]
    assert trace_id in {alert["trace_id"] for alert in printed}


def test_garbage_goes_to_the_dead_letter_topic_and_the_worker_carries_on(pipeline: Pipeline) -> None:
    pipeline.sender.send_raw(b"tr-garbage", b"this is not avro")
    pipeline.sender.send_raw(
        b"tr-truncated", schemas.events_codec().encode_union(TRACE_ENDED, rag_trace()[2])[:25]
    )
    trace_id, spans, ended = rag_trace()
    send_trace(pipeline.sender, spans, ended)
    pipeline.sender.flush()

    letters = pipeline.dead_letters.wait_for(
        lambda rs: {b"tr-garbage", b"tr-truncated"} <= {r["key"] for r in rs}
    )

    garbage = next(r for r in letters if r["key"] == b"tr-garbage")
    assert garbage["reason"] == "not_avro"
    assert garbage["value"] == b"this is not avro"
    assert garbage["source_topic"] == pipeline.settings.topics.events
    assert garbage["source_offset"] >= 0
    assert next(r for r in letters if r["key"] == b"tr-truncated")["reason"] == "truncated"
    assert pipeline.trace(trace_id)["revision"] == 1


def test_many_interleaved_traces_on_one_partition_all_complete(pipeline: Pipeline) -> None:
    traces = [rag_trace() for _ in range(150)]
    # Round-robin: the first span of every trace, then the second of every trace, ...
    for position in range(3):
        for _, spans, _ in traces:
            pipeline.sender.send(SPAN_ENDED, spans[position])
    for _, _, ended in traces:
        pipeline.sender.send(TRACE_ENDED, ended)
    pipeline.sender.flush()

    wanted = {trace_id for trace_id, _, _ in traces}
    records = pipeline.completed.wait_for(lambda rs: wanted <= {r["trace_id"] for r in rs}, timeout_s=90)

    latest = latest_by_trace(records)
    for trace_id, _, _ in traces:
        assert latest[trace_id]["revision"] == 1
        assert len(latest[trace_id]["spans"]) == 3
        assert "tracestream.trace.incomplete" not in latest[trace_id]["info"]["metadata"]


def test_a_span_of_an_unknown_trace_without_end_still_completes_by_timeout(pipeline: Pipeline) -> None:
    trace_id = new_trace_id()
    now = int(time.time() * 1000)
    pipeline.sender.send(SPAN_ENDED, span(trace_id, "orphan_tool_call", "00000000000000aa", now, now + 5))
    pipeline.sender.flush()

    trace = pipeline.trace(trace_id, timeout_s=30)

    assert trace["info"]["state"] == "IN_PROGRESS"
    assert trace["info"]["tags"]["mlflow.traceName"] == "orphan_tool_call"


# ---------------------------------------------------------------- issue 17: trace assembly, corrected


@pytest.fixture
def sdk(pipeline: Pipeline) -> Iterator[None]:
    """The real SDK publishing to this module's events topic."""
    settings = pipeline.settings
    mlflow.configure(
        ProducerConfig(settings.kafka.connection(), settings.topics.events, SdkOptions(experiment_id="3"))
    )
    try:
        yield
    finally:
        mlflow.shutdown()


def test_a_root_quiet_past_the_idle_timeout_ends_complete_without_the_incomplete_flag(
    pipeline: Pipeline,
) -> None:
    trace_id, (root, retriever, llm), ended = rag_trace()
    send_trace(pipeline.sender, [retriever], None)
    pipeline.sender.flush()
    # The LLM call outlasts the idle timeout (3 s here): the trace is searchable, in progress.
    in_progress = pipeline.trace(trace_id, timeout_s=30)
    assert in_progress["info"]["state"] == "IN_PROGRESS"
    assert in_progress["info"]["metadata"]["tracestream.trace.incomplete"] == "true"

    send_trace(pipeline.sender, [llm, root], ended)
    pipeline.sender.flush()
    final = pipeline.trace(trace_id, revision=2)

    assert final["info"]["state"] == "OK"
    assert len(final["spans"]) == 3
    assert final["info"]["execution_duration_ms"] == 900
    assert "tracestream.trace.incomplete" not in final["info"]["metadata"]


def test_tags_sent_before_their_trace_arrives_are_applied_to_it_without_a_phantom_revision(
    pipeline: Pipeline,
) -> None:
    trace_id, spans, ended = rag_trace()
    pipeline.sender.send(
        TRACE_TAGS_CHANGED,
        {"trace_id": trace_id, "set": {"ticket": "T-4411"}, "deleted": [], "time_ms": 1_765_000_000_000},
    )
    pipeline.sender.flush()
    time.sleep(6)  # twice the idle timeout: nothing of the trace itself has come yet

    send_trace(pipeline.sender, spans, ended)
    pipeline.sender.flush()
    trace = pipeline.trace(trace_id)

    assert trace["revision"] == 1
    assert len(trace["spans"]) == 3
    assert trace["info"]["tags"]["ticket"] == "T-4411"
    assert "tracestream.trace.incomplete" not in trace["info"]["metadata"]
    assert pipeline.settled_revisions(trace_id) == [1]


def test_feedback_and_tags_for_an_unknown_trace_are_dead_lettered_never_emitted(
    pipeline: Pipeline, sdk: None
) -> None:
    trace_id = "tr-" + uuid.uuid4().hex
    mlflow.log_feedback(trace_id=trace_id, name="helpfulness", value=0.8)
    mlflow.set_trace_tag(trace_id, "reviewed", "yes")
    assert mlflow.flush(10)

    # Held for the late window (20 s here), then dead-lettered with why.
    letters = pipeline.dead_letters.wait_for(
        lambda rs: sum(r["key"] == trace_id.encode() for r in rs) >= 1, timeout_s=60
    )

    mine = [r for r in letters if r["key"] == trace_id.encode()]
    assert {r["reason"] for r in mine} == {"unknown_trace"}
    held = [
        kind
        for letter in mine
        for kind, _ in schemas.events_of(schemas.events_codec().decode(letter["value"])["event"])
    ]
    assert sorted(held) == [ASSESSMENT_LOGGED, TRACE_TAGS_CHANGED]
    assert pipeline.settled_revisions(trace_id) == []


def test_a_task_that_outlives_its_root_becomes_a_late_span_of_the_same_trace(
    pipeline: Pipeline, sdk: None
) -> None:
    async def summarize(question: str) -> None:
        with mlflow.start_span("summarize_for_crm", span_type=mlflow.SpanType.LLM) as task:
            await asyncio.sleep(1.0)  # after the root returned and its trace was flushed
            task.set_outputs("Customer asked about order 8812.")

    @mlflow.trace(span_type=mlflow.SpanType.AGENT)
    async def support_agent(question: str) -> str:
        trace_ids.append(mlflow.get_active_trace_id())
        tasks.append(asyncio.create_task(summarize(question)))
        return "It ships tomorrow."

    async def handle_request() -> str:
        answer = await support_agent("Where is my order?")
        assert mlflow.flush(10)
        await asyncio.gather(*tasks)
        return answer

    tasks: list[asyncio.Task[None]] = []
    trace_ids: list[str | None] = []
    asyncio.run(handle_request())
    assert mlflow.flush(10)
    [trace_id] = trace_ids
    assert trace_id is not None

    second = pipeline.trace(trace_id, revision=2)
    [first] = [r for _, r in pipeline.completed.records if r["trace_id"] == trace_id and r["revision"] == 1]

    assert [s["name"] for s in first["spans"]] == ["support_agent"]
    assert sorted(s["name"] for s in second["spans"]) == ["summarize_for_crm", "support_agent"]
    assert second["info"]["state"] == "OK"
    assert json.loads(second["info"]["metadata"]["mlflow.trace.sizeStats"])["num_spans"] == 2
    assert "tracestream.trace.incomplete" not in second["info"]["metadata"]
    assert pipeline.settled_revisions(trace_id) == [1, 2]


def test_a_span_ending_after_the_late_window_is_dead_lettered_late_after_retention(
    pipeline: Pipeline, sdk: None
) -> None:
    with mlflow.start_span("nightly_report", span_type=mlflow.SpanType.CHAIN) as root:
        trace_id = root.trace_id
    straggler = mlflow.start_span_no_context("upload_report", parent_span=root)
    assert mlflow.flush(10)
    pipeline.trace(trace_id)

    time.sleep(23)  # the late window here is 20 s after the last revision
    straggler.end()
    assert mlflow.flush(10)

    letters = pipeline.dead_letters.wait_for(lambda rs: any(r["key"] == trace_id.encode() for r in rs))
    [letter] = [r for r in letters if r["key"] == trace_id.encode()]
    assert letter["reason"] == "late_after_retention"
    assert pipeline.settled_revisions(trace_id) == [1]


def test_a_second_root_under_the_same_trace_id_is_dead_lettered_not_dropped(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace()
    send_trace(pipeline.sender, spans, ended)
    pipeline.sender.flush()
    pipeline.trace(trace_id)
    now = int(time.time() * 1000)
    # A broken client reuses the id for another request.
    other_root = span(trace_id, "billing_agent", None, now, now + 300, span_type="AGENT")
    other_end = {
        **ended,
        "request_time_ms": now,
        "execution_duration_ms": 300,
        "tags": {"mlflow.traceName": "billing_agent", "team": "billing"},
        "root_span_id": other_root["span_id"],
        "span_count": 1,
    }

    pipeline.sender.send_batch(trace_id, [(SPAN_ENDED, other_root), (TRACE_ENDED, other_end)])
    pipeline.sender.flush()

    letters = pipeline.dead_letters.wait_for(lambda rs: any(r["key"] == trace_id.encode() for r in rs))
    [letter] = [r for r in letters if r["key"] == trace_id.encode()]
    assert letter["reason"] == "duplicate_trace_id"
    assert other_root["span_id"] in letter["detail"]
    [(kind, dropped)] = schemas.events_of(schemas.events_codec().decode(letter["value"])["event"])
    assert kind == TRACE_ENDED
    assert dropped["tags"]["team"] == "billing"
    # The first trace keeps its own end; the other root's span is late data of that id.
    latest = pipeline.trace(trace_id, revision=2)
    assert latest["info"]["tags"]["team"] == "care"
    assert latest["info"]["execution_duration_ms"] == 900


def test_runs_and_prompts_linked_after_completion_make_a_revision_with_the_links(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace()
    send_trace(pipeline.sender, spans, ended)
    pipeline.sender.flush()
    pipeline.trace(trace_id)
    now_ms = int(time.time() * 1000)

    pipeline.sender.send(
        TRACE_LINKED,
        {
            "trace_id": trace_id,
            "run_ids": ["run-eval-7"],
            "prompt_versions": ["support-prompt/3"],
            "time_ms": now_ms,
        },
    )
    pipeline.sender.flush()
    second = pipeline.trace(trace_id, revision=2)

    assert (second["linked_run_ids"], second["linked_prompts"]) == (["run-eval-7"], ["support-prompt/3"])


def test_a_deleted_trace_is_a_tombstone_and_its_late_events_bring_it_back_nowhere(pipeline: Pipeline) -> None:
    trace_id, spans, ended = rag_trace()
    send_trace(pipeline.sender, spans, ended)
    pipeline.sender.flush()
    first = pipeline.trace(trace_id)

    now_ms = int(time.time() * 1000)
    pipeline.sender.send(TRACE_DELETED, {"trace_id": trace_id, "time_ms": now_ms, "reason": "DeleteTraces"})
    pipeline.sender.flush()
    headers = pipeline.completed.wait_for_tombstone(trace_id.encode())

    # The header the indexer found the trace's document by (its first-seen day).
    assert int(headers[schemas.FIRST_SEEN_HEADER]) <= first["completed_time_ms"]
    late = span(trace_id, "post_process", spans[0]["span_id"], now_ms, now_ms + 40, span_type="PARSER")
    pipeline.sender.send(SPAN_ENDED, late)
    pipeline.sender.send(
        TRACE_TAGS_CHANGED,
        {"trace_id": trace_id, "set": {"reviewed": "yes"}, "deleted": [], "time_ms": now_ms},
    )
    # A trace sent after the late events to their partition (the producer's default partitioner,
    # CRC32 of the key): once it is out, the worker has read them.
    partitions = pipeline.settings.topics.events_partitions
    after_id, after_spans, after_ended = rag_trace()
    while zlib.crc32(after_id.encode()) % partitions != zlib.crc32(trace_id.encode()) % partitions:
        after_id, after_spans, after_ended = rag_trace()
    send_trace(pipeline.sender, after_spans, after_ended)
    pipeline.sender.flush()
    assert pipeline.sender.partitions[after_id] == pipeline.sender.partitions[trace_id]
    pipeline.trace(after_id)

    assert pipeline.settled_revisions(trace_id, seconds=3) == [1]
    wait_until(
        lambda: f"ignoring events of deleted trace {trace_id}" in pipeline.worker.log_path.read_text(),
        10,
        "the late events logged",
    )
