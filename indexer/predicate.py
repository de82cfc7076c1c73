"""The filter AST evaluated in memory: the DSL's second backend, beside ``indexer.query``.

``compile_filter(node)`` turns a parsed filter into ``predicate(document) -> bool`` once; the
predicate then runs against the searched fields of a trace's document
(``indexer.document.searched_fields``), the very fields the index holds for it. The alert rules of
the stream test each completed trace this way.

Nothing is resolved twice. Which document field a filter field names, which comparators a field
takes (and the error for one it does not), how a value is spelled, and every pattern come from
the OpenSearch generator's own tables and functions; this module only decides, for each kind of
query the generator writes, what OpenSearch answers for one document:

* a ``term``/``terms`` is equality with the stored value; a numeric range compares numbers, a
  ``double`` field (assessment values) as doubles;
* a missing field (``None``, or an empty list) never matches, and ``exists`` is its opposite;
* a nested query holds when one entry (tag, metadata, span, assessment) matches all of it, and a
  conjunction's span clauses are one nested query, so they hold for one and the same span;
* wildcard and regexp patterns match the whole value (Lucene), with ``.`` matching a newline and
  ``\\d``/``\\w`` ASCII only, in time linear in the value's length (RE2, like Lucene's
  automata: no pattern can stall the stream worker); a multi-valued field (span text chunks,
  attribute entries) matches when one of its values does;
* ILIKE on a field with a lowercase normalizer compares both sides lowered code point by code
  point (Lucene's ``LowerCaseFilter``); on the span text and attributes (``wildcard`` fields)
  both sides lowered as a whole (``String.toLowerCase``); on other keywords ASCII letters only.

``tests/dsl_differential/test_predicate_agreement.py`` proves both backends give the same traces
for the whole differential filter set and for generated filters.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import re2

from tracestream.indexer.mapping import ENTRY_SEPARATOR, F, lower
from tracestream.indexer.query import (
    ASSESSMENT_VALUE,
    ATTRIBUTE_KEYWORDS,
    LINKED_PROMPTS_TAG,
    NUMERIC_ATTRIBUTES,
    RUN_ID,
    SPAN_KEYWORDS,
    SPAN_NUMERIC,
    TOKEN_FIELDS,
    KeywordField,
    Sessions,
    assessment_spellings,
    attribute_regexp,
    comparator,
    like_to_wildcard,
    numeric_value,
    prompt_needles,
    rlike_to_regexp,
    wildcard_field_like,
)
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
    SpanAttribute,
    SpanField,
    Tag,
    TokenUsage,
    UnsupportedError,
)

Document = Mapping[str, Any]
Predicate = Callable[[Document], bool]
# A test of one stored value (a string, a number, or None when the field is missing).
ValueTest = Callable[[Any], bool]


def _always(_document: Document) -> bool:
    return True


# ---------------------------------------------------------------- Lucene's matching, in Python


def _wildcard_literals(pattern: str) -> list[str | None]:
    """A Lucene wildcard pattern as literal pieces, ``None`` for each ``*``; raises ValueError on
    ``?`` (patterns with one are matched by regex)."""
    pieces: list[str | None] = []
    literal: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "?":
            raise ValueError(pattern)
        if char == "*":
            pieces.extend(["".join(literal), None])
            literal = []
        else:
            if char == "\\" and i + 1 < len(pattern):
                i += 1
            literal.append(pattern[i])
        i += 1
    pieces.append("".join(literal))
    return pieces


def _wildcard(pattern: str, ascii_case_insensitive: bool = False) -> ValueTest:
    """A test of one value for a Lucene wildcard pattern (whole value). A pattern with ``*`` as
    its only wildcard is matched with string operations (a regex ``.*x.*`` over a span's text is
    several times slower); one with ``?``, or ASCII case folding, is a regex."""
    try:
        pieces = _wildcard_literals(pattern) if not ascii_case_insensitive else None
    except ValueError:
        pieces = None
    if pieces is None:
        return _fullmatch(_wildcard_regex(pattern, ascii_case_insensitive))
    literals = [p for p in pieces if p is not None]
    if len(literals) == 1:
        (whole,) = literals
        return lambda v: v == whole
    first, *middles, last = literals
    middles = [m for m in middles if m]
    if not first and not last and len(middles) == 1:  # *text*, the usual full-text shape
        (middle,) = middles
        return lambda v: v is not None and middle in v
    shortest = sum(map(len, literals))

    def glob(v: Any) -> bool:
        if v is None or len(v) < shortest or not v.startswith(first) or not v.endswith(last):
            return False
        position, end = len(first), len(v) - len(last)
        for middle in middles:  # leftmost occurrences: exact for "*"-only patterns
            found = v.find(middle, position, end)
            if found < 0:
                return False
            position = found + len(middle)
        return True

    return glob


def _wildcard_regex(pattern: str, ascii_case_insensitive: bool = False) -> str:
    """A Lucene wildcard pattern (``*``, ``?``, ``\\`` escapes) as a regex; with
    ``ascii_case_insensitive``, each ASCII letter as the class of its two cases (Lucene's
    ``case_insensitive`` on a plain keyword folds ASCII letters only)."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        else:
            if char == "\\" and i + 1 < len(pattern):
                i += 1
                char = pattern[i]
            if ascii_case_insensitive and char.isascii() and char.isalpha():
                out.append(f"[{char.lower()}{char.upper()}]")
            else:
                out.append(re.escape(char))
        i += 1
    return "".join(out)


