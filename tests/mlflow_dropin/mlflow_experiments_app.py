"""Run by MLflow's interpreter (tests/mlflow_oracle.py): the same experiment searches and invalid
page tokens against tracestream's API and against MLflow's own SQL store (sqlite, in-process),
so the test can compare the answers. Payload: ``{"tracking_uri", "prefix"}``."""

from __future__ import annotations

import base64
import json
import sys
import time

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

payload = json.load(sys.stdin)
prefix = payload["prefix"]
scope = f"name LIKE '{prefix}-%'"

EXPERIMENTS = [
    ("alpha", {"team": "care", "tier": "gold"}),
    ("beta", {"team": "billing"}),
    ("Gamma", {}),
    ("delta", {"team": "care"}),
]
FILTERS = [
    "",
    " AND tags.team = 'care'",
    " AND tags.team != 'care'",
    " AND tags.tier IS NULL",
    " AND tags.tier IS NOT NULL",
    " AND tags.team LIKE 'ca%'",
    " AND tags.team ILIKE 'CA%'",
    f" AND name = '{prefix}-beta'",
    f" AND name != '{prefix}-beta'",
    " AND name LIKE '%gamma'",
    " AND name ILIKE '%gamma'",
    " AND creation_time > 0",
    " and attribute.last_update_time >= 1",
]
ORDERS = [
    None,
    ["name ASC"],
    ["name DESC"],
    ["creation_time ASC"],
    ["experiment_id DESC"],
    ["last_update_time"],
]
TOKENS = [
    "not-a-token",
    base64.b64encode(b"not json").decode(),
    base64.b64encode(b'{"other": 1}').decode(),
    base64.b64encode(b'{"offset": "x"}').decode(),
]


def error_of(call) -> list[str] | None:
    try:
        call()
    except MlflowException as exc:
        return [exc.error_code, exc.message]
    return None


def run(uri: str) -> dict:
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    ids = []
    for name, tags in EXPERIMENTS:
        ids.append(client.create_experiment(f"{prefix}-{name}", tags=tags))
        time.sleep(0.005)  # distinct creation times
    searches = {}
    for suffix in FILTERS:
        for order in ORDERS:
            found = mlflow.search_experiments(filter_string=scope + suffix, order_by=order)
            searches[f"{suffix} | {order}"] = [e.name.removeprefix(prefix + "-") for e in found]
    pages, token = [], None
    while True:
        page = client.search_experiments(
            filter_string=scope, max_results=3, order_by=["name ASC"], page_token=token
        )
        pages.append([e.name.removeprefix(prefix + "-") for e in page])
        token = page.token
        if not token:
            break
    found = client.get_experiment_by_name(f"{prefix}-alpha")
    return {
        "searches": searches,
        "pages": pages,
        "by_name": [found.name, found.tags, found.lifecycle_stage],
        "missing": client.get_experiment_by_name(f"{prefix}-missing") is None,
        "all_names": [e.name for e in mlflow.search_experiments()],
        "experiment_errors": [error_of(lambda t=t: client.search_experiments(page_token=t)) for t in TOKENS],
        "trace_errors": [
            error_of(lambda t=t: client.search_traces(locations=[ids[0]], page_token=t)) for t in TOKENS
        ],
        "bad_filters": [
            error_of(lambda f=f: mlflow.search_experiments(filter_string=f))
            for f in ("foo.bar = 'x'", "name = alpha", "creation_time = 'x'", "nope = 'x'")
        ],
    }


answer = {"tracestream": run(payload["tracking_uri"]), "mlflow": run("sqlite:///oracle.db")}
print(json.dumps(answer))
