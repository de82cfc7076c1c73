"""Recursive-descent parser: filter string -> AST, order_by clauses -> ``OrderBy``.

Grammar (SQL precedence, NOT > AND > OR; OR, NOT and parentheses go beyond MLflow)::

    filter     := or_expr EOF
    or_expr    := and_expr (OR and_expr)*
    and_expr   := unary ((AND)* unary)*        -- stray ANDs are ignored, as MLflow does
    unary      := NOT unary | primary
    primary    := '(' or_expr ')' | comparison
    comparison := identifier (OP | LIKE | ILIKE | RLIKE) value
                | identifier [NOT] IN list
                | identifier IS [NOT] NULL

Checks run in MLflow's order, so an input with one problem gets MLflow's message for it:
statement-level problems while parsing; then, per clause in text order, the identifier and value
checks of ``SearchTraceUtils._get_comparison``; then, per clause, the comparator checks of the
SQL store (which upper-cases comparators first, except for span fields, hence the case quirk).
"""

from __future__ import annotations

import ast as pyast
import warnings
from dataclasses import dataclass
from enum import IntEnum, auto
from functools import lru_cache

from tracestream.search_api.dsl.ast import (
    And,
    Assessment,
    Attribute,
    Comparison,
    Field,
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
    Value,
)
from tracestream.search_api.dsl.errors import BAD_REQUEST, INVALID_PARAMETER_VALUE, FilterError, ParseError
from tracestream.search_api.dsl.tokens import INT_RE, NUMBER_RE, Token, TokenType, parse_number, tokenize

T = TokenType

# --- MLflow's tables (utils/search_utils.py::SearchTraceUtils, store/tracking/sqlalchemy_store.py) --

ENTITY_TYPES: dict[str, str] = {
    "attribute": "attribute",
    "attributes": "attribute",
    "trace": "attribute",
    "tag": "tag",
    "tags": "tag",
    "request_metadata": "request_metadata",
    "metadata": "request_metadata",
    "span": "span",
    "feedback": "feedback",
    "expectation": "expectation",
    "issue": "issue",
}
SEARCH_ATTRIBUTE_KEYS = frozenset(
    {
        "request_id",
        "timestamp",
        "timestamp_ms",
        "execution_time",
        "execution_time_ms",
        "end_time",
        "end_time_ms",
        "status",
        "client_request_id",
        "name",
        "run_id",
        "prompt",
        "text",
    }
)
ORDER_BY_ATTRIBUTE_KEYS = frozenset(
    {
        "experiment_id",
        "timestamp",
        "timestamp_ms",
        "execution_time",
        "execution_time_ms",
        "end_time",
        "end_time_ms",
        "status",
        "request_id",
        "name",
        "run_id",
    }
)
NUMERIC_ATTRIBUTES = frozenset(
    {"timestamp_ms", "timestamp", "execution_time_ms", "execution_time", "end_time_ms", "end_time"}
)
LIST_ATTRIBUTES = frozenset({"name", "status", "request_id", "run_id", "client_request_id"})
TOKEN_USAGE_KEYS = frozenset({"input_tokens", "output_tokens", "total_tokens"})

NUMERIC_COMPARATORS = frozenset({">", ">=", "!=", "=", "<", "<="})
STRING_ATTRIBUTE_COMPARATORS = frozenset({"!=", "=", "IN", "NOT IN", "LIKE", "ILIKE", "RLIKE"})
TAG_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "RLIKE", "IS NULL", "IS NOT NULL"})
METADATA_COMPARATORS = TAG_COMPARATORS
SPAN_COMPARATORS = STRING_ATTRIBUTE_COMPARATORS
SPAN_CONTENT_COMPARATORS = frozenset({"LIKE", "ILIKE"})
NUMERIC_ASSESSMENT_COMPARATORS = frozenset({">", ">=", "<", "<="})
ASSESSMENT_COMPARATORS = NUMERIC_COMPARATORS | {"LIKE", "ILIKE", "RLIKE", "IS NULL", "IS NOT NULL"}
ISSUE_COMPARATORS = frozenset({"="})
RESERVED_METADATA_COMPARATORS = frozenset({"=", "!=", "IS NULL", "IS NOT NULL"})
# Beyond MLflow: token counts and span durations are numbers that may be absent.
TOKEN_USAGE_COMPARATORS = NUMERIC_COMPARATORS | {"IS NULL", "IS NOT NULL"}
SPAN_DURATION_COMPARATORS = NUMERIC_COMPARATORS

SPAN_FIELDS = frozenset({"name", "type", "status"})
SPAN_DURATION = "duration_ms"
TRACE_NAME_TAG = "mlflow.traceName"
LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"
SOURCE_RUN_METADATA = "mlflow.sourceRun"
RESERVED_METADATA = frozenset({"mlflow.trace.tokenUsage", "mlflow.trace.cost"})

