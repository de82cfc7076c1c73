"""The explorer's live view in a real browser: an alert produced on the alerts topic (as the stream
worker writes them) shows within seconds, and so does a trace written to the index after the
view opened; the traces searchable before it are not listed as new."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from opensearchpy import OpenSearch
from searching.support import ApiProcess, drop, private_settings, running_api, small_traces, write_traces

from tracestream import schemas
from tracestream.settings import Settings
from ui.browser import Page

START_MS = 1_763_800_000_000


def _alert(trace_id: str) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return {
        "trace_id": trace_id,
        "revision": 1,
        "trace_name": "support_agent",
        "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "0"},
        "request_time_ms": now_ms - 1500,
        "execution_duration_ms": 1400,
        "failed_spans": [
            {
                "span_id": "00000000000000aa",
                "name": "refund_lookup",
                "status_message": "TimeoutError: billing <b>service</b> timed out",
                "exception_types": ["TimeoutError"],
            }
        ],
        "tags": {"env": "demo"},
        "metadata": {},
        "alert_time_ms": now_ms,
    }


@pytest.fixture
def live_settings(
    kafka_settings: Settings, opensearch: OpenSearch, unique_topic: Callable[..., str]
) -> Iterator[Settings]:
    settings = private_settings(kafka_settings)
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"alerts": unique_topic()})}
    )
    write_traces(opensearch, settings, small_traces(3, seed=31, start_ms=START_MS))
    yield settings
    drop(opensearch, settings)


@pytest.fixture
def live_api(live_settings: Settings) -> Iterator[ApiProcess]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRACESTREAM_TOPICS__ALERTS", live_settings.topics.alerts)
        with running_api(live_settings) as process:
            yield process


def test_the_live_view_shows_an_alert_and_a_new_trace_within_seconds(
    new_page: Callable[[str], Page], live_api: ApiProcess, live_settings: Settings, opensearch: OpenSearch
) -> None:
    page = new_page(live_api.base_url)
    browser = page.open("/?view=live")
    browser.wait_for_function("document.body.dataset.liveConnected === 'true'")
    assert browser.locator("#search-view").is_hidden()

    trace_id = "tr-" + "5" * 32
    codec = schemas.alerts_codec(None, live_settings.topics.alerts)
    producer = Producer(live_settings.kafka.confluent_config({"acks": "all"}))
    producer.produce(live_settings.topics.alerts, key=trace_id.encode(), value=codec.encode(_alert(trace_id)))
    assert producer.flush(10) == 0
    produced = time.monotonic()
    alert = browser.locator("#live-alerts li", has_text=trace_id)
    alert.wait_for(timeout=10_000)
    assert time.monotonic() - produced < 5
    text = alert.inner_text()
    assert "support_agent" in text
    assert "failed in refund_lookup: TimeoutError: billing <b>service</b> timed out" in text

    # The traces indexed before the view opened are not new; one written now is.
    time.sleep(2.5)
    assert browser.locator("#live-traces li").count() == 0
    new = small_traces(1, seed=32, start_ms=int(time.time() * 1000))
    write_traces(opensearch, live_settings, new)
    row = browser.locator("#live-traces li", has_text=new[0]["trace_id"])
    row.wait_for(timeout=10_000)
    assert browser.locator("#live-traces li").count() == 1

    # From the alert to its trace page.
    alert.locator("a").click()
    browser.wait_for_function(f"new URLSearchParams(location.search).get('trace') === '{trace_id}'")
    assert browser.locator("#live-view").is_hidden()
    assert page.foreign == []
