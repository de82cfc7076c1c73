"""The project's ``MlflowClient`` against a private pipeline: MLflow's recipes that use
``MlflowClient`` run after changing only the import (``max_results=1000`` included, which MLflow's
own server refuses over REST), paging past the 500 per request returns every trace once and in
order, tags set and deleted show in searches, experiments are found; an invalid page token is
MLflow's 400 ``INVALID_PARAMETER_VALUE`` ``Invalid page token…`` on the search API and the drop-in;
and the unmodified ``mlflow`` client's ``search_experiments`` answers as MLflow's own store does."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from mlflow_oracle import run_in_mlflow

from mlflow_dropin.otlp_requests import export_request, span, start_trace_body
from mlflow_dropin.support import Pipeline
from tracestream.search_api import MlflowClient, MlflowException

HERE = Path(__file__).resolve().parent
TRACES = 1200  # every 10th fails: 1,080 OK traces, more than MLflow's 500 per request and 1,000
T = TypeVar("T")

# A recipe as MLflow's docs write it; the test runs it with only the import changed.
RECIPE = """
from mlflow import MlflowClient

client = MlflowClient()
experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
traces = client.search_traces(
    experiment_ids=[experiment.experiment_id],
    filter_string="trace.status = 'OK'",
    max_results=1000,
)
rows = []
for trace in traces:
    root = trace.data.spans[0]
    rows.append(
        {
            "trace_id": trace.info.trace_id,
            "status": trace.info.status,
            "latency_ms": trace.info.execution_time_ms,
            "spans": [span.name for span in trace.data.spans],
            "question": root.inputs["q"],
            "answer": trace.data.response,
        }
    )
more = client.search_traces(
    experiment_ids=[experiment.experiment_id],
    filter_string="trace.status = 'OK'",
    max_results=1000,
    page_token=traces.token,
)
"""


def eventually(check: Callable[[], T | None], what: str, timeout_s: float = 90) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _trace_spans(trace_hex: str, index: int) -> list[Any]:
    trace_id = f"tr-{trace_hex}"
    root_hex, child_hex = f"{index + 1:016x}", f"{index + 1:08x}aaaaaaaa"
    return [
        span(
            child_hex,
            root_hex,
            "retrieve",
            {
                "mlflow.traceRequestId": trace_id,
                "mlflow.spanType": "RETRIEVER",
                "mlflow.spanOutputs": ["doc"],
            },
            start_offset_ms=index * 10 + 1,
            duration_ms=3,
            trace_hex=trace_hex,
        ),
        span(
            root_hex,
            None,
            "answer",
            {
                "mlflow.traceRequestId": trace_id,
                "mlflow.spanType": "AGENT",
                "mlflow.spanInputs": {"q": f"question {index}"},
                "mlflow.spanOutputs": f"answer {index}",
            },
            start_offset_ms=index * 10,
            duration_ms=7,
            error="boom" if index % 10 == 9 else None,
            trace_hex=trace_hex,
        ),
    ]


def _send(pipeline: Pipeline, experiment_id: str, spans: list[Any]) -> None:
    answer = httpx.post(
        f"{pipeline.url}/v1/traces",
        content=export_request(*spans).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def _trace_info(trace_hex: str, index: int, experiment_id: str) -> dict[str, Any]:
    """StartTraceV3, as MLflow's client sends it when the root span ends."""
    body = start_trace_body(f"tr-{trace_hex}", experiment_id, request_offset_ms=index * 10)
    info = body["trace"]["trace_info"]
    info.update(client_request_id=f"req-{index}", execution_duration="0.007s")
    if index % 10 == 9:
        info["state"] = "ERROR"
    return body


def _load(pipeline: Pipeline, client: MlflowClient, name: str, count: int) -> tuple[str, list[str]]:
    """A new experiment with ``count`` traces sent as MLflow's client sends them (spans over OTLP,
    then the trace info), the i-th starting i*10 ms after the first; its id and the trace ids by
    start time. Returns when all are complete and searchable."""
    experiment_id = client.create_experiment(name)
    stem = uuid.uuid4().hex[:24]
    trace_hexes = [f"{stem}{i:08x}" for i in range(count)]
    for start in range(0, count, 100):
        spans = [s for i in range(start, min(start + 100, count)) for s in _trace_spans(trace_hexes[i], i)]
        _send(pipeline, experiment_id, spans)
    with httpx.Client(base_url=pipeline.url, timeout=30) as http, ThreadPoolExecutor(8) as pool:

        def send_info(index: int) -> None:
            answer = http.post(
                "/api/3.0/mlflow/traces", json=_trace_info(trace_hexes[index], index, experiment_id)
            )
            assert answer.status_code == 200, answer.text

        list(pool.map(send_info, range(count)))

    def all_complete() -> bool | None:
        found = client.search_traces(
            experiment_ids=[experiment_id],
            filter_string="status != 'IN_PROGRESS'",
            max_results=count + 1,
            include_spans=False,
        )
        return True if len(found) == count else None

    try:
        eventually(all_complete, f"{count} complete traces to be searchable", timeout_s=150)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pipeline.log_tails()}") from exc
    return experiment_id, [f"tr-{h}" for h in trace_hexes]


