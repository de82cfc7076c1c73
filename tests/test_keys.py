"""`tracestream keys create/list/revoke` on a keys file: a secret shown once and stored only as its
hash, names unique, revocation kept; and the KeyRing the API reads it with."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from opensearchpy import OpenSearch
from searching.support import private_settings
from typer.testing import CliRunner

from tracestream.cli import app
from tracestream.search_api.access import Principal, Right
from tracestream.search_api.audit import audit_index
from tracestream.search_api.keys import KeyRing, KeysFile
from tracestream.settings import OpenSearchSettings, Settings, get_settings

NOBODY = "http://127.0.0.1:1"  # nothing listens on port 1 of the loopback address


@pytest.fixture(autouse=True)
def _no_audit_index_and_no_keys_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' audit records go nowhere unless a test says where."""
    monkeypatch.delenv("TRACESTREAM_API__KEYS_FILE", raising=False)
    get_settings.cache_clear()
    unreachable = Settings(opensearch=OpenSearchSettings(url=NOBODY))
    monkeypatch.setattr("tracestream.cli.get_settings", lambda: unreachable)


def keys(*args: str) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["keys", *args])
    return result.exit_code, result.stdout, result.stderr


def secret_of(output: str) -> str:
    return next(word for word in output.split() if word.startswith("ts_"))


def test_create_prints_the_secret_once_and_the_file_keeps_only_its_hash(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"

    code, output, _ = keys(
        "create", "support-dashboard", "--experiment", "17", "--experiment", "18",
        "--right", "read", "--keys-file", str(keys_file),
    )  # fmt: skip

    assert code == 0, output
    secret = secret_of(output)
    assert "cannot be shown again" in output
    stored = keys_file.read_text()
    assert secret not in stored
    [entry] = json.loads(stored)["keys"]
    assert entry["name"] == "support-dashboard"
    assert entry["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert (entry["experiments"], entry["rights"], entry["revoked_at"]) == (["17", "18"], ["read"], None)
    assert keys_file.stat().st_mode & 0o077 == 0


def test_list_shows_names_rights_and_experiments_but_no_secret_or_hash(tmp_path: Path) -> None:
    keys_file = str(tmp_path / "keys.json")
    _, created, _ = keys("create", "billing-agent", "-e", "4", "-r", "ingest", "--keys-file", keys_file)
    keys("create", "ops", "--all-experiments", "-r", "admin", "--keys-file", keys_file)

    code, listing, _ = keys("list", "--keys-file", keys_file)

    assert code == 0
    billing = next(line for line in listing.splitlines() if "billing-agent" in line)
    assert "ingest" in billing and "4" in billing
    assert "all experiments" in next(line for line in listing.splitlines() if "ops" in line)
    assert secret_of(created) not in listing
    assert json.loads(Path(keys_file).read_text())["keys"][0]["secret_sha256"] not in listing


def test_revoke_marks_the_key_revoked_and_keeps_its_name_taken(tmp_path: Path) -> None:
    keys_file = str(tmp_path / "keys.json")
    keys("create", "ci", "-e", "2", "-r", "ingest", "--keys-file", keys_file)

    code, output, _ = keys("revoke", "ci", "--keys-file", keys_file)
    again, _, error = keys("create", "ci", "-e", "2", "-r", "ingest", "--keys-file", keys_file)

    assert code == 0 and "revoked key 'ci'" in output
    [entry] = json.loads(Path(keys_file).read_text())["keys"]
    assert entry["revoked_at"] is not None
    assert again == 2 and "exists already" in error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "ops", "-e", "1", "-r", "read"], "exists already"),
        (["create", "has space", "-e", "1", "-r", "read"], "invalid key name"),
        (["create", "nobody", "-r", "read"], "--experiment"),
        (["create", "nobody", "-e", "1", "--all-experiments", "-r", "read"], "--experiment"),
        (["create", "nobody", "-e", "1"], "--right"),
        (["revoke", "nobody"], "no key named 'nobody'"),
    ],
)
def test_a_bad_name_a_duplicate_or_an_unknown_key_exits_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    keys_file = str(tmp_path / "keys.json")
    keys("create", "ops", "-e", "1", "-r", "read", "--keys-file", keys_file)

    code, _, error = keys(*args, "--keys-file", keys_file)

    assert code == 2
    assert message in error


def test_a_key_change_is_made_with_a_warning_when_the_audit_index_is_unreachable(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"

    code, _, error = keys("create", "ci", "-e", "2", "-r", "ingest", "--keys-file", str(keys_file))

    assert code == 0
    assert "warning: the key change is not in the audit trail" in error
    assert [key.name for key in KeysFile(keys_file).read()] == ["ci"]


def test_without_a_keys_file_the_commands_say_how_to_name_one() -> None:
    code, _, error = keys("list")

    assert code == 2
    assert "TRACESTREAM_API__KEYS_FILE" in error


def test_creates_at_the_same_time_lose_no_key(tmp_path: Path) -> None:
    store = KeysFile(tmp_path / "keys.json")
    names = [f"agent-{n}" for n in range(12)]

    threads = [threading.Thread(target=store.create, args=(name, ["1"], [Right.INGEST])) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(key.name for key in store.read()) == sorted(names)


def test_the_key_ring_resolves_a_secret_to_its_key_scope(tmp_path: Path) -> None:
    store = KeysFile(tmp_path / "keys.json")
    _, secret = store.create("support-dashboard", ["17", "18"], [Right.READ])
    ring = KeyRing(str(store.path))

    assert ring.principal_for(secret) == Principal(
        "support-dashboard", frozenset({Right.READ}), frozenset({"17", "18"})
    )
    assert ring.principal_for(secret + "x") is None


def test_legacy_api_keys_have_every_right_on_every_experiment(tmp_path: Path) -> None:
    ring = KeyRing(str(tmp_path / "keys.json"), ["k-ops-1", "k-ci-2"])

    assert ring.principal_for("k-ci-2") == Principal("api_keys[1]", frozenset(Right), None)


def test_key_changes_are_recorded_in_the_audit_trail(
    tmp_path: Path, opensearch: OpenSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = private_settings(Settings())
    monkeypatch.setattr("tracestream.cli.get_settings", lambda: settings)
    keys_file = str(tmp_path / "keys.json")
    index = audit_index(settings)
    try:
        keys("create", "support-dashboard", "-e", "17", "-r", "read", "--keys-file", keys_file)
        keys("revoke", "support-dashboard", "--keys-file", keys_file)

        hits = opensearch.search(index=index, body={"sort": [{"@timestamp": "asc"}]})["hits"]["hits"]
    finally:
        opensearch.indices.delete(index=index, ignore_unavailable=True)

    records = [hit["_source"] for hit in hits]
    assert [(r["action"], r["target_key"]) for r in records] == [
        ("key.create", "support-dashboard"),
        ("key.revoke", "support-dashboard"),
    ]
    assert records[0]["key"].startswith("cli:")
    assert (records[0]["experiments"], records[0]["rights"]) == (["17"], ["read"])
