"""The endpoints of MLflow's tracking protocol that its client calls for traces, so the
unmodified ``mlflow`` package works with ``MLFLOW_TRACKING_URI=http://<this API>``.

Reads go through :class:`~search_api.search.TraceSearch` (the index); writes become events on
the events topic (see ``ingest``); experiments live in OpenSearch (see ``experiments``).
Errors are MLflow's JSON (``{"error_code", "message"}``) with its HTTP statuses, rendered by
the app's handler of :class:`~search_api.search.SearchError`.

Every endpoint covers only what its API key may (``search_api.access``): trace reads only the
experiments it may read (a trace of another is not found, as an unknown id); writes need
``ingest`` on the trace's experiment and deletes ``delete``, else MLflow's PERMISSION_DENIED;
experiments are seen only where the key has some right.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from tracestream.schemas import ASSESSMENT_LOGGED, is_trace_id
from tracestream.schemas.event_writer import Event
from tracestream.schemas.mlflow_format import mlflow_assessment_dict
from tracestream.schemas.records import SPAN_ENDED, TRACE_ENDED, TRACE_LINKED, TRACE_TAGS_CHANGED
from tracestream.search_api import audit
from tracestream.search_api.access import Principal, PrincipalDep, Right, permission_denied
from tracestream.search_api.deletion import Selection, delete_traces
from tracestream.search_api.limits import TOO_LARGE_ERROR_CODE
from tracestream.search_api.mlflow_rest.experiments import ExperimentStore
from tracestream.search_api.mlflow_rest.ingest import (
    DEFAULT_EXPERIMENT_ID,
    OtlpError,
    OtlpTooLarge,
    assessment_deletion,
    assessment_record,
    assessment_update,
    otlp_events,
    parse_otlp,
    tag_event,
    trace_info_events,
)
from tracestream.search_api.mlflow_rest.links import (
    prompt_link_events,
    prompt_versions,
    required_string,
    run_link_events,
    string_list,
)
from tracestream.search_api.mlflow_rest.protojson import (
    current_versions,
    field,
    int_parameter,
    invalid_parameter,
    missing_parameter,
    not_found,
    shown_as,
    trace_info_json,
    trace_json,
    visible_assessments,
    wrong_type,
)
from tracestream.search_api.mlflow_rest.publisher import EventPublisher
from tracestream.search_api.mlflow_rest.runs import run_seen_in_traces
from tracestream.search_api.search import SearchError, TraceSearch, experiment_of
from tracestream.settings import Settings

# The MLflow server version this API answers for: its client sends spans over OTLP only to
# servers of 3.4 and later, and this is the version whose protocol the drop-in follows.
MLFLOW_SERVER_VERSION = "3.17.2"
# MLflow's REST handler refuses larger pages of SearchTracesV3.
MAX_SEARCH_RESULTS = 500
DEFAULT_SEARCH_RESULTS = 100
EXPERIMENT_ID_HEADER = "x-mlflow-experiment-id"

V2 = "/api/2.0/mlflow"
V3_TRACES = "/api/3.0/mlflow/traces"


def _json(content: Any) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise SearchError(400, "MALFORMED_REQUEST", f"Malformed request body: {exc}") from exc
    if not isinstance(body, dict):
        raise SearchError(400, "MALFORMED_REQUEST", "The request body must be a JSON object")
    return body


Body = Annotated[dict[str, Any], Depends(_json_body)]


class MlflowBackend:
    """What the endpoints share: the search, the experiment store and, created on the first
    write, the Kafka publisher. One per app, on ``app.state.mlflow``."""

    def __init__(self, settings: Settings, search: TraceSearch) -> None:
        self.settings = settings
        self.search = search
        self.experiments = ExperimentStore(search.client, settings)
        self._publisher: EventPublisher | None = None
        self._lock = threading.Lock()

    @property
    def publisher(self) -> EventPublisher:
        with self._lock:
            if self._publisher is None:
                self._publisher = EventPublisher(self.settings)
            return self._publisher

    def trace(self, trace_id: str, readable: list[str] | None = None) -> dict[str, Any]:
        """A trace in the experiments ``readable`` (all when None); not found otherwise."""
        return self.search.get(trace_id, readable)

    def traces(
        self, trace_ids: list[str], experiment_ids: list[str] | None, readable: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The traces of ``trace_ids`` in ``experiment_ids`` and ``readable`` (each: all when
        None); the others are left out, as unknown ids."""
        found = []
        for trace_id in dict.fromkeys(trace_ids):
            try:
                trace = self.search.get(trace_id, readable)
            except SearchError as exc:
                if exc.status == 404:
                    continue
                raise
            if experiment_ids is None or experiment_of(trace) in experiment_ids:
                found.append(trace)
        return found

    def assessment(
        self, trace_id: str, assessment_id: str, readable: list[str] | None = None
    ) -> tuple[dict[str, Any], str]:
        """An assessment as MLflow's client sees it, and the id of its stored current version."""
        stored = self.trace(trace_id, readable)["info"].get("assessments") or []
        version = current_versions(stored).get(assessment_id)
        if version is None:
            raise not_found(f"Assessment with ID '{assessment_id}' not found for trace '{trace_id}'")
        shown = next(a for a in visible_assessments(stored) if a["assessment_id"] == assessment_id)
        return shown, version["assessment_id"]

    def version_of(self, trace_id: str, assessment_id: str) -> str | None:
        """The stored current version of an assessment, None when the trace is not indexed yet."""
        try:
            return self.assessment(trace_id, assessment_id)[1]
        except SearchError as exc:
            if exc.status == 404:
                return None
            raise


