"""JSON encoding of span attribute values, as MLflow stores them, and never failing."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

TRUNCATION_MARKER = "...[truncated by tracestream: {dropped} of {total} characters]"


def _to_jsonable(value: Any) -> Any:
    """``json.dumps``'s fallback for objects it does not know, as MLflow's TraceJSONEncoder:
    pydantic models and dataclasses become objects, anything else its ``str()``."""
    try:
        model_dump = getattr(value, "model_dump", None)
        if callable(model_dump) and not isinstance(value, type):
            return model_dump()
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            # Shallow, like MLflow: nested values come back through this function.
            return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    except Exception:  # a failing model_dump: fall through to the text
        pass
    try:
        return str(value)
    except Exception:
        return f"<unserializable {type(value).__name__}>"


# One encoder for the process: json.dumps with options builds a new one on every call.
_encode = json.JSONEncoder(ensure_ascii=False, default=_to_jsonable).encode
_encode_str = json.encoder.py_encode_basestring
if json.encoder.c_encode_basestring is not None:
    _encode_str = json.encoder.c_encode_basestring


def as_text(value: Any) -> str:
    """``str(value)``, never raising: names, keys and messages the caller passed as anything."""
    if value.__class__ is str:
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def dump_json(value: Any) -> str:
    """``value`` as JSON text; what JSON cannot encode is converted or stringified, never raised."""
    kind = type(value)
    if kind is str:  # the commonest attribute value: skip the encoder machinery
        return _encode_str(value)
    if value is None:
        return "null"
    try:
        return _encode(value)
    except Exception:  # circular references, keys JSON cannot have, ...
        try:
            return _encode_str(repr(value))
        except Exception:
            return json.dumps(f"<unserializable {type(value).__name__}>")


def truncate_json(text: str, limit: int) -> tuple[str, bool]:
    """Cut JSON text longer than ``limit`` characters to a JSON string ending with a marker,
    itself at most ``limit`` characters long.

    The result is still valid JSON (a string), so readers that parse attributes keep working.
    """
    if len(text) <= limit:
        return text, False
    keep = max(0, limit - 80)
    while True:
        cut = _encode_str(text[:keep] + TRUNCATION_MARKER.format(dropped=len(text) - keep, total=len(text)))
        if len(cut) <= limit or keep == 0:
            return cut, True
        # Escaping made it longer than the limit: keep less.
        keep = max(0, keep - (len(cut) - limit))
