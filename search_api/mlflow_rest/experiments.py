"""MLflow experiments, stored durably in OpenSearch (index ``<prefix>-experiments``).

Two kinds of documents: the experiment itself (``_id`` ``id-<experiment id>``) and a name
reservation (``_id`` ``name-<sha256 of the name>``) that makes names unique: both are created
with ``op_type=create``, which OpenSearch refuses for an existing ``_id``, so two API replicas
creating the same name or taking the same id cannot both succeed. Ids are MLflow's: decimal
strings, the default experiment "0" (named "Default") and then 1, 2, ...
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError, RequestError, TransportError
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

from tracestream.search_api.mlflow_rest import experiment_search
from tracestream.search_api.mlflow_rest.protojson import invalid_parameter, not_found
from tracestream.search_api.search import SearchError
from tracestream.settings import Settings

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
MAX_NAME_LENGTH = 500
# SearchExperiments reads at most this many experiments (OpenSearch's default result window).
MAX_EXPERIMENTS = 10_000

MAPPING = {
    "dynamic": "strict",
    "properties": {
        "kind": {"type": "keyword"},
        "experiment_id": {"type": "keyword"},
        "id_number": {"type": "long"},
        "name": {"type": "keyword"},
        "artifact_location": {"type": "keyword", "index": False},
        "lifecycle_stage": {"type": "keyword"},
        "creation_time": {"type": "long"},
        "last_update_time": {"type": "long"},
        "tags": {"type": "object", "enabled": False},
    },
}


def experiments_index(settings: Settings) -> str:
    return f"{settings.opensearch.index_prefix}-experiments"


def _name_id(name: str) -> str:
    return "name-" + hashlib.sha256(name.encode()).hexdigest()


def experiment_json(source: dict[str, Any]) -> dict[str, Any]:
    """An experiment as MLflow's ``Experiment`` protobuf JSON."""
    rendered: dict[str, Any] = {
        "experiment_id": source["experiment_id"],
        "name": source["name"],
        "artifact_location": source.get("artifact_location") or "",
        "lifecycle_stage": source.get("lifecycle_stage", "active"),
        "last_update_time": source["last_update_time"],
        "creation_time": source["creation_time"],
    }
    if source.get("tags"):
        rendered["tags"] = [{"key": k, "value": v} for k, v in source["tags"].items()]
    return rendered


class ExperimentStore:
    def __init__(self, client: OpenSearch, settings: Settings) -> None:
        self.client = client
        self.index = experiments_index(settings)
        self.replicas = settings.opensearch.number_of_replicas
        self._ready = False

    def _call(self, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (ConflictError, NotFoundError, RequestError):
            raise
        except (OpenSearchConnectionError, TransportError) as exc:
            raise SearchError(
                503, "TEMPORARILY_UNAVAILABLE", "the experiment store is unavailable; retry later"
            ) from exc

    def _ensure(self) -> None:
        """Create the index and the default experiment once per process (idempotent)."""
        if self._ready:
            return
        try:
            self._call(
                self.client.indices.create,
                index=self.index,
                body={
                    "settings": {"number_of_shards": 1, "number_of_replicas": self.replicas},
                    "mappings": MAPPING,
                },
            )
        except RequestError as exc:
            if "resource_already_exists_exception" not in str(exc.error):
                raise
        self._insert(DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, "", {}, ignore_existing=True)
        self._ready = True

    def _insert(
        self,
        experiment_id: str,
        name: str,
        artifact_location: str,
        tags: dict[str, str],
        ignore_existing: bool,
    ) -> bool:
        """Reserve the name, then create the experiment. False when the name is taken."""
        now = int(time.time() * 1000)
        try:
            self._call(
                self.client.create,
                index=self.index,
                id=_name_id(name),
                body={"kind": "name", "name": name, "experiment_id": experiment_id},
                refresh="true",
            )
        except ConflictError:
            if not ignore_existing:
                return False
        try:
            self._call(
                self.client.create,
                index=self.index,
                id=f"id-{experiment_id}",
                body={
                    "kind": "experiment",
                    "experiment_id": experiment_id,
                    "id_number": int(experiment_id),
                    "name": name,
                    "artifact_location": artifact_location,
                    "lifecycle_stage": "active",
                    "creation_time": now,
                    "last_update_time": now,
                    "tags": tags,
                },
                refresh="true",
            )
        except ConflictError:
            if not ignore_existing:
                raise
        return True

    def get(self, experiment_id: str) -> dict[str, Any]:
        self._ensure()
        try:
            document = self._call(self.client.get, index=self.index, id=f"id-{experiment_id}")
        except NotFoundError as exc:
            raise not_found(f"No Experiment with id={experiment_id} exists") from exc
        return experiment_json(document["_source"])

    def get_by_name(self, name: str) -> dict[str, Any]:
        self._ensure()
        try:
            reservation = self._call(self.client.get, index=self.index, id=_name_id(name))
        except NotFoundError as exc:
            raise not_found(f"Could not find experiment with name '{name}'") from exc
        return self.get(reservation["_source"]["experiment_id"])

    def documents(self) -> list[dict[str, Any]]:
        """Every stored experiment document (for SearchExperiments, which filters in memory)."""
        self._ensure()
        response = self._call(
            self.client.search,
            index=self.index,
            body={"size": MAX_EXPERIMENTS, "query": {"term": {"kind": "experiment"}}},
        )
        return [hit["_source"] for hit in response["hits"]["hits"]]

    def search(
        self,
        view_type: Any = None,
        max_results: Any = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
        visible: Collection[str] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """MLflow's SearchExperiments: a page of ``Experiment`` JSON and the next page's token,
        among the experiments ``visible`` (all when None) so pages and tokens count only those."""
        documents = self.documents()
        if visible is not None:
            documents = [d for d in documents if d["experiment_id"] in visible]
        page, token = experiment_search.search(
            documents, view_type, max_results, filter_string, order_by, page_token
        )
        return [experiment_json(source) for source in page], token

    def _next_id(self) -> int:
        response = self._call(
            self.client.search,
            index=self.index,
            body={
                "size": 0,
                "query": {"term": {"kind": "experiment"}},
                "aggs": {"highest": {"max": {"field": "id_number"}}},
            },
        )
        highest = response["aggregations"]["highest"]["value"]
        return int(highest or 0) + 1

    def create(self, name: Any, artifact_location: str | None, tags: dict[str, str]) -> str:
        if not isinstance(name, str) or name == "":
            raise invalid_parameter(f"Invalid experiment name: '{name or ''}'")
        if len(name) > MAX_NAME_LENGTH:
            raise invalid_parameter(
                f"Experiment name exceeds the maximum length of {MAX_NAME_LENGTH} characters"
            )
        self._ensure()
        for _ in range(20):
            candidate = str(self._next_id())
            try:
                created = self._insert(candidate, name, artifact_location or "", tags, ignore_existing=False)
            except ConflictError:
                # Another replica took this id between our search and create: release the name.
                self._call(self.client.delete, index=self.index, id=_name_id(name), refresh="true")
                continue
            if not created:
                raise SearchError(400, "RESOURCE_ALREADY_EXISTS", f"Experiment(name={name}) already exists.")
            return candidate
        raise SearchError(503, "TEMPORARILY_UNAVAILABLE", "could not allocate an experiment id; retry")