# SearchTraceUtils._replace_key_to_tag_or_metadata, keyed by key.lower(), whatever the prefix.
KEY_REWRITES: dict[str, tuple[str, str]] = {
    "name": ("tag", TRACE_NAME_TAG),
    "prompt": ("tag", LINKED_PROMPTS_TAG),
    "run_id": ("request_metadata", SOURCE_RUN_METADATA),
    "text": ("span", "content"),
}
ATTRIBUTE_KEY_ALIASES: dict[str, str] = {
    "timestamp": "timestamp_ms",
    "execution_time": "execution_time_ms",
    "end_time": "end_time_ms",
}
NUMERIC_FIELDS = frozenset(
    {
        Attribute("timestamp_ms"),
        Attribute("execution_time_ms"),
        Attribute("end_time_ms"),
        SpanField("duration_ms"),
        *(TokenUsage(k) for k in TOKEN_USAGE_KEYS),  # type: ignore[arg-type]
    }
)

LIKE_OPERATORS = frozenset({T.LIKE, T.ILIKE, T.RLIKE})
# Tokens that can begin a clause; anything else where a clause should start is an invalid clause.
PRIMARY_START = frozenset({T.IDENT, T.BACKTICK, T.DSTRING, T.STRING, T.NUMBER, T.NOT, T.LPAREN})
IDENTIFIER_TOKENS = frozenset({T.IDENT, T.BACKTICK, T.DSTRING})
UNUSABLE_BARE_WORDS = frozenset({"TEXT", "TIMESTAMP"})  # SQL keyword / builtin to sqlparse


def _set_repr(values: frozenset[str] | set[str]) -> str:
    # MLflow prints Python set reprs, whose order changes per process; sort for stable messages.
    return "{" + ", ".join(repr(v) for v in sorted(values)) + "}"


ENTITY_TYPES_REPR = _set_repr(set(ENTITY_TYPES))
# The keys each place accepts, as the parser checks them: MLflow's attribute keys plus the
# token-usage keys we add. The error message lists this same set, so it names every key that works.
SEARCH_KEYS = SEARCH_ATTRIBUTE_KEYS | TOKEN_USAGE_KEYS
ORDER_BY_KEYS = ORDER_BY_ATTRIBUTE_KEYS | TOKEN_USAGE_KEYS


def _is_enclosed(text: str, quote: str) -> bool:
    return len(text) >= 2 and text[0] == quote and text[-1] == quote


def _trim_backticks(text: str) -> str:
    return text[1:-1] if _is_enclosed(text, "`") else text


def _strip_quotes(text: str) -> str:
    return text[1:-1] if _is_enclosed(text, "'") or _is_enclosed(text, '"') else text


def _split_identifier(text: str, valid_keys: frozenset[str]) -> tuple[str, str]:
    """MLflow's ``_get_identifier``: split at the first dot; no dot means a trace attribute,
    which must be one of ``valid_keys``."""
    prefix, dot, key = text.partition(".")
    if not dot:
        prefix, key = "attribute", text
    prefix = _trim_backticks(prefix)
    entity = ENTITY_TYPES.get(prefix)
    if entity is None:
        raise ParseError(f"Invalid entity type '{prefix}'. Valid values are {ENTITY_TYPES_REPR}")
    key = _trim_backticks(_strip_quotes(key))
    if entity == "attribute":
        if key not in valid_keys:
            raise ParseError(
                f"Invalid attribute key '{key}' specified. Valid keys are '{_set_repr(valid_keys)}'"
            )
        if key in TOKEN_USAGE_KEYS:
            return "token_usage", key
    return entity, key


def _rewrite_key(entity: str, key: str) -> tuple[str, str]:
    if entity in ("span", "token_usage"):
        return entity, key
    lowered = key.lower()
    rewrite = KEY_REWRITES.get(lowered)
    if rewrite is not None:
        return rewrite
    return entity, ATTRIBUTE_KEY_ALIASES.get(lowered, key)


class _InvalidClause(ParseError):
    """MLflow's ``Invalid clause(s) in filter string: ...``; keeps its pieces for the rescan."""

    def __init__(self, units: list[str], end: int, at: Token) -> None:
        listed = ", ".join(f"'{u}'" for u in units)
        super().__init__(f"Invalid clause(s) in filter string: {listed}", at.start, at.text or None)
        self.units = units
        self.end = end
        self.at = at


class _Kind(IntEnum):
    STRING = auto()  # '...' or "..."
    BARE = auto()  # an unquoted word or `...`: MLflow reads it as an unquoted string
    NUMBER = auto()
    LIST = auto()
    OTHER = auto()  # NULL or an unknown token