def get_backend(request: Request) -> MlflowBackend:
    return request.app.state.mlflow


BackendDep = Annotated[MlflowBackend, Depends(get_backend)]


def require_ingest_on_traces(backend: MlflowBackend, principal: Principal, trace_ids: list[str]) -> None:
    """PERMISSION_DENIED unless the key may ingest into the experiment of every trace written to,
    looked up in one search. A key of every experiment needs no lookup (a trace not indexed yet
    is fine); for a key of some experiments, a trace not indexed yet is refused like one of
    another experiment, and the message names only the trace, so neither tells it apart."""
    principal.require(Right.INGEST)
    if principal.experiments is None:
        return
    found = backend.search.experiments_of(trace_ids)
    for trace_id in dict.fromkeys(trace_ids):
        experiment = found.get(trace_id)
        if experiment is None or not principal.may(Right.INGEST, experiment):
            raise permission_denied(f"API key '{principal.name}' may not ingest into trace '{trace_id}'")


def refuse_traces_of_other_experiments(
    backend: MlflowBackend, principal: Principal, trace_ids: list[str]
) -> None:
    """PERMISSION_DENIED when a key of some experiments sends spans or a trace info under the id
    of an indexed trace of an experiment it may not ingest into (the stream would add them to
    that trace); one search per request, none for a key of every experiment. A trace not indexed
    yet cannot be checked, and is new as far as the index knows."""
    if principal.experiments is None or not trace_ids:
        return
    for trace_id, experiment in backend.search.experiments_of(list(dict.fromkeys(trace_ids))).items():
        if not principal.may(Right.INGEST, experiment):
            raise permission_denied(f"API key '{principal.name}' may not ingest into trace '{trace_id}'")


# What ``tracestream_api_ingested_total`` counts each event as, per key.
INGESTED_KINDS = {
    SPAN_ENDED: "spans",
    TRACE_ENDED: "traces",
    TRACE_TAGS_CHANGED: "tags",
    ASSESSMENT_LOGGED: "assessments",
    TRACE_LINKED: "links",
}


