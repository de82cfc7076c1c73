"""The live view with a scoped key (issue 26): the alerts stream of ``/api/v1/live/alerts`` holds
only alerts of traces in experiments the key may read. The API runs as `tracestream api serve`
over a real keys file; the alerts are produced to a private alerts topic on the real Kafka."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from opensearchpy import OpenSearch

from searching.support import ApiProcess, drop, private_settings, running_api
from tracestream import schemas
from tracestream.search_api.access import Right
from tracestream.search_api.keys import KeysFile
from tracestream.settings import Settings

EXPERIMENT_A, EXPERIMENT_B = "1", "2"


def trace_alert(trace_id: str, experiment_id: str) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return {
        "trace_id": trace_id,
        "revision": 1,
        "trace_name": "support_agent",
        "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": experiment_id},
        "request_time_ms": now_ms - 1500,
        "execution_duration_ms": 1400,
        "failed_spans": [
            {
                "span_id": "00000000000000aa",
                "name": "refund_lookup",
                "status_message": "TimeoutError: billing service timed out",
                "exception_types": ["TimeoutError"],
            }
        ],
        "tags": {},
        "metadata": {},
        "alert_time_ms": now_ms,
    }


@pytest.fixture
def live_settings(
    kafka_settings: Settings, opensearch: OpenSearch, unique_topic: Callable[..., str]
) -> Iterator[Settings]:
    settings = private_settings(kafka_settings)
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"alerts": unique_topic(partitions=1)})}
    )
    yield settings
    drop(opensearch, settings)


@pytest.fixture
def read_a_secret(tmp_path: Path) -> str:
    _, secret = KeysFile(tmp_path / "keys.json").create("support-dashboard", [EXPERIMENT_A], [Right.READ])
    return secret


@pytest.fixture
def live_api(live_settings: Settings, tmp_path: Path, read_a_secret: str) -> Iterator[ApiProcess]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRACESTREAM_TOPICS__ALERTS", live_settings.topics.alerts)
        patch.setenv("TRACESTREAM_API__KEYS_FILE", str(tmp_path / "keys.json"))
        patch.setenv("TRACESTREAM_API__AUDIT_ENABLED", "false")
        with running_api(live_settings) as process:
            yield process


def test_the_live_view_streams_only_alerts_of_readable_experiments(
    live_api: ApiProcess, live_settings: Settings, read_a_secret: str
) -> None:
    hidden, shown = "tr-" + "b" * 32, "tr-" + "a" * 32
    codec = schemas.alerts_codec(None, live_settings.topics.alerts)
    producer = Producer(live_settings.kafka.confluent_config({"acks": "all"}))
    received: list[str] = []
    headers = {"X-API-Key": read_a_secret}
    with httpx.stream(
        "GET", f"{live_api.base_url}/api/v1/live/alerts", headers=headers, timeout=30
    ) as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        # B's alert comes first on the one partition: were it not dropped, it would be read first.
        for trace_id, experiment_id in ((hidden, EXPERIMENT_B), (shown, EXPERIMENT_A)):
            value = codec.encode(trace_alert(trace_id, experiment_id))
            producer.produce(live_settings.topics.alerts, key=trace_id.encode(), value=value)
        assert producer.flush(10) == 0
        for line in lines:
            if line.startswith("data: "):
                received.append(json.loads(line.removeprefix("data: "))["trace_id"])
                break

    assert received == [shown]