_ASCII_CLASSES = frozenset("dDwW")


def _regexp_escape(char: str) -> str:
    # \d \D \w \W are Lucene's ASCII classes (RE2's are ASCII too); anything else escaped
    # stands for itself.
    return "\\" + char if char in _ASCII_CLASSES else re.escape(char)


def _regexp_regex(regexp: str) -> str:
    """A Lucene regexp, as ``rlike_to_regexp`` writes it (flags NONE), in RE2's syntax."""
    out = []
    i = 0
    in_class = class_start = False
    while i < len(regexp):
        char = regexp[i]
        if char == "\\":
            out.append(_regexp_escape(regexp[i + 1]))
            i += 2
            class_start = False
            continue
        if in_class:
            if char == "]" and not class_start:
                in_class = False
                out.append("]")
            elif char == "^" and class_start and out[-1] == "[":
                out.append("^")
                i += 1
                continue
            elif char == "-" and not class_start:
                out.append("-")
            else:
                out.append(re.escape(char))
            class_start = False
        elif char == "[":
            in_class = class_start = True
            out.append("[")
        elif char in "()|*+?.{},0123456789":
            out.append(char)  # structure; the generator escapes these where they are literal
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.dot_nl = True  # Lucene's "." matches a newline too
    options.never_capture = True
    options.log_errors = False  # a pattern RE2 refuses is an UnsupportedError, not a log line
    return options


_RE2_OPTIONS = _re2_options()


def _fullmatch(regex: str, source: str | None = None, position: int | None = None) -> ValueTest:
    """A test of one value for ``regex`` (RE2's syntax: ``\\d`` and ``\\w`` are ASCII) over the whole
    value; ``source``, ``position``: the filter's pattern it comes from, for an error.

    RE2, not Python's ``re``: its automata take time linear in the value's length whatever the
    pattern, as Lucene's do, where ``re`` backtracks (``(a+)+$`` or ``%a%a%a%a%b_`` against a long
    span text would hold the stream worker for minutes or more). A one-pattern ``re2.Set``
    answers with RE2's DFA alone. RE2 refuses what would make a large automaton, such as counted
    repetitions nested to more than 1000 in all (``(a{100}){20}``): an UnsupportedError, as
    OpenSearch refuses a regexp past ``max_determinized_states``."""
    matcher = re2.Set.FullMatchSet(_RE2_OPTIONS)
    try:
        matcher.Add(regex)
        matcher.Compile()
    except re2.error:
        try:
            re2.compile(regex, _RE2_OPTIONS)
        except re2.error as exc:
            detail = exc.args[0] if exc.args else exc
            reason = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
        else:
            reason = "its automaton is too large"
        raise UnsupportedError(
            f"{source or f'pattern {regex!r}'} is too complex to match in linear time ({reason})", position
        ) from None
    match = matcher.Match

    def test(value: Any) -> bool:
        # bytes, so a lone surrogate (possible in JSON-decoded text) cannot raise here
        return value is not None and match(value.encode("utf-8", "surrogatepass")) is not None

    return test


