"""The filter AST: engine-agnostic, immutable, hashable.

Fields are canonical: every MLflow spelling of the same thing parses to the same field
(``timestamp``/``trace.timestamp_ms`` -> ``Attribute("timestamp_ms")``, ``tag.name``/``name`` ->
``Attribute("name")``, ``metadata.mlflow.sourceRun`` -> ``Attribute("run_id")``, ``trace.text`` ->
``SpanField("content")``), so a query generator only ever sees one form.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, TypeAlias

from tracestream.search_api.dsl.tokens import BARE_PART, tokenize

AttributeName: TypeAlias = Literal[
    "request_id",
    "client_request_id",
    "status",
    "timestamp_ms",
    "execution_time_ms",
    "end_time_ms",
    "name",
    "run_id",
    "prompt",
    "experiment_id",  # order_by only, as in MLflow
]
SpanFieldName: TypeAlias = Literal["name", "type", "status", "content", "duration_ms"]
TokenUsageKey: TypeAlias = Literal["input_tokens", "output_tokens", "total_tokens"]
AssessmentKind: TypeAlias = Literal["feedback", "expectation"]


@dataclass(frozen=True, slots=True)
class Attribute:
    """A trace attribute. ``name`` is the trace name (tag ``mlflow.traceName``), ``run_id`` the
    source run (metadata ``mlflow.sourceRun``; ``=`` also matches runs linked to the trace),
    ``prompt`` a linked prompt version (``=`` only, value ``'name/version'``)."""

    name: AttributeName


@dataclass(frozen=True, slots=True)
class Tag:
    key: str


@dataclass(frozen=True, slots=True)
class Metadata:
    key: str


@dataclass(frozen=True, slots=True)
class SpanField:
    """A column of some span of the trace; ``content`` is the full-text field (``trace.text``)."""

    name: SpanFieldName


@dataclass(frozen=True, slots=True)
class SpanAttribute:
    key: str


@dataclass(frozen=True, slots=True)
class Assessment:
    kind: AssessmentKind
    name: str


@dataclass(frozen=True, slots=True)
class Issue:
    """``issue.id``: the comparison value is the id of an issue referenced by the trace."""

    name: Literal["id"] = "id"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of the whole trace (beyond MLflow, which has no numeric token filter)."""

    key: TokenUsageKey


Field: TypeAlias = Attribute | Tag | Metadata | SpanField | SpanAttribute | Assessment | Issue | TokenUsage
Value: TypeAlias = str | int | float | tuple[str, ...] | None


class Op(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    LIKE = "LIKE"
    ILIKE = "ILIKE"
    RLIKE = "RLIKE"
    IN = "IN"
    NOT_IN = "NOT IN"
    IS_NULL = "IS NULL"
    IS_NOT_NULL = "IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Comparison:
    field: Field
    op: Op
    value: Value = None
    # Where the clause starts in the filter string; not part of equality, so ASTs compare by meaning.
    position: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node: TypeAlias = Comparison | And | Or | Not


@dataclass(frozen=True, slots=True)
class OrderBy:
    field: Field
    ascending: bool = True


def comparisons(node: Node | None) -> Iterator[Comparison]:
    """Every comparison in ``node``, left to right."""
    if node is None:
        return
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Comparison):
            yield current
        elif isinstance(current, Not):
            stack.append(current.item)
        else:
            stack.extend(reversed(current.items))


# --- rendering: AST -> filter string that parses back to an equal AST ---------------------------

_PLAIN_KEY = re.compile(rf"{BARE_PART}(?:\.{BARE_PART})*")


def _is_enclosed(text: str, quote: str) -> bool:
    return len(text) >= 2 and text[0] == quote and text[-1] == quote


def _render_key(key: str) -> str:
    # MLflow reads a key as trim_backticks(strip_quotes(text)); pick a spelling that survives both.
    if _PLAIN_KEY.fullmatch(key):
        return key
    if "`" not in key:
        return f"`{key}`"
    if _is_enclosed(key, "`") or key.endswith("\\"):
        raise ValueError(f"key {key!r} cannot be written in the filter language")
    if '"' not in key:
        return f'"{key}"'
    if "'" not in key:
        return f"'{key}'"
    raise ValueError(f"key {key!r} cannot be written in the filter language")


def _render_span_key(key: str) -> str:
    # Only backticks are stripped from span attribute names (MLflow's store does the same).
    if _PLAIN_KEY.fullmatch(key):
        return key
    if "`" not in key:
        return f"`{key}`"
    raise ValueError(f"span attribute {key!r} cannot be written in the filter language")


def render_field(f: Field) -> str:
    if isinstance(f, Attribute):
        return f.name
    if isinstance(f, TokenUsage):
        return f.key
    if isinstance(f, Tag):
        return f"tags.{_render_key(f.key)}"
    if isinstance(f, Metadata):
        return f"metadata.{_render_key(f.key)}"
    if isinstance(f, SpanField):
        return f"span.{f.name}"
    if isinstance(f, SpanAttribute):
        return f"span.attributes.{_render_span_key(f.key)}"
    if isinstance(f, Assessment):
        return f"{f.kind}.{_render_key(f.name)}"
    return "issue.id"


def _render_string(value: str) -> str:
    # No escape processing: a literal can hold one kind of quote, and must not end in a backslash.
    if not value.endswith("\\"):
        if "'" not in value:
            return f"'{value}'"
        if '"' not in value:
            return f'"{value}"'
    raise ValueError(f"string {value!r} cannot be written in the filter language")


def _render_list_item(value: str) -> str:
    # List items are read as Python literals (MLflow uses ast.literal_eval), so repr() is exact,
    # unless a backslash before the closing quote makes the lexer run past it.
    if "\\" not in value and value.isprintable():
        if "'" not in value:
            return f"'{value}'"
        if '"' not in value:
            return f'"{value}"'
    text = repr(value)
    if tokenize(f"{text}, 'z'")[0].text == text:
        return text
    raise ValueError(f"list item {value!r} cannot be written in the filter language")


def _render_number(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"number {value!r} cannot be written in the filter language")
    return repr(value).replace("e+", "e")


def render_value(value: Value) -> str:
    if isinstance(value, str):
        return _render_string(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_render_list_item(v) for v in value) + ")"
    if value is None:
        raise ValueError("only IS NULL and IS NOT NULL compare without a value")
    return _render_number(value)


def _render_comparison(c: Comparison) -> str:
    target = render_field(c.field)
    if c.op is Op.IS_NULL or c.op is Op.IS_NOT_NULL:
        return f"{target} {c.op.value}"
    return f"{target} {c.op.value} {render_value(c.value)}"


def render(node: Node) -> str:
    """A filter string for ``node`` that ``parse_filter`` turns back into an equal AST.

    Raises ``ValueError`` for values the language cannot express (a string holding both quote
    kinds or ending in a backslash, NaN, a key both starting and ending with a backtick).
    """
    if isinstance(node, Comparison):
        return _render_comparison(node)
    if isinstance(node, Not):
        inner = render(node.item)
        return f"NOT ({inner})" if isinstance(node.item, And | Or) else f"NOT {inner}"
    joiner = " AND " if isinstance(node, And) else " OR "
    parts = []
    for item in node.items:
        text = render(item)
        parts.append(f"({text})" if isinstance(item, And | Or) else text)
    return joiner.join(parts)


def render_order_by(order: OrderBy) -> str:
    return f"{render_field(order.field)} {'ASC' if order.ascending else 'DESC'}"
