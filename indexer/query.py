"""The filter AST (``search_api.dsl``) as OpenSearch query DSL over the traces index.

Lives next to ``indexer.mapping``: every field path comes from there, so the generator and the
mapping change together. Semantics follow MLflow's SQL store (``../shared`` notes, §1), with the
deviations listed in docs/searching.md (compatibility with MLflow search).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tracestream.indexer.mapping import ENTRY_SEPARATOR, F, lower
from tracestream.search_api.dsl import (
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
T = TypeVar("T")

# OpenSearch's index.max_regex_length default; a longer pattern is refused before it is sent.
MAX_REGEX_LENGTH = 1000
# Lucene's bound on the automaton a regexp or wildcard may build: a pathological pattern fails
# fast with too_complex_to_determinize instead of eating the node's CPU.
MAX_DETERMINIZED_STATES = 10_000

_MATCH_NONE: Query = {"match_none": {}}


# ---------------------------------------------------------------- patterns


def _translate_like(pattern: str, any_run: str, one_char: str, literal: Callable[[str], str]) -> str:
    """The one reading of a LIKE pattern, written with another syntax's ``any_run``, ``one_char``
    and ``literal(char)``. MLflow's SQL store sends ``column.like(value)`` with no ESCAPE clause,
    and its SQLite has no default escape character: ``%`` is any run, ``_`` one character, and
    every other character, a backslash included, is itself (``'%a\\%'`` is "contains ``a\\``",
    ``'\\_'`` a backslash then one character, ``'x\\'`` ends with a backslash)."""
    return "".join(any_run if char == "%" else one_char if char == "_" else literal(char) for char in pattern)


def like_to_wildcard(pattern: str) -> str:
    """SQL LIKE (``_translate_like``) as a Lucene wildcard pattern, with Lucene's own
    metacharacters taken literally."""
    return _translate_like(pattern, "*", "?", escape_wildcard)


def escape_wildcard(text: str) -> str:
    return re.sub(r"([*?\\])", r"\\\1", text)


# OpenSearch's wildcard field (issue opensearch-project/OpenSearch#19719, fixed by PR #19756
# after the 2.19.x this project runs) takes the ``*`` or ``?`` after an escaped backslash for an
# escaped wildcard when it picks the required 3-grams, so ``*a\\\\*`` looks for the 3-gram ``a\\*``
# and finds nothing (keyword fields, matched by Lucene's automaton alone, are right). On a
# wildcard field, a LIKE pattern with a backslash right before ``%`` or ``_`` is sent as the
# regexp of the same language instead.
_BACKSLASH_BEFORE_WILDCARD = re.compile(r"\\[%_]")
# A backslash as a one-character range: a regexp string holding a backslash meets the same bug
# (and escapes) in the 3-gram extraction; a range adds no required 3-gram.
_REGEXP_BACKSLASH = "[\\\\-\\\\]"


# Every character that lower() changes is below U+20000 (planes 2 and up have no case).
_CASED_CODE_POINTS = 0x20000


def _lower_preimages() -> dict[str, frozenset[str]]:
    preimages: dict[str, set[str]] = {}
    for code in range(_CASED_CODE_POINTS):
        char = chr(code)
        lowered = char.lower()
        if len(lowered) == 1 and lowered != char:
            preimages.setdefault(lowered, {lowered}).add(char)
    return {lowered: frozenset(chars) for lowered, chars in preimages.items()}


_LOWER_PREIMAGES: dict[str, frozenset[str]] = {}


def _regexp_literal(char: str, case_insensitive: bool) -> str:
    """``char`` in a Lucene regexp; with ``case_insensitive`` (the query's ASCII folding), a
    lower-case ``char`` matches every character that lowers to it (``k``: ``K`` and the Kelvin
    sign; ``é``: ``É``), as the wildcard field's ``case_insensitive`` (``String.toLowerCase``)."""
    if char == "\\":
        return _REGEXP_BACKSLASH
    if case_insensitive:
        if not _LOWER_PREIMAGES:
            _LOWER_PREIMAGES.update(_lower_preimages())
        chars = _LOWER_PREIMAGES.get(char, frozenset(char))
        if not (char.isascii() and chars == {char, char.upper()}) and len(chars) > 1:
            return "[" + "".join(_lucene_literal(c) for c in sorted(chars)) + "]"
    return _lucene_literal(char)


def wildcard_field_like(
    literal: str, pattern: str, case_insensitive: bool, position: int
) -> tuple[str, str | None]:
    """``literal`` then the LIKE ``pattern``, for a ``wildcard`` field (span text, attribute
    entries): the Lucene wildcard pattern, and the Lucene regexp of the same language to send
    instead when OpenSearch would miss matches of the wildcard (``_BACKSLASH_BEFORE_WILDCARD``),
    else None. With ``case_insensitive`` (the field's ``case_insensitive`` flag: pattern and value
    lowered) the regexp is written lowered, to match the value as it is. Both backends call
    this, so a regexp too long to send is refused by both."""
    wildcard = escape_wildcard(literal) + like_to_wildcard(pattern)
    if not _BACKSLASH_BEFORE_WILDCARD.search(pattern):
        return wildcard, None
    like = pattern.lower() if case_insensitive else pattern
    literal = literal.lower() if case_insensitive else literal
    regexp = "".join(_regexp_literal(char, case_insensitive) for char in literal) + _translate_like(
        like, ".*", ".", lambda char: _regexp_literal(char, case_insensitive)
    )
    if len(regexp) > MAX_REGEX_LENGTH:
        raise UnsupportedError(
            f"LIKE pattern {pattern!r} with a backslash before % or _ is too long "
            f"(its regexp has {len(regexp)} characters; at most {MAX_REGEX_LENGTH})",
            position,
            pattern,
        )
    return wildcard, regexp


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


def _any(*queries: Query) -> Query:
    return {"bool": {"should": list(queries), "minimum_should_match": 1}}


def _exists(field: str) -> Query:
    return {"exists": {"field": field}}


def _nested(path: str, query: Query) -> Query:
    return {"nested": {"path": path, "query": query, "score_mode": "none"}}


def _unsupported(op: Op, field: str, position: int) -> UnsupportedError:
    return UnsupportedError(f"Comparator '{op.value}' is not supported for {field}", position)


def comparator(table: Mapping[Op, T], op: Op, field: str, position: int) -> T:
    """``table``'s entry for ``op``: a comparator a table lacks has no query on that field."""
    try:
        return table[op]
    except KeyError:
        raise _unsupported(op, field, position) from None


# ---------------------------------------------------------------- comparators on one field
#
# One table per kind of field, from comparator to the query it makes (sqlglot's TRANSFORMS).
# Which comparators a field takes is the parser's to say; a table lacking one raises.


@dataclass(frozen=True, slots=True)
class KeywordField:
    """A keyword field. ``nullable``: a trace may lack it, and a missing value never matches
    (SQL's three-valued logic), so negations require existence. ``ci_field``: its lower-cased
    sibling, for ILIKE."""

    field: str
    nullable: bool = False
    ci_field: str | None = None


_KeywordOp = Callable[[KeywordField, Any, int], Query]


def _keyword_ilike(k: KeywordField, value: Any, position: int) -> Query:
    if k.ci_field is not None:
        return _wildcard(k.ci_field, like_to_wildcard(value.lower()))
    return _wildcard(k.field, like_to_wildcard(value), case_insensitive=True)


def _keyword_negation(positive: Op) -> _KeywordOp:
    def negation(k: KeywordField, value: Any, position: int) -> Query:
        negated = KEYWORD_OPS[positive](k, value, position)
        return (
            {"bool": {"filter": [_exists(k.field)], "must_not": [negated]}}
            if k.nullable
            else _must_not(negated)
        )

    return negation


KEYWORD_OPS: dict[Op, _KeywordOp] = {
    Op.EQ: lambda k, value, position: _term(k.field, value),
    Op.IN: lambda k, value, position: {"terms": {k.field: list(value)}},
    Op.LIKE: lambda k, value, position: _wildcard(k.field, like_to_wildcard(value)),
    Op.ILIKE: _keyword_ilike,
    Op.RLIKE: lambda k, value, position: _regexp(k.field, rlike_to_regexp(value, position)),
    Op.IS_NULL: lambda k, value, position: _must_not(_exists(k.field)),
    Op.IS_NOT_NULL: lambda k, value, position: _exists(k.field),
    Op.NE: _keyword_negation(Op.EQ),
    Op.NOT_IN: _keyword_negation(Op.IN),
}


def _keyword_op(k: KeywordField, c: Comparison) -> Query:
    return comparator(KEYWORD_OPS, c.op, k.field, c.position)(k, c.value, c.position)


def numeric_value(value: Any, position: int) -> int | float:
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


# Comparators without a value: the same on every field.
NULL_OPS: dict[Op, Callable[[str], Query]] = {
    Op.IS_NULL: lambda field: _must_not(_exists(field)),
    Op.IS_NOT_NULL: _exists,
}


def _range(bound: str) -> Callable[[str, int | float], Query]:
    return lambda field, number: {"range": {field: {bound: number}}}


NUMERIC_OPS: dict[Op, Callable[[str, int | float], Query]] = {
    Op.EQ: _term,
    Op.NE: lambda field, number: {"bool": {"filter": [_exists(field)], "must_not": [_term(field, number)]}},
    **{op: _range(bound) for op, bound in _RANGE_OPS.items()},
}


def _numeric_op(field: str, op: Op, value: Any, position: int) -> Query:
    if op in NULL_OPS:
        return NULL_OPS[op](field)
    build = comparator(NUMERIC_OPS, op, field, position)
    number = numeric_value(value, position)
    decided = _out_of_range(field, op, number)
    return decided if decided is not None else build(field, number)


def _keyword_field(k: KeywordField) -> Callable[[Comparison], Query]:
    return lambda c: _keyword_op(k, c)


def _numeric_field(field: str) -> Callable[[Comparison], Query]:
    return lambda c: _numeric_op(field, c.op, c.value, c.position)


# ---------------------------------------------------------------- fields

ATTRIBUTE_KEYWORDS = {
    "request_id": KeywordField(F.TRACE_ID),
    "client_request_id": KeywordField(F.CLIENT_REQUEST_ID, True, lower(F.CLIENT_REQUEST_ID)),
    "status": KeywordField(F.STATE, False, lower(F.STATE)),
    "name": KeywordField(F.NAME, True, lower(F.NAME)),
    "run_id": KeywordField(F.RUN_ID, True, lower(F.RUN_ID)),
    "experiment_id": KeywordField(F.EXPERIMENT_ID),
}
NUMERIC_ATTRIBUTES = {
    "timestamp_ms": F.TIMESTAMP_MS,
    "execution_time_ms": F.EXECUTION_TIME_MS,
    "end_time_ms": F.END_TIME_MS,
}
TOKEN_FIELDS = {
    "input_tokens": F.INPUT_TOKENS,
    "output_tokens": F.OUTPUT_TOKENS,
    "total_tokens": F.TOTAL_TOKENS,
}


LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"


def prompt_needles(value: Any) -> list[str]:
    """What the linked-prompts tag's JSON holds, as text, for ``prompt = 'name/version'``."""
    name, _, version = str(value).partition("/")
    needles = [json.dumps({"name": name, "version": version})]
    if version.isdigit():
        needles.append(json.dumps({"name": name, "version": int(version)}))
    return needles


def _prompt(c: Comparison) -> Query:
    """``prompt = 'name/version'``: a prompt version linked to the trace (MLflow's
    LinkPromptsToTrace, all MLflow's store searches), or listed in the trace's tag
    ``mlflow.linkedPrompts`` (a JSON list of ``{"name", "version"}``; MLflow's client writes the
    tag and the link together, and traces logged before links existed here have only the tag)."""
    matches = [
        _wildcard(f"{F.TAGS}.{F.ENTRY_VALUE}", "*" + escape_wildcard(needle) + "*")
        for needle in prompt_needles(c.value)
    ]
    tagged = _term(f"{F.TAGS}.{F.ENTRY_KEY}", LINKED_PROMPTS_TAG)
    in_tag = _nested(F.TAGS, {"bool": {"filter": [tagged], "should": matches, "minimum_should_match": 1}})
    return _any(_term(F.LINKED_PROMPTS, str(c.value)), in_tag)


RUN_ID = ATTRIBUTE_KEYWORDS["run_id"]


def _run_id(c: Comparison) -> Query:
    """``run_id``: the trace's source run (metadata ``mlflow.sourceRun``); for ``=`` alone, as
    MLflow's store does, also a run linked to the trace (LinkTracesToRun). Every other
    comparator looks at the source run only, as MLflow's."""
    source_run = _keyword_op(RUN_ID, c)
    if c.op is not Op.EQ:
        return source_run
    return _any(source_run, _term(F.LINKED_RUN_IDS, c.value))


ATTRIBUTE_TRANSFORMS: dict[str, Callable[[Comparison], Query]] = {
    **{name: _keyword_field(keyword) for name, keyword in ATTRIBUTE_KEYWORDS.items()},
    **{name: _numeric_field(field) for name, field in NUMERIC_ATTRIBUTES.items()},
    "run_id": _run_id,
    "prompt": _prompt,
}


def _attribute(c: Comparison) -> Query:
    assert isinstance(c.field, Attribute)
    transform = ATTRIBUTE_TRANSFORMS.get(c.field.name)
    if transform is None:
        raise UnsupportedError(f"Unsupported field {c.field!r}", c.position)
    return transform(c)


_EntryOp = Callable[[str, Query, Comparison], Query]


def _entry_negation(positive: Op) -> _EntryOp:
    def negation(path: str, has_key: Query, c: Comparison) -> Query:
        value_query = KEYWORD_OPS[positive](KeywordField(f"{path}.{F.ENTRY_VALUE}"), c.value, c.position)
        return _nested(path, {"bool": {"filter": [has_key], "must_not": [value_query]}})

    return negation


# A tag or metadata comparison has MLflow's existence semantics: a trace without the key never
# matches, != included; IS NULL is the absence of the key. Other comparators are the value's.
ENTRY_OPS: dict[Op, _EntryOp] = {
    Op.IS_NULL: lambda path, has_key, c: _must_not(_nested(path, has_key)),
    Op.IS_NOT_NULL: lambda path, has_key, c: _nested(path, has_key),
    Op.NE: _entry_negation(Op.EQ),
    Op.NOT_IN: _entry_negation(Op.IN),
}


def _entry(path: str, c: Comparison) -> Query:
    assert isinstance(c.field, Tag | Metadata)
    has_key = _term(f"{path}.{F.ENTRY_KEY}", c.field.key)
    special = ENTRY_OPS.get(c.op)
    if special is not None:
        return special(path, has_key, c)
    value = KeywordField(f"{path}.{F.ENTRY_VALUE}", ci_field=lower(f"{path}.{F.ENTRY_VALUE}"))
    return _nested(path, _all(has_key, _keyword_op(value, c)))


def _wildcard_field_like(field: str, literal: str, case_insensitive: bool) -> Callable[[Any, int], Query]:
    """LIKE/ILIKE on a ``wildcard`` field: ``literal`` then the pattern (``wildcard_field_like``)."""

    def like(value: Any, position: int) -> Query:
        wildcard, regexp = wildcard_field_like(literal, value, case_insensitive, position)
        if regexp is None:
            return _wildcard(field, wildcard, case_insensitive)
        query = _regexp(field, regexp)
        if case_insensitive:
            query["regexp"][field]["case_insensitive"] = True
        return query

    return like


SPAN_CONTENT_OPS: dict[Op, Callable[[Any, int], Query]] = {
    Op.LIKE: _wildcard_field_like(F.SPAN_CONTENT, "", case_insensitive=False),
    Op.ILIKE: _wildcard_field_like(F.SPAN_CONTENT, "", case_insensitive=True),
}


def _span_content(c: Comparison) -> Query:
    return comparator(SPAN_CONTENT_OPS, c.op, "span.content", c.position)(c.value, c.position)


# Inside one span, name, type and status always exist, so != is simply "not equal" (MLflow: some
# span whose name is not X).
SPAN_KEYWORDS = {
    "name": KeywordField(F.SPAN_NAME, ci_field=lower(F.SPAN_NAME)),
    "type": KeywordField(F.SPAN_TYPE, ci_field=lower(F.SPAN_TYPE)),
    "status": KeywordField(F.SPAN_STATUS, ci_field=lower(F.SPAN_STATUS)),
}
SPAN_NUMERIC = {"duration_ms": F.SPAN_DURATION_MS}
SPAN_FIELD_TRANSFORMS: dict[str, Callable[[Comparison], Query]] = {
    **{name: _keyword_field(keyword) for name, keyword in SPAN_KEYWORDS.items()},
    **{name: _numeric_field(field) for name, field in SPAN_NUMERIC.items()},
    "content": _span_content,
}


def _span_field(c: Comparison) -> Query:
    assert isinstance(c.field, SpanField)
    return SPAN_FIELD_TRANSFORMS[c.field.name](c)


# ``span.attributes.<k>`` on the span's ``key<US>value`` entries, with the value decoded from its
# JSON string: ``= 'gpt-4'`` matches the attribute ``"gpt-4"`` (MLflow never matches; see
# COMPATIBILITY).
_SpanAttributeOp = Callable[[str, Any, int], Query]


def _has_attribute(key: str) -> Query:
    return {"prefix": {F.SPAN_ATTRIBUTES: key + ENTRY_SEPARATOR}}


def _attribute_terms(key: str, values: Any) -> Query:
    return {"terms": {F.SPAN_ATTRIBUTES: [key + ENTRY_SEPARATOR + v for v in values]}}


def _attribute_like(case_insensitive: bool) -> _SpanAttributeOp:
    """``span.attributes.<key> LIKE value`` over ``key<US>value`` entries."""
    return lambda key, value, position: _wildcard_field_like(
        F.SPAN_ATTRIBUTES, key + ENTRY_SEPARATOR, case_insensitive
    )(value, position)


def attribute_regexp(key: str, value: str, position: int) -> str:
    """The Lucene regexp of ``span.attributes.<key> RLIKE value`` over ``key<US>value`` entries."""
    regexp = rlike_to_regexp(value, position)
    literal_key = "".join(_lucene_literal(char) for char in key) + ENTRY_SEPARATOR
    # OpenSearch 2.x wildcard fields find nothing for a regexp whose language is one string
    # written with groups, classes or escapes (it looks the pattern's text up as that string).
    # A second alternative no entry can equal (a bare separator: attribute keys are never
    # empty) keeps the language larger than one string.
    return f"{literal_key}({regexp})|{ENTRY_SEPARATOR}"


def _attribute_rlike(key: str, value: Any, position: int) -> Query:
    return _regexp(F.SPAN_ATTRIBUTES, attribute_regexp(key, value, position))


SPAN_ATTRIBUTE_OPS: dict[Op, _SpanAttributeOp] = {
    Op.EQ: lambda key, value, position: _term(F.SPAN_ATTRIBUTES, key + ENTRY_SEPARATOR + value),
    Op.IN: lambda key, values, position: _attribute_terms(key, values),
    Op.NE: lambda key, value, position: {
        "bool": {
            "filter": [_has_attribute(key)],
            "must_not": [_term(F.SPAN_ATTRIBUTES, key + ENTRY_SEPARATOR + value)],
        }
    },
    Op.NOT_IN: lambda key, values, position: {
        "bool": {"filter": [_has_attribute(key)], "must_not": [_attribute_terms(key, values)]}
    },
    Op.LIKE: _attribute_like(case_insensitive=False),
    Op.ILIKE: _attribute_like(case_insensitive=True),
    Op.RLIKE: _attribute_rlike,
    Op.IS_NOT_NULL: lambda key, value, position: _has_attribute(key),
}


def _span_attribute(c: Comparison) -> Query:
    assert isinstance(c.field, SpanAttribute)
    key = c.field.key
    return comparator(SPAN_ATTRIBUTE_OPS, c.op, f"span.attributes.{key}", c.position)(
        key, c.value, c.position
    )


# One span comparison, evaluated inside the spans' nested documents.
SPAN_TRANSFORMS: dict[type, Callable[[Comparison], Query]] = {
    SpanField: _span_field,
    SpanAttribute: _span_attribute,
}


def _span_clause(c: Comparison) -> Query:
    return SPAN_TRANSFORMS[type(c.field)](c)


# Valid assessments of a kind and name (overridden ones are invalid); values compare as MLflow
# compares them: the JSON text, or for = and != also json.dumps of the literal.
_AssessmentOp = Callable[[list[Query], Comparison], Query]


def assessment_spellings(value: Any) -> list[str]:
    """The stored values an assessment ``=`` matches. MLflow stores json.dumps(value) (non-ASCII
    escaped) and compares with the literal and its json.dumps; values logged by our SDK keep
    non-ASCII text as is, so that spelling too."""
    return sorted({str(value), json.dumps(value), json.dumps(value, ensure_ascii=False)})


def _assessment_values(value: Any) -> Query:
    return {"terms": {F.ASSESSMENT_VALUE: assessment_spellings(value)}}


def _assessment_numeric(select: list[Query], c: Comparison) -> Query:
    condition = _numeric_op(F.ASSESSMENT_NUMERIC_VALUE, c.op, c.value, c.position)
    return _nested(F.ASSESSMENTS, _all(*select, condition))


# The positive form of each comparator (IS NULL is the negation of IS NOT NULL's): some valid
# assessment of the kind and name, selected by ``select``, whose value passes.
ASSESSMENT_OPS: dict[Op, _AssessmentOp] = {
    Op.IS_NOT_NULL: lambda select, c: _nested(F.ASSESSMENTS, _all(*select)),
    Op.EQ: lambda select, c: _nested(F.ASSESSMENTS, _all(*select, _assessment_values(c.value))),
    Op.NE: lambda select, c: _nested(
        F.ASSESSMENTS, {"bool": {"filter": select, "must_not": [_assessment_values(c.value)]}}
    ),
    **dict.fromkeys(_RANGE_OPS, _assessment_numeric),
}
ASSESSMENT_VALUE = KeywordField(F.ASSESSMENT_VALUE, ci_field=lower(F.ASSESSMENT_VALUE))

# Session-scoped assessments (MLflow 3.17's SqlAlchemyStore._get_session_scoped_trace_ids): an
# assessment whose metadata has the key ``mlflow.trace.session`` (whatever its value), logged on
# a trace that has a session, counts for every trace of that trace's session (the trace's own
# metadata ``mlflow.trace.session``, not the assessment's), within the searched experiments.
# OpenSearch cannot join, so the search asks first which sessions those are
# (``session_source_query``, ``search_api.search``) and passes them in as ``Sessions``.
Sessions = Callable[[Comparison], "frozenset[str] | set[str]"]
"""For an assessment comparison, the ids of the sessions whose session-scoped assessments match
it (for IS NULL and IS NOT NULL: have a valid one of that kind and name)."""


def _assessment_select(field: Assessment, *extra: Query) -> list[Query]:
    return [
        _term(F.ASSESSMENT_KIND, field.kind),
        _term(F.ASSESSMENT_NAME, field.name),
        _term(F.ASSESSMENT_VALID, True),
        *extra,
    ]


def _assessment_match(c: Comparison, select: list[Query]) -> Query:
    """Some assessment that ``select`` picks matches ``c`` (IS NULL: as IS NOT NULL)."""
    op = Op.IS_NOT_NULL if c.op is Op.IS_NULL else c.op
    special = ASSESSMENT_OPS.get(op)
    if special is not None:
        return special(select, c)
    return _nested(F.ASSESSMENTS, _all(*select, _keyword_op(ASSESSMENT_VALUE, c)))


def session_source_query(c: Comparison) -> Query:
    """The traces holding a session-scoped assessment that matches ``c`` (IS NULL: any valid one
    of that kind and name), for a trace that has a session: their ``session_id`` values are the
    sessions ``c`` covers."""
    assert isinstance(c.field, Assessment)
    scoped = _assessment_select(c.field, _exists(F.ASSESSMENT_SESSION_ID))
    return _all(_assessment_match(c, scoped), _exists(F.SESSION_ID))


def _assessment(c: Comparison, sessions: Sessions | None) -> Query:
    assert isinstance(c.field, Assessment)
    query = _assessment_match(c, _assessment_select(c.field))
    covered = sorted(sessions(c)) if sessions is not None else []
    if covered:
        query = {"bool": {"should": [query, {"terms": {F.SESSION_ID: covered}}], "minimum_should_match": 1}}
    return _must_not(query) if c.op is Op.IS_NULL else query


def _issue(c: Comparison) -> Query:
    return _nested(F.ASSESSMENTS, _all(_term(F.ASSESSMENT_KIND, "issue"), _term(F.ASSESSMENT_NAME, c.value)))


def _token_usage(c: Comparison) -> Query:
    assert isinstance(c.field, TokenUsage)
    return _numeric_op(TOKEN_FIELDS[c.field.key], c.op, c.value, c.position)


# ---------------------------------------------------------------- nodes

FIELD_TRANSFORMS: dict[type, Callable[[Comparison], Query]] = {
    Attribute: _attribute,
    Tag: lambda c: _entry(F.TAGS, c),
    Metadata: lambda c: _entry(F.METADATA, c),
    SpanField: lambda c: _nested(F.SPANS, _span_clause(c)),
    SpanAttribute: lambda c: _nested(F.SPANS, _span_clause(c)),
    Issue: _issue,
    TokenUsage: _token_usage,
}


def _comparison(c: Comparison, sessions: Sessions | None) -> Query:
    if isinstance(c.field, Assessment):
        return _assessment(c, sessions)
    transform = FIELD_TRANSFORMS.get(type(c.field))
    if transform is None:
        raise UnsupportedError(f"Unsupported field {c.field!r}", c.position)
    return transform(c)


def _is_span(node: Node) -> bool:
    return isinstance(node, Comparison) and type(node.field) in SPAN_TRANSFORMS


def _and(node: And, sessions: Sessions | None) -> Query:
    # MLflow: every span clause of a conjunction must hold for one and the same span.
    span_clauses = [_span_clause(item) for item in node.items if _is_span(item)]  # type: ignore[arg-type]
    others = [to_query(item, sessions) for item in node.items if not _is_span(item)]
    if span_clauses:
        others.append(_nested(F.SPANS, _all(*span_clauses)))
    return _all(*others)


def _or(node: Or, sessions: Sessions | None) -> Query:
    return {"bool": {"should": [to_query(item, sessions) for item in node.items], "minimum_should_match": 1}}


def _not(node: Not, sessions: Sessions | None) -> Query:
    return _must_not(to_query(node.item, sessions))


# From AST node type to its query (sqlglot's Generator.TRANSFORMS).
TRANSFORMS: dict[type, Callable[[Any, Sessions | None], Query]] = {
    Comparison: _comparison,
    And: _and,
    Or: _or,
    Not: _not,
}


def to_query(node: Node | None, sessions: Sessions | None = None) -> Query:
    """The OpenSearch query for a parsed filter (``None``: every trace). ``sessions`` gives the
    sessions each assessment comparison covers through session-scoped assessments (MLflow's
    meaning; ``search_api.search`` looks them up); without it, an assessment counts for the
    trace it was logged on only."""
    if node is None:
        return {"match_all": {}}
    transform = TRANSFORMS.get(type(node))
    if transform is None:
        raise UnsupportedError(f"Unsupported filter node {type(node).__name__}")
    return transform(node, sessions)


def experiments_query(experiment_ids: list[str]) -> Query:
    """Restrict to these experiments (MLflow's ``locations``); an empty list matches nothing."""
    return {"terms": {F.EXPERIMENT_ID: experiment_ids}} if experiment_ids else _MATCH_NONE


# ---------------------------------------------------------------- order_by
#
# NULLs last in both directions, as MLflow orders them.

_SORT_FIELDS = {
    "timestamp_ms": F.TIMESTAMP_MS,
    "execution_time_ms": F.EXECUTION_TIME_MS,
    "end_time_ms": F.END_TIME_MS,
    "status": F.STATE,
    "name": F.NAME,
    "run_id": F.RUN_ID,
    "experiment_id": F.EXPERIMENT_ID,
}


def _sort_attribute(field: Attribute, direction: str) -> list[Query]:
    if field.name == "request_id":
        # Indices made before these fields existed sort their traces as if the field were
        # missing (unmapped_type), instead of failing the search.
        return [
            {key: {"order": direction, "missing": "_last", "unmapped_type": "long"}}
            for key in (F.TRACE_ORDER_HIGH, F.TRACE_ORDER_LOW)
        ]
    return [{_SORT_FIELDS[field.name]: {"order": direction, "missing": "_last"}}]


def _sort_entry(path: str, field: Tag | Metadata, direction: str) -> list[Query]:
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


# From the ordered field's type to its sort clauses.
SORT_TRANSFORMS: dict[type, Callable[[Any, str], list[Query]]] = {
    Attribute: _sort_attribute,
    TokenUsage: lambda field, direction: [
        {TOKEN_FIELDS[field.key]: {"order": direction, "missing": "_last"}}
    ],
    Tag: lambda field, direction: _sort_entry(F.TAGS, field, direction),
    Metadata: lambda field, direction: _sort_entry(F.METADATA, field, direction),
}


def _sort_clauses(order: OrderBy) -> list[Query]:
    transform = SORT_TRANSFORMS.get(type(order.field))
    if transform is None:
        raise UnsupportedError(f"Cannot order by {order.field!r}")
    return transform(order.field, "asc" if order.ascending else "desc")


def to_sort(order_by: list[OrderBy]) -> list[Query]:
    """Sort clauses for already-completed order_by clauses (see ``search_api.dsl.with_default_order``)."""
    return [clause for order in order_by for clause in _sort_clauses(order)]
