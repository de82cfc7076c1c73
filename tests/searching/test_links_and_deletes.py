"""Links (MLflow's LinkTracesToRun, LinkPromptsToTrace) and deletes (MLflow's DeleteTraces, the
native delete by filter) over HTTP: the events they publish, read back from a private events
topic on the real Kafka, and the traces they find in a private index on the real OpenSearch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from searching.support import deleted_trace_ids, published_events, small_traces, write_traces
from tracestream.schemas import TRACE_LINKED
from tracestream.schemas.records import CompletedTrace
from tracestream.search_api import deletion
from tracestream.search_api.api import create_app
from tracestream.settings import Settings

START_MS = 1_763_800_000_000  # 2025-11-22
V2 = "/api/2.0/mlflow"
V3_DELETE = "/api/3.0/mlflow/traces/delete-traces"
MISSING = (
    "Missing value for required parameter '{}'. "
    "See the API docs for more information about request parameters."
)


@pytest.fixture
def api(write_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(write_settings)) as client:
        yield client


@pytest.fixture
def traces(opensearch: OpenSearch, write_settings: Settings) -> list[CompletedTrace]:
    """Six traces of experiment 1 a second apart (oldest first), three of experiment 2 among them."""
    experiment_1 = small_traces(6, seed=1, start_ms=START_MS, experiment_id="1")
    experiment_2 = small_traces(3, seed=2, start_ms=START_MS + 500, experiment_id="2")
    write_traces(opensearch, write_settings, experiment_1 + experiment_2)
    return experiment_1 + experiment_2


def ids(traces: list[CompletedTrace], experiment_id: str) -> list[str]:
    """The experiment's trace ids, oldest first."""
    chosen = [t for t in traces if t["info"]["location"]["experiment_id"] == experiment_id]
    return [
        t["trace_id"] for t in sorted(chosen, key=lambda t: (t["info"]["request_time_ms"], t["trace_id"]))
    ]


# ---------------------------------------------------------------- LinkTracesToRun


def test_link_to_run_publishes_one_link_per_trace(api: TestClient, write_settings: Settings) -> None:
    first, second = small_traces(2, seed=3, start_ms=START_MS)

    response = api.post(
        f"{V2}/traces/link-to-run",
        json={"trace_ids": [first["trace_id"], second["trace_id"], first["trace_id"]], "run_id": "run-7"},
    )

    assert response.status_code == 200, response.text
    assert response.json() == {}
    events = published_events(write_settings)
    assert [(kind, r["trace_id"], r["run_ids"], r["prompt_versions"]) for kind, r in events] == [
        (TRACE_LINKED, first["trace_id"], ["run-7"], []),
        (TRACE_LINKED, second["trace_id"], ["run-7"], []),
    ]


def test_link_to_run_refuses_more_than_100_traces_as_mlflow(
    api: TestClient, write_settings: Settings
) -> None:
    trace_ids = [t["trace_id"] for t in small_traces(101, seed=4, start_ms=START_MS)]

    response = api.post(f"{V2}/traces/link-to-run", json={"trace_ids": trace_ids, "run_id": "run-7"})

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert response.json()["message"] == (
        "Cannot link more than 100 traces to a run in a single request. Provided 101 traces."
    )
    assert published_events(write_settings) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"run_id": "run-7"}, MISSING.format("trace_ids")),
        ({"trace_ids": ["tr-0123456789abcdef0123456789abcdef"]}, MISSING.format("run_id")),
        (
            {"trace_ids": "tr-0123456789abcdef0123456789abcdef", "run_id": "r"},
            "Invalid value \"tr-0123456789abcdef0123456789abcdef\" for parameter 'trace_ids' supplied:  "
            "Hint: Value was of type 'str'. See the API docs for more information about request parameters.",
        ),
        (
            {"trace_ids": ["tr-0123456789abcdef0123456789abcdef", 5], "run_id": "r"},
            "Invalid value [\"tr-0123456789abcdef0123456789abcdef\",5] for parameter 'trace_ids' supplied:  "
            "Hint: Value was of type 'list'. See the API docs for more information about request parameters.",
        ),
    ],
)
def test_link_to_run_validates_as_mlflows_handler(api: TestClient, body: dict, message: str) -> None:
    response = api.post(f"{V2}/traces/link-to-run", json=body)

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert response.json()["message"] == message


# ---------------------------------------------------------------- LinkPromptsToTrace