_VALUE_KINDS: dict[TokenType, _Kind] = {
    T.STRING: _Kind.STRING,
    T.DSTRING: _Kind.STRING,
    T.IDENT: _Kind.BARE,
    T.BACKTICK: _Kind.BARE,
    T.NUMBER: _Kind.NUMBER,
    T.NULL: _Kind.OTHER,
    T.UNKNOWN: _Kind.OTHER,
    T.LPAREN: _Kind.LIST,
}
_STRINGISH = frozenset({_Kind.STRING, _Kind.BARE})


@dataclass(slots=True)
class _Clause:
    """One comparison as written, before validation."""

    target: Token
    comparator: str  # as MLflow sees it before upper-casing: 'like', '<>', 'NOT IN', 'IS NULL'
    op_pos: int
    kind: _Kind | None  # None for IS [NOT] NULL
    value_text: str  # the value as MLflow prints it in messages
    value_pos: int
    items: list[Token] | None = None  # tokens inside a list's parentheses
    deferred: FilterError | None = None
    entity: str = ""
    key: str = ""
    value: Value = None
    field: Field | None = None
    result: Comparison | None = None


_Tree = _Clause | tuple[str, list["_Tree"]]


class Parser:
    """Parses one filter string; ``parse_filter`` is the cached entry point."""

    COMPARISON_TOKENS = frozenset({T.OP}) | LIKE_OPERATORS

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.clauses: list[_Clause] = []

    # --- token helpers ---------------------------------------------------------------------------

    @property
    def _current(self) -> Token:
        return self.tokens[self.index]

    def _peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def _advance(self) -> Token:
        token = self.tokens[self.index]
        if token.type is not T.EOF:
            self.index += 1
        return token

    def _match(self, token_type: TokenType) -> Token | None:
        token = self.tokens[self.index]
        if token.type is token_type:
            self.index += 1
            return token
        return None

    def _closing_paren(self, index: int) -> int:
        """Index of the ``)`` matching the ``(`` at ``index``, or of EOF when unclosed."""
        depth = 0
        for i in range(index, len(self.tokens)):
            token_type = self.tokens[i].type
            if token_type is T.LPAREN:
                depth += 1
            elif token_type is T.RPAREN:
                depth -= 1
                if depth == 0:
                    return i
        return len(self.tokens) - 1

    def _units(self, start: int) -> tuple[list[str], int]:
        """The clause starting at ``start`` as sqlparse would list it (tokens up to the next
        AND/OR; a parenthesised group, ``NOT LIKE`` and ``NOT NULL`` count as one), and where it ends."""
        units: list[str] = []
        i = start
        while True:
            token = self.tokens[i]
            if token.type is T.EOF or (i > start and token.type in (T.AND, T.OR, T.RPAREN)):
                return units, i
            if token.type is T.LPAREN:
                close = self._closing_paren(i)
                closed = self.tokens[close].type is T.RPAREN
                units.append(self.text[token.start : self.tokens[close].end if closed else len(self.text)])
                i = close + 1 if closed else close
                continue
            follower = self.tokens[i + 1]
            if token.type is T.NOT and (follower.type in LIKE_OPERATORS or follower.type is T.NULL):
                units.append(self.text[token.start : follower.end])
                i += 2
                continue
            units.append(token.text)
            i += 1

    def _invalid_clause(
        self, start: int, at: Token | None = None, timestamp_bug: bool = False, alone: bool = False
    ) -> _InvalidClause:
        units, end = ([self.tokens[start].text], start + 1) if alone else self._units(start)
        if timestamp_bug and len(units) >= 3:
            # MLflow's _join_in_comparison_tokens lists a failed bare `timestamp` twice.
            units = [*units[:3], units[0], *units[3:]]
        return _InvalidClause(units, end, at or self.tokens[start])

    def _all_invalid_clauses(self, first: _InvalidClause) -> _InvalidClause:
        """MLflow lists the invalid tokens of every clause; rescan to find them all. Filters using
        OR, NOT or parentheses are beyond MLflow, and keep the first error only."""
        units: list[str] = []
        self.index = 0
        while self._current.type is not T.EOF:
            if self._match(T.AND):
                continue
            start = self.index
            if self._current.type in (T.OR, T.NOT, T.LPAREN):
                return first
            try:
                if self._current.type not in PRIMARY_START:
                    raise self._invalid_clause(start)
                self._parse_comparison()
            except _InvalidClause as error:
                units.extend(error.units)
                self.index = max(error.end, start + 1)
        return _InvalidClause(units, first.end, first.at) if units else first

    # --- statement --------------------------------------------------------------------------------

    def parse(self) -> Node | None:
        self._check_statements()
        try:
            tree = self._parse_or()
            if self._current.type is not T.EOF:
                raise self._invalid_clause(self.index)
        except _InvalidClause as error:
            raise self._all_invalid_clauses(error) from None
        if tree is None:
            return None
        # MLflow's phases, each over all clauses: parse-time checks, store checks, then the
        # failures that only surface when the query runs.
        for clause in self.clauses:
            _check_clause(clause)
        for clause in self.clauses:
            _resolve_clause(clause)
        for clause in self.clauses:
            _finish_clause(clause)
        return _build(tree)

    def _check_statements(self) -> None:
        for i, token in enumerate(self.tokens):
            if token.type is T.SEMICOLON:
                if self.tokens[i + 1].type is T.EOF:
                    raise ParseError("Invalid clause(s) in filter string: ';'", token.start, ";")
                raise ParseError(
                    f"Search filter contained multiple expression {self.text!r}. "
                    "Provide AND-ed expression list.",
                    token.start,
                    ";",
                )

    # --- precedence levels ------------------------------------------------------------------------

    def _parse_or(self) -> _Tree | None:
        items: list[_Tree] = []
        first = self._parse_and()
        while self._current.type is T.OR:
            or_index = self.index
            self._advance()
            item = self._parse_and()
            if first is None or item is None:
                raise self._invalid_clause(or_index, alone=True)
            items.append(item)
        if first is None or not items:
            return first
        return ("or", [first, *items])

    def _parse_and(self) -> _Tree | None:
        items: list[_Tree] = []
        while True:
            while self._match(T.AND):
                pass
            if self._current.type not in PRIMARY_START:
                break
            items.append(self._parse_unary())  # juxtaposed clauses are AND-ed, as in MLflow
        if not items:
            return None
        return items[0] if len(items) == 1 else ("and", items)

    def _parse_unary(self) -> _Tree:
        not_token = self._match(T.NOT)
        if not_token is None:
            return self._parse_primary()
        if self._current.type not in PRIMARY_START:
            raise self._invalid_clause(self.index - 1, not_token)
        return ("not", [self._parse_unary()])

    def _parse_primary(self) -> _Tree:
        start = self.index
        if self._match(T.LPAREN) is None:
            return self._parse_comparison()
        inner = self._parse_or()
        if inner is None or self._current.type is T.EOF:  # () or an unclosed (
            raise self._invalid_clause(start)
        if self._match(T.RPAREN) is None:
            raise self._invalid_clause(self.index)
        return inner

    # --- comparisons ------------------------------------------------------------------------------

    def _parse_comparison(self) -> _Clause:
        start = self.index
        target = self._advance()
        deferred = None
        if target.type not in IDENTIFIER_TOKENS:  # 'OK' = status
            deferred = ParseError(
                f"Invalid comparison clause. Expected 'Identifier' found '{target.text}'",
                target.start,
                target.text,
            )
        elif target.type is T.IDENT:
            if target.text == "timestamp":
                return self._parse_bare_timestamp(start, target)
            if target.text.upper() in UNUSABLE_BARE_WORDS:
                raise self._invalid_clause(start, target)

        operator = self._current
        if operator.type in self.COMPARISON_TOKENS:
            self._advance()
            clause = self._parse_value(start, target, operator.text, operator.start)
        elif operator.type is T.IN:
            self._advance()
            clause = self._parse_list_value(start, target, operator.text, operator.start)
        elif operator.type is T.NOT:
            self._advance()
            follower = self._advance()
            if follower.type is T.IN:
                clause = self._parse_list_value(start, target, "NOT IN", operator.start)
            elif follower.type in LIKE_OPERATORS:  # rejected later, with MLflow's message
                comparator = self.text[operator.start : follower.end]
                clause = self._parse_value(start, target, comparator, operator.start)
            else:
                raise self._invalid_clause(start, follower)
        elif operator.type is T.IS:
            self._advance()
            comparator = "IS NOT NULL" if self._match(T.NOT) else "IS NULL"
            if self._match(T.NULL) is None:
                raise self._invalid_clause(start, self._current)
            clause = _Clause(target, comparator, operator.start, None, "", operator.start)
        else:
            raise self._invalid_clause(start, operator)
        clause.deferred = deferred
        self.clauses.append(clause)
        return clause

    def _parse_bare_timestamp(self, start: int, target: Token) -> _Clause:
        # To sqlparse a bare `timestamp` is a builtin; MLflow accepts it only as
        # `timestamp <op> <integer literal>`.
        operator, value = self._current, self._peek()
        if not (
            operator.type is T.OP
            and operator.text in NUMERIC_COMPARATORS
            and value.type is T.NUMBER
            and INT_RE.fullmatch(value.text)
        ):
            raise self._invalid_clause(start, target, timestamp_bug=True)
        self.index += 2
        clause = _Clause(target, operator.text, operator.start, _Kind.NUMBER, value.text, value.start)
        self.clauses.append(clause)
        return clause

    def _parse_value(self, start: int, target: Token, comparator: str, op_pos: int) -> _Clause:
        token = self._current
        kind = _VALUE_KINDS.get(token.type)
        if kind is None:
            raise self._invalid_clause(start, token)
        if kind is _Kind.LIST:
            return self._parse_list_value(start, target, comparator, op_pos)
        self._advance()
        return _Clause(target, comparator, op_pos, kind, token.text, token.start)

    def _parse_list_value(self, start: int, target: Token, comparator: str, op_pos: int) -> _Clause:
        open_paren = self._current
        if open_paren.type is not T.LPAREN:
            raise self._invalid_clause(start, open_paren)
        close = self._closing_paren(self.index)
        if self.tokens[close].type is not T.RPAREN:
            raise self._invalid_clause(start, open_paren)
        items = self.tokens[self.index + 1 : close]
        text = self.text[open_paren.start : self.tokens[close].end]
        self.index = close + 1
        return _Clause(target, comparator, op_pos, _Kind.LIST, text, open_paren.start, items)