@pytest.fixture(scope="module")
def client(pipeline: Pipeline) -> MlflowClient:
    return MlflowClient(pipeline.url)


@pytest.fixture(scope="module")
def loaded(pipeline: Pipeline, client: MlflowClient) -> dict[str, Any]:
    name = f"recipes-{uuid.uuid4().hex[:8]}"
    experiment_id, trace_ids = _load(pipeline, client, name, TRACES)
    ok_newest_first = [t for i, t in reversed(list(enumerate(trace_ids))) if i % 10 != 9]
    return {"name": name, "experiment_id": experiment_id, "trace_ids": trace_ids, "ok": ok_newest_first}


def test_an_mlflow_recipe_runs_with_only_the_import_changed(
    pipeline: Pipeline, loaded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pipeline.url)  # as for MLflow's own client
    recipe = RECIPE.replace(
        "from mlflow import MlflowClient", "from tracestream.search_api import MlflowClient"
    )
    assert recipe != RECIPE
    namespace: dict[str, Any] = {"EXPERIMENT_NAME": loaded["name"]}
    exec(compile(recipe, "recipe.py", "exec"), namespace)
    rows, more = namespace["rows"], namespace["more"]
    assert len(rows) == 1000
    assert [row["trace_id"] for row in rows] == loaded["ok"][:1000]
    index = loaded["trace_ids"].index(rows[0]["trace_id"])
    assert rows[0] == {
        "trace_id": rows[0]["trace_id"],
        "status": "OK",
        "latency_ms": 7,
        "spans": ["answer", "retrieve"],
        "question": f"question {index}",
        "answer": f'"answer {index}"',
    }
    assert [t.info.trace_id for t in more] == loaded["ok"][1000:]
    assert more.token is None


def test_paging_past_500_returns_every_trace_once_in_order(
    client: MlflowClient, loaded: dict[str, Any]
) -> None:
    scope = {"experiment_ids": [loaded["experiment_id"]], "filter_string": "status = 'OK'"}
    first = client.search_traces(**scope, max_results=1000, include_spans=False)
    assert first.token
    second = client.search_traces(**scope, max_results=1000, page_token=first.token, include_spans=False)
    assert second.token is None
    ids = [t.info.trace_id for t in [*first, *second]]
    assert ids == loaded["ok"]
    assert len(set(ids)) == len(ids) == 1080


def test_token_paging_with_smaller_pages_and_another_order(
    client: MlflowClient, loaded: dict[str, Any]
) -> None:
    ids: list[str] = []
    token = None
    pages = 0
    while True:
        page = client.search_traces(
            experiment_ids=[loaded["experiment_id"]],
            max_results=350,
            order_by=["timestamp_ms ASC"],
            page_token=token,
            include_spans=False,
        )
        ids += [t.info.trace_id for t in page]
        pages += 1
        token = page.token
        if not token:
            break
    assert ids == loaded["trace_ids"]
    assert pages == 4


def _assert_invalid_token(answer: httpx.Response) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert answer.json()["message"].startswith("Invalid page token")


@pytest.mark.parametrize("token", ["not-a-token", "bm90IGpzb24", "e30.0123456789abcdef0123456789abcdef", "€"])
def test_an_invalid_page_token_is_mlflows_error_on_both_apis(
    pipeline: Pipeline, client: MlflowClient, loaded: dict[str, Any], token: str
) -> None:
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": loaded["experiment_id"]}}
    _assert_invalid_token(httpx.post(f"{pipeline.url}/api/v1/traces/search", json={"page_token": token}))
    _assert_invalid_token(
        httpx.post(
            f"{pipeline.url}/api/3.0/mlflow/traces/search",
            json={"locations": [location], "page_token": token},
        )
    )
    _assert_invalid_token(
        httpx.post(f"{pipeline.url}/api/2.0/mlflow/experiments/search", json={"page_token": token})
    )
    _assert_invalid_token(
        httpx.get(f"{pipeline.url}/api/2.0/mlflow/experiments/search", params={"page_token": token})
    )
    with pytest.raises(MlflowException, match=r"^Invalid page token") as caught:
        client.search_traces(experiment_ids=[loaded["experiment_id"]], page_token=token)
    assert (caught.value.error_code, caught.value.get_http_status_code()) == ("INVALID_PARAMETER_VALUE", 400)