def test_link_prompts_publishes_the_versions_as_name_slash_version(
    api: TestClient, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    trace_id = traces[0]["trace_id"]

    response = api.post(
        f"{V2}/traces/link-prompts",
        json={
            "trace_id": trace_id,
            "prompt_versions": [{"name": "qa-prompt", "version": "3"}, {"name": "summarize", "version": "1"}],
        },
    )

    assert response.status_code == 200, response.text
    assert response.json() == {}
    [(kind, record)] = published_events(write_settings)
    assert kind == TRACE_LINKED
    assert (record["trace_id"], record["run_ids"], record["prompt_versions"]) == (
        trace_id,
        [],
        ["qa-prompt/3", "summarize/1"],
    )


def test_link_prompts_to_an_unknown_trace_is_not_found_as_mlflow(
    api: TestClient, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    unknown = "tr-00000000000000000000000000000001"

    response = api.post(
        f"{V2}/traces/link-prompts",
        json={"trace_id": unknown, "prompt_versions": [{"name": "qa-prompt", "version": "3"}]},
    )

    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert response.json()["message"] == f"Trace with ID '{unknown}' not found."
    assert published_events(write_settings) == []


def test_link_prompts_needs_the_prompt_versions(api: TestClient) -> None:
    response = api.post(f"{V2}/traces/link-prompts", json={"trace_id": "tr-0123456789abcdef0123456789abcdef"})

    assert response.status_code == 400
    assert response.json()["message"] == MISSING.format("prompt_versions")


# ---------------------------------------------------------------- DeleteTraces


def test_delete_traces_by_time_deletes_the_experiments_traces_up_to_the_bound_inclusive(
    api: TestClient, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    experiment_1 = ids(traces, "1")
    bound = START_MS + 2_000  # the third trace's request time exactly

    response = api.post(
        f"{V2}/traces/delete-traces", json={"experiment_id": "1", "max_timestamp_millis": bound}
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"traces_deleted": 3}
    assert deleted_trace_ids(write_settings) == experiment_1[:3]


def test_delete_traces_with_max_traces_deletes_the_oldest_first(
    api: TestClient, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    response = api.post(
        f"{V2}/traces/delete-traces",
        json={"experiment_id": "1", "max_timestamp_millis": str(START_MS + 60_000), "max_traces": 2},
    )

    assert response.json() == {"traces_deleted": 2}
    assert deleted_trace_ids(write_settings) == ids(traces, "1")[:2]


def test_delete_traces_by_ids_counts_only_the_experiments_existing_traces(
    api: TestClient, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    experiment_1, experiment_2 = ids(traces, "1"), ids(traces, "2")
    asked = [experiment_1[4], experiment_2[0], "tr-00000000000000000000000000000001", experiment_1[1]]

    response = api.post(V3_DELETE, json={"experiment_id": "1", "request_ids": asked})

    assert response.json() == {"traces_deleted": 2}
    assert deleted_trace_ids(write_settings) == [experiment_1[1], experiment_1[4]]


def test_delete_traces_pages_past_a_page_of_ids(
    api: TestClient, write_settings: Settings, traces: list[CompletedTrace], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of 2 ids and batches of 2 events: six traces take three of each.
    monkeypatch.setattr("tracestream.search_api.search.ID_SCAN_PAGE_SIZE", 2)
    monkeypatch.setattr(deletion, "PUBLISH_BATCH", 2)

    response = api.post(
        f"{V2}/traces/delete-traces", json={"experiment_id": "1", "max_timestamp_millis": START_MS + 60_000}
    )

    assert response.json() == {"traces_deleted": 6}
    assert deleted_trace_ids(write_settings) == ids(traces, "1")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_timestamp_millis": 1}, MISSING.format("experiment_id")),
        ({"experiment_id": "1"}, "Either `max_timestamp_millis` or `trace_ids` must be specified."),
        (
            {
                "experiment_id": "1",
                "max_timestamp_millis": 1,
                "request_ids": ["tr-0123456789abcdef0123456789abcdef"],
            },
            "Only one of `max_timestamp_millis` and `trace_ids` can be specified.",
        ),
        (
            {"experiment_id": "1", "max_traces": 3, "request_ids": ["tr-0123456789abcdef0123456789abcdef"]},
            "`max_traces` can't be specified if `trace_ids` is specified.",
        ),
        (
            {"experiment_id": "1", "max_timestamp_millis": 1, "max_traces": 0},
            "`max_traces` must be a positive integer, received 0.",
        ),
        (
            {"experiment_id": 1, "max_timestamp_millis": 1},
            "Invalid value 1 for parameter 'experiment_id' supplied:  Hint: Value was of type 'int'. "
            "See the API docs for more information about request parameters.",
        ),
    ],
)
def test_delete_traces_validates_as_mlflow(
    api: TestClient, write_settings: Settings, body: dict, message: str
) -> None:
    response = api.post(f"{V2}/traces/delete-traces", json=body)

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert response.json()["message"] == message


# ---------------------------------------------------------------- delete by filter


def test_delete_by_filter_dry_run_lists_what_would_go_and_publishes_nothing(
    api: TestClient, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    response = api.post(
        "/api/v1/traces/delete", json={"filter": f"timestamp_ms > {START_MS + 1_000}", "dry_run": True}
    )

    assert response.status_code == 200, response.text
    newer = [t for t in traces if t["info"]["request_time_ms"] > START_MS + 1_000]
    oldest_first = [
        t["trace_id"] for t in sorted(newer, key=lambda t: (t["info"]["request_time_ms"], t["trace_id"]))
    ]
    assert response.json() == {
        "traces_deleted": len(newer),
        "traces_matched": len(newer),
        "trace_ids": oldest_first,
        "trace_ids_truncated": False,
        "dry_run": True,
    }
    assert published_events(write_settings) == []


def test_delete_by_filter_deletes_the_matches_in_the_locations_oldest_first_up_to_max_traces(
    api: TestClient, write_settings: Settings, traces: list[CompletedTrace]
) -> None:
    response = api.post(
        "/api/v1/traces/delete",
        json={"filter": f"timestamp_ms >= {START_MS + 1_000}", "locations": ["1"], "max_traces": 3},
    )

    experiment_1 = ids(traces, "1")
    assert response.json() == {
        "traces_deleted": 3,
        "traces_matched": 5,
        "trace_ids": experiment_1[1:4],
        "trace_ids_truncated": False,
        "dry_run": False,
    }
    assert deleted_trace_ids(write_settings) == experiment_1[1:4]


def test_delete_by_filter_refuses_to_delete_everything(api: TestClient, write_settings: Settings) -> None:
    response = api.post("/api/v1/traces/delete", json={"filter": "  "})

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert published_events(write_settings) == []


def test_delete_by_filter_answers_a_filter_error_with_its_position(api: TestClient) -> None:
    response = api.post("/api/v1/traces/delete", json={"filter": "status = ", "dry_run": True})

    assert response.status_code == 400
    assert response.json()["position"] is not None