def _code_point_lower(text: str) -> str:
    """Lucene's LowerCaseFilter: ``Character.toLowerCase`` per code point (no multi-character
    mappings; U+0130 becomes ``i``)."""
    if text.isascii():
        return text.lower()
    return "".join(_lower_char(char) for char in text)


def _lower_char(char: str) -> str:
    lowered = char.lower()
    if len(lowered) == 1:
        return lowered
    return "i" if char == "\u0130" else char


def _any_value(test: ValueTest) -> ValueTest:
    """A multi-valued field (a list, or one value) matches when one of its values does."""

    def check(values: Any) -> bool:
        if values is None:
            return False
        if isinstance(values, str):
            return test(values)
        return any(map(test, values))  # map, not a generator: this runs per span per rule

    return check


# ---------------------------------------------------------------- comparators on one value
#
# One table per kind of field, with the same keys as the generator's (a test checks they are
# the same), from comparator to a test of the stored value.

_KeywordTest = Callable[[KeywordField, Any, int], ValueTest]


def _keyword_eq(k: KeywordField, value: Any, position: int) -> ValueTest:
    return lambda v: v == value


def _keyword_in(k: KeywordField, values: Any, position: int) -> ValueTest:
    members = frozenset(values)
    return lambda v: v in members


def _keyword_like(k: KeywordField, value: Any, position: int) -> ValueTest:
    return _wildcard(like_to_wildcard(value))


def _keyword_ilike(k: KeywordField, value: Any, position: int) -> ValueTest:
    if k.ci_field is not None:
        # The normalizer lowers the stored value and the pattern the generator lowered.
        test = _wildcard(_code_point_lower(like_to_wildcard(value.lower())))
        return lambda v: v is not None and test(_code_point_lower(v))
    # case_insensitive on a plain keyword folds ASCII letters only.
    return _wildcard(like_to_wildcard(value), ascii_case_insensitive=True)


def _keyword_rlike(k: KeywordField, value: Any, position: int) -> ValueTest:
    return _fullmatch(_regexp_regex(rlike_to_regexp(value, position)), f"RLIKE pattern {value!r}", position)


def _keyword_negation(positive: Op) -> _KeywordTest:
    def negation(k: KeywordField, value: Any, position: int) -> ValueTest:
        test = KEYWORD_TESTS[positive](k, value, position)
        if k.nullable:  # a missing value never matches, not even a negation
            return lambda v: v is not None and not test(v)
        return lambda v: not test(v)

    return negation


KEYWORD_TESTS: dict[Op, _KeywordTest] = {
    Op.EQ: _keyword_eq,
    Op.IN: _keyword_in,
    Op.LIKE: _keyword_like,
    Op.ILIKE: _keyword_ilike,
    Op.RLIKE: _keyword_rlike,
    Op.IS_NULL: lambda k, value, position: lambda v: v is None,
    Op.IS_NOT_NULL: lambda k, value, position: lambda v: v is not None,
    Op.NE: _keyword_negation(Op.EQ),
    Op.NOT_IN: _keyword_negation(Op.IN),
}


def _keyword_test(k: KeywordField, c: Comparison) -> ValueTest:
    return comparator(KEYWORD_TESTS, c.op, k.field, c.position)(k, c.value, c.position)


