"""The filter AST (``search_api.dsl``) as OpenSearch query DSL over the traces index.

Lives next to ``indexer.mapping``: every field path comes from there, so the generator and the
mapping change together. Semantics follow MLflow's SQL store (``../shared`` notes, §1), with the
deviations listed in the README's COMPATIBILITY section.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

from indexer.mapping import ENTRY_SEPARATOR, F, lower
from search_api.dsl import (
    And,
    Assessment,
    Attribute,
    Comparison,
    Issue,
    Metadata,
    Node,
    Not,
    Op,
    Or,
    OrderBy,
    SpanAttribute,
    SpanField,
    Tag,
    TokenUsage,
    UnsupportedError,
)

Query = dict[str, Any]

# OpenSearch's index.max_regex_length default; a longer pattern is refused before it is sent.
MAX_REGEX_LENGTH = 1000
# Lucene's bound on the automaton a regexp or wildcard may build: a pathological pattern fails
# fast with too_complex_to_determinize instead of eating the node's CPU.
MAX_DETERMINIZED_STATES = 10_000

_MATCH_NONE: Query = {"match_none": {}}


# ---------------------------------------------------------------- patterns


def like_to_wildcard(pattern: str) -> str:
    """SQL LIKE (``%`` any run, ``_`` one character, no escape character, as in MLflow) as a
    Lucene wildcard pattern, with Lucene's own metacharacters taken literally."""
    out = []
    for char in pattern:
        if char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        elif char in "*?\\":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def escape_wildcard(text: str) -> str:
    return re.sub(r"([*?\\])", r"\\\1", text)


# Python's escapes of control characters; Lucene reads \t, \n, ... as unknown classes.
_CHARACTER_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
# Shorthand classes both dialects have (Lucene's are ASCII-only, Python's Unicode-aware).
_SHARED_CLASSES = frozenset("dDwW")
# Lucene's \s is [ \t\n\r]; Python's also has \v, \f, \x1c-\x1f (and Unicode spaces).
_WHITESPACE = " \t\n\r\f\v\x1c\x1d\x1e\x1f"
# Characters that mean something in Lucene's syntax (under any flags): escaped wherever Python
# means them literally.
_LUCENE_SPECIAL = frozenset('.?+*|{}[]()"\\#@&<>~^$-')
_BRACES = re.compile(r"\{(\d*)(,?)(\d*)\}")
# Python's "." (no DOTALL) does not match a newline; Lucene's matches anything.
_ANY_BUT_NEWLINE = "[^\n]"
_ANCHORS = "^ and $ are supported at the start and end of the pattern or of its top-level alternatives only"


def _lucene_literal(char: str) -> str:
    return "\\" + char if char in _LUCENE_SPECIAL else char