# --- per-clause checks (MLflow's _get_comparison, then the SQL store) -------------------------------


def _fail(
    message: str, position: int, token: str | None = None, code: str = INVALID_PARAMETER_VALUE
) -> FilterError:
    return ParseError(message, position, token, code)


def _unquoted(clause: _Clause) -> str:
    if clause.kind is _Kind.BARE:
        raise _fail(
            "Parameter value is either not quoted or unidentified quote types used for string value "
            f"{clause.value_text}. Use either single or double quotes.",
            clause.value_pos,
            clause.value_text,
        )
    return clause.value_text[1:-1]


_ILL_FORMED_LIST = (
    "While parsing a list in the query, expected a non-empty list of string values, but got ill-formed list."
)
_LIST_CONSTANTS: dict[str, object] = {"True": True, "False": False, "None": None}


def _list_string(token: Token) -> str:
    body = token.text[1:-1]
    if "\\" not in body and token.text[0] not in body and body.isprintable():
        return body
    # MLflow reads lists with ast.literal_eval, so escapes inside list items are processed.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pyast.literal_eval(token.text)  # type: ignore[no-any-return]
    except (SyntaxError, ValueError):
        raise _fail(_ILL_FORMED_LIST, token.start, token.text) from None


def _parse_list(clause: _Clause) -> tuple[str, ...]:
    items: list[object] = []
    tokens = clause.items or []
    i, size = 0, len(tokens)
    while i < size:
        token = tokens[i]
        if token.type in (T.STRING, T.DSTRING):
            parts = []
            while i < size and tokens[i].type in (T.STRING, T.DSTRING):  # 'a' 'b' is 'ab' in Python
                parts.append(_list_string(tokens[i]))
                i += 1
            items.append("".join(parts))
        elif token.type is T.NUMBER:
            items.append(parse_number(token.text))
            i += 1
        elif token.type is T.IDENT and token.text in _LIST_CONSTANTS:
            items.append(_LIST_CONSTANTS[token.text])
            i += 1
        else:
            raise _fail(_ILL_FORMED_LIST, token.start, token.text)
        if i < size:
            if tokens[i].type is not T.COMMA:
                raise _fail(_ILL_FORMED_LIST, tokens[i].start, tokens[i].text)
            i += 1
    if not items:
        if tokens:  # only commas
            raise _fail(_ILL_FORMED_LIST, tokens[0].start, tokens[0].text)
        raise _fail(
            "While parsing a list in the query, expected a non-empty list of string values, "
            "but got empty list",
            clause.value_pos,
            clause.value_text,
        )
    values = tuple(items)
    if not all(isinstance(v, str) for v in values):
        raise _fail(
            "While parsing a list in the query, expected string value, punctuation, or whitespace, "
            f"but got different type in list: {values}",
            clause.value_pos,
            clause.value_text,
        )
    return values  # type: ignore[return-value]