NUMERIC_TESTS: dict[Op, Callable[[int | float], ValueTest]] = {
    Op.EQ: lambda n: lambda v: v is not None and v == n,
    Op.NE: lambda n: lambda v: v is not None and v != n,
    Op.LT: lambda n: lambda v: v is not None and v < n,
    Op.LE: lambda n: lambda v: v is not None and v <= n,
    Op.GT: lambda n: lambda v: v is not None and v > n,
    Op.GE: lambda n: lambda v: v is not None and v >= n,
}
_NULL_TESTS: dict[Op, ValueTest] = {
    Op.IS_NULL: lambda v: v is None,
    Op.IS_NOT_NULL: lambda v: v is not None,
}
_DOUBLE_FIELDS = frozenset({F.ASSESSMENT_NUMERIC_VALUE})


def _long(value: Any) -> Any:
    # A long field keeps the integer part of a fractional value (OpenSearch coerces it).
    return int(value) if isinstance(value, float) else value


def _numeric_test(field: str, c: Comparison) -> ValueTest:
    if c.op in _NULL_TESTS:
        return _NULL_TESTS[c.op]
    build = comparator(NUMERIC_TESTS, c.op, field, c.position)
    number = numeric_value(c.value, c.position)
    if field in _DOUBLE_FIELDS:
        # The query's number becomes a double, as the field's values are; one beyond every
        # double stays exact, and Python's comparison decides as the generator does.
        return build(float(number) if abs(number) <= sys.float_info.max else number)
    test = build(number)
    return lambda v: test(_long(v))


# ---------------------------------------------------------------- reading the document


def _getter(path: str, parent: str | None = None) -> Callable[[Mapping[str, Any]], Any]:
    """Reads ``path`` (dotted, relative to the nested ``parent``) from a document or entry."""
    if parent is not None:
        path = path.removeprefix(parent + ".")
    head, _, rest = path.partition(".")
    if not rest:
        return lambda d: d.get(head)

    def nested(d: Mapping[str, Any]) -> Any:
        inner = d.get(head)
        return None if inner is None else inner.get(rest)

    return nested


def _on_field(path: str, test: ValueTest, parent: str | None = None) -> Predicate:
    get = _getter(path, parent)
    return lambda d: test(get(d))


def _some(path: str, test: Callable[[Mapping[str, Any]], bool]) -> Predicate:
    """A nested query: some entry of ``path`` passes ``test``."""

    def check(d: Document) -> bool:
        entries: Iterable[Mapping[str, Any]] | None = d.get(path)
        if entries is None:
            return False
        return any(map(test, entries))

    return check


# ---------------------------------------------------------------- fields


def _linked(path: str, value: Any) -> Predicate:
    """A ``term`` on a list of links: ``value`` is one of them (none stored: no match)."""
    return lambda d: value in (d.get(path) or ())


def _prompt(c: Comparison) -> Predicate:
    """As the generator's ``_prompt``: a linked prompt version, or one in the linked-prompts tag."""
    needles = prompt_needles(c.value)

    def tagged(entry: Mapping[str, Any]) -> bool:
        value = entry[F.ENTRY_VALUE]
        return entry[F.ENTRY_KEY] == LINKED_PROMPTS_TAG and any(n in value for n in needles)

    linked = _linked(F.LINKED_PROMPTS, str(c.value))
    in_tag = _some(F.TAGS, tagged)
    return lambda d: linked(d) or in_tag(d)


def _run_id(c: Comparison) -> Predicate:
    """As the generator's ``_run_id``: the source run, or for ``=`` also a linked run."""
    source_run = _on_field(RUN_ID.field, _keyword_test(RUN_ID, c))
    if c.op is not Op.EQ:
        return source_run
    linked = _linked(F.LINKED_RUN_IDS, c.value)
    return lambda d: source_run(d) or linked(d)


