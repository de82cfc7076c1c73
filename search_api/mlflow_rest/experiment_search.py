"""SearchExperiments with MLflow's semantics (``SearchExperimentsUtils`` and the SQL store of
mlflow 3.17/3.18): the filter, order_by, view_type, max_results and MLflow's offset page tokens,
evaluated over the experiments in memory (a deployment has a handful, not millions).

Filter: clauses joined by ``AND`` over ``name``, ``experiment_id``, ``creation_time``,
``last_update_time`` (optionally prefixed ``attribute.``) and ``tag.<key>`` / ``tags.<key>``.
Strings take ``= != LIKE ILIKE`` (LIKE case-sensitive, ILIKE not); the times
``= != < <= > >=`` with an integer; ``experiment_id`` ``= != IN NOT IN``; tags also
``IS NULL`` / ``IS NOT NULL``. The default order is ``creation_time DESC, experiment_id ASC``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracestream.search_api.mlflow_rest.protojson import int_parameter, invalid_parameter

SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50000

VALID_ATTRIBUTE_KEYS = ("name", "experiment_id", "creation_time", "last_update_time")
NUMERIC_ATTRIBUTES = ("creation_time", "last_update_time")
DEFAULT_ORDER_BY = ["creation_time DESC", "experiment_id ASC"]

# MLflow's ViewType, by number and by its protobuf enum name.
VIEW_TYPES = {1: {"active"}, 2: {"deleted"}, 3: {"active", "deleted"}}
VIEW_TYPE_NAMES = {"ACTIVE_ONLY": 1, "DELETED_ONLY": 2, "ALL": 3}

_KEY = r"(?:`[^`]*`|\"[^\"]*\"|'[^']*'|[\w.\-]+)"
_CLAUSE = re.compile(
    rf"^\s*(?P<ident>{_KEY}(?:\.{_KEY})?)\s*"
    r"(?P<op>IS\s+NOT\s+NULL|IS\s+NULL|NOT\s+IN|ILIKE|LIKE|IN|!=|>=|<=|=|<|>)"
    r"(?P<value>.*?)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Clause:
    type: str  # "attribute" or "tag"
    key: str
    comparator: str
    value: Any


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        return text[1:-1]
    return text


def _split_clauses(filter_string: str) -> list[str]:
    """The clauses between top-level ``AND`` keywords (not inside quotes or parentheses)."""
    clauses, start, depth, quote, i = [], 0, 0, "", 0
    while i < len(filter_string):
        char = filter_string[i]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0:
            match = _AND.match(filter_string, i)
            if match and (i == 0 or filter_string[i].isspace()):
                clauses.append(filter_string[start:i])
                start = i = match.end()
                continue
        i += 1
    clauses.append(filter_string[start:])
    return [c for c in (c.strip() for c in clauses) if c]


def _identifier(identifier: str, valid: tuple[str, ...]) -> tuple[str, str]:
    if "." in identifier and not (identifier[0] in "`\"'" and identifier.count(identifier[0]) == 2):
        entity, key = identifier.split(".", 1)
        entity = _strip_quotes(entity)
        if entity not in ("attribute", "tag", "tags"):
            raise invalid_parameter(
                f"Invalid entity type '{entity}'. Valid entity types are ('attribute', 'tag', 'tags')"
            )
        kind = "attribute" if entity == "attribute" else "tag"
    else:
        kind, key = "attribute", identifier
    key = _strip_quotes(key).strip("`")
    if kind == "attribute" and key not in valid:
        raise invalid_parameter(f"Invalid attribute key '{key}' specified. Valid keys are '{set(valid)}'")
    return kind, key


def _string_value(kind: str, raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if kind == "tag":
        raise invalid_parameter(f"Expected a quoted string value for tag (e.g. 'my-value'). Got value {raw}")
    raise invalid_parameter(f"Expected a quoted string value for attributes. Got value {raw}")


def _list_value(raw: str) -> tuple[str, ...]:
    if not (raw.startswith("(") and raw.endswith(")")):
        raise invalid_parameter(f"Expected a list of quoted string values for experiment_id. Got value {raw}")
    items = re.findall(r"\s*('[^']*'|\"[^\"]*\")\s*(?:,|$)", raw[1:-1])
    if not items:
        raise invalid_parameter(
            "While parsing a list in the query, expected a non-empty list of string values, "
            "but got empty list"
        )
    return tuple(item[1:-1] for item in items)


def _experiment_id(value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise invalid_parameter(
            f"Invalid experiment ID '{value}'. Experiment ID must be a valid integer."
        ) from exc


def parse_filter(filter_string: str | None) -> list[Clause]:
    if not filter_string or not filter_string.strip():
        return []
    clauses = []
    for text in _split_clauses(filter_string):
        match = _CLAUSE.match(text)
        if match is None:
            raise invalid_parameter(f"Invalid clause(s) in filter string: {text}")
        comparator = " ".join(match["op"].upper().split())
        kind, key = _identifier(match["ident"], VALID_ATTRIBUTE_KEYS)
        raw = match["value"].strip()
        if comparator in ("IS NULL", "IS NOT NULL"):
            if raw:
                raise invalid_parameter(f"Invalid clause(s) in filter string: {text}")
            if kind != "tag":
                raise invalid_parameter(
                    f"IS NULL / IS NOT NULL is only supported for tags, not for attribute '{key}'"
                )
            clauses.append(Clause(kind, key, comparator, None))
            continue
        if not raw:
            raise invalid_parameter(f"Invalid clause(s) in filter string: {text}")
        value: Any
        if kind == "tag":
            if comparator not in ("=", "!=", "LIKE", "ILIKE"):
                raise invalid_parameter(f"Invalid comparator for tag: {comparator}")
            value = _string_value(kind, raw)
        elif key == "experiment_id":
            if comparator not in ("=", "!=", "IN", "NOT IN"):
                raise invalid_parameter(f"Invalid comparator for experiment_id: {comparator}")
            if comparator in ("IN", "NOT IN"):
                value = tuple(_experiment_id(v) for v in _list_value(raw))
            else:
                value = _experiment_id(_string_value(kind, raw))
        elif key in NUMERIC_ATTRIBUTES:
            if not _FLOAT.match(raw):
                raise invalid_parameter(
                    f"Expected numeric value type for numeric attribute: {key}. Found {raw}"
                )
            if comparator not in ("=", "!=", "<", "<=", ">", ">="):
                raise invalid_parameter(f"Invalid comparator for numeric attribute: {comparator}")
            if not _NUMBER.match(raw):
                raise invalid_parameter(f"Invalid value for numeric attribute '{key}': {raw!r}")
            value = int(raw)
        else:
            if raw.startswith("("):
                raise invalid_parameter(
                    f"Invalid comparator '{comparator}' not one of '{{'=', '!=', 'LIKE', 'ILIKE'}}'"
                )
            if comparator not in ("=", "!=", "LIKE", "ILIKE"):
                raise invalid_parameter(f"Invalid comparator for string attribute: {comparator}")
            value = _string_value(kind, raw)
        clauses.append(Clause(kind, key, comparator, value))
    return clauses


def _like(pattern: str, case_sensitive: bool) -> Callable[[str], bool]:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    compiled = re.compile(f"^{regex}$", re.DOTALL | (0 if case_sensitive else re.IGNORECASE))
    return lambda value: compiled.match(value) is not None


def _compare(comparator: str, left: Any, right: Any) -> bool:
    if comparator == "=":
        return left == right
    if comparator == "!=":
        return left != right
    if comparator == "<":
        return left < right
    if comparator == "<=":
        return left <= right
    if comparator == ">":
        return left > right
    if comparator == ">=":
        return left >= right
    if comparator == "IN":
        return left in right
    if comparator == "NOT IN":
        return left not in right
    if comparator == "LIKE":
        return _like(right, True)(left)
    return _like(right, False)(left)  # ILIKE


def matches(experiment: dict[str, Any], clause: Clause) -> bool:
    """``experiment`` is the stored document (tags as a dict)."""
    if clause.type == "tag":
        tags = experiment.get("tags") or {}
        if clause.comparator == "IS NULL":
            return clause.key not in tags
        if clause.comparator == "IS NOT NULL":
            return clause.key in tags
        # A join on the tag: an experiment without it matches no comparison, not even !=.
        return clause.key in tags and _compare(clause.comparator, tags[clause.key], clause.value)
    if clause.key == "experiment_id":
        return _compare(clause.comparator, int(experiment["experiment_id"]), clause.value)
    return _compare(clause.comparator, experiment[clause.key], clause.value)


def parse_order_by(order_by: list[str] | None) -> list[tuple[str, bool]]:
    """``(attribute, ascending)`` pairs, with MLflow's tie-breaker (experiment_id, descending
    when the order does not name it)."""
    orders = []
    for clause in order_by or DEFAULT_ORDER_BY:
        if not isinstance(clause, str):
            raise invalid_parameter(f"Invalid order_by clause '{clause}'. Could not be parsed.")
        parts = clause.strip().split()
        if not parts or len(parts) > 2:
            raise invalid_parameter(f"Invalid order_by clause '{clause}'. Could not be parsed.")
        ascending = True
        if len(parts) == 2:
            if parts[1].upper() not in ("ASC", "DESC"):
                raise invalid_parameter(f"Invalid ordering key in order_by clause '{clause}'.")
            ascending = parts[1].upper() == "ASC"
        kind, key = _identifier(parts[0], VALID_ATTRIBUTE_KEYS)
        if kind != "attribute":
            raise invalid_parameter(f"Invalid order_by entity: {kind}")
        orders.append((key, ascending))
    if not any(key == "experiment_id" for key, _ in orders):
        orders.append(("experiment_id", False))
    return orders


def sort(experiments: list[dict[str, Any]], orders: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    ordered = list(experiments)
    for key, ascending in reversed(orders):  # stable sorts, the last key first

        def value(experiment: dict[str, Any], key: str = key) -> Any:
            return int(experiment["experiment_id"]) if key == "experiment_id" else experiment[key]

        ordered.sort(key=value, reverse=not ascending)
    return ordered


def create_page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def parse_page_token(page_token: str | None) -> int:
    """MLflow's offset token (``SearchUtils.parse_start_offset_from_page_token``), with its
    messages."""
    if not page_token:
        return 0
    try:
        decoded = base64.b64decode(page_token)
    except (TypeError, ValueError, binascii.Error) as exc:
        raise invalid_parameter("Invalid page token, could not base64-decode") from exc
    try:
        parsed = json.loads(decoded)
    except ValueError as exc:
        raise invalid_parameter(f"Invalid page token, decoded value={decoded}") from exc
    offset = parsed.get("offset") if isinstance(parsed, dict) else None
    if not offset:
        raise invalid_parameter(f"Invalid page token, parsed value={parsed}")
    try:
        start = int(offset)
    except (TypeError, ValueError) as exc:
        raise invalid_parameter(f"Invalid page token, not stringable {offset}") from exc
    if start < 0:
        raise invalid_parameter(f"Invalid page token, parsed value={parsed}")
    return start


def view_type_stages(view_type: Any) -> set[str]:
    if view_type is None or view_type == "":
        return VIEW_TYPES[1]
    if isinstance(view_type, str) and view_type.upper() in VIEW_TYPE_NAMES:
        return VIEW_TYPES[VIEW_TYPE_NAMES[view_type.upper()]]
    try:
        number = int(view_type)
    except (TypeError, ValueError):
        number = -1
    if number not in VIEW_TYPES:
        raise invalid_parameter(f"Invalid value {json.dumps(view_type)} for parameter 'view_type' supplied.")
    return VIEW_TYPES[number]


def max_results_value(value: Any) -> int:
    if value is None or value == "":
        return SEARCH_MAX_RESULTS_DEFAULT
    size = int_parameter(value, "max_results")
    if size < 1:
        raise invalid_parameter(
            f"Invalid value {size} for parameter 'max_results' supplied. It must be a positive integer"
        )
    if size > SEARCH_MAX_RESULTS_THRESHOLD:
        raise invalid_parameter(
            f"Invalid value {size} for parameter 'max_results' supplied. "
            f"It must be at most {SEARCH_MAX_RESULTS_THRESHOLD}"
        )
    return size


def search(
    experiments: list[dict[str, Any]],
    view_type: Any = None,
    max_results: Any = None,
    filter_string: str | None = None,
    order_by: list[str] | None = None,
    page_token: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the stored experiment documents and the next page's token (None on the last).
    Checked in MLflow's order: max_results, the filter, order_by, the page token."""
    size = max_results_value(max_results)
    clauses = parse_filter(filter_string)
    orders = parse_order_by(order_by)
    offset = parse_page_token(page_token)
    stages = view_type_stages(view_type)
    selected = [
        e
        for e in experiments
        if e.get("lifecycle_stage", "active") in stages and all(matches(e, c) for c in clauses)
    ]
    ordered = sort(selected, orders)
    page = ordered[offset : offset + size]
    token = create_page_token(offset + size) if len(ordered) > offset + size else None
    return page, token