class _RegexTranslation:
    """A Python regex (as MLflow's SQLite store runs it) rewritten in Lucene's RegExp syntax,
    character by character, so that each construct keeps Python's meaning or is refused."""

    def __init__(self, pattern: str, position: int) -> None:
        self.pattern = pattern
        self.position = position

    def fail(self, what: str) -> UnsupportedError:
        reason = what if what is _ANCHORS else f"{what} are not supported"
        return UnsupportedError(f"RLIKE pattern {self.pattern!r}: {reason}", self.position, self.pattern)

    def escape(self, i: int, in_class: bool) -> tuple[str, int]:
        """The escape sequence at ``i`` (a backslash) in Lucene's syntax, and where it ends."""
        char = self.pattern[i + 1]
        if char in _CHARACTER_ESCAPES:
            return _CHARACTER_ESCAPES[char], i + 2
        if char in _HEX_ESCAPES:
            end = i + 2 + _HEX_ESCAPES[char]
            return _lucene_literal(chr(int(self.pattern[i + 2 : end], 16))), end
        if char in _SHARED_CLASSES:
            return "\\" + char, i + 2
        if char == "s":
            return (_WHITESPACE if in_class else f"[{_WHITESPACE}]"), i + 2
        if char == "S":
            if in_class:
                raise self.fail("\\S inside a character class")
            return f"[^{_WHITESPACE}]", i + 2
        if char.isdigit():
            raise self.fail("backreferences and octal escapes")
        if char in "bBAZ":
            raise self.fail("word boundaries and \\A / \\Z anchors")
        if char.isalpha():  # \N{...}; any other letter is already an error in Python
            raise self.fail(f"\\{char} escapes")
        return _lucene_literal(char), i + 2  # an escaped punctuation character means itself

    def character_class(self, i: int) -> tuple[str, int]:
        """The class ``[...]`` starting at ``i``, and where it ends."""
        pattern = self.pattern
        out = ["["]
        j = i + 1
        if pattern[j] == "^":
            out.append("^")
            j += 1
        first = True
        while pattern[j] != "]" or first:
            char = pattern[j]
            if char == "\\":
                piece, j = self.escape(j, in_class=True)
                out.append(piece)
            elif char == "-" and not first and pattern[j + 1] != "]":
                out.append("-")
                j += 1
            else:
                out.append(_lucene_literal(char))
                j += 1
            first = False
        out.append("]")
        return "".join(out), j + 1

    def quantifier_end(self, i: int) -> int:
        # Python 3.11 has lazy (*?) and possessive (*+) quantifiers; Lucene has neither.
        if i < len(self.pattern) and self.pattern[i] in "?+":
            raise self.fail("lazy and possessive quantifiers")
        return i

    def branches(self) -> list[tuple[bool, str, bool]]:
        """The top-level alternatives: (anchored at the start, Lucene body, anchored at the end)."""
        pattern = self.pattern
        branches: list[tuple[bool, str, bool]] = []
        out: list[str] = []
        head = tail = False
        depth = i = 0
        while i < len(pattern):
            char = pattern[i]
            if tail and not (char == "|" and depth == 0):
                raise self.fail(_ANCHORS)
            if char == "\\":
                piece, i = self.escape(i, in_class=False)
                out.append(piece)
            elif char == "[":
                piece, i = self.character_class(i)
                out.append(piece)
            elif char == "(":
                if pattern.startswith("(?", i):
                    raise self.fail("groups with (?...) (lookarounds, flags, named or non-capturing groups)")
                depth += 1
                out.append("(")
                i += 1
            elif char == ")":
                depth -= 1
                out.append(")")
                i += 1
            elif char == "|":
                if depth:
                    out.append("|")
                else:
                    branches.append((head, "".join(out), tail))
                    out, head, tail = [], False, False
                i += 1
            elif char == "^":
                if depth or out or head:
                    raise self.fail(_ANCHORS)
                head = True
                i += 1
            elif char == "$":
                if depth:
                    raise self.fail(_ANCHORS)
                tail = True
                i += 1
            elif char == ".":
                out.append(_ANY_BUT_NEWLINE)
                i += 1
            elif char in "*+?":
                out.append(char)
                i = self.quantifier_end(i + 1)
            elif char == "{" and (braces := _BRACES.match(pattern, i)) and (braces[1] or braces[2]):
                low, comma, high = braces.groups()
                out.append("{" + (low or "0") + comma + high + "}")
                i = self.quantifier_end(braces.end())
            else:
                out.append(_lucene_literal(char))
                i += 1
        branches.append((head, "".join(out), tail))
        return branches