def _attribute(c: Comparison) -> Predicate:
    assert isinstance(c.field, Attribute)
    name = c.field.name
    if name == "run_id":
        return _run_id(c)
    if name in ATTRIBUTE_KEYWORDS:
        keyword = ATTRIBUTE_KEYWORDS[name]
        return _on_field(keyword.field, _keyword_test(keyword, c))
    if name in NUMERIC_ATTRIBUTES:
        field = NUMERIC_ATTRIBUTES[name]
        return _on_field(field, _numeric_test(field, c))
    if name == "prompt":
        return _prompt(c)
    raise UnsupportedError(f"Unsupported field {c.field!r}", c.position)


def _entry(path: str, c: Comparison) -> Predicate:
    assert isinstance(c.field, Tag | Metadata)
    key = c.field.key
    special = ENTRY_TESTS.get(c.op)
    if special is not None:
        return special(path, key, c)
    value = KeywordField(f"{path}.{F.ENTRY_VALUE}", ci_field=lower(f"{path}.{F.ENTRY_VALUE}"))
    test = _keyword_test(value, c)
    return _some(path, lambda e: e[F.ENTRY_KEY] == key and test(e[F.ENTRY_VALUE]))


def _has_entry(path: str, key: str) -> Predicate:
    return _some(path, lambda e: e[F.ENTRY_KEY] == key)


def _entry_negation(positive: Op) -> Callable[[str, str, Comparison], Predicate]:
    def negation(path: str, key: str, c: Comparison) -> Predicate:
        test = KEYWORD_TESTS[positive](KeywordField(f"{path}.{F.ENTRY_VALUE}"), c.value, c.position)
        return _some(path, lambda e: e[F.ENTRY_KEY] == key and not test(e[F.ENTRY_VALUE]))

    return negation


# Tags and metadata: MLflow's existence semantics, as in the generator's ENTRY_OPS.
ENTRY_TESTS: dict[Op, Callable[[str, str, Comparison], Predicate]] = {
    Op.IS_NULL: lambda path, key, c: _negate(_has_entry(path, key)),
    Op.IS_NOT_NULL: lambda path, key, c: _has_entry(path, key),
    Op.NE: _entry_negation(Op.EQ),
    Op.NOT_IN: _entry_negation(Op.IN),
}


# ---- one span


SpanTest = Callable[[Mapping[str, Any]], bool]


def _span_keyword(name: str) -> Callable[[Comparison], SpanTest]:
    keyword = SPAN_KEYWORDS[name]
    return lambda c: _on_field(keyword.field, _keyword_test(keyword, c), F.SPANS)


def _span_numeric(name: str) -> Callable[[Comparison], SpanTest]:
    field = SPAN_NUMERIC[name]
    return lambda c: _on_field(field, _numeric_test(field, c), F.SPANS)


def _wildcard_field_like(literal: str, case_insensitive: bool) -> Callable[[Any, int], ValueTest]:
    """The generator's LIKE/ILIKE on a ``wildcard`` field: its wildcard pattern, or a regexp of
    the same language (``wildcard_field_like``). With ``case_insensitive`` the wildcard field
    lowers the pattern and each value (String.toLowerCase)."""

    def like(value: Any, position: int) -> ValueTest:
        wildcard, _same_language_regexp = wildcard_field_like(literal, value, case_insensitive, position)
        return _lowered(_wildcard(wildcard.lower())) if case_insensitive else _wildcard(wildcard)

    return like


SPAN_CONTENT_TESTS: dict[Op, Callable[[Any, int], ValueTest]] = {
    Op.LIKE: _wildcard_field_like("", case_insensitive=False),
    Op.ILIKE: _wildcard_field_like("", case_insensitive=True),
}


def _lowered(test: ValueTest) -> ValueTest:
    return lambda v: v is not None and test(v.lower())


def _span_content(c: Comparison) -> SpanTest:
    test = comparator(SPAN_CONTENT_TESTS, c.op, "span.content", c.position)(c.value, c.position)
    return _on_field(F.SPAN_CONTENT, _any_value(test), F.SPANS)