def publish_ingested(request: Request, backend: MlflowBackend, events: list[tuple[str, Event]]) -> None:
    """Publishes what a key ingests and counts it per key (ingest is counted, not audited)."""
    backend.publisher.publish(events)
    kinds = Counter(INGESTED_KINDS.get(event_type, "other") for _, (event_type, _) in events)
    for kind, count in kinds.items():
        audit.count_ingest(request, kind, count)


def audit_trace_reads(request: Request, traces: list[dict[str, Any]]) -> None:
    """Records a read of whole traces (with their spans); infos alone are not audited."""
    if traces:
        audit.record(
            request,
            audit.AuditAction.GET_TRACE,
            experiments={e for e in map(experiment_of, traces) if e is not None},
            trace_ids=[trace["info"]["trace_id"] for trace in traces],
        )


def may_see_experiment(principal: Principal, experiment_id: str) -> bool:
    """An experiment's name and tags are visible to a key with any right on it: MLflow's client
    looks its experiment up by name before it writes, so an ingest-only key needs this too."""
    return any(principal.may(right, experiment_id) for right in Right)


def _search_page_size(body: dict[str, Any]) -> int:
    value = field(body, "max_results")
    if value is None:
        return DEFAULT_SEARCH_RESULTS
    size = int_parameter(value, "max_results")
    if size > MAX_SEARCH_RESULTS:
        raise invalid_parameter(
            f"Invalid value {size} for parameter 'max_results' supplied:  Hint: Value was of type 'int'. "
            "See the API docs for more information about request parameters."
        )
    if size < 1:
        raise invalid_parameter(
            f"Invalid value {size} for parameter 'max_results' supplied. It must be a positive integer"
        )
    return size


def _string_param(body: dict[str, Any], name: str) -> str | None:
    value = field(body, name)
    if value is not None and not isinstance(value, str):
        raise wrong_type(name, value)
    return value


def _experiment_ids(locations: Any) -> list[str]:
    if locations is None:
        raise missing_parameter("locations")
    if not isinstance(locations, list):
        raise invalid_parameter("Invalid value for parameter 'locations': expected a list")
    ids = []
    for location in locations:
        experiment = field(location, "mlflow_experiment") if isinstance(location, dict) else None
        if isinstance(experiment, dict) and field(experiment, "experiment_id"):
            ids.append(str(field(experiment, "experiment_id")))
    return ids


def _checked_trace_id(trace_id: str) -> str:
    if not is_trace_id(trace_id):
        raise not_found(f"Trace with ID '{trace_id}' not found.")
    return trace_id


# Mounted by search_api.api.create_app behind the API-key dependency; what the routes share
# comes in as BackendDep.
router = APIRouter(tags=["MLflow tracking protocol"])


@router.get("/version", response_class=PlainTextResponse)
def version() -> str:
    """The MLflow server version whose protocol this API speaks."""
    return MLFLOW_SERVER_VERSION


# ------------------------------------------------------------ experiments


@router.get(f"{V2}/experiments/get-by-name")
def get_experiment_by_name(
    backend: BackendDep, principal: PrincipalDep, experiment_name: str | None = None
) -> Response:
    if not experiment_name:
        raise missing_parameter("experiment_name")
    experiment = backend.experiments.get_by_name(experiment_name)
    if not may_see_experiment(principal, experiment["experiment_id"]):
        raise not_found(f"Could not find experiment with name '{experiment_name}'")
    return _json({"experiment": experiment})


@router.get(f"{V2}/experiments/get")
def get_experiment(
    backend: BackendDep, principal: PrincipalDep, experiment_id: str | None = None
) -> Response:
    if not experiment_id:
        raise missing_parameter("experiment_id")
    if not may_see_experiment(principal, experiment_id):
        raise not_found(f"No Experiment with id={experiment_id} exists")
    return _json({"experiment": backend.experiments.get(experiment_id)})