def rlike_to_regexp(pattern: str, position: int = 0) -> str:
    """MLflow's RLIKE (Python ``re.search``: unanchored unless ``^``/``$``) as a Lucene regexp,
    which always matches the whole term."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise UnsupportedError(
            f"RLIKE pattern {pattern!r} is not a valid regular expression: {exc}", position
        ) from exc
    parts = []
    for head, body, tail in _RegexTranslation(pattern, position).branches():
        # Python's $ also matches before a newline that ends the text.
        parts.append(("" if head else ".*") + "(" + body + ")" + ("\n?" if tail else ".*"))
    regexp = parts[0] if len(parts) == 1 else "|".join(f"({p})" for p in parts)
    if len(regexp) > MAX_REGEX_LENGTH:
        raise UnsupportedError(
            f"RLIKE pattern is too long ({len(pattern)} characters; at most about {MAX_REGEX_LENGTH - 10})",
            position,
        )
    return regexp


# ---------------------------------------------------------------- leaf builders


def _term(field: str, value: Any) -> Query:
    return {"term": {field: value}}


def _wildcard(field: str, pattern: str, case_insensitive: bool = False) -> Query:
    body: dict[str, Any] = {"value": pattern}
    if case_insensitive:
        body["case_insensitive"] = True
    return {"wildcard": {field: body}}


def _regexp(field: str, regexp: str) -> Query:
    return {
        "regexp": {
            field: {"value": regexp, "flags": "NONE", "max_determinized_states": MAX_DETERMINIZED_STATES}
        }
    }


def _must_not(query: Query) -> Query:
    return {"bool": {"must_not": [query]}}


def _all(*queries: Query) -> Query:
    return queries[0] if len(queries) == 1 else {"bool": {"filter": list(queries)}}


def _exists(field: str) -> Query:
    return {"exists": {"field": field}}


def _nested(path: str, query: Query) -> Query:
    return {"nested": {"path": path, "query": query, "score_mode": "none"}}


def _string_op(
    field: str, op: Op, value: Any, position: int, *, nullable: bool, ci_field: str | None
) -> Query:
    """=, !=, LIKE, ILIKE, RLIKE, IN, NOT IN, IS [NOT] NULL on a keyword field. ``nullable``: a
    missing value never matches (SQL three-valued logic), so negations require existence."""
    if op is Op.EQ:
        return _term(field, value)
    if op is Op.IN:
        return {"terms": {field: list(value)}}
    if op is Op.LIKE:
        return _wildcard(field, like_to_wildcard(value))
    if op is Op.ILIKE:
        if ci_field is not None:
            return _wildcard(ci_field, like_to_wildcard(value.lower()))
        return _wildcard(field, like_to_wildcard(value), case_insensitive=True)
    if op is Op.RLIKE:
        return _regexp(field, rlike_to_regexp(value, position))
    if op is Op.IS_NULL:
        return _must_not(_exists(field))
    if op is Op.IS_NOT_NULL:
        return _exists(field)
    negated = _term(field, value) if op is Op.NE else {"terms": {field: list(value)}}
    if op in (Op.NE, Op.NOT_IN):
        return (
            {"bool": {"filter": [_exists(field)], "must_not": [negated]}} if nullable else _must_not(negated)
        )
    raise _unsupported(op, field, position)


def _numeric(value: Any, position: int) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UnsupportedError(f"Expected a numeric value, got {value!r}", position)
    if isinstance(value, str):
        # MLflow's SQL store compares a quoted number numerically.
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError as exc:
                raise UnsupportedError(f"Expected a numeric value, got {value!r}", position) from exc
    return value


_RANGE_OPS = {Op.LT: "lt", Op.LE: "lte", Op.GT: "gt", Op.GE: "gte"}


# The values a numeric field can hold: OpenSearch refuses (400) a query value outside them, a
# comparison with such a value is decided without asking it.
_LONG_RANGE = (-(2**63), 2**63 - 1)
_DOUBLE_RANGE = (-sys.float_info.max, sys.float_info.max)


def _out_of_range(field: str, op: Op, number: int | float) -> Query | None:
    low, high = _DOUBLE_RANGE if field == F.ASSESSMENT_NUMERIC_VALUE else _LONG_RANGE
    if low <= number <= high:
        return None
    above = number > high
    if op is Op.NE or (op in (Op.LT, Op.LE) and above) or (op in (Op.GT, Op.GE) and not above):
        return _exists(field)  # every value there is on this side of the number
    return _MATCH_NONE


def _numeric_op(field: str, op: Op, value: Any, position: int) -> Query:
    if op is Op.IS_NULL:
        return _must_not(_exists(field))
    if op is Op.IS_NOT_NULL:
        return _exists(field)
    number = _numeric(value, position)
    decided = _out_of_range(field, op, number)
    if decided is not None:
        return decided
    if op is Op.EQ:
        return _term(field, number)
    if op is Op.NE:
        return {"bool": {"filter": [_exists(field)], "must_not": [_term(field, number)]}}
    if op in _RANGE_OPS:
        return {"range": {field: {_RANGE_OPS[op]: number}}}
    raise _unsupported(op, field, position)


def _unsupported(op: Op, field: str, position: int) -> UnsupportedError:
    return UnsupportedError(f"Comparator '{op.value}' is not supported for {field}", position)


# ---------------------------------------------------------------- fields

_ATTRIBUTE_FIELDS: dict[str, tuple[str, bool, str | None]] = {
    # name: (index field, nullable, case-insensitive sibling)
    "request_id": (F.TRACE_ID, False, None),
    "client_request_id": (F.CLIENT_REQUEST_ID, True, lower(F.CLIENT_REQUEST_ID)),
    "status": (F.STATE, False, lower(F.STATE)),
    "name": (F.NAME, True, lower(F.NAME)),
    "run_id": (F.RUN_ID, True, lower(F.RUN_ID)),
    "experiment_id": (F.EXPERIMENT_ID, False, None),
}
_NUMERIC_ATTRIBUTES = {
    "timestamp_ms": F.TIMESTAMP_MS,
    "execution_time_ms": F.EXECUTION_TIME_MS,
    "end_time_ms": F.END_TIME_MS,
}
_TOKEN_FIELDS = {
    "input_tokens": F.INPUT_TOKENS,
    "output_tokens": F.OUTPUT_TOKENS,
    "total_tokens": F.TOTAL_TOKENS,
}


def _attribute(c: Comparison, field: Attribute) -> Query:
    if field.name in _NUMERIC_ATTRIBUTES:
        return _numeric_op(_NUMERIC_ATTRIBUTES[field.name], c.op, c.value, c.position)
    if field.name == "prompt":
        return _prompt(c)
    index_field, nullable, ci_field = _ATTRIBUTE_FIELDS[field.name]
    return _string_op(index_field, c.op, c.value, c.position, nullable=nullable, ci_field=ci_field)


def _prompt(c: Comparison) -> Query:
    """``prompt = 'name/version'``: the trace's linked prompts (tag ``mlflow.linkedPrompts``, a
    JSON list of ``{"name", "version"}``) contain that version."""
    name, _, version = str(c.value).partition("/")
    needles = [
        json.dumps({"name": name, "version": version}),
        json.dumps({"name": name, "version": int(version)}) if version.isdigit() else None,
    ]
    matches = [
        _wildcard(f"{F.TAGS}.{F.ENTRY_VALUE}", "*" + escape_wildcard(needle) + "*")
        for needle in needles
        if needle is not None
    ]
    linked = _term(f"{F.TAGS}.{F.ENTRY_KEY}", "mlflow.linkedPrompts")
    return _nested(F.TAGS, {"bool": {"filter": [linked], "should": matches, "minimum_should_match": 1}})


def _entry(path: str, c: Comparison, key: str) -> Query:
    """A tag or metadata comparison: MLflow's existence semantics (a trace without the key never
    matches, ``!=`` included); ``IS NULL`` is the absence of the key."""
    key_field = f"{path}.{F.ENTRY_KEY}"
    value_field = f"{path}.{F.ENTRY_VALUE}"
    has_key = _term(key_field, key)
    if c.op is Op.IS_NULL:
        return _must_not(_nested(path, has_key))
    if c.op is Op.IS_NOT_NULL:
        return _nested(path, has_key)
    if c.op in (Op.NE, Op.NOT_IN):
        positive = Op.EQ if c.op is Op.NE else Op.IN
        value_query = _string_op(value_field, positive, c.value, c.position, nullable=False, ci_field=None)
        return _nested(path, {"bool": {"filter": [has_key], "must_not": [value_query]}})
    value_query = _string_op(
        value_field, c.op, c.value, c.position, nullable=False, ci_field=lower(value_field)
    )
    return _nested(path, _all(has_key, value_query))


def _span_clause(c: Comparison) -> Query:
    """One span comparison, evaluated inside the spans' nested documents."""
    field = c.field
    if isinstance(field, SpanAttribute):
        return _span_attribute(c, field.key)
    assert isinstance(field, SpanField)
    if field.name == "duration_ms":
        return _numeric_op(F.SPAN_DURATION_MS, c.op, c.value, c.position)
    if field.name == "content":
        if c.op is Op.LIKE:
            return _wildcard(F.SPAN_CONTENT, like_to_wildcard(c.value))
        if c.op is Op.ILIKE:
            return _wildcard(F.SPAN_CONTENT, like_to_wildcard(c.value), case_insensitive=True)
        raise _unsupported(c.op, "span.content", c.position)
    index_field = {"name": F.SPAN_NAME, "type": F.SPAN_TYPE, "status": F.SPAN_STATUS}[field.name]
    # Inside one span these always exist, so != is simply "not equal" (MLflow: some span whose
    # name is not X).
    return _string_op(index_field, c.op, c.value, c.position, nullable=False, ci_field=lower(index_field))