def _check_span(key: str, comparator: str, position: int, target: Token) -> None:
    if key.startswith("attributes."):
        if not key[len("attributes.") :]:
            raise _fail("Span attribute name cannot be empty after 'attributes.'", target.start, target.text)
        allowed = SPAN_COMPARATORS
    elif key in SPAN_FIELDS:
        allowed = SPAN_COMPARATORS
    elif key == "content":
        allowed = SPAN_CONTENT_COMPARATORS
    elif key == SPAN_DURATION:
        allowed = SPAN_DURATION_COMPARATORS
    else:
        raise _fail(
            f"Invalid span attribute '{key}'. Supported attributes: name, status, type, "
            "attributes.<attribute_name>.",
            target.start,
            target.text,
        )
    if comparator not in allowed:
        raise _fail(
            f"span.{key} comparator '{comparator}' not one of '{_set_repr(allowed)}'", position, comparator
        )


def _value_error(entity: str, clause: _Clause) -> FilterError:
    return _fail(
        f"Expected a quoted string value for {entity} (e.g. 'my-value'). Got value {clause.value_text}",
        clause.value_pos,
        clause.value_text,
    )


def _numeric_value(clause: _Clause) -> Value:
    if clause.kind is _Kind.NUMBER:
        return parse_number(clause.value_text)
    if clause.kind in _STRINGISH:
        return _unquoted(clause)  # a quoted number; converted once the field is known
    if clause.kind is _Kind.LIST:
        raise _fail(
            f"Only attributes in {_set_repr(LIST_ATTRIBUTES)} supports comparison with a list of quoted "
            "string values.",
            clause.value_pos,
            clause.value_text,
        )
    raise _fail(
        "Expected a quoted string value or a list of quoted string values for attributes. "
        f"Got value {clause.value_text}",
        clause.value_pos,
        clause.value_text,
    )