@router.post(f"{V2}/experiments/search")
def search_experiments(body: Body, backend: BackendDep, principal: PrincipalDep) -> Response:
    """SearchExperiments, as ``mlflow.search_experiments()`` and ``MlflowClient`` send it."""
    return _experiments_page(
        backend,
        principal,
        field(body, "view_type"),
        field(body, "max_results"),
        _string_param(body, "filter"),
        field(body, "order_by"),
        _string_param(body, "page_token"),
    )


@router.get(f"{V2}/experiments/search")
def search_experiments_get(
    backend: BackendDep,
    principal: PrincipalDep,
    view_type: str | None = None,
    max_results: str | None = None,
    filter: str | None = None,
    order_by: Annotated[list[str] | None, Query()] = None,
    page_token: str | None = None,
) -> Response:
    return _experiments_page(backend, principal, view_type, max_results, filter, order_by, page_token)


def _experiments_page(
    backend: MlflowBackend,
    principal: Principal,
    view_type: Any,
    max_results: Any,
    filter: Any,
    order_by: Any,
    page_token: Any,
) -> Response:
    if order_by is not None and not isinstance(order_by, list):
        raise wrong_type("order_by", order_by)
    experiments, token = backend.experiments.search(
        view_type, max_results, filter or None, order_by or None, page_token or None, principal.experiments
    )
    answer: dict[str, Any] = {}
    if experiments:
        answer["experiments"] = experiments
    if token:
        answer["next_page_token"] = token
    return _json(answer)


@router.post(f"{V2}/experiments/create")
def create_experiment(body: Body, backend: BackendDep, principal: PrincipalDep) -> Response:
    """CreateExperiment: for an ``admin`` key, or an ``ingest`` key of every experiment (a key of
    some experiments could not use the one it creates; an operator adds it to its scope)."""
    if not (principal.may(Right.ADMIN) or (principal.may(Right.INGEST) and principal.experiments is None)):
        raise permission_denied(f"API key '{principal.name}' may not create experiments")
    tags = {t["key"]: str(t.get("value", "")) for t in field(body, "tags") or [] if "key" in t}
    experiment_id = backend.experiments.create(field(body, "name"), field(body, "artifact_location"), tags)
    return _json({"experiment_id": experiment_id})


# ------------------------------------------------------------ writes


@router.post("/v1/traces")
async def export_spans(
    request: Request,
    backend: BackendDep,
    principal: PrincipalDep,
    content_type: Annotated[str | None, Header()] = None,
    content_encoding: Annotated[str | None, Header()] = None,
    experiment_id: Annotated[str | None, Header(alias=EXPERIMENT_ID_HEADER)] = None,
) -> Response:
    """OTLP/HTTP span export (protobuf or JSON, optionally gzip/deflate), from MLflow's
    client or any OpenTelemetry SDK. Spans go to the experiment named by the
    ``x-mlflow-experiment-id`` header, else to the default experiment "0"; the API key must
    have ``ingest`` on it."""
    principal.require(Right.INGEST, experiment_id or DEFAULT_EXPERIMENT_ID)
    # At most max_request_body_bytes (search_api.limits); inflated at most max_inflated_body_bytes.
    body = await request.body()
    try:
        limit = backend.settings.api.max_inflated_body_bytes
        parsed = parse_otlp(body, content_type, content_encoding, limit)
        events = otlp_events(parsed, experiment_id)
    except OtlpTooLarge as exc:
        raise SearchError(413, TOO_LARGE_ERROR_CODE, str(exc)) from exc
    except OtlpError as exc:
        raise SearchError(400, "BAD_REQUEST", str(exc)) from exc
    await run_in_threadpool(refuse_traces_of_other_experiments, backend, principal, [t for t, _ in events])
    await run_in_threadpool(publish_ingested, request, backend, events)
    if (content_type or "").startswith("application/json"):
        return _json({})
    return Response(b"", media_type="application/x-protobuf")  # an empty ExportTraceServiceResponse


