"""A FastAPI service instrumented with ``instrument_fastapi`` (and no other change to its
handlers) sends one trace per request through the whole private pipeline, and each is found by
the request id, session and user its headers carried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from waiting import wait_until

from mlflow_dropin.support import Pipeline
from tracestream.search_api import TraceClient

SERVICE = """
import json, sys
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tracestream import producers as mlflow

app = FastAPI()
mlflow.instrument_fastapi(app)

@mlflow.trace(span_type=mlflow.SpanType.LLM)
def generate(message: str) -> str:
    return message.upper()

@app.post("/chat")
async def chat(body: dict) -> dict:
    return {"answer": generate(body["message"])}

requests = json.loads(sys.argv[1])
with TestClient(app) as http:
    for headers in requests:
        assert http.post("/chat", json={"message": "where is my parcel"}, headers=headers).status_code == 200
mlflow.flush(60)
print(json.dumps({"stats": vars(mlflow.get_stats())}))
"""


def test_each_request_is_a_trace_found_by_its_headers(pipeline: Pipeline) -> None:
    run = uuid.uuid4().hex[:8]
    requests = [
        {
            "X-Request-ID": f"req-{run}-{n}",
            "X-Session-ID": f"conv-{run}-{n % 2}",
            "X-User-ID": f"user-{run}-{n}",
        }
        for n in range(4)
    ]
    env = {
        **os.environ,
        "TRACESTREAM_KAFKA__BOOTSTRAP_SERVERS": pipeline.settings.kafka.bootstrap_servers,
        "TRACESTREAM_TOPICS__EVENTS": pipeline.settings.topics.events,
    }
    result = subprocess.run(
        [sys.executable, "-c", SERVICE, json.dumps(requests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads(result.stdout.strip().splitlines()[-1])["stats"]
    assert stats["failed"] == 0 and stats["dropped"] == 0

    with TraceClient(base_url=pipeline.url) as client:

        def found(filter_string: str) -> list[str]:
            traces = client.search_traces(filter_string=filter_string, max_results=100, include_spans=False)
            return sorted(t.info.client_request_id for t in traces)

        session = f"metadata.`mlflow.trace.session` = 'conv-{run}-0'"
        wait_until(lambda: len(found(f"client_request_id LIKE 'req-{run}-%'")) == 4, 60, "4 traces indexed")
        assert found(session) == [f"req-{run}-0", f"req-{run}-2"]
        assert found(f"metadata.`mlflow.trace.user` = 'user-{run}-3'") == [f"req-{run}-3"]
        assert found(f"client_request_id = 'req-{run}-1'") == [f"req-{run}-1"]