def test_a_page_token_that_is_not_a_string_is_refused_as_mlflows_handlers_refuse_it(
    pipeline: Pipeline, loaded: dict[str, Any]
) -> None:
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": loaded["experiment_id"]}}
    hint = (
        "Invalid value 123 for parameter 'page_token' supplied:  Hint: Value was of type 'int'. "
        "See the API docs for more information about request parameters."
    )
    for answer in (
        httpx.post(
            f"{pipeline.url}/api/3.0/mlflow/traces/search", json={"locations": [location], "page_token": 123}
        ),
        httpx.post(f"{pipeline.url}/api/2.0/mlflow/experiments/search", json={"page_token": 123}),
    ):
        assert (answer.status_code, answer.json()["error_code"], answer.json()["message"]) == (
            400,
            "INVALID_PARAMETER_VALUE",
            hint,
        )
    answer = httpx.post(f"{pipeline.url}/api/v1/traces/search", json={"page_token": 123})
    assert (answer.status_code, answer.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


def test_a_token_of_another_search_is_an_invalid_page_token(
    client: MlflowClient, loaded: dict[str, Any]
) -> None:
    page = client.search_traces(experiment_ids=[loaded["experiment_id"]], max_results=5)
    with pytest.raises(MlflowException, match=r"^Invalid page token") as caught:
        client.search_traces(
            experiment_ids=[loaded["experiment_id"]], filter_string="status = 'OK'", page_token=page.token
        )
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_tags_set_and_deleted_show_in_searches(client: MlflowClient, loaded: dict[str, Any]) -> None:
    trace_id = loaded["trace_ids"][3]
    scope = {"experiment_ids": [loaded["experiment_id"]], "include_spans": False}

    def tagged() -> list[str] | None:
        found = [
            t.info.trace_id for t in client.search_traces(**scope, filter_string="tags.reviewed = 'yes'")
        ]
        return found or None

    client.set_trace_tag(trace_id, "reviewed", "yes")
    assert eventually(tagged, "the tag to be searchable", timeout_s=30) == [trace_id]
    assert client.get_trace(trace_id).info.tags["reviewed"] == "yes"
    client.delete_trace_tag(trace_id, "reviewed")
    eventually(lambda: True if tagged() is None else None, "the deleted tag to leave searches", timeout_s=30)
    assert "reviewed" not in client.get_trace(trace_id).info.tags


def test_experiments_are_found_by_name_and_search(client: MlflowClient, loaded: dict[str, Any]) -> None:
    experiment = client.get_experiment_by_name(loaded["name"])
    assert experiment is not None
    assert (experiment.experiment_id, experiment.name, experiment.lifecycle_stage) == (
        loaded["experiment_id"],
        loaded["name"],
        "active",
    )
    assert client.get_experiment_by_name(f"{loaded['name']}-missing") is None
    assert client.search_experiments(filter_string=f"name = '{loaded['name']}'") == [experiment]
    assert "Default" in [e.name for e in client.search_experiments()]
    with pytest.raises(MlflowException) as caught:
        client.get_trace("tr-" + "0" * 31 + "9")
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"


# ---------------------------------------------------------------- the unmodified mlflow client


@pytest.fixture(scope="module")
def experiments_report(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    payload = {"tracking_uri": pipeline.url, "prefix": f"oracle-{uuid.uuid4().hex[:8]}"}
    try:
        return run_in_mlflow(HERE / "mlflow_experiments_app.py", payload, tmp_path_factory.mktemp("exp"), 240)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pipeline.log_tails()}") from exc


def test_mlflow_search_experiments_answers_as_mlflows_store(experiments_report: dict[str, Any]) -> None:
    ours, theirs = experiments_report["tracestream"], experiments_report["mlflow"]
    assert ours["searches"] == theirs["searches"]
    assert ours["pages"] == theirs["pages"] == [["Gamma", "alpha", "beta"], ["delta"]]
    assert ours["by_name"] == theirs["by_name"]
    assert ours["missing"] is theirs["missing"] is True
    assert "Default" in ours["all_names"]
    # An invalid filter is MLflow's error (messages embed Python set reprs: codes compared).
    assert [e[0] for e in ours["bad_filters"]] == [e[0] for e in theirs["bad_filters"]]


def _message(error: list[str]) -> str:
    """MLflow's REST client puts the error code before the server's message; its in-process
    store does not."""
    code, message = error
    return message.removeprefix(f"{code}: ")


def test_invalid_page_tokens_get_mlflows_code_and_message(experiments_report: dict[str, Any]) -> None:
    ours, theirs = experiments_report["tracestream"], experiments_report["mlflow"]
    # Experiments page with MLflow's own offset tokens: the same answers, word for word.
    assert [[e[0], _message(e)] for e in ours["experiment_errors"]] == theirs["experiment_errors"]
    assert theirs["experiment_errors"][0] == [
        "INVALID_PARAMETER_VALUE",
        "Invalid page token, could not base64-decode",
    ]
    # Trace tokens are signed search_after positions here: the same code and message prefix.
    for mine, mlflows in zip(ours["trace_errors"], theirs["trace_errors"], strict=True):
        assert mine[0] == mlflows[0] == "INVALID_PARAMETER_VALUE"
        assert _message(mine).startswith("Invalid page token") and mlflows[1].startswith("Invalid page token")