@router.post(V3_TRACES)
def start_trace(request: Request, body: Body, backend: BackendDep, principal: PrincipalDep) -> Response:
    """StartTraceV3: MLflow's client sends the trace info when the root span ends."""
    events, trace_info = trace_info_events(body)
    _, (_, ended) = events[0]  # the TraceEnded comes first
    principal.require(Right.INGEST, ended["location"]["experiment_id"])
    refuse_traces_of_other_experiments(backend, principal, [ended["trace_id"]])
    publish_ingested(request, backend, events)
    return _json({"trace": {"trace_info": trace_info}})


@router.patch(f"{V2}/traces/{{trace_id}}/tags")
def set_trace_tag(
    request: Request, trace_id: str, body: Body, backend: BackendDep, principal: PrincipalDep
) -> Response:
    key = field(body, "key")
    if key is None:
        raise missing_parameter("key")
    require_ingest_on_traces(backend, principal, [trace_id])
    publish_ingested(request, backend, tag_event(trace_id, set_tags={key: str(field(body, "value") or "")}))
    return _json({})


@router.delete(f"{V2}/traces/{{trace_id}}/tags")
def delete_trace_tag(
    request: Request,
    trace_id: str,
    body: Body,
    backend: BackendDep,
    principal: PrincipalDep,
    key: str | None = None,
) -> Response:
    key = field(body, "key") or key
    if not key:
        raise missing_parameter("key")
    require_ingest_on_traces(backend, principal, [trace_id])
    publish_ingested(request, backend, tag_event(trace_id, deleted=[key]))
    return _json({})


@router.post(f"{V3_TRACES}/{{trace_id}}/assessments")
def create_assessment(
    request: Request, trace_id: str, body: Body, backend: BackendDep, principal: PrincipalDep
) -> Response:
    message = field(body, "assessment")
    if not isinstance(message, dict):
        raise missing_parameter("assessment")
    require_ingest_on_traces(backend, principal, [_checked_trace_id(trace_id)])
    record = assessment_record({**message, "assessment_id": None}, _checked_trace_id(trace_id))
    shown = mlflow_assessment_dict(record)
    if record["overrides"]:
        # override_feedback names the id the client knows; what it replaces is that
        # assessment's current version.
        record["overrides"] = backend.version_of(trace_id, record["overrides"]) or record["overrides"]
    publish_ingested(request, backend, [(trace_id, (ASSESSMENT_LOGGED, record))])
    return _json({"assessment": shown})


@router.get(f"{V3_TRACES}/{{trace_id}}/assessments/{{assessment_id}}")
def get_assessment(
    trace_id: str, assessment_id: str, backend: BackendDep, principal: PrincipalDep
) -> Response:
    readable = principal.scope(Right.READ, None)
    return _json({"assessment": backend.assessment(trace_id, assessment_id, readable)[0]})


@router.patch(f"{V3_TRACES}/{{trace_id}}/assessments/{{assessment_id}}")
def update_assessment(
    request: Request,
    trace_id: str,
    assessment_id: str,
    body: Body,
    backend: BackendDep,
    principal: PrincipalDep,
) -> Response:
    require_ingest_on_traces(backend, principal, [_checked_trace_id(trace_id)])
    shown, version_id = backend.assessment(trace_id, assessment_id)
    record = assessment_update(
        shown, version_id, trace_id, field(body, "assessment") or {}, field(body, "update_mask")
    )
    publish_ingested(request, backend, [(trace_id, (ASSESSMENT_LOGGED, record))])
    shown_update = shown_as(mlflow_assessment_dict(record), assessment_id, shown.get("overrides"))
    return _json({"assessment": shown_update})