def _attribute_value(clause: _Clause, key: str) -> Value:
    kind = clause.kind
    if kind in _STRINGISH:
        return _unquoted(clause)
    if kind is _Kind.LIST:
        if key not in LIST_ATTRIBUTES:
            return _numeric_value(clause)  # raises MLflow's list message
        return _parse_list(clause)
    if kind is _Kind.NUMBER:
        if key not in NUMERIC_ATTRIBUTES:
            raise _fail(
                f"Only the '{_set_repr(NUMERIC_ATTRIBUTES)}' attributes support comparison with numeric "
                "values.",
                clause.value_pos,
                clause.value_text,
            )
        return parse_number(clause.value_text)
    return _numeric_value(clause)  # raises MLflow's generic attribute message


def _check_assessment_value(entity: str, clause: _Clause) -> None:
    numeric = clause.comparator in NUMERIC_ASSESSMENT_COMPARATORS
    if clause.kind in _STRINGISH:
        ok = not numeric
    elif clause.kind is _Kind.NUMBER:
        ok = numeric
    else:
        ok = False
    if ok:
        return
    if numeric:
        raise _fail(
            f"Expected a numeric value for {entity} when using comparator '{clause.comparator}'. "
            f"Got value {clause.value_text}",
            clause.value_pos,
            clause.value_text,
        )
    raise _value_error(entity, clause)


def _check_clause(clause: _Clause) -> None:
    """MLflow's parse-time checks (``SearchTraceUtils._get_comparison``); sets entity, key, value."""
    if clause.deferred is not None:
        raise clause.deferred
    target = clause.target
    try:
        entity, key = _split_identifier(target.text, SEARCH_KEYS)
    except FilterError as error:
        error.position, error.token = target.start, target.text
        raise
    clause.entity, clause.key = entity, key
    if clause.kind is None:  # IS [NOT] NULL: no value, no further parse-time checks
        return
    if entity == "attribute":
        clause.value = _attribute_value(clause, key)
    elif entity == "token_usage":
        clause.value = _numeric_value(clause)
    elif entity == "tag":
        if clause.kind in _STRINGISH:
            clause.value = _unquoted(clause)
        elif clause.kind is _Kind.LIST:
            clause.value = _parse_list(clause)
        else:
            raise _value_error("tag", clause)
    elif entity in ("request_metadata", "issue"):
        if clause.kind not in _STRINGISH:
            raise _value_error(entity, clause)
        clause.value = _unquoted(clause)
    elif entity == "span":
        if key == SPAN_DURATION:
            clause.value = _numeric_value(clause)
        elif clause.kind in _STRINGISH:
            clause.value = _unquoted(clause)
        elif clause.kind is _Kind.LIST:
            clause.value = _parse_list(clause)
        else:
            raise _value_error("span", clause)
        # Checked before MLflow upper-cases comparators: the span case quirk.
        _check_span(key, clause.comparator, clause.op_pos, clause.target)
    else:  # feedback, expectation
        _check_assessment_value(entity, clause)
        kind = clause.kind
        clause.value = _unquoted(clause) if kind in _STRINGISH else parse_number(clause.value_text)


def _comparator_error(
    comparator: str, allowed: frozenset[str], position: int, closing: bool = True
) -> FilterError:
    # Some of MLflow's messages lack the closing quote; reproduced as is.
    quote = "'" if closing else ""
    return _fail(
        f"Invalid comparator '{comparator}' not one of '{_set_repr(allowed)}{quote}", position, comparator
    )


