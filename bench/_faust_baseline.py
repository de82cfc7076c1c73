"""The named baseline of bench/stream.py: records/s a Faust agent reads while doing nothing.

    .venv/bin/python bench/_faust_baseline.py <topic> <records>

Reads a topic already filled with ``records`` records, with the same transport and raw
serializers as the stream worker, and prints ``records_per_s <figure>`` when it has read them.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid

import faust

from tracestream.settings import Settings


def main() -> None:
    topic_name, wanted = sys.argv[1], int(sys.argv[2])
    settings = Settings()
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.kafka.bootstrap_servers.split(","))
    app = faust.App(
        f"bench-faust-noop-{uuid.uuid4().hex[:8]}",
        broker=brokers,
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        # Faust's default data directory is "<app id>-data" in the working directory.
        datadir=tempfile.mkdtemp(prefix="bench-faust-noop-"),
    )
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes)
    progress = {"read": 0, "started": 0.0}

    @app.agent(topic)
    async def read(stream: faust.StreamT) -> None:
        async for _ in stream.events():
            if not progress["read"]:
                progress["started"] = time.perf_counter()
            progress["read"] += 1
            if progress["read"] == wanted:
                elapsed = time.perf_counter() - progress["started"]
                print(f"records_per_s {wanted / elapsed:.0f}", flush=True)
                os._exit(0)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