SPAN_FIELD_TESTS: dict[str, Callable[[Comparison], SpanTest]] = {
    **{name: _span_keyword(name) for name in SPAN_KEYWORDS},
    **{name: _span_numeric(name) for name in SPAN_NUMERIC},
    "content": _span_content,
}


def _span_field(c: Comparison) -> SpanTest:
    assert isinstance(c.field, SpanField)
    return SPAN_FIELD_TESTS[c.field.name](c)


# Span attributes: the span's "key<US>value" entries, as the generator queries them.
_SpanAttributeTest = Callable[[str, Any, int], ValueTest]


def _entry_text(key: str, value: str) -> str:
    return key + ENTRY_SEPARATOR + value


def _attribute_present(key: str) -> ValueTest:
    prefix = key + ENTRY_SEPARATOR
    return _any_value(lambda entry: entry.startswith(prefix))


def _attribute_equal(key: str, values: Iterable[str]) -> ValueTest:
    wanted = frozenset(_entry_text(key, v) for v in values)
    return _any_value(lambda entry: entry in wanted)


def _attribute_absent_value(key: str, values: Iterable[str]) -> ValueTest:
    present, equal = _attribute_present(key), _attribute_equal(key, values)
    return lambda entries: present(entries) and not equal(entries)


def _attribute_like(key: str, value: Any, position: int) -> ValueTest:
    return _any_value(_wildcard_field_like(key + ENTRY_SEPARATOR, case_insensitive=False)(value, position))


def _attribute_ilike(key: str, value: Any, position: int) -> ValueTest:
    return _any_value(_wildcard_field_like(key + ENTRY_SEPARATOR, case_insensitive=True)(value, position))


def _attribute_rlike(key: str, value: Any, position: int) -> ValueTest:
    regex = _regexp_regex(attribute_regexp(key, value, position))
    return _any_value(_fullmatch(regex, f"RLIKE pattern {value!r}", position))


SPAN_ATTRIBUTE_TESTS: dict[Op, _SpanAttributeTest] = {
    Op.EQ: lambda key, value, position: _attribute_equal(key, (value,)),
    Op.IN: lambda key, values, position: _attribute_equal(key, values),
    Op.NE: lambda key, value, position: _attribute_absent_value(key, (value,)),
    Op.NOT_IN: lambda key, values, position: _attribute_absent_value(key, values),
    Op.LIKE: _attribute_like,
    Op.ILIKE: _attribute_ilike,
    Op.RLIKE: _attribute_rlike,
    Op.IS_NOT_NULL: lambda key, value, position: _attribute_present(key),
}


def _span_attribute(c: Comparison) -> SpanTest:
    assert isinstance(c.field, SpanAttribute)
    key = c.field.key
    test = comparator(SPAN_ATTRIBUTE_TESTS, c.op, f"span.attributes.{key}", c.position)(
        key, c.value, c.position
    )
    return _on_field(F.SPAN_ATTRIBUTES, test, F.SPANS)


# One span comparison, a test of one span (the generator's SPAN_TRANSFORMS).
SPAN_TESTS: dict[type, Callable[[Comparison], SpanTest]] = {
    SpanField: _span_field,
    SpanAttribute: _span_attribute,
}


def _span_clause(c: Comparison) -> SpanTest:
    return SPAN_TESTS[type(c.field)](c)


def _one_span(tests: list[SpanTest]) -> Predicate:
    """Some span passes every test (one nested query)."""
    if len(tests) == 1:
        return _some(F.SPANS, tests[0])
    return _some(F.SPANS, lambda span: all(test(span) for test in tests))


# ---- assessments


