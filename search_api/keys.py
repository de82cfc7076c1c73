"""The scoped API keys: the keys file an operator manages with `tracestream keys` (:class:`KeysFile`)
and the set of keys the API checks callers against (:class:`KeyRing`).

The file (``TRACESTREAM_API__KEYS_FILE``) is JSON: ``{"keys": [{name, secret_sha256, experiments,
rights, created_at, revoked_at}]}``. It holds the SHA-256 of each secret, never the secret: a secret
is 32 random bytes, so a fast hash is as good as a slow one against guessing. Writes take a lock
file (two `tracestream keys` at once) and replace the file in one step (the API never reads half a
file). The API re-reads the file when it changes, so a new or revoked key counts within
``keys_check_interval_s``, without a restart.

The flat ``TRACESTREAM_API__API_KEYS`` of earlier releases stay keys with every right on every
experiment, named ``api_keys[0]``, ``api_keys[1]``… after their position.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracestream.search_api.access import ALL_EXPERIMENTS, Principal, Right

logger = logging.getLogger(__name__)

SECRET_PREFIX = "ts_"  # tells a tracestream key apart in a config file or a leaked log
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FILE_VERSION = 1


class KeyStoreError(Exception):
    """A key change that cannot be made (a bad name, a duplicate, an unknown key) or a keys file
    that cannot be read."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as the file keeps it: ``experiments`` is ``["*"]`` for every experiment."""

    name: str
    secret_sha256: str
    experiments: list[str]
    rights: list[str]
    created_at: str
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def principal(self) -> Principal:
        experiments = None if ALL_EXPERIMENTS in self.experiments else frozenset(self.experiments)
        return Principal(self.name, frozenset(Right(right) for right in self.rights), experiments)

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> ApiKey:
        key = cls(
            name=str(entry["name"]),
            secret_sha256=str(entry["secret_sha256"]),
            experiments=[str(e) for e in entry["experiments"]],
            rights=[Right(r).value for r in entry["rights"]],
            created_at=str(entry["created_at"]),
            revoked_at=entry.get("revoked_at"),
        )
        if len(key.secret_sha256) != 64:
            raise ValueError(f"key {key.name!r}: secret_sha256 is not a SHA-256 in hex")
        return key


def read_keys(path: Path) -> list[ApiKey]:
    """The keys of a keys file; none when it does not exist yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyStoreError(f"cannot read the keys file {path}: {exc.strerror or exc}") from exc
    try:
        return [ApiKey.from_json(entry) for entry in json.loads(text)["keys"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyStoreError(f"the keys file {path} is not a keys file: {exc}") from exc


class KeysFile:
    """The operator's side: create, list and revoke keys in the keys file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> list[ApiKey]:
        return read_keys(self.path)

    def create(self, name: str, experiments: Iterable[str], rights: Iterable[Right]) -> tuple[ApiKey, str]:
        """A new key and its secret, which exists nowhere else afterwards: the file keeps its hash."""
        if not KEY_NAME.fullmatch(name):
            raise KeyStoreError(
                f"invalid key name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        experiments, rights = sorted(set(experiments)), sorted({Right(r).value for r in rights})
        if not experiments:
            raise KeyStoreError("a key needs at least one experiment (or all experiments)")
        if ALL_EXPERIMENTS in experiments:
            experiments = [ALL_EXPERIMENTS]
        if not rights:
            raise KeyStoreError("a key needs at least one right")
        secret = new_secret()
        key = ApiKey(name, hash_secret(secret), experiments, rights, _now())
        with self._locked():
            keys = self.read()
            if any(existing.name == name for existing in keys):
                raise KeyStoreError(f"a key named {name!r} exists already (names stay taken once revoked)")
            self._write([*keys, key])
        return key, secret

    def revoke(self, name: str) -> ApiKey:
        """Marks the key revoked (kept, so its name is not reused and the audit trail stays readable)."""
        with self._locked():
            keys = self.read()
            found = next((key for key in keys if key.name == name), None)
            if found is None:
                raise KeyStoreError(f"no key named {name!r} in {self.path}")
            if found.revoked:
                return found
            revoked = replace(found, revoked_at=_now())
            self._write([revoked if key.name == name else key for key in keys])
        return revoked

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # A read-modify-write under one lock: two `tracestream keys create` never lose a key.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, keys: list[ApiKey]) -> None:
        body = json.dumps({"version": FILE_VERSION, "keys": [asdict(key) for key in keys]}, indent=2)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # Only its owner reads the hashes: they let nobody in, but neither should the names.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(body + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)


LEGACY_NAME = "api_keys[{}]"


class KeyRing:
    """The API's side: who a secret belongs to. Reads the keys file again when its identity, size
    or modification time changed, checked at most once per ``check_interval_s``; a file that
    stops parsing (a hand edit) keeps the last keys read and is logged."""

    def __init__(
        self, keys_file: str | None, legacy_secrets: Iterable[str] = (), check_interval_s: float = 1.0
    ) -> None:
        self._path = Path(keys_file) if keys_file else None
        self._legacy = [
            (hash_secret(secret), Principal(LEGACY_NAME.format(n), frozenset(Right), None))
            for n, secret in enumerate(legacy_secrets)
        ]
        self._check_interval_s = check_interval_s
        self._keys: list[ApiKey] = []
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """Whether callers need a key: a keys file is named (even one still empty), or legacy keys."""
        return self._path is not None or bool(self._legacy)

    def principal_for(self, secret: str) -> Principal | None:
        """The caller a secret names, or None (unknown or revoked). Every key is compared, in
        constant time, whichever matches: the time taken says nothing about which keys exist."""
        given = hash_secret(secret).encode()
        found: Principal | None = None
        for digest, principal in self._candidates():
            if hmac.compare_digest(given, digest.encode()) and principal is not None:
                found = principal
        return found

    def _candidates(self) -> list[tuple[str, Principal | None]]:
        keys = self._current_keys()
        return [
            *self._legacy,
            *((key.secret_sha256, None if key.revoked else key.principal()) for key in keys),
        ]

    def _current_keys(self) -> list[ApiKey]:
        if self._path is None:
            return []
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at >= self._check_interval_s:
                self._checked_at = now
                self._reload_if_changed(self._path)
            return self._keys

    def _reload_if_changed(self, path: Path) -> None:
        try:
            status = path.stat()
            stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        try:
            self._keys = read_keys(path)
        except KeyStoreError as exc:
            logger.error("%s; the API keeps the %d keys it read before", exc, len(self._keys))
        self._stamp = stamp
