"""The whole pipeline under faults: nothing the SDK had delivered to Kafka is lost, nothing is
indexed twice, bad input is set aside with its reason. Each test prints its figures."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from opensearchpy import OpenSearch
from waiting import wait_until

from reliability.pipeline import Pipeline, infra
from tracestream import schemas
from tracestream.settings import Settings


@pytest.fixture
def pipeline_dir(tmp_path: Path) -> Path:
    return tmp_path


def _expect_all_indexed(pipeline: Pipeline, client: OpenSearch, expected: set[str], timeout_s: float) -> dict:
    wait_until(
        lambda: pipeline.count(client) >= len(expected), timeout_s, f"{len(expected)} traces indexed", 2
    )
    time.sleep(3)  # anything extra (a duplicate, a stray trace) would show now
    return pipeline.documents(client)


def _read_topic(settings: Settings, topic: str, decode: Callable[[bytes], dict]) -> list[dict]:
    """Every record of ``topic`` now, decoded, read by assignment (no consumer group)."""
    consumer = Consumer(settings.kafka.confluent_config({"group.id": "unused", "enable.auto.commit": False}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[dict] = []
        positions = dict.fromkeys(partitions, 0)
        deadline = time.monotonic() + 120
        while any(positions[p] < ends[p] for p in partitions) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            positions[message.partition()] = message.offset() + 1
            records.append(decode(message.value()))
        return records
    finally:
        consumer.close()


def _dead_letters(settings: Settings) -> list[dict]:
    codec = schemas.dead_letters_codec(settings.kafka.schema_registry_url, settings.topics.dead_letters)
    return _read_topic(settings, settings.topics.dead_letters, codec.decode)


def _last_revisions(settings: Settings) -> dict[str, int]:
    """trace id -> the highest revision the stream emitted to the completed topic."""
    codec = schemas.completed_codec(settings.kafka.schema_registry_url, settings.topics.completed)
    last: dict[str, int] = {}
    for record in _read_topic(settings, settings.topics.completed, codec.decode):
        last[record["trace_id"]] = max(last.get(record["trace_id"], 0), record["revision"])
    return last


@pytest.fixture
def shared_pipeline(
    kafka_settings: Settings, opensearch: OpenSearch, pipeline_dir: Path
) -> Iterator[tuple[Pipeline, OpenSearch]]:
    pipeline = Pipeline(pipeline_dir)
    try:
        yield pipeline, opensearch
    finally:
        pipeline.cleanup(opensearch)


# 80 s of traffic, then four table restores: runs took 96-276 s; the wait below ends first
# with the worker's log when something is stuck.
@pytest.mark.timeout(600)
def test_the_stream_worker_sigkilled_three_times_loses_and_duplicates_no_trace(
    shared_pipeline: tuple[Pipeline, OpenSearch],
) -> None:
    pipeline, client = shared_pipeline
    pipeline.start()
    producer = pipeline.produce(traces_per_s=250, seconds=80, spans_per_trace=3)
    worker = "stream-0"
    kills = 0
    for at_s in (15, 35, 55):
        time.sleep(at_s - (0 if kills == 0 else (15, 35, 55)[kills - 1]))
        assert pipeline.running(worker), pipeline.log(worker)
        pipeline.kill(worker)
        kills += 1
        worker = pipeline.start_worker()
    produced = pipeline.producer_result(producer)
    expected = {t["trace_id"] for t in produced.traces}

    try:
        documents = _expect_all_indexed(pipeline, client, expected, timeout_s=400)
    except AssertionError as timeout:
        status = [
            line
            for line in pipeline.log(worker, lines=2_000).splitlines()
            if "stream:" in line or "Recovery" in line or "WARNING" in line or "ERROR" in line
        ]
        shown = "\n".join(status[-40:])
        raise AssertionError(f"{timeout} ({pipeline.count(client)} indexed); {worker}:\n{shown}") from None
    emitted = _last_revisions(pipeline.settings)

    later = sum(1 for revision in emitted.values() if revision > 1)
    print(
        f"{len(expected)} traces produced, {len(documents)} indexed after {kills} SIGKILLs; "
        f"{later} got a revision above 1 from replays"
    )
    assert produced.stats["dropped"] == produced.stats["failed"] == 0
    assert len(expected) >= 19_000
    assert set(documents) == expected
    stale = {t: (documents[t], emitted.get(t)) for t in expected if documents[t] != emitted.get(t)}
    assert not stale, (
        f"{len(stale)} traces are not indexed at their final revision, e.g. {list(stale.items())[:3]}"
    )


def test_malformed_events_go_to_dead_letters_with_reasons_and_valid_traces_are_unaffected(
    shared_pipeline: tuple[Pipeline, OpenSearch],
) -> None:
    pipeline, client = shared_pipeline
    settings = pipeline.settings
    pipeline.start()
    producer_name = pipeline.produce(traces_per_s=100, seconds=20, spans_per_trace=3)
    rng = random.Random(10_000)
    garbage = Producer(settings.kafka.confluent_config({"linger.ms": 5}))
    valid = schemas.events_codec().encode_union(
        schemas.TRACE_TAGS_CHANGED,
        {"trace_id": "tr-" + "0" * 32, "set": {"a": "b"}, "deleted": [], "time_ms": 0},
    )
    for n in range(10_000):
        kind = n % 4
        if kind == 0:
            payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
        elif kind == 1:
            payload = valid[: rng.randint(1, len(valid) - 1)]  # truncated Avro
        elif kind == 2:
            payload = b"\xc3\x01" + bytes(8) + b"unknown fingerprint"
        else:
            payload = b'{"trace_id": "tr-1", "json": "not avro"}'
        garbage.produce(settings.topics.events, key=f"garbage-{n % 50}".encode(), value=payload)
        if n % 500 == 0:
            garbage.poll(0)
            time.sleep(0.05)  # interleave with the SDK's traffic
    assert garbage.flush(30) == 0
    produced = pipeline.producer_result(producer_name)
    expected = {t["trace_id"] for t in produced.traces}

    documents = _expect_all_indexed(pipeline, client, expected, timeout_s=240)
    letters = wait_until(
        lambda: (found := _dead_letters(settings)) and len(found) >= 10_000 and found,
        120,
        "10,000 dead letters",
        3,
    )

    reasons = {letter["reason"] for letter in letters}
    print(
        f"{len(letters)} dead letters, reasons {sorted(reasons)}; {len(documents)} of {len(expected)} traces"
    )
    assert len(letters) == 10_000
    assert all(letter["reason"] and letter["source_topic"] == settings.topics.events for letter in letters)
    assert set(documents) == expected


def test_opensearch_stopped_for_a_minute_mid_run_loses_nothing(
    kafka_settings: Settings, pipeline_dir: Path
) -> None:
    server = {
        "TRACESTREAM_STACK_DIR": str(pipeline_dir / "stack"),
        "TRACESTREAM_STACK_OPENSEARCH_PORT": "19202",
        "TRACESTREAM_STACK_OPENSEARCH_TRANSPORT_PORT": "19302",
        "TRACESTREAM_STACK_OPENSEARCH_HEAP": "512m",
    }
    (pipeline_dir / "stack").mkdir()
    infra("up", "opensearch", env=server)
    pipeline = Pipeline(pipeline_dir, {"TRACESTREAM_OPENSEARCH__URL": "http://127.0.0.1:19202"})
    client = OpenSearch(**pipeline.settings.opensearch.client_kwargs())
    try:
        pipeline.start()
        producer = pipeline.produce(traces_per_s=40, seconds=90, spans_per_trace=3)
        wait_until(lambda: pipeline.count(client) > 0, 60, "the first traces indexed")
        infra("down", "opensearch", env=server)
        stopped = time.monotonic()
        time.sleep(60)
        infra("up", "opensearch", env=server)
        outage_s = time.monotonic() - stopped
        produced = pipeline.producer_result(producer)
        expected = {t["trace_id"] for t in produced.traces}

        documents = _expect_all_indexed(pipeline, client, expected, timeout_s=240)
        print(f"OpenSearch down {outage_s:.0f} s; {len(documents)} of {len(expected)} traces indexed")
        assert set(documents) == expected
        assert set(documents.values()) == {1}
        assert pipeline.running("indexer"), "the indexer resumes by itself, it does not exit"
    finally:
        pipeline.cleanup(client)
        client.close()
        infra("down", "--purge", env=server)


# 60 s of traffic around a 15 s outage, then up to 300 s for the rest: the wait below ends
# first, with the processes' logs, when something is stuck.
@pytest.mark.timeout(600)
def test_kafka_restarted_mid_run_loses_nothing_the_sdk_delivered(
    opensearch: OpenSearch, pipeline_dir: Path
) -> None:
    server = {
        "TRACESTREAM_STACK_DIR": str(pipeline_dir / "stack"),
        "TRACESTREAM_STACK_KAFKA_PORT": "19093",
        "TRACESTREAM_STACK_KAFKA_CONTROLLER_PORT": "19094",
    }
    (pipeline_dir / "stack").mkdir()
    infra("up", "kafka", env=server)
    pipeline = Pipeline(pipeline_dir, {"TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:19093"})
    try:
        pipeline.start()
        producer = pipeline.produce(traces_per_s=40, seconds=60, spans_per_trace=3)
        wait_until(lambda: pipeline.count(opensearch) > 0, 90, "the first traces indexed")
        infra("down", "kafka", env=server)
        time.sleep(15)
        infra("up", "kafka", env=server)
        produced = pipeline.producer_result(producer)
        undelivered = produced.stats["dropped"] + produced.stats["failed"]
        expected = {t["trace_id"] for t in produced.traces}

        try:
            wait_until(
                lambda: pipeline.count(opensearch) >= len(expected) - undelivered,
                300,
                "the delivered traces indexed",
                2,
            )
        except AssertionError as timeout:
            logs = "\n".join(f"--- {name}\n{pipeline.log(name)}" for name in ("stream-0", "indexer"))
            raise AssertionError(
                f"{timeout}: {pipeline.count(opensearch)} of {len(expected) - undelivered} indexed\n{logs}"
            ) from None
        time.sleep(3)
        documents = pipeline.documents(opensearch)
        missing = expected - set(documents)
        print(
            f"Kafka restarted; {produced.stats['emitted']} events emitted, {undelivered} undelivered by the "
            f"SDK's count; {len(documents)} of {len(expected)} traces indexed, {len(missing)} missing"
        )
        # A trace can only be missing if one of its events is among those the SDK counted undelivered.
        assert len(missing) <= undelivered
        assert set(documents) <= expected
        assert pipeline.running("indexer") and pipeline.running("stream-0")
    finally:
        pipeline.cleanup(opensearch)
        infra("down", "--purge", env=server)


BIG_TRACE = """
import json, sys
from tracestream import producers as mlflow
spans, repeat = int(sys.argv[1]), int(sys.argv[2])
with mlflow.start_span("batch_agent", span_type=mlflow.SpanType.AGENT) as root:
    root.set_inputs({"documents": spans})
    for n in range(spans - 1):
        with mlflow.start_span(f"summarize_{n}", span_type=mlflow.SpanType.CHAT_MODEL) as span:
            span.set_inputs({"text": f"document {n} " + "lorem ipsum dolor sit amet " * repeat})
            span.set_outputs({"summary": "a summary " * 10})
    trace_id = mlflow.get_active_trace_id()