def _resolve_field(clause: _Clause, comparator: str) -> Field:
    """The SQL store's checks, in its order, and the canonical field."""
    entity, key = _rewrite_key(clause.entity, clause.key)
    position = clause.op_pos
    if entity == "issue":
        if key != "id":
            raise _fail(f"Invalid issue attribute '{key}'. Supported attributes: id", clause.target.start)
        if comparator not in ISSUE_COMPARATORS:
            raise _fail(
                f"issue.{key} comparator '{comparator}' not one of '{_set_repr(ISSUE_COMPARATORS)}'",
                position,
                comparator,
            )
        return Issue()
    if entity == "attribute":
        if key in NUMERIC_ATTRIBUTES:
            if comparator not in NUMERIC_COMPARATORS:
                raise _comparator_error(comparator, STRING_ATTRIBUTE_COMPARATORS, position, closing=False)
        elif comparator not in STRING_ATTRIBUTE_COMPARATORS:
            raise _comparator_error(comparator, STRING_ATTRIBUTE_COMPARATORS, position)
        return Attribute(key)  # type: ignore[arg-type]
    if entity == "token_usage":
        if comparator not in TOKEN_USAGE_COMPARATORS:
            raise _comparator_error(comparator, TOKEN_USAGE_COMPARATORS, position)
        return TokenUsage(key)  # type: ignore[arg-type]
    if entity == "tag":
        if comparator not in TAG_COMPARATORS:
            raise _comparator_error(comparator, TAG_COMPARATORS, position, closing=False)
        if key == TRACE_NAME_TAG:
            return Attribute("name")
        if key == LINKED_PROMPTS_TAG:
            if comparator != "=":
                raise _fail(
                    f"Invalid comparator '{comparator}' for prompts filter. "
                    "Only '=' is supported with format: prompt = \"name/version\"",
                    position,
                    comparator,
                )
            value = clause.value
            if not isinstance(value, str) or value.count("/") != 1:
                raise _fail(
                    f"Invalid prompts filter value '{value}'. Expected format: prompt = \"name/version\"",
                    clause.value_pos,
                    clause.value_text,
                )
            return Attribute("prompt")
        return Tag(key)
    if entity == "request_metadata":
        if comparator not in METADATA_COMPARATORS:
            raise _comparator_error(comparator, METADATA_COMPARATORS, position)
        if key in RESERVED_METADATA and comparator not in RESERVED_METADATA_COMPARATORS:
            raise _fail(
                f"Comparator '{comparator}' is not supported for reserved metadata '{key}'. "
                "Only '=', '!=', 'IS NULL', and 'IS NOT NULL' are supported.",
                position,
                comparator,
            )
        return Attribute("run_id") if key == SOURCE_RUN_METADATA else Metadata(key)
    if entity == "span":
        _check_span(key, comparator, position, clause.target)
        if not key.startswith("attributes."):
            return SpanField(key)  # type: ignore[arg-type]
        name = _trim_backticks(key[len("attributes.") :])
        if comparator in ("IN", "NOT IN"):
            # MLflow's store formats the tuple into a LIKE pattern and SQLAlchemy rejects it.
            pattern = f'%"{name}"{clause.value}%'
            raise _fail(
                f"IN expression list, SELECT construct, or bound parameter object expected, got {pattern!r}.",
                position,
                comparator,
                BAD_REQUEST,
            )
        return SpanAttribute(name)
    # feedback, expectation
    if not key:
        raise _fail("Assessment field name cannot be empty", clause.target.start, clause.target.text)
    if comparator not in ASSESSMENT_COMPARATORS:
        raise _fail(
            f"assessment.{key} comparator '{comparator}' not one of '{_set_repr(ASSESSMENT_COMPARATORS)}'",
            position,
            comparator,
        )
    return Assessment(entity, key)  # type: ignore[arg-type]


def _field_name(field: Field) -> str:
    return field.key if isinstance(field, TokenUsage) else getattr(field, "name", "")


def _resolve_clause(clause: _Clause) -> None:
    clause.comparator = clause.comparator.upper()
    clause.field = _resolve_field(clause, clause.comparator)


def _finish_clause(clause: _Clause) -> None:
    field, comparator, value = clause.field, clause.comparator, clause.value
    assert field is not None
    op = Op(comparator)
    if isinstance(value, tuple) and op is not Op.IN and op is not Op.NOT_IN:
        # MLflow passes the tuple on to the database, which rejects it (BAD_REQUEST).
        raise _fail(
            f"Comparator '{comparator}' does not take a list of values; use IN or NOT IN. "
            f"Got value {clause.value_text}",
            clause.value_pos,
            clause.value_text,
            BAD_REQUEST,
        )
    if isinstance(value, str) and field in NUMERIC_FIELDS:
        # A quoted number is accepted for numeric fields (the SQL store compares it as a number).
        if not NUMBER_RE.fullmatch(value):
            name = f"span.{field.name}" if isinstance(field, SpanField) else _field_name(field)
            raise _fail(
                f"Expected numeric value type for numeric attribute: {name}. Found {clause.value_text}",
                clause.value_pos,
                clause.value_text,
            )
        value = parse_number(value)
    clause.result = Comparison(field, op, value, clause.target.start)