def _span_attribute(c: Comparison, key: str) -> Query:
    """``span.attributes.<k>`` on the span's ``key<US>value`` entries, with the value decoded
    from its JSON string: ``= 'gpt-4'`` matches the attribute ``"gpt-4"`` (MLflow never matches;
    see COMPATIBILITY)."""
    field = F.SPAN_ATTRIBUTES
    prefix = key + ENTRY_SEPARATOR
    has_key = {"prefix": {field: prefix}}
    if c.op is Op.EQ:
        return _term(field, prefix + c.value)
    if c.op is Op.IN:
        return {"terms": {field: [prefix + v for v in c.value]}}
    if c.op is Op.NE:
        return {"bool": {"filter": [has_key], "must_not": [_term(field, prefix + c.value)]}}
    if c.op is Op.NOT_IN:
        return {
            "bool": {"filter": [has_key], "must_not": [{"terms": {field: [prefix + v for v in c.value]}}]}
        }
    if c.op in (Op.LIKE, Op.ILIKE):
        return _wildcard(field, escape_wildcard(prefix) + like_to_wildcard(c.value), c.op is Op.ILIKE)
    if c.op is Op.RLIKE:
        regexp = rlike_to_regexp(c.value, c.position)
        literal_key = "".join(_lucene_literal(char) for char in key) + ENTRY_SEPARATOR
        # OpenSearch 2.x wildcard fields find nothing for a regexp whose language is one string
        # written with groups, classes or escapes (it looks the pattern's text up as that string).
        # A second alternative no entry can equal (a bare separator: attribute keys are never
        # empty) keeps the language larger than one string.
        return _regexp(field, f"{literal_key}({regexp})|{ENTRY_SEPARATOR}")
    if c.op is Op.IS_NOT_NULL:
        return has_key
    raise _unsupported(c.op, f"span.attributes.{key}", c.position)


