"""Loads the differential dataset into MLflow's real SQL store and answers every query, in one run.

Runs under MLflow's interpreter (tests/mlflow_oracle.py::run_in_mlflow), in its own working
directory: a fresh ``sqlite:///mlflow.db``. Imports nothing from tracestream. Reads on stdin::

    {"experiments": ["1", ...],            # ids MLflow must give the experiments it creates
     "traces": [{"info": TraceInfo.to_dict() without assessments,
                 "spans": [Span.to_dict(), ...], "assessments": [Assessment.to_dictionary(), ...]}],
     "link_to_run": [trace id, ...],        # linked to a new run with MlflowClient's LinkTracesToRun
     "link_prompts": {trace id: ["name/version", ...]},  # linked with LinkPromptsToTrace
     "queries": [{"filter": str | null, "order_by": [str] | null, "locations": [str]}]}

Each trace is stored as MLflow's own server stores an exported trace: the spans (``log_spans``,
which prices spans that have a model and token usage but no cost from MLflow's bundled catalog),
then the final TraceInfo (``start_trace``), then each assessment (``create_assessment``, which
invalidates the assessment it overrides). ``<<linked_run>>`` in a filter stands for the new run's id.

Prints one JSON line: ``{"experiment_ids", "linked_run", "stored": {...}, "results": [...]}``, each
result ``{"ids": [...]}`` or ``{"error": message, "error_code": code, "type": exception class}``.
``stored`` is what the store holds (trace infos, span contents, assessments) so the test can
check both systems were given the same data.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any


def load(store: Any, payload: dict[str, Any]) -> tuple[list[str], str]:
    from mlflow.entities import Assessment, Span, TraceInfo
    from mlflow.entities.model_registry import PromptVersion

    experiment_ids = [store.create_experiment(f"differential-{n}") for n in payload["experiments"]]
    for trace in payload["traces"]:
        info = TraceInfo.from_dict(trace["info"])
        spans = [Span.from_dict(span) for span in trace["spans"]]
        if spans:
            store.log_spans(info.experiment_id, spans)
        store.start_trace(info)
        for rendered in trace["assessments"]:
            store.create_assessment(Assessment.from_dictionary(rendered))
    run = store.create_run(
        experiment_id=payload["experiments"][0],
        user_id="differential",
        start_time=0,
        tags=[],
        run_name="linked",
    )
    if payload["link_to_run"]:
        store.link_traces_to_run(payload["link_to_run"], run.info.run_id)
    for trace_id, versions in payload["link_prompts"].items():
        named = (name_version.rpartition("/") for name_version in versions)
        prompts = [PromptVersion(name=name, version=int(number), template="") for name, _, number in named]
        store.link_prompts_to_trace(trace_id, prompts)
    return experiment_ids, run.info.run_id


def stored(store: Any, database: Path, trace_ids: list[str]) -> dict[str, Any]:
    infos = {}
    for trace_id in trace_ids:
        info = store.get_trace_info(trace_id)
        infos[trace_id] = {
            "experiment_id": info.experiment_id,
            "client_request_id": info.client_request_id,
            "request_time": info.request_time,
            "execution_duration": info.execution_duration,
            "state": info.state.value,
            "tags": info.tags,
            "metadata": info.trace_metadata,
        }
    with sqlite3.connect(database) as connection:
        spans = connection.execute(
            "SELECT trace_id, name, type, status, content FROM spans ORDER BY trace_id, start_time_unix_nano"
        ).fetchall()
        assessments = connection.execute(
            "SELECT trace_id, assessment_id, assessment_type, name, value, valid, is_numeric_value "
            "FROM assessments ORDER BY trace_id, assessment_id"
        ).fetchall()
    return {"infos": infos, "spans": spans, "assessments": assessments}


def answer(store: Any, query: dict[str, Any], linked_run: str) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    filter_string = query["filter"]
    if filter_string is not None:
        filter_string = filter_string.replace("<<linked_run>>", linked_run)
    try:
        infos, _ = store.search_traces(
            locations=query["locations"],
            filter_string=filter_string,
            order_by=query["order_by"],
            max_results=1000,
        )
    except MlflowException as exc:
        return {"error": exc.message, "error_code": exc.error_code, "type": type(exc).__name__}
    except Exception as exc:  # the store's own crashes (SQLAlchemy) are answers too
        return {"error": str(exc), "error_code": None, "type": type(exc).__name__}
    return {"ids": [info.trace_id for info in infos]}


def main() -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    # Span costs from MLflow's bundled model catalog, the prices tracestream ships: not the newer
    # catalog MLflow would first download from GitHub (nor litellm's, not installed).
    os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    payload = json.load(sys.stdin)
    database = Path("mlflow.db").resolve()
    store = SqlAlchemyStore(f"sqlite:///{database}", str(Path("artifacts").resolve()))
    experiment_ids, linked_run = load(store, payload)
    trace_ids = [trace["info"]["trace_id"] for trace in payload["traces"]]
    results = [answer(store, query, linked_run) for query in payload["queries"]]
    print(
        json.dumps(
            {
                "experiment_ids": experiment_ids,
                "linked_run": linked_run,
                "stored": stored(store, database, trace_ids),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
