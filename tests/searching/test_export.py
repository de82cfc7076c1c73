"""Export of 50,000 traces as NDJSON from a real API process: every trace once, in constant memory."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from opensearchpy import OpenSearch

from searching.support import running_api, write_traces
from tracestream.schemas.samples import completed_trace
from tracestream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TRACES = 50_000


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def api_process(api_settings: Settings) -> Iterator[tuple[str, int]]:
    with running_api(api_settings) as api:
        yield api.base_url, api.pid


# Loading 50,000 traces takes most of the time (over 300 s once, on a machine loaded by other
# test runs); the export itself is bounded below.
@pytest.mark.timeout(600)
def test_exporting_fifty_thousand_traces_streams_each_once_in_bounded_memory(
    opensearch: OpenSearch, api_settings: Settings, api_process: tuple[str, int]
) -> None:
    rng = random.Random(50)
    loading = time.monotonic()
    start = 1_763_800_000_000
    for batch in range(0, TRACES, 5_000):
        write_traces(
            opensearch,
            api_settings,
            [
                completed_trace(
                    rng,
                    request_time_ms=start + n,
                    min_spans=2,
                    max_spans=3,
                    min_io_bytes=200,
                    max_io_bytes=500,
                )
                for n in range(batch, batch + 5_000)
            ],
        )
    print(f"indexed {TRACES} traces in {time.monotonic() - loading:.1f} s")
    base, pid = api_process
    exporting = time.monotonic()
    httpx.post(f"{base}/api/v1/traces/search", json={"max_results": 100})  # warm up
    rss_before = _peak_rss_mb(pid)

    ids: set[str] = set()
    streamed = 0
    previous_time = None
    in_order = True
    with httpx.stream(
        "GET", f"{base}/api/v1/traces/export", params={"order_by": "timestamp_ms ASC"}, timeout=300
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        for line in r.iter_lines():
            streamed += len(line) + 1
            trace = json.loads(line)
            ids.add(trace["info"]["trace_id"])
            request_time = datetime.fromisoformat(trace["info"]["request_time"])
            in_order = in_order and (previous_time is None or previous_time <= request_time)
            previous_time = request_time

    growth = _peak_rss_mb(pid) - rss_before
    took = time.monotonic() - exporting
    print(f"exported {streamed / 2**20:.0f} MB in {took:.1f} s, API grew {growth:.0f} MB")
    assert len(ids) == TRACES
    assert in_order
    assert streamed > 100 * 1024 * 1024, "the export should be far larger than the memory bound"
    assert growth < 50, f"API memory grew by {growth:.0f} MB while streaming {streamed / 2**20:.0f} MB"


def test_an_export_with_an_invalid_filter_is_refused_before_streaming(
    api_settings: Settings, api_process: tuple[str, int]
) -> None:
    base, _ = api_process

    response = httpx.get(f"{base}/api/v1/traces/export", params={"filter": "tags.env == 'prod'"})

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
