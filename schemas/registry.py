"""The shipped Avro schemas, every version of them, indexed by fingerprint.

Layout: ``schemas/avro/v<N>/<namespace>.<Name>.avsc``. Each version directory is a complete
set; named types referenced across files are resolved by fastavro from their file names.
A message type (``TraceEvent``, ``CompletedTrace``, ``RuleAlert``…) is written with its newest version and
read from any shipped version (see README.md for the evolution rules).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

AVRO_DIR = Path(__file__).resolve().parent / "avro"
NAMESPACE = "io.tracestream"
MESSAGE_TYPES = ("TraceEvent", "CompletedTrace", "TraceAlert", "DeadLetter", "RuleAlert")

_VERSION_DIR = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class SchemaVersion:
    name: str
    version: int
    parsed: Any
    canonical: str
    # CRC-64-AVRO of the parsing canonical form, in the byte order of the single-object header.
    fingerprint: bytes

    @property
    def full_name(self) -> str:
        return f"{NAMESPACE}.{self.name}"


def _versions_on_disk(avro_dir: Path) -> list[tuple[int, Path]]:
    if not avro_dir.is_dir():
        raise FileNotFoundError(
            f"the Avro schemas are missing: {avro_dir} is not a directory "
            "(an install that left out the package's data files?)"
        )
    found = []
    for child in avro_dir.iterdir():
        match = _VERSION_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def writer_fingerprint(parsed: Any) -> bytes:
    """A parsed schema's CRC-64-AVRO fingerprint, as :attr:`SchemaVersion.fingerprint` has it."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def load_version(directory: Path, name: str, version: int) -> SchemaVersion:
    parsed = load_schema(str(directory / f"{NAMESPACE}.{name}.avsc"))
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(name, version, parsed, canonical, writer_fingerprint(parsed))


class SchemaSet:
    """Every shipped version of every message type."""

    def __init__(self, avro_dir: Path = AVRO_DIR) -> None:
        self.versions: dict[str, list[SchemaVersion]] = {name: [] for name in MESSAGE_TYPES}
        for version, directory in _versions_on_disk(avro_dir):
            for name in MESSAGE_TYPES:
                if (directory / f"{NAMESPACE}.{name}.avsc").exists():
                    self.versions[name].append(load_version(directory, name, version))
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        for history in self.versions.values():
            for schema in history:
                self.by_fingerprint.setdefault(schema.fingerprint, schema)
        missing = [name for name, history in self.versions.items() if not history]
        if missing:
            raise FileNotFoundError(f"no schema for {missing} under {avro_dir}")

    def latest(self, name: str) -> SchemaVersion:
        return self.versions[name][-1]


@cache
def shipped() -> SchemaSet:
    """The schema set shipped in this package, loaded once."""
    return SchemaSet()
