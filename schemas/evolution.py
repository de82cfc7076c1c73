"""Checks that a schema change keeps old and new programs talking to each other.

A change is accepted only if it is both backward compatible (a reader with the new schema
reads data written with the old one) and forward compatible (a reader with the old schema
reads data written with the new one). The check writes random records of the writer schema
with fastavro and reads them back through schema resolution.
"""

from __future__ import annotations

import random
from io import BytesIO
from itertools import pairwise
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from schemas.registry import SchemaSet


def incompatibilities(old: Any, new: Any, samples: int = 300, seed: int = 20261122) -> list[str]:
    """What breaks between two parsed schemas; empty when the change is compatible both ways."""
    problems: list[str] = []
    state = random.getstate()
    random.seed(seed)
    try:
        for direction, writer, reader in (
            ("backward (new reader, old data)", old, new),
            ("forward (old reader, new data)", new, old),
        ):
            for record in generate_many(writer, samples):
                buffer = BytesIO()
                schemaless_writer(buffer, writer, record)
                buffer.seek(0)
                try:
                    schemaless_reader(buffer, writer, reader)
                except Exception as exc:  # any resolution failure is the finding
                    problems.append(f"{direction}: {type(exc).__name__}: {exc}")
                    break
    finally:
        random.setstate(state)
    return problems


def history_incompatibilities(schema_set: SchemaSet) -> dict[str, list[str]]:
    """Each shipped version of each message type checked against the version before it."""
    found: dict[str, list[str]] = {}
    for name, history in schema_set.versions.items():
        for previous, current in pairwise(history):
            problems = incompatibilities(previous.parsed, current.parsed)
            if problems:
                found[f"{name} v{previous.version} -> v{current.version}"] = problems
    return found
