"""A client's clock does not decide which indices exist: OTLP spans stamped 2099, 1990 and 1970
are indexed into the daily index of the day they arrived, flagged, and found with the times
they were sent with."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from opensearchpy import OpenSearch

from mlflow_dropin.support import Pipeline
from tracestream import schemas
from tracestream.indexer import IndexNames

DAY_NS = 86_400 * 10**9
CLOCKS = {  # the client's start time of each trace, as its OTLP spans say
    "2099": 4_070_908_800 * 10**9,
    "1990": 631_152_000 * 10**9,
    "1970": 1_000_000,  # 1 ms after the epoch: 0 means "unset" in OTLP
}


def _otlp_root_span(trace_hex: str, start_ns: int) -> dict:
    return {
        "traceId": trace_hex,
        "spanId": f"{random.getrandbits(64):016x}",
        "name": "job-with-a-broken-clock",
        "kind": 1,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(start_ns + 40_000_000),
        "status": {"code": 1},
    }


def _send(pipeline: Pipeline, experiment_id: str, start_ns: int) -> str:
    """A one-span trace exported over OTLP/JSON with the client's clock at ``start_ns``; its id."""
    trace_hex = f"{random.getrandbits(128):032x}"
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [_otlp_root_span(trace_hex, start_ns)]}]}]}
    headers = {"x-mlflow-experiment-id": experiment_id}
    answer = httpx.post(f"{pipeline.url}/v1/traces", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return f"tr-{trace_hex}"


def _experiment(pipeline: Pipeline) -> str:
    answer = httpx.post(
        f"{pipeline.url}/api/2.0/mlflow/experiments/create", json={"name": f"clock-skew-{random.random()}"}
    )
    return str(answer.json()["experiment_id"])


def _wait_for_trace(pipeline: Pipeline, trace_id: str) -> dict:
    deadline = time.monotonic() + 60
    # 500 too: reads through the alias fail while a daily index just created has no started shard.
    while (
        got := httpx.get(f"{pipeline.url}/api/3.0/mlflow/traces/get", params={"trace_id": trace_id})
    ).status_code in (404, 500):
        assert time.monotonic() < deadline, pipeline.log_tails()
        time.sleep(0.5)
    assert got.status_code == 200, got.text
    return got.json()["trace"]["trace_info"]


def test_skewed_client_clocks_create_no_index_outside_a_day_of_arrival_and_stay_searchable(
    pipeline: Pipeline,
) -> None:
    experiment_id = _experiment(pipeline)
    sent_at = datetime.now(tz=UTC)
    trace_ids = {year: _send(pipeline, experiment_id, start_ns) for year, start_ns in CLOCKS.items()}

    # Get by id finds each trace, with the request time the client sent, flagged.
    for year, trace_id in trace_ids.items():
        info = _wait_for_trace(pipeline, trace_id)
        assert info["request_time"].startswith(f"{year}-01-01T00:00:00"), info
        assert info["trace_metadata"]["tracestream.trace.clockSkewed"] == "true"

    # No index outside a day either side of arrival (the default max_clock_skew_s).
    names = IndexNames.from_settings(pipeline.settings)
    client = OpenSearch(**pipeline.settings.opensearch.client_kwargs())
    try:
        days = {names.day_of(index) for index in client.indices.get(index=names.pattern)}
    finally:
        client.close()
    allowed = {(sent_at + timedelta(days=offset)).date() for offset in (-1, 0, 1, 2)}
    assert days <= allowed, f"indices of {sorted(map(str, days))}"

    # Searches see the times as sent, and the flag.
    location = [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}]
    before_2000 = httpx.post(
        f"{pipeline.url}/api/3.0/mlflow/traces/search",
        json={
            "locations": location,
            "filter": "trace.timestamp_ms < 946684800000",  # 2000-01-01
            "order_by": ["timestamp_ms"],
        },
    ).json()
    assert [t["trace_id"] for t in before_2000["traces"]] == [trace_ids["1970"], trace_ids["1990"]]
    flagged = httpx.post(
        f"{pipeline.url}/api/3.0/mlflow/traces/search",
        json={"locations": location, "filter": "metadata.`tracestream.trace.clockSkewed` = 'true'"},
    ).json()
    assert {t["trace_id"] for t in flagged["traces"]} == set(trace_ids.values())


def _completed_records(pipeline: Pipeline, trace_id: str) -> list[tuple[int, dict[str, bytes]]]:
    """(revision, headers) of every record of ``trace_id`` on the completed topic so far."""
    settings, topic = pipeline.settings, pipeline.settings.topics.completed
    codec = schemas.completed_codec()
    consumer = Consumer(settings.kafka.confluent_config({"group.id": f"reader-{uuid.uuid4().hex[:8]}"}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records = []
        while (message := consumer.poll(2.0)) is not None:
            if message.error() is None and message.key() == trace_id.encode():
                records.append((codec.decode(message.value())["revision"], dict(message.headers() or ())))
        return records
    finally:
        consumer.close()


def test_every_revision_of_a_skewed_trace_carries_its_first_seen_time_and_replaces_one_document(
    pipeline: Pipeline,
) -> None:
    experiment_id = _experiment(pipeline)
    before_ms = int(time.time() * 1000)
    trace_id = _send(pipeline, experiment_id, CLOCKS["2099"])
    _wait_for_trace(pipeline, trace_id)

    tagged = httpx.patch(
        f"{pipeline.url}/api/2.0/mlflow/traces/{trace_id}/tags", json={"key": "reviewed", "value": "yes"}
    )
    assert tagged.status_code == 200, tagged.text
    deadline = time.monotonic() + 60
    while "reviewed" not in (info := _wait_for_trace(pipeline, trace_id))["tags"]:
        assert time.monotonic() < deadline, pipeline.log_tails()
        time.sleep(0.5)

    records = _completed_records(pipeline, trace_id)
    assert sorted(revision for revision, _ in records) == [1, 2]
    first_seen = {headers.get(schemas.FIRST_SEEN_HEADER) for _, headers in records}
    assert len(first_seen) == 1
    (value,) = first_seen
    assert value is not None and before_ms <= int(value) <= int(time.time() * 1000)
    assert info["request_time"].startswith("2099-01-01T00:00:00")
    assert info["trace_metadata"]["tracestream.trace.clockSkewed"] == "true"
    client = OpenSearch(**pipeline.settings.opensearch.client_kwargs())
    try:
        names = IndexNames.from_settings(pipeline.settings)
        hits = client.search(index=names.read_alias, body={"query": {"term": {"trace_id": trace_id}}})
    finally:
        client.close()
    assert [hit["_index"] for hit in hits["hits"]["hits"]] == [names.daily(int(value))]