def _assessment_selector(field: Assessment) -> Callable[[Mapping[str, Any]], bool]:
    kind, name = _getter(F.ASSESSMENT_KIND, F.ASSESSMENTS), _getter(F.ASSESSMENT_NAME, F.ASSESSMENTS)
    valid = _getter(F.ASSESSMENT_VALID, F.ASSESSMENTS)
    return lambda a: kind(a) == field.kind and name(a) == field.name and valid(a) is True


_AssessmentTest = Callable[[Callable[[Mapping[str, Any]], bool], Comparison], Predicate]
_ASSESSMENT_VALUE = _getter(F.ASSESSMENT_VALUE, F.ASSESSMENTS)


def _assessment_with(test: ValueTest, path: str = F.ASSESSMENT_VALUE) -> _AssessmentTest:
    get = _getter(path, F.ASSESSMENTS)
    return lambda select, c: _some(F.ASSESSMENTS, lambda a: select(a) and test(get(a)))


def _assessment_eq(select: Callable[[Mapping[str, Any]], bool], c: Comparison) -> Predicate:
    spellings = frozenset(assessment_spellings(c.value))
    return _some(F.ASSESSMENTS, lambda a: select(a) and _ASSESSMENT_VALUE(a) in spellings)


def _assessment_ne(select: Callable[[Mapping[str, Any]], bool], c: Comparison) -> Predicate:
    spellings = frozenset(assessment_spellings(c.value))
    return _some(F.ASSESSMENTS, lambda a: select(a) and _ASSESSMENT_VALUE(a) not in spellings)


def _assessment_numeric(select: Callable[[Mapping[str, Any]], bool], c: Comparison) -> Predicate:
    test = _numeric_test(F.ASSESSMENT_NUMERIC_VALUE, c)
    return _assessment_with(test, F.ASSESSMENT_NUMERIC_VALUE)(select, c)


# The positive form of each comparator (IS NULL negates IS NOT NULL's), as the generator's
# ASSESSMENT_OPS.
ASSESSMENT_TESTS: dict[Op, _AssessmentTest] = {
    Op.IS_NOT_NULL: lambda select, c: _some(F.ASSESSMENTS, select),
    Op.EQ: _assessment_eq,
    Op.NE: _assessment_ne,
    **dict.fromkeys((Op.LT, Op.LE, Op.GT, Op.GE), _assessment_numeric),
}
_ASSESSMENT_SESSION = _getter(F.ASSESSMENT_SESSION_ID, F.ASSESSMENTS)
_SESSION = _getter(F.SESSION_ID)


def _assessment_match(c: Comparison, select: Callable[[Mapping[str, Any]], bool]) -> Predicate:
    op = Op.IS_NOT_NULL if c.op is Op.IS_NULL else c.op
    special = ASSESSMENT_TESTS.get(op)
    if special is not None:
        return special(select, c)
    return _assessment_with(_keyword_test(ASSESSMENT_VALUE, c))(select, c)


def session_source(c: Comparison) -> Predicate:
    """``indexer.query.session_source_query``: the trace has a session and holds a session-scoped
    assessment matching ``c`` (IS NULL: any valid one of that kind and name)."""
    assert isinstance(c.field, Assessment)
    select = _assessment_selector(c.field)
    holds = _assessment_match(c, lambda a: select(a) and _ASSESSMENT_SESSION(a) is not None)
    return lambda d: _SESSION(d) is not None and holds(d)


def sessions_in(documents: Iterable[Document]) -> Sessions:
    """The ``Sessions`` of a set of documents (the search's lookup, in memory): for an assessment
    comparison, the sessions of the documents that hold a matching session-scoped assessment.
    Only a caller holding every trace of the searched experiments gets MLflow's answer."""
    kept = list(documents)

    def lookup(c: Comparison) -> frozenset[str]:
        source = session_source(c)
        return frozenset(_SESSION(d) for d in kept if source(d))

    return lookup