@router.delete(f"{V3_TRACES}/{{trace_id}}/assessments/{{assessment_id}}")
def delete_assessment(
    request: Request, trace_id: str, assessment_id: str, backend: BackendDep, principal: PrincipalDep
) -> Response:
    require_ingest_on_traces(backend, principal, [_checked_trace_id(trace_id)])
    version_id = backend.version_of(_checked_trace_id(trace_id), assessment_id)
    record = assessment_deletion(trace_id, assessment_id, version_id)
    publish_ingested(request, backend, [(trace_id, (ASSESSMENT_LOGGED, record))])
    return _json({})


# ------------------------------------------------------------ links and deletion


@router.post(f"{V2}/traces/link-to-run")
def link_traces_to_run(
    request: Request, body: Body, backend: BackendDep, principal: PrincipalDep
) -> Response:
    """LinkTracesToRun: at most 100 traces, any run id (there are no runs here; MLflow's store
    does not check the run either); ``run_id = …`` then finds them."""
    events = run_link_events(body)
    require_ingest_on_traces(backend, principal, [trace_id for trace_id, _ in events])
    publish_ingested(request, backend, events)
    return _json({})


@router.post(f"{V2}/traces/link-prompts")
def link_prompts_to_trace(
    request: Request, body: Body, backend: BackendDep, principal: PrincipalDep
) -> Response:
    """LinkPromptsToTrace: ``prompt = 'name/version'`` then finds the trace. The trace must exist,
    as in MLflow (its client reads the trace before it links)."""
    trace_id = required_string(body, "trace_id")
    versions = prompt_versions(body)
    if not versions:
        return _json({})  # MLflow's store returns before it looks the trace up
    require_ingest_on_traces(backend, principal, [_checked_trace_id(trace_id)])
    backend.trace(trace_id)  # RESOURCE_DOES_NOT_EXIST "Trace with ID '…' not found."
    publish_ingested(request, backend, prompt_link_events(trace_id, versions))
    return _json({})


def _delete_selection(body: dict[str, Any]) -> Selection:
    """DeleteTraces checked as MLflow's handler (types, required fields) and its store (which of
    the bounds go together)."""
    experiment_id = required_string(body, "experiment_id")
    max_timestamp = field(body, "max_timestamp_millis")
    max_traces = field(body, "max_traces")
    max_timestamp = None if max_timestamp is None else int_parameter(max_timestamp, "max_timestamp_millis")
    max_traces = None if max_traces is None else int_parameter(max_traces, "max_traces")
    trace_ids = string_list(body, "request_ids", required=False)
    if max_timestamp is None and not trace_ids:
        raise invalid_parameter("Either `max_timestamp_millis` or `trace_ids` must be specified.")
    if max_timestamp is not None and trace_ids:
        raise invalid_parameter("Only one of `max_timestamp_millis` and `trace_ids` can be specified.")
    if trace_ids and max_traces is not None:
        raise invalid_parameter("`max_traces` can't be specified if `trace_ids` is specified.")
    if max_traces is not None and max_traces <= 0:
        raise invalid_parameter(f"`max_traces` must be a positive integer, received {max_traces}.")
    if trace_ids:
        return Selection(locations=[experiment_id], trace_ids=list(dict.fromkeys(trace_ids)))
    # Inclusive, as MLflow's store: traces at or before the bound.
    return Selection(f"timestamp_ms <= {max_timestamp}", [experiment_id], max_traces=max_traces)


@router.post(f"{V2}/traces/delete-traces")
@router.post(f"{V3_TRACES}/delete-traces")
def delete_traces_of_experiment(
    request: Request, body: Body, backend: BackendDep, principal: PrincipalDep
) -> Response:
    """DeleteTraces (and DeleteTracesV3, the same request): the experiment's traces at or before
    ``max_timestamp_millis`` (the oldest ``max_traces`` of them when given), or those of
    ``request_ids`` that exist in it; ``traces_deleted`` counts them exactly. Every match is
    deleted, a page at a time (see ``search_api.deletion``)."""
    selection = _delete_selection(body)
    assert selection.locations is not None  # DeleteTraces names its experiment
    principal.require(Right.DELETE, selection.locations[0])
    deletion = delete_traces(backend.search, backend.publisher, selection, "MLflow DeleteTraces")
    audit.record_deletion(request, selection, deletion)
    return _json({"traces_deleted": deletion.deleted})