def _assessment(c: Comparison, kind: str, name: str) -> Query:
    """Valid assessments of that kind and name (overridden ones are invalid); values compare as
    MLflow compares them: the JSON text, or for ``=`` also ``json.dumps`` of the literal."""
    select = [
        _term(F.ASSESSMENT_KIND, kind),
        _term(F.ASSESSMENT_NAME, name),
        _term(F.ASSESSMENT_VALID, True),
    ]
    if c.op is Op.IS_NULL:
        return _must_not(_nested(F.ASSESSMENTS, _all(*select)))
    if c.op is Op.IS_NOT_NULL:
        return _nested(F.ASSESSMENTS, _all(*select))
    value_field = F.ASSESSMENT_VALUE
    if c.op in _RANGE_OPS:
        condition = _numeric_op(F.ASSESSMENT_NUMERIC_VALUE, c.op, c.value, c.position)
    elif c.op in (Op.EQ, Op.NE):
        # MLflow stores json.dumps(value) (non-ASCII escaped) and compares with the literal and its
        # json.dumps; values logged by our SDK keep non-ASCII text as is, so that spelling too.
        spellings = sorted({c.value, json.dumps(c.value), json.dumps(c.value, ensure_ascii=False)})
        condition = {"terms": {value_field: spellings}}
        if c.op is Op.NE:
            return _nested(F.ASSESSMENTS, {"bool": {"filter": select, "must_not": [condition]}})
    else:
        condition = _string_op(
            value_field, c.op, c.value, c.position, nullable=False, ci_field=lower(value_field)
        )
    return _nested(F.ASSESSMENTS, _all(*select, condition))


