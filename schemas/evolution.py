"""Checks that a schema change keeps old and new programs talking to each other.

A change is accepted only if it is both backward compatible (a reader with the new schema
reads data written with the old one) and forward compatible (a reader with the old schema
reads data written with the new one). The check writes random records of the writer schema
with fastavro and reads them back through schema resolution.

A union branch added by the new schema is the one exception Avro imposes: no default can
stand in for it, so an old reader cannot read a record that takes it. The forward check
therefore writes the new records that keep to the branches the old schema knows; a producer
writes a new branch only once its consumers read it (schemas/README.md, rule 5).
"""

from __future__ import annotations

import random
from io import BytesIO
from itertools import pairwise
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from tracestream.schemas.registry import SchemaSet


def _named_types(schema: Any, found: set[str] | None = None) -> set[str]:
    found = set() if found is None else found
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            found.add(schema["name"])
        for item in schema.get("fields", ()):
            _named_types(item["type"], found)
        for key in ("items", "values"):
            if key in schema:
                _named_types(schema[key], found)
    return found


def _without_new_branches(schema: Any, known: set[str]) -> Any:
    """``schema`` with every union branch naming a type outside ``known`` removed."""
    if isinstance(schema, list):
        kept = []
        for branch in schema:
            name = branch.get("name") if isinstance(branch, dict) else branch
            named = isinstance(branch, dict) and branch.get("type") in ("record", "enum", "fixed")
            if (named or "." in str(name)) and name not in known:
                continue
            kept.append(_without_new_branches(branch, known))
        return kept
    if isinstance(schema, dict):
        copy = {k: v for k, v in schema.items() if not k.startswith("__")}
        if "fields" in copy:
            copy["fields"] = [{**f, "type": _without_new_branches(f["type"], known)} for f in copy["fields"]]
        for key in ("items", "values"):
            if key in copy:
                copy[key] = _without_new_branches(copy[key], known)
        return copy
    return schema


def incompatibilities(old: Any, new: Any, samples: int = 300, seed: int = 20261122) -> list[str]:
    """What breaks between two parsed schemas; empty when the change is compatible both ways."""
    problems: list[str] = []
    state = random.getstate()
    random.seed(seed)
    try:
        keeping_old_branches = parse_schema(_without_new_branches(new, _named_types(old)))
        for direction, writer, reader, generator in (
            ("backward (new reader, old data)", old, new, old),
            ("forward (old reader, new data)", new, old, keeping_old_branches),
        ):
            for record in generate_many(generator, samples):
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
            if previous.fingerprint == current.fingerprint:
                continue  # the same canonical form: nothing to check
            problems = incompatibilities(previous.parsed, current.parsed)
            if problems:
                found[f"{name} v{previous.version} -> v{current.version}"] = problems
    return found
