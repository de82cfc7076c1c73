"""Properties: any input parses or raises FilterError (nothing else), and render() round-trips."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tracestream.search_api.dsl import (
    And,
    Assessment,
    Attribute,
    Comparison,
    FilterError,
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
    parse_filter,
    parse_order_by,
    render,
    render_order_by,
)

# Pieces that reach deep into the parser far more often than random characters do.
PIECES = [
    "status",
    "tags.env",
    "tag.`a b`",
    'metadata."k"',
    "name",
    "run_id",
    "prompt",
    "text",
    "trace.text",
    "timestamp",
    "TIMESTAMP",
    "timestamp_ms",
    "span.name",
    "span.attributes.m",
    "span.attributes.",
    "span.content",
    "span.duration_ms",
    "feedback.x",
    "expectation.",
    "issue.id",
    "issue.x",
    "total_tokens",
    "metadata.`mlflow.trace.cost`",
    "TAG.x",
    "`status`",
    "=",
    "!=",
    "<>",
    "==",
    "<",
    ">=",
    "LIKE",
    "ilike",
    "RLIKE",
    "IN",
    "NOT",
    "IS",
    "NULL",
    "AND",
    "and",
    "OR",
    "(",
    ")",
    ",",
    ";",
    "'OK'",
    '"v"',
    "'a/1'",
    "'",
    "`",
    '"',
    "5",
    "-2",
    "1.5e3",
    ".",
    "OK",
    "true",
    "&&",
    "'it''s'",
    "'a\\'b'",
    "()",
    "('a', 'b')",
    "(1)",
]


def check_outcome(text: str) -> None:
    try:
        node = parse_filter(text)
    except FilterError as error:
        assert error.message
        assert error.error_code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST")
        assert error.position is None or 0 <= error.position <= len(text)
        return
    assert node is None or isinstance(node, Comparison | And | Or | Not)


@settings(max_examples=300)
@given(st.text())
def test_arbitrary_text_parses_or_raises_filter_error(text: str) -> None:
    check_outcome(text)


@settings(max_examples=500)
@given(st.lists(st.sampled_from(PIECES), max_size=12), st.sampled_from([" ", "", "  "]))
def test_token_soup_parses_or_raises_filter_error(pieces: list[str], joiner: str) -> None:
    check_outcome(joiner.join(pieces))


@settings(max_examples=200)
@given(st.lists(st.one_of(st.text(max_size=30), st.sampled_from(PIECES)), max_size=4))
def test_arbitrary_order_by_parses_or_raises_filter_error(clauses: list[str]) -> None:
    try:
        orders = parse_order_by(clauses)
    except FilterError as error:
        assert error.message
        return
    assert all(isinstance(o, OrderBy) for o in orders)


# --- round trip: canonical ASTs -> render -> parse ---------------------------------------------------

# Keys that MLflow rewrites to other fields whatever their prefix, so never a tag/metadata/assessment.
ALIASED = {"name", "prompt", "run_id", "text", "timestamp", "execution_time", "end_time"}
keys = st.text(max_size=12).filter(lambda k: k.lower() not in ALIASED)
strings = st.text(max_size=16)
string_lists = st.lists(strings, min_size=1, max_size=3).map(tuple)
numbers = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False))

STRING_OPS = [Op.EQ, Op.NE, Op.LIKE, Op.ILIKE, Op.RLIKE]
NUMERIC_OPS = [Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE]
NULL_OPS = [Op.IS_NULL, Op.IS_NOT_NULL]


def compare(fields: st.SearchStrategy, ops: list[Op], values: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(Comparison, fields, st.sampled_from(ops), values)


def exists(fields: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(Comparison, fields, st.sampled_from(NULL_OPS), st.none())


string_attributes = st.sampled_from(
    [Attribute("status"), Attribute("request_id"), Attribute("client_request_id")]
)
numeric_attributes = st.sampled_from(
    [Attribute("timestamp_ms"), Attribute("execution_time_ms"), Attribute("end_time_ms")]
)
named = st.sampled_from([Attribute("name"), Attribute("run_id")])
tags = keys.filter(lambda k: k not in ("mlflow.traceName", "mlflow.linkedPrompts")).map(Tag)
metadata = keys.filter(
    lambda k: k not in ("mlflow.sourceRun", "mlflow.trace.tokenUsage", "mlflow.trace.cost")
).map(Metadata)
reserved = st.sampled_from([Metadata("mlflow.trace.tokenUsage"), Metadata("mlflow.trace.cost")])
span_columns = st.sampled_from([SpanField("name"), SpanField("type"), SpanField("status")])
assessments = st.builds(Assessment, st.sampled_from(["feedback", "expectation"]), keys.filter(bool))
token_usage = st.sampled_from(
    [TokenUsage("input_tokens"), TokenUsage("output_tokens"), TokenUsage("total_tokens")]
)

leaf = st.one_of(
    compare(string_attributes, STRING_OPS, strings),
    compare(string_attributes, [Op.IN, Op.NOT_IN], string_lists),
    compare(numeric_attributes, NUMERIC_OPS, numbers),
    compare(named, STRING_OPS, strings),
    exists(named),
    st.builds(
        Comparison,
        st.just(Attribute("prompt")),
        st.just(Op.EQ),
        st.from_regex(r"[a-z]{1,5}/[0-9]{1,2}", fullmatch=True),
    ),
    compare(tags | metadata, STRING_OPS, strings),
    exists(tags | metadata),
    compare(reserved, [Op.EQ, Op.NE], strings),
    exists(reserved),
    compare(span_columns, STRING_OPS, strings),
    compare(span_columns, [Op.IN, Op.NOT_IN], string_lists),
    compare(st.just(SpanField("content")), [Op.LIKE, Op.ILIKE], strings),
    compare(st.just(SpanField("duration_ms")), NUMERIC_OPS, numbers),
    compare(keys.filter(bool).map(SpanAttribute), STRING_OPS, strings),
    compare(assessments, STRING_OPS, strings),
    compare(assessments, [Op.LT, Op.LE, Op.GT, Op.GE], numbers),
    exists(assessments),
    compare(st.just(Issue()), [Op.EQ], strings),
    compare(token_usage, NUMERIC_OPS, numbers),
    exists(token_usage),
)

trees = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda items: And(tuple(items))),
        st.lists(children, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
        children.map(Not),
    ),
    max_leaves=8,
)


def flatten(node: Node) -> Node:
    """The parser's canonical form: nested ANDs (ORs) are one AND (OR)."""
    if isinstance(node, Comparison):
        return node
    if isinstance(node, Not):
        return Not(flatten(node.item))
    items: list[Node] = []
    for item in map(flatten, node.items):
        items.extend(item.items if type(item) is type(node) else (item,))  # type: ignore[union-attr]
    return type(node)(tuple(items))


def renderable(node: Node) -> str:
    try:
        return render(node)
    except ValueError:
        assume(False)  # a value the language cannot express (both quote kinds, a trailing backslash)
        raise


@settings(max_examples=400)
@given(trees)
def test_render_round_trips(node: Node) -> None:
    assert parse_filter(renderable(node)) == flatten(node)


orderable_attributes = st.sampled_from(
    [
        Attribute(n)
        for n in ("status", "request_id", "experiment_id", "timestamp_ms", "end_time_ms", "name", "run_id")
    ]
)


@settings(max_examples=200)
@given(st.one_of(orderable_attributes, tags, metadata, token_usage), st.booleans())
def test_render_order_by_round_trips(field: object, ascending: bool) -> None:
    order = OrderBy(field, ascending)  # type: ignore[arg-type]
    try:
        text = render_order_by(order)
    except ValueError:
        assume(False)
        raise
    assume(text == text.strip())  # MLflow rejects clauses with outer whitespace
    assert parse_order_by([text]) == [order]
