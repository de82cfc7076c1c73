"""JSON encoding of span attribute values, as MLflow stores them, and never failing."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from typing import Any

TRUNCATION_MARKER = "...[truncated by tracestream: {dropped} of {total} characters]"


def _to_jsonable(value: Any) -> Any:
    """``json.dumps``'s fallback for objects it does not know; a conversion that fails
    falls back to the object's text, so one odd value does not lose its neighbours."""
    try:
        return _convert(value)
    except Exception:
        try:
            return str(value)
        except Exception:
            return f"<unserializable {type(value).__name__}>"


def _convert(value: Any) -> Any:
    model_dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(model_dump):
        return model_dump()
    legacy_dict = getattr(value, "dict", None)  # pydantic v1
    if callable(legacy_dict) and hasattr(value, "__fields__"):
        return legacy_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    return str(value)


# One encoder for the process: json.dumps with options builds a new one on every call.
_encode = json.JSONEncoder(ensure_ascii=False, default=_to_jsonable).encode
_encode_str = json.encoder.py_encode_basestring
if json.encoder.c_encode_basestring is not None:
    _encode_str = json.encoder.c_encode_basestring


def dump_json(value: Any) -> str:
    """``value`` as JSON text; what JSON cannot encode is converted or stringified, never raised."""
    kind = type(value)
    if kind is str:  # the commonest attribute value: skip the encoder machinery
        return _encode_str(value)
    if value is None:
        return "null"
    try:
        return _encode(value)
    except Exception:  # circular references, a failing model_dump, a broken __str__, ...
        try:
            return json.dumps(str(value), ensure_ascii=False)
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
