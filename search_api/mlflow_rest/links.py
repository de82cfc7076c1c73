"""MLflow's LinkTracesToRun and LinkPromptsToTrace as ``TraceLinked`` events: the requests checked
as MLflow's handlers and store check them, and one event per linked trace.

Links only add (the stream merges them into the trace's next revision), so sending one again
changes nothing. There are no runs here: any run id is accepted, as MLflow's store accepts any
(it checks no run). Nor does MLflow's store check that the linked traces exist; neither do we, so
a trace linked right after it was logged, before it is searchable, keeps its link (the events
topic keeps one trace's events in order). An id that cannot be a trace id is skipped: no trace
can have it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tracestream.schemas import TRACE_LINKED, is_trace_id
from tracestream.schemas.event_writer import Event
from tracestream.search_api.mlflow_rest.protojson import (
    field,
    invalid_parameter,
    missing_parameter,
    wrong_type,
)

# MLflow's store: MAX_TRACE_LINKS_PER_REQUEST.
MAX_TRACE_LINKS_PER_REQUEST = 100


def required_string(body: dict[str, Any], name: str) -> str:
    value = field(body, name)
    if value is not None and not isinstance(value, str):
        raise wrong_type(name, value)
    if not value:
        raise missing_parameter(name)
    return value


def string_list(body: dict[str, Any], name: str, *, required: bool) -> list[str] | None:
    value = field(body, name)
    if value is None:
        if required:
            raise missing_parameter(name)
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise wrong_type(name, value)
    return value


def _linked(trace_id: str, run_ids: list[str], prompt_versions: list[str]) -> tuple[str, Event]:
    record = {
        "trace_id": trace_id,
        "run_ids": run_ids,
        "prompt_versions": prompt_versions,
        "time_ms": int(time.time() * 1000),
    }
    return trace_id, (TRACE_LINKED, record)


def run_link_events(body: dict[str, Any]) -> list[tuple[str, Event]]:
    """LinkTracesToRun: one event per distinct trace id linking it to the run."""
    trace_ids = string_list(body, "trace_ids", required=True) or []
    run_id = required_string(body, "run_id")
    if len(trace_ids) > MAX_TRACE_LINKS_PER_REQUEST:
        raise invalid_parameter(
            f"Cannot link more than {MAX_TRACE_LINKS_PER_REQUEST} traces to a run in "
            f"a single request. Provided {len(trace_ids)} traces."
        )
    return [_linked(trace_id, [run_id], []) for trace_id in dict.fromkeys(trace_ids) if is_trace_id(trace_id)]


def prompt_versions(body: dict[str, Any]) -> list[str]:
    """LinkPromptsToTrace's ``prompt_versions`` as MLflow's ids of prompt versions, ``name/version``."""
    refs = field(body, "prompt_versions")
    if refs is None:
        raise missing_parameter("prompt_versions")
    if not isinstance(refs, list):
        raise wrong_type("prompt_versions", refs)
    ids = []
    for ref in refs:
        name = field(ref, "name") if isinstance(ref, dict) else None
        version = field(ref, "version") if isinstance(ref, dict) else None
        # MLflow's handler turns the version into an int: a number, as a string or not.
        if (
            not isinstance(name, str)
            or not name
            or isinstance(version, bool)
            or not isinstance(version, (str, int))
            or not str(version).strip().isdigit()
        ):
            raise invalid_parameter(
                f"Invalid prompt version {json.dumps(ref)} in 'prompt_versions': "
                'expected {"name": <string>, "version": <number>}'
            )
        ids.append(f"{name}/{int(version)}")
    return list(dict.fromkeys(ids))


def prompt_link_events(trace_id: str, versions: list[str]) -> list[tuple[str, Event]]:
    """LinkPromptsToTrace: one event linking the versions to the trace (none for no versions)."""
    return [_linked(trace_id, [], versions)] if versions else []