def _comparison(c: Comparison) -> Query:
    field = c.field
    if isinstance(field, Attribute):
        return _attribute(c, field)
    if isinstance(field, Tag):
        return _entry(F.TAGS, c, field.key)
    if isinstance(field, Metadata):
        return _entry(F.METADATA, c, field.key)
    if isinstance(field, SpanField | SpanAttribute):
        return _nested(F.SPANS, _span_clause(c))
    if isinstance(field, Assessment):
        return _assessment(c, field.kind, field.name)
    if isinstance(field, Issue):
        return _nested(
            F.ASSESSMENTS, _all(_term(F.ASSESSMENT_KIND, "issue"), _term(F.ASSESSMENT_NAME, c.value))
        )
    if isinstance(field, TokenUsage):
        return _numeric_op(_TOKEN_FIELDS[field.key], c.op, c.value, c.position)
    raise UnsupportedError(f"Unsupported field {field!r}", c.position)


def _is_span(node: Node) -> bool:
    return isinstance(node, Comparison) and isinstance(node.field, SpanField | SpanAttribute)


def _and(node: And) -> Query:
    # MLflow: every span clause of a conjunction must hold for one and the same span.
    span_clauses = [_span_clause(item) for item in node.items if _is_span(item)]  # type: ignore[arg-type]
    others = [to_query(item) for item in node.items if not _is_span(item)]
    if span_clauses:
        others.append(_nested(F.SPANS, _all(*span_clauses)))
    return _all(*others)


_GENERATORS: dict[type, Callable[[Any], Query]] = {
    Comparison: _comparison,
    And: _and,
    Or: lambda node: {"bool": {"should": [to_query(i) for i in node.items], "minimum_should_match": 1}},
    Not: lambda node: _must_not(to_query(node.item)),
}


def to_query(node: Node | None) -> Query:
    """The OpenSearch query for a parsed filter (``None``: every trace)."""
    if node is None:
        return {"match_all": {}}
    return _GENERATORS[type(node)](node)


def experiments_query(experiment_ids: list[str]) -> Query:
    """Restrict to these experiments (MLflow's ``locations``); an empty list matches nothing."""
    return {"terms": {F.EXPERIMENT_ID: experiment_ids}} if experiment_ids else _MATCH_NONE


# ---------------------------------------------------------------- order_by

_SORT_FIELDS = {
    "timestamp_ms": F.TIMESTAMP_MS,
    "execution_time_ms": F.EXECUTION_TIME_MS,
    "end_time_ms": F.END_TIME_MS,
    "status": F.STATE,
    "name": F.NAME,
    "run_id": F.RUN_ID,
    "experiment_id": F.EXPERIMENT_ID,
}


def _sort_clauses(order: OrderBy) -> list[Query]:
    direction = "asc" if order.ascending else "desc"
    field = order.field
    # NULLs last in both directions, as MLflow orders them.
    if isinstance(field, Attribute):
        if field.name == "request_id":
            # Indices made before these fields existed sort their traces as if the field were
            # missing (unmapped_type), instead of failing the search.
            return [
                {key: {"order": direction, "missing": "_last", "unmapped_type": "long"}}
                for key in (F.TRACE_ORDER_HIGH, F.TRACE_ORDER_LOW)
            ]
        return [{_SORT_FIELDS[field.name]: {"order": direction, "missing": "_last"}}]
    if isinstance(field, TokenUsage):
        return [{_TOKEN_FIELDS[field.key]: {"order": direction, "missing": "_last"}}]
    if isinstance(field, Tag | Metadata):
        path = F.TAGS if isinstance(field, Tag) else F.METADATA
        return [
            {
                f"{path}.{F.ENTRY_VALUE}": {
                    "order": direction,
                    "missing": "_last",
                    "mode": "min",
                    "nested": {"path": path, "filter": _term(f"{path}.{F.ENTRY_KEY}", field.key)},
                }
            }
        ]
    raise UnsupportedError(f"Cannot order by {field!r}")


def to_sort(order_by: list[OrderBy]) -> list[Query]:
    """Sort clauses for already-completed order_by clauses (see ``search_api.dsl.with_default_order``)."""
    return [clause for order in order_by for clause in _sort_clauses(order)]
