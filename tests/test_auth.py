"""The search API's authentication with scoped keys: the forms MLflow's client and the explorer
send a key in, refusals in the API's error format, revocation without a restart, the rate limit
on invalid keys, and the flat TRACESTREAM_API__API_KEYS of earlier releases."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from commands import run_tracestream
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch
from pydantic import SecretStr
from searching.support import drop, private_settings, running_api

from tracestream.search_api.access import OPEN, Right, current_principal
from tracestream.search_api.api import create_app
from tracestream.search_api.audit import audit_index
from tracestream.search_api.auth import FailedAttempts, authentication_dependencies
from tracestream.search_api.keys import KeysFile
from tracestream.settings import Settings

SEARCH = "/api/v1/traces/search"


@pytest.fixture
def base_settings(opensearch: OpenSearch) -> Iterator[Settings]:
    settings = private_settings(Settings())
    yield settings
    drop(opensearch, settings)
    opensearch.indices.delete(index=audit_index(settings), ignore_unavailable=True)


@pytest.fixture
def keys_file(tmp_path: Path) -> KeysFile:
    return KeysFile(tmp_path / "keys.json")


def with_api(settings: Settings, **api: Any) -> Settings:
    return settings.model_copy(update={"api": settings.api.model_copy(update=api)})


def client_for(settings: Settings) -> TestClient:
    """The real app, with one more route behind the same authentication, answering who the
    dependency said the caller is."""
    app = create_app(settings)
    whoami_router = APIRouter()

    @whoami_router.get("/test/whoami")
    def whoami(request: Request) -> dict[str, Any]:
        principal = current_principal(request)
        experiments = None if principal.experiments is None else sorted(principal.experiments)
        return {"name": principal.name, "rights": sorted(principal.rights), "experiments": experiments}

    failed_attempts = FailedAttempts(settings.api.auth_max_failures, settings.api.auth_lockout_s)
    app.include_router(
        whoami_router, dependencies=authentication_dependencies(app.state.key_ring, failed_attempts)
    )
    return TestClient(app)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        lambda secret: {"X-API-Key": secret},
        lambda secret: {"Authorization": f"Bearer {secret}"},  # MLFLOW_TRACKING_TOKEN
        lambda secret: basic("support-dashboard", secret),  # MLFLOW_TRACKING_USERNAME/PASSWORD
        lambda secret: basic("anyone", secret),  # the user name is not checked
    ],
    ids=["x-api-key", "bearer", "basic", "basic-any-user"],
)
def test_a_key_is_accepted_in_every_form_the_clients_send(
    base_settings: Settings, keys_file: KeysFile, headers: Any
) -> None:
    _, secret = keys_file.create("support-dashboard", ["17"], [Right.READ])
    with client_for(with_api(base_settings, keys_file=str(keys_file.path))) as client:
        answer = client.post(SEARCH, json={}, headers=headers(secret))

    assert answer.status_code == 200, answer.text
    assert answer.json()["traces"] == []


def test_a_missing_key_is_401_and_a_wrong_one_403(base_settings: Settings, keys_file: KeysFile) -> None:
    _, secret = keys_file.create("support-dashboard", ["17"], [Right.READ])
    with client_for(with_api(base_settings, keys_file=str(keys_file.path))) as client:
        missing = client.post(SEARCH, json={})
        wrong = client.post(SEARCH, json={}, headers={"X-API-Key": secret[:-1]})
        wrong_basic = client.post(SEARCH, json={}, headers=basic("support-dashboard", "ts_guess"))

    assert (missing.status_code, missing.json()["error_code"]) == (401, "UNAUTHENTICATED")
    assert (wrong.status_code, wrong.json()["error_code"]) == (403, "PERMISSION_DENIED")
    assert wrong_basic.json() == wrong.json()  # says nothing about whether the name exists


def test_a_named_keys_file_without_keys_refuses_every_caller(base_settings: Settings, tmp_path: Path) -> None:
    with client_for(with_api(base_settings, keys_file=str(tmp_path / "none-yet.json"))) as client:
        answer = client.post(SEARCH, json={}, headers={"X-API-Key": "ts_anything"})

    assert answer.status_code == 403


def test_the_caller_is_the_key_with_its_rights_and_experiments(
    base_settings: Settings, keys_file: KeysFile
) -> None:
    _, secret = keys_file.create("billing-agent", ["4", "5"], [Right.INGEST])
    with client_for(with_api(base_settings, keys_file=str(keys_file.path))) as client:
        caller = client.get("/test/whoami", headers={"Authorization": f"Bearer {secret}"}).json()

    assert caller == {"name": "billing-agent", "rights": ["ingest"], "experiments": ["4", "5"]}


def test_without_keys_the_api_stays_open(base_settings: Settings) -> None:
    with client_for(base_settings) as client:
        search = client.post(SEARCH, json={})
        caller = client.get("/test/whoami").json()

    assert search.status_code == 200
    assert caller["name"] == OPEN.name and caller["experiments"] is None


def test_legacy_api_keys_keep_every_right_beside_the_keys_file(
    base_settings: Settings, keys_file: KeysFile
) -> None:
    _, secret = keys_file.create("support-dashboard", ["17"], [Right.READ])
    settings = with_api(base_settings, keys_file=str(keys_file.path), api_keys=[SecretStr("k-ops-1")])
    with client_for(settings) as client:
        legacy = client.get("/test/whoami", headers={"X-API-Key": "k-ops-1"}).json()
        scoped = client.get("/test/whoami", headers={"X-API-Key": secret})

    assert legacy == {"name": "api_keys[0]", "rights": sorted(Right), "experiments": None}
    assert scoped.json()["name"] == "support-dashboard"


def test_a_key_created_or_revoked_counts_within_seconds_without_a_restart(
    base_settings: Settings, keys_file: KeysFile
) -> None:
    _, old_secret = keys_file.create("support-dashboard", ["17"], [Right.READ])
    settings = with_api(base_settings, keys_file=str(keys_file.path), keys_check_interval_s=0.5)
    with client_for(settings) as client:
        assert client.post(SEARCH, json={}, headers={"X-API-Key": old_secret}).status_code == 200

        _, new_secret = keys_file.create("support-dashboard-v2", ["17"], [Right.READ])
        keys_file.revoke("support-dashboard")
        revoked_at = time.monotonic()
        while (old := client.post(SEARCH, json={}, headers={"X-API-Key": old_secret})).status_code == 200:
            assert time.monotonic() - revoked_at < 5, "the revoked key is still accepted after 5 s"
            time.sleep(0.1)
        new = client.post(SEARCH, json={}, headers={"X-API-Key": new_secret})

    assert (old.status_code, old.json()["error_code"]) == (403, "PERMISSION_DENIED")
    assert new.status_code == 200


def test_a_client_sending_invalid_keys_is_refused_for_a_while_other_clients_are_not(
    base_settings: Settings, keys_file: KeysFile
) -> None:
    _, secret = keys_file.create("support-dashboard", ["17"], [Right.READ])
    settings = with_api(base_settings, keys_file=str(keys_file.path), auth_max_failures=3, auth_lockout_s=30)
    app = create_app(settings)
    with (
        TestClient(app, client=("203.0.113.7", 40000)) as guesser,
        TestClient(app, client=("198.51.100.2", 40000)) as neighbour,
    ):
        guesses = [guesser.post(SEARCH, json={}, headers={"X-API-Key": f"ts_guess{n}"}) for n in range(3)]
        locked = guesser.post(SEARCH, json={}, headers={"X-API-Key": secret})
        other = neighbour.post(SEARCH, json={}, headers={"X-API-Key": secret})

    assert [g.status_code for g in guesses] == [403, 403, 403]
    assert (locked.status_code, locked.json()["error_code"]) == (429, "REQUEST_LIMIT_EXCEEDED")
    assert other.status_code == 200


def test_missing_keys_do_not_count_as_invalid_ones(base_settings: Settings, keys_file: KeysFile) -> None:
    _, secret = keys_file.create("support-dashboard", ["17"], [Right.READ])
    settings = with_api(base_settings, keys_file=str(keys_file.path), auth_max_failures=3)
    with client_for(settings) as client:
        missing = [client.post(SEARCH, json={}).status_code for _ in range(5)]
        answer = client.post(SEARCH, json={}, headers={"X-API-Key": secret})

    assert missing == [401] * 5
    assert answer.status_code == 200


def test_keys_made_with_the_command_count_in_a_running_api_within_seconds(
    base_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_path = str(tmp_path / "keys.json")
    monkeypatch.setenv("TRACESTREAM_API__KEYS_FILE", keys_path)
    env = {**os.environ, "TRACESTREAM_OPENSEARCH__INDEX_PREFIX": base_settings.opensearch.index_prefix}
    with running_api(base_settings) as api:
        refused = httpx.post(f"{api.base_url}{SEARCH}", json={}, headers={"X-API-Key": "ts_nothing-yet"})
        created = run_tracestream("keys", "create", "ci", "-e", "2", "-r", "read", env=env)
        secret = next(word for word in created.stdout.split() if word.startswith("ts_"))
        accepted = _within_seconds(api.base_url, secret, until_status=200)
        run_tracestream("keys", "revoke", "ci", env=env)
        revoked = _within_seconds(api.base_url, secret, until_status=403)

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert revoked.json()["error_code"] == "PERMISSION_DENIED"


def _within_seconds(base_url: str, secret: str, until_status: int) -> httpx.Response:
    deadline = time.monotonic() + 5
    while (
        answer := httpx.post(f"{base_url}{SEARCH}", json={}, headers={"X-API-Key": secret})
    ).status_code != until_status:
        assert time.monotonic() < deadline, f"still {answer.status_code} after 5 s: {answer.text}"
        time.sleep(0.2)
    return answer