def _build(tree: _Tree) -> Node:
    if isinstance(tree, _Clause):
        assert tree.result is not None
        return tree.result
    kind, children = tree
    if kind == "not":
        return Not(_build(children[0]))
    node_type = And if kind == "and" else Or
    items: list[Node] = []
    for child in children:
        node = _build(child)
        if isinstance(node, node_type):
            items.extend(node.items)  # a AND (b AND c) is a AND b AND c
        else:
            items.append(node)
    return node_type(tuple(items))


# --- public entry points ----------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _parse_filter_cached(text: str) -> Node | None:
    if not text.strip():
        raise ParseError(f"Invalid filter '{text}'. Could not be parsed.", 0)
    return Parser(text).parse()


def parse_filter(text: str | None) -> Node | None:
    """Parse an MLflow ``filter_string``; ``None`` or ``""`` (no filtering) gives ``None``."""
    if not text:
        return None
    try:
        return _parse_filter_cached(text)
    except FilterError as error:
        error.source = text  # so that error.highlight() can show where
        raise


@lru_cache(maxsize=256)
def _parse_order_by_clause(clause: str) -> OrderBy:
    could_not = ParseError(f"Invalid order_by clause '{clause}'. Could not be parsed.", token=clause)
    if not clause or clause != clause.strip():
        raise could_not
    tokens = tokenize(clause)[:-1]
    first = tokens[0]
    if first.type not in IDENTIFIER_TOKENS or len(tokens) > 2:
        raise could_not
    if first.type is T.IDENT and first.text != "timestamp" and first.text.upper() in UNUSABLE_BARE_WORDS:
        raise could_not
    ascending = True
    if len(tokens) == 2:
        direction = tokens[1]
        if direction.type is not T.IDENT or "." in direction.text:
            raise could_not
        if direction.text.lower() not in ("asc", "desc"):
            if first.text == "timestamp":  # the builtin only combines with ASC / DESC
                raise could_not
            raise ParseError(f"Invalid ordering key in order_by clause '{clause}'.", token=clause)
        ascending = direction.text.lower() == "asc"
    try:
        entity, key = _split_identifier(first.text, ORDER_BY_KEYS)
    except FilterError as error:
        error.token = clause
        raise
    entity, key = _rewrite_key(entity, key)
    if entity == "request_metadata" and key in RESERVED_METADATA:
        raise ParseError(
            f"Ordering by reserved metadata '{key}' is not supported because it is represented by "
            "multiple columns.",
            token=clause,
        )
    field: Field
    if entity == "attribute":
        field = Attribute(key)  # type: ignore[arg-type]
    elif entity == "token_usage":
        field = TokenUsage(key)  # type: ignore[arg-type]
    elif entity == "tag":
        field = Attribute("name") if key == TRACE_NAME_TAG else Tag(key)
    elif entity == "request_metadata":
        field = Attribute("run_id") if key == SOURCE_RUN_METADATA else Metadata(key)
    else:
        raise ParseError(f"Invalid identifier type '{entity}'", token=clause)
    return OrderBy(field, ascending)


def parse_order_by(clauses: list[str] | None) -> list[OrderBy]:
    """Parse MLflow ``order_by`` clauses (``"<identifier> [ASC|DESC]"``), in order."""
    if not clauses:
        return []
    result: list[OrderBy] = []
    seen: set[Field] = set()
    for clause in clauses:
        order = _parse_order_by_clause(clause)
        if order.field in seen:
            # MLflow raises this one without an error code (HTTP 500); it is a user error.
            raise ParseError(f"`order_by` contains duplicate fields: {list(clauses)}", token=clause)
        seen.add(order.field)
        result.append(order)
    return result


DEFAULT_ORDER = (OrderBy(Attribute("timestamp_ms"), ascending=False), OrderBy(Attribute("request_id")))


def with_default_order(clauses: list[str] | list[OrderBy] | None) -> list[OrderBy]:
    """``clauses`` plus MLflow's tie-breakers: ``timestamp_ms DESC`` unless timestamp_ms is already
    ordered, then ``request_id ASC`` unless request_id is."""
    orders = [c if isinstance(c, OrderBy) else None for c in clauses or []]
    if None in orders:
        orders = parse_order_by(clauses)  # type: ignore[arg-type]
    result: list[OrderBy] = list(orders)  # type: ignore[arg-type]
    present = {o.field for o in result}
    result.extend(d for d in DEFAULT_ORDER if d.field not in present)
    return result