mlflow.flush(120)
print(json.dumps({"trace_id": trace_id, "stats": vars(mlflow.get_stats())}))
"""


def test_an_oversized_trace_is_dead_lettered_with_its_reason_a_large_one_indexed_and_the_pipeline_goes_on(
    shared_pipeline: tuple[Pipeline, OpenSearch],
) -> None:
    import json
    import subprocess
    import sys

    pipeline, client = shared_pipeline
    pipeline.start()

    def big_trace(spans: int, repeat: int) -> str:
        run = subprocess.run(
            [sys.executable, "-c", BIG_TRACE, str(spans), str(repeat)],
            env=pipeline.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        return json.loads(run.stdout.strip().splitlines()[-1])["trace_id"]

    # ~50 MB: beyond the 8 MiB a record of the completed topic may have.
    oversized = {"trace_id": big_trace(10_000, 180)}
    # ~3 MB: above Kafka clients' 1 MB default request size, within the topic's limit.
    large = big_trace(300, 350)
    after = pipeline.produce(traces_per_s=50, seconds=10, spans_per_trace=3, seed=2)
    produced = pipeline.producer_result(after)
    expected = {t["trace_id"] for t in produced.traces}

    documents = _expect_all_indexed(pipeline, client, expected | {large}, timeout_s=300)
    letters = _dead_letters(pipeline.settings)
    big_letters = [
        letter for letter in letters if oversized["trace_id"] in (letter.get("key") or b"").decode()
    ]
    print(
        f"oversized trace {oversized['trace_id']}: indexed={oversized['trace_id'] in documents}, "
        f"dead letters={[(letter['reason'], letter['detail'][:120]) for letter in big_letters]}; "
        f"{len(expected & set(documents))} of {len(expected)} later traces indexed"
    )
    assert expected <= set(documents), "the traces after the oversized one are indexed"
    assert oversized["trace_id"] in documents or big_letters, (
        "the oversized trace is indexed or dead-lettered"
    )
