"""Two workers share the partitions; one is SIGKILLed mid-stream and no trace is lost.

Marker ``failover`` (``pytest -m failover`` runs it alone). It used to fail about one run in
three: Faust drops records it has already fetched around a rebalance (at start-up too), and the
survivor then never processed one span of a trace, which was finalized incomplete by timeout.
stream.offset_guard.OffsetGuard now notices the gap in the offsets and reads the partition again from the
first missing record; the test passed 12 runs in a row after that (it had failed 3 of 7 before).
Earlier sessions also saw the survivor's table recovery wait for minutes ("Still fetching changelog
topics for recovery ... offset -1", compare faust-streaming#155); if that comes back, the test
times out with the survivor's log.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

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
    stream_settings,
    wait_for_group_members,
)

from tracestream import schemas
from tracestream.settings import Settings

pytestmark = pytest.mark.failover

TRACES = 400


def test_a_worker_killed_mid_stream_loses_no_trace(kafka_settings: Settings, tmp_path: Path) -> None:
    name = f"ts-test-failover-{uuid.uuid4().hex[:8]}"
    settings = stream_settings(
        kafka_settings, name, tmp_path / "data", partitions=6, idle_timeout_s=20.0, log_level="info"
    )
    create_topics(settings)
    sender = EventSender(settings)
    completed = TopicReader(settings, settings.topics.completed, schemas.completed_codec(), f"reader-{name}")
    doomed = WorkerProcess(settings, tmp_path / "worker-a.log")
    survivor = WorkerProcess(settings, tmp_path / "worker-b.log")
    try:
        warmup = [rag_trace() for _ in range(12)]
        for _, spans, ended in warmup:
            send_trace(sender, spans, ended)
        sender.flush()
        completed.wait_for(lambda rs: {t for t, _, _ in warmup} <= {r["trace_id"] for r in rs}, timeout_s=120)
        wait_for_group_members(settings, 2)  # both workers own partitions before the kill

        traces = [rag_trace() for _ in range(TRACES)]
        for n, (_, spans, ended) in enumerate(traces):
            # Traces are split across the kill: some spans before it, the rest after.
            send_trace(sender, spans[:2], None)
            if n == TRACES // 2:
                sender.flush()
                time.sleep(1.0)
                doomed.kill()
            send_trace(sender, spans[2:], ended)
        sender.flush()

        wanted = {trace_id for trace_id, _, _ in traces}
        try:
            records = completed.wait_for(lambda rs: wanted <= {r["trace_id"] for r in rs}, timeout_s=180)
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- survivor's log ---\n{survivor.log_tail()}") from None
    finally:
        survivor.stop()
        if doomed.process.poll() is None:
            doomed.stop()
        completed.close()
        delete_all_topics(settings)

    latest = latest_by_trace(records)
    for trace_id, spans, _ in traces:
        trace = latest[trace_id]
        emitted = [(r["revision"], len(r["spans"])) for r in records if r["trace_id"] == trace_id]
        assert sorted(s["span_id"] for s in trace["spans"]) == sorted(s["span_id"] for s in spans), (
            f"{trace_id}: (revision, spans) emitted {emitted}"
        )
        assert "tracestream.trace.incomplete" not in trace["info"]["metadata"]
        assert trace["info"]["state"] == "OK"