# ------------------------------------------------------------ runs


@router.get(f"{V2}/runs/get")
def get_run(
    backend: BackendDep, principal: PrincipalDep, run_id: str | None = None, run_uuid: str | None = None
) -> Response:
    """GetRun, for the runs traces name (see ``runs``): MLflow's client reads the run before it
    searches the run's traces."""
    wanted = run_id or run_uuid
    if not wanted:
        raise missing_parameter("run_id")
    return _json({"run": run_seen_in_traces(backend.search, wanted, principal.scope(Right.READ, None))})


# ------------------------------------------------------------ reads (before /{trace_id})


@router.post(f"{V3_TRACES}/search")
def search_traces(body: Body, backend: BackendDep, principal: PrincipalDep) -> Response:
    """SearchTracesV3: trace infos matching MLflow's filter, a page at a time, of the requested
    experiments the API key may read (none of them: no traces)."""
    experiment_ids = _experiment_ids(field(body, "locations"))
    size = _search_page_size(body)
    if not experiment_ids:
        return _json({})
    page = backend.search.search(
        field(body, "filter") or None,
        field(body, "order_by") or None,
        size,
        _string_param(body, "page_token") or None,
        principal.scope(Right.READ, experiment_ids),
        include_spans=False,
        caller=principal.name,
    )
    answer: dict[str, Any] = {}
    if page.traces:
        answer["traces"] = [trace_info_json(trace["info"]) for trace in page.traces]
    if page.next_page_token:
        answer["next_page_token"] = page.next_page_token
    return _json(answer)


@router.get(f"{V3_TRACES}/batchGet")
def batch_get_traces(
    request: Request,
    backend: BackendDep,
    principal: PrincipalDep,
    trace_ids: Annotated[list[str] | None, Query()] = None,
    experiment_ids: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """Whole traces (info and spans) by id; unknown ids are left out."""
    if not trace_ids:
        raise missing_parameter("trace_ids")
    traces = backend.traces(trace_ids, experiment_ids, principal.scope(Right.READ, None))
    audit_trace_reads(request, traces)
    return _json({"traces": [trace_json(trace) for trace in traces]} if traces else {})


@router.post(f"{V3_TRACES}/batchGetInfos")
def batch_get_trace_infos(body: Body, backend: BackendDep, principal: PrincipalDep) -> Response:
    trace_ids = field(body, "trace_ids")
    if not trace_ids:
        raise missing_parameter("trace_ids")
    experiment_ids = field(body, "experiment_ids")
    traces = backend.traces(
        list(trace_ids),
        list(experiment_ids) if experiment_ids is not None else None,
        principal.scope(Right.READ, None),
    )
    return _json({"trace_infos": [trace_info_json(t["info"]) for t in traces]} if traces else {})


@router.get(f"{V3_TRACES}/get")
def get_trace(
    request: Request,
    backend: BackendDep,
    principal: PrincipalDep,
    trace_id: str | None = None,
    allow_partial: str | None = None,
) -> Response:
    """GetTrace: one trace with its spans."""
    if not trace_id:
        raise missing_parameter("trace_id")
    trace = backend.trace(trace_id, principal.scope(Right.READ, None))
    audit_trace_reads(request, [trace])
    return _json({"trace": trace_json(trace)})


@router.get(f"{V3_TRACES}/{{trace_id}}")
def get_trace_info(trace_id: str, backend: BackendDep, principal: PrincipalDep) -> Response:
    """GetTraceInfoV3: one trace's info."""
    trace = backend.trace(trace_id, principal.scope(Right.READ, None))
    return _json({"trace": {"trace_info": trace_info_json(trace["info"])}})