def _assessment(c: Comparison, sessions: Sessions | None) -> Predicate:
    assert isinstance(c.field, Assessment)
    own = _assessment_match(c, _assessment_selector(c.field))
    covered = sessions(c) if sessions is not None else frozenset()
    if covered:
        direct = own

        def own_or_session(d: Document) -> bool:
            return direct(d) or _SESSION(d) in covered

        own = own_or_session
    return _negate(own) if c.op is Op.IS_NULL else own


def _issue(c: Comparison) -> Predicate:
    kind, name = _getter(F.ASSESSMENT_KIND, F.ASSESSMENTS), _getter(F.ASSESSMENT_NAME, F.ASSESSMENTS)
    return _some(F.ASSESSMENTS, lambda a: kind(a) == "issue" and name(a) == c.value)


def _token_usage(c: Comparison) -> Predicate:
    assert isinstance(c.field, TokenUsage)
    field = TOKEN_FIELDS[c.field.key]
    return _on_field(field, _numeric_test(field, c))


# ---------------------------------------------------------------- nodes

FIELD_TESTS: dict[type, Callable[[Comparison], Predicate]] = {
    Attribute: _attribute,
    Tag: lambda c: _entry(F.TAGS, c),
    Metadata: lambda c: _entry(F.METADATA, c),
    SpanField: lambda c: _one_span([_span_clause(c)]),
    SpanAttribute: lambda c: _one_span([_span_clause(c)]),
    Issue: _issue,
    TokenUsage: _token_usage,
}


def _comparison(c: Comparison, sessions: Sessions | None) -> Predicate:
    if isinstance(c.field, Assessment):
        return _assessment(c, sessions)
    compile_field = FIELD_TESTS.get(type(c.field))
    if compile_field is None:
        raise UnsupportedError(f"Unsupported field {c.field!r}", c.position)
    return compile_field(c)


def _is_span(node: Node) -> bool:
    return isinstance(node, Comparison) and type(node.field) in SPAN_TESTS


def _negate(predicate: Predicate) -> Predicate:
    return lambda d: not predicate(d)


def _and(node: And, sessions: Sessions | None) -> Predicate:
    # As the generator: the conjunction's span clauses must hold for one and the same span.
    span_tests = [_span_clause(item) for item in node.items if _is_span(item)]  # type: ignore[arg-type]
    others = [compile_filter(item, sessions) for item in node.items if not _is_span(item)]
    if span_tests:
        others.append(_one_span(span_tests))
    if len(others) == 1:
        return others[0]
    if len(others) == 2:
        first, second = others
        return lambda d: first(d) and second(d)
    return lambda d: all(p(d) for p in others)


def _or(node: Or, sessions: Sessions | None) -> Predicate:
    items = [compile_filter(item, sessions) for item in node.items]
    if len(items) == 2:
        first, second = items
        return lambda d: first(d) or second(d)
    return lambda d: any(p(d) for p in items)


def _not(node: Not, sessions: Sessions | None) -> Predicate:
    return _negate(compile_filter(node.item, sessions))


# From AST node type to its predicate (the generator's TRANSFORMS).
TRANSFORMS: dict[type, Callable[[Any, Sessions | None], Predicate]] = {
    Comparison: _comparison,
    And: _and,
    Or: _or,
    Not: _not,
}


def compile_filter(node: Node | None, sessions: Sessions | None = None) -> Predicate:
    """``predicate(document) -> bool`` for a parsed filter (``None``: every trace), over the
    fields ``indexer.document.searched_fields`` builds. Raises ``UnsupportedError`` exactly where
    ``indexer.query.to_query`` does.

    ``sessions`` is ``to_query``'s: the sessions each assessment comparison covers through
    session-scoped assessments (``sessions_in`` computes them from a set of documents). Without
    it, as for the stream's alert rules, which see one completed trace at a time, an assessment
    counts for the trace it was logged on only."""
    if node is None:
        return _always
    transform = TRANSFORMS.get(type(node))
    if transform is None:
        raise UnsupportedError(f"Unsupported filter node {type(node).__name__}")
    return transform(node, sessions)
