"""The rest of MLflow's fluent tracing API: last active trace, flushing, assessments by entity,
set_experiment, tracing.disable/enable."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tracestream import producers as mlflow
from tracestream.producers.config import ProducerConfig, SdkOptions
from tracestream.producers.testing import InMemoryEventExporter
from tracestream.schemas import ASSESSMENT_LOGGED, SPAN_ENDED, TRACE_ENDED


@mlflow.trace
def answer(question: str) -> str:
    return "42"


def test_get_last_active_trace_id_is_the_last_finished_trace(flushed) -> None:
    answer("a")
    first = mlflow.get_last_active_trace_id()
    answer("b")
    last = mlflow.get_last_active_trace_id()
    ended = [t["trace_id"] for t in flushed().records(TRACE_ENDED)]
    assert ended == [first, last] and first != last
    assert mlflow.get_last_active_trace_id(thread_local=True) == last


def test_thread_local_last_trace_is_the_threads_own(exporter) -> None:
    answer("main")
    main_thread = mlflow.get_last_active_trace_id(thread_local=True)
    seen: list[str | None] = []

    def other() -> None:
        seen.append(mlflow.get_last_active_trace_id(thread_local=True))
        answer("other")
        seen.append(mlflow.get_last_active_trace_id(thread_local=True))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen[0] is None and seen[1] not in (None, main_thread)
    assert mlflow.get_last_active_trace_id(thread_local=True) == main_thread
    assert mlflow.get_last_active_trace_id() == seen[1]  # the process's last


def test_flush_trace_async_logging_sends_everything(exporter) -> None:
    answer("q")
    mlflow.flush_trace_async_logging()
    assert len(exporter.records(TRACE_ENDED)) == 1
    answer("q")
    mlflow.flush_trace_async_logging(terminate=True)
    assert len(exporter.records(TRACE_ENDED)) == 2


def test_log_assessment_takes_feedback_and_expectation_entities(flushed) -> None:
    answer("q")
    trace_id = mlflow.get_last_active_trace_id()
    feedback = mlflow.log_assessment(
        trace_id,
        mlflow.Feedback(name="faithfulness", value=0.9, rationale="grounded", metadata={"model": "judge"}),
    )
    expectation = mlflow.log_assessment(trace_id, mlflow.Expectation(name="expected_answer", value=42))
    assert feedback is not None and feedback.assessment_id and feedback.trace_id == trace_id
    assert feedback.source.source_type == "CODE"
    assert expectation is not None and expectation.source.source_type == "HUMAN"
    logged = {r["name"]: r for r in flushed().records(ASSESSMENT_LOGGED)}
    assert logged["faithfulness"]["kind"] == "FEEDBACK"
    assert logged["faithfulness"]["rationale"] == "grounded"
    assert logged["faithfulness"]["metadata"] == {"model": "judge"}
    assert logged["expected_answer"]["kind"] == "EXPECTATION"
    assert json.loads(logged["expected_answer"]["value_json"]) == 42
    assert mlflow.get_assessment(trace_id, feedback.assessment_id) == feedback


def test_update_and_delete_write_versions_as_the_rest_drop_in_does(flushed) -> None:
    logged = mlflow.log_assessment("tr-1", mlflow.Expectation(name="expected_answer", value=42))
    assert logged is not None
    updated = mlflow.update_assessment(
        "tr-1", logged.assessment_id, mlflow.Expectation(name="expected_answer", value=43)
    )
    assert updated is not None and updated.assessment_id == logged.assessment_id
    assert updated.value == 43 and updated.last_update_time_ms is not None
    assert mlflow.get_assessment("tr-1", logged.assessment_id).value == 43
    mlflow.delete_assessment("tr-1", logged.assessment_id)
    assert mlflow.get_assessment("tr-1", logged.assessment_id) is None

    original, update, deletion = flushed().records(ASSESSMENT_LOGGED)
    assert original["assessment_id"] == logged.assessment_id
    assert update["overrides"] == original["assessment_id"]
    assert update["metadata"] == {"tracestream.assessment.updates": logged.assessment_id}
    assert update["create_time_ms"] == original["create_time_ms"]
    assert json.loads(update["value_json"]) == 43 and update["valid"]
    assert deletion["overrides"] == update["assessment_id"] and deletion["valid"] is False
    assert deletion["metadata"] == {"tracestream.assessment.deletes": logged.assessment_id}


def test_get_assessment_of_an_unknown_assessment_without_an_api_is_none(exporter, caplog) -> None:
    assert mlflow.get_assessment("tr-1", "a-unknown") is None
    assert "TRACESTREAM_SDK__TRACKING_URI" in caplog.text


def test_set_experiment_by_id_files_new_traces_there(flushed) -> None:
    answer("before")
    experiment = mlflow.set_experiment(experiment_id="7")
    assert experiment is not None and experiment.experiment_id == "7"
    answer("after")
    before, after = flushed().records(TRACE_ENDED)
    assert before["location"]["experiment_id"] == "42"  # the fixture's TRACESTREAM_SDK__EXPERIMENT_ID
    assert after["location"]["experiment_id"] == "7"
    spans = flushed().records(SPAN_ENDED)
    assert spans[-1]["location"]["experiment_id"] == "7"


def test_set_experiment_by_name_without_an_api_leaves_traces_where_they_are(exporter, caplog) -> None:
    assert mlflow.set_experiment("my-genai-app") is None
    assert "TRACESTREAM_SDK__TRACKING_URI" in caplog.text
    answer("q")
    mlflow.flush()
    assert exporter.records(TRACE_ENDED)[0]["location"]["experiment_id"] == "42"


class FakeApi(BaseHTTPRequestHandler):
    """The two experiment calls and the assessment read of the MLflow REST drop-in."""

    experiments: dict[str, str] = {"existing": "3"}  # noqa: RUF012
    seen: list[tuple[str, str, str]] = []  # noqa: RUF012

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, self.headers.get("Authorization", "")))
        if self.path.startswith("/api/2.0/mlflow/experiments/get-by-name?experiment_name="):
            name = self.path.split("=", 1)[1]
            if name in self.experiments:
                experiment = {"experiment_id": self.experiments[name], "name": name}
                return self._answer(200, {"experiment": experiment})
            return self._answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"})
        if self.path == "/api/3.0/mlflow/traces/tr-9/assessments/a-9":
            body = {"assessment_id": "a-9", "assessment_name": "rating", "feedback": {"value": 1}}
            return self._answer(200, {"assessment": body})
        return self._answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("POST", self.path, json.dumps(body)))
        self.experiments[body["name"]] = "11"
        self._answer(200, {"experiment_id": "11"})

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def api_exporter():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    memory = InMemoryEventExporter()
    options = SdkOptions(
        schedule_delay_ms=5, tracking_uri=f"http://127.0.0.1:{server.server_port}", tracking_token="t0ken"
    )
    mlflow.configure(ProducerConfig(sdk=options), exporter=memory)
    yield memory
    mlflow.shutdown()
    server.shutdown()


def test_set_experiment_by_name_asks_the_api_and_creates_a_missing_one(api_exporter) -> None:
    existing = mlflow.set_experiment("existing")
    assert existing is not None and existing.experiment_id == "3" and existing.name == "existing"
    assert FakeApi.seen[-1][2] == "Bearer t0ken"
    created = mlflow.set_experiment("new-app")
    assert created is not None and created.experiment_id == "11"
    assert ("POST", "/api/2.0/mlflow/experiments/create", '{"name": "new-app"}') in FakeApi.seen
    answer("q")
    mlflow.flush()
    assert api_exporter.records(TRACE_ENDED)[0]["location"]["experiment_id"] == "11"


def test_get_assessment_reads_an_unknown_one_from_the_api(api_exporter) -> None:
    assessment = mlflow.get_assessment("tr-9", "a-9")
    assert assessment is not None and assessment.name == "rating" and assessment.value == 1


def test_tracing_disable_and_enable(flushed) -> None:
    mlflow.tracing.disable()
    try:
        assert not mlflow.tracing.is_tracing_enabled()
        assert answer("untraced") == "42"
        with mlflow.start_span("block") as span:
            assert span.trace_id is None
    finally:
        mlflow.tracing.enable()
    assert mlflow.tracing.is_tracing_enabled()
    answer("traced")
    assert [s["name"] for s in flushed().records(SPAN_ENDED)] == ["answer"]


def test_the_names_match_mlflows_signatures() -> None:
    import inspect

    expected = {
        "get_last_active_trace_id": ["thread_local"],
        "flush_trace_async_logging": ["terminate"],
        "log_assessment": ["trace_id", "assessment"],
        "get_assessment": ["trace_id", "assessment_id"],
        "update_assessment": ["trace_id", "assessment_id", "assessment"],
        "delete_assessment": ["trace_id", "assessment_id"],
        "set_experiment": ["experiment_name", "experiment_id", "trace_location"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(mlflow, name)).parameters) == parameters, name
    assert callable(mlflow.tracing.disable) and callable(mlflow.tracing.enable)
