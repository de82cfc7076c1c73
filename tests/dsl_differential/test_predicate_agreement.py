"""The DSL's two backends agree: for every filter, the in-memory predicate (``indexer.predicate``)
accepts exactly the traces OpenSearch returns for the generated query (``indexer.query``).

(a) Every filter of the differential suite (``cases.CASES``, the ``DEVIATIONS`` and the filters
their expectations are built from) runs through the search API's path on the dataset's index and
through the predicate on the same traces' documents: the same trace ids for every accepted
filter, and the same refusal (``UnsupportedError``, same message) for the rest.
(b) Hypothesis builds filters from the dataset's own keys, values, substrings, patterns and
numbers (so that they match some traces and not others), plus the parser fuzz's random leaves,
combined with AND, OR and NOT, and checks the same.

Both need the OpenSearch of infra/up (a missing server fails under CI=true; conftest).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from dsl.test_parser_fuzz import leaf as fuzz_leaf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch

from dsl_differential.cases import CASES, Case, substitute
from dsl_differential.dataset import LINKED_RUN, build_dataset
from dsl_differential.test_differential import DEVIATIONS
from dsl_differential.test_generated_queries import parsed
from tracestream.indexer import IndexNames
from tracestream.indexer.document import searched_fields
from tracestream.indexer.mapping import ENTRY_SEPARATOR
from tracestream.indexer.predicate import compile_filter, sessions_in
from tracestream.indexer.query import Sessions, to_query
from tracestream.schemas.records import CompletedTrace
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
    ParseError,
    SpanAttribute,
    SpanField,
    Tag,
    TokenUsage,
    UnsupportedError,
    parse_filter,
)
from tracestream.search_api.search import SearchError, TraceSearch
from tracestream.settings import Settings

DATASET = build_dataset()


def _filters() -> list[str]:
    cases = [*CASES, *(d.case for d in DEVIATIONS)]
    cases += [
        Case(q)
        for d in DEVIATIONS
        for q in [*d.mlflow.queries(), *d.ours.queries()]
        if not q.startswith("<<")
    ]
    texts = (substitute(c.filter, DATASET) for c in cases if c.filter is not None)
    return list(dict.fromkeys(t.replace("<<linked_run>>", LINKED_RUN) for t in texts))


FILTERS = _filters()


def _accepted(text: str) -> bool:
    try:
        parse_filter(text)
    except ParseError:
        return False
    return True


ACCEPTED = [text for text in FILTERS if _accepted(text)]


@pytest.fixture(scope="session")
def documents(search_settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """Each trace's searched fields, built as the index's documents were (conftest)."""
    limit = search_settings.indexer.max_indexed_span_content_bytes
    return [(trace["trace_id"], searched_fields(trace, limit)) for trace in DATASET]


def in_memory(
    node: Node | None, documents: list[tuple[str, dict[str, Any]]], sessions: Sessions | None = None
) -> set[str]:
    predicate = compile_filter(node, sessions)
    return {trace_id for trace_id, document in documents if predicate(document)}


def sessions_of(documents: list[tuple[str, dict[str, Any]]]) -> Sessions:
    """The search's session lookup, in memory over every document of the searched experiments."""
    return sessions_in(document for _id, document in documents)


def test_the_documents_are_the_indexed_traces(dataset: list[CompletedTrace]) -> None:
    assert [t["trace_id"] for t in dataset] == [t["trace_id"] for t in DATASET]


def test_the_filter_set_is_the_whole_differential_suite() -> None:
    # Guards against a refactor of cases.py that silently empties this test.
    assert len(FILTERS) >= 300
    assert len(ACCEPTED) >= 200


@pytest.mark.parametrize("text", ACCEPTED)
def test_same_traces_as_opensearch(
    text: str, opensearch: OpenSearch, search_settings: Settings, documents: list[tuple[str, dict[str, Any]]]
) -> None:
    node = parse_filter(text)
    searcher = TraceSearch(opensearch, search_settings)
    locations = sorted({t["info"]["location"]["experiment_id"] for t in DATASET})
    try:
        page = searcher.search(text, None, 1000, None, locations, False)
    except SearchError as exc:
        # The generator refused it; the predicate refuses it with the same message.
        with pytest.raises(UnsupportedError) as refused:
            compile_filter(node, sessions_of(documents))
        assert refused.value.message == exc.message
        return
    ids = {trace["info"]["trace_id"] for trace in page.traces}
    # The search looks up the sessions that session-scoped assessments cover in the index; the
    # predicate is given the same lookup done over the documents (every trace is searched here).
    assert in_memory(node, documents, sessions_of(documents)) == ids


SESSION_FILTERS = [
    "feedback.session_quality = 'good'",
    "feedback.conversation = 'resolved'",
    "feedback.conversation != 'resolved'",
    "feedback.conversation IS NULL",
    "feedback.conversation IS NOT NULL",
    "feedback.conversation_score > 3",
    "expectation.conversation_goal IS NULL",
]


@pytest.mark.parametrize("text", SESSION_FILTERS)
def test_session_scoped_assessments_need_the_lookup(
    text: str, opensearch: OpenSearch, search_settings: Settings, documents: list[tuple[str, dict[str, Any]]]
) -> None:
    """Session-scoped assessments do change these answers (the suite reaches them), and without a
    lookup, as the stream's alert rules evaluate one trace at a time, both backends count an
    assessment for its own trace only, and still agree."""
    node = parse_filter(text)
    with_sessions = in_memory(node, documents, sessions_of(documents))
    own_only = in_memory(node, documents)
    assert with_sessions != own_only
    assert text in ACCEPTED
    body = {"query": to_query(node), "size": len(DATASET), "_source": False, "track_total_hits": False}
    index = IndexNames.from_settings(search_settings).read_alias
    hits = opensearch.search(index=index, body=body)["hits"]["hits"]
    assert {hit["_id"] for hit in hits} == own_only


# ---------------------------------------------------------------- (b) generated filters


def _pool(values: Any) -> list[Any]:
    return sorted({v for v in values if v is not None}, key=repr)


_fields = [searched_fields(t, 131_072) for t in DATASET]
_spans = [s for f in _fields for s in f["spans"]]
_entries = [e.split(ENTRY_SEPARATOR, 1) for s in _spans for e in s["attributes"]]
_assessments = [a for f in _fields for a in f["assessments"]]

TAG_KEYS = _pool(e["key"] for f in _fields for e in f["tags"])
TAG_VALUES = _pool(e["value"] for f in _fields for e in f["tags"])
METADATA_KEYS = _pool(e["key"] for f in _fields for e in f["metadata"])
METADATA_VALUES = _pool(e["value"] for f in _fields for e in f["metadata"] if len(e["value"]) < 80)
ATTRIBUTE_STRINGS = {
    "status": _pool(f["state"] for f in _fields),
    "request_id": _pool(f["trace_id"] for f in _fields[:10]),
    "client_request_id": _pool(f["client_request_id"] for f in _fields),
    "name": _pool(f["name"] for f in _fields),
    "run_id": _pool(f["run_id"] for f in _fields),
}
ATTRIBUTE_NUMBERS = {
    "timestamp_ms": _pool(f["timestamp_ms"] for f in _fields),
    "execution_time_ms": _pool(f["execution_time_ms"] for f in _fields),
    "end_time_ms": _pool(f["end_time_ms"] for f in _fields),
}
SPAN_STRINGS = {
    "name": _pool(s["name"] for s in _spans),
    "type": _pool(s["type"] for s in _spans),
    "status": _pool(s["status"] for s in _spans),
}
SPAN_DURATIONS = _pool(s["duration_ms"] for s in _spans)
CONTENT_WORDS = _pool(w for s in _spans for c in s["content"] for w in re.findall(r"[^ ,:{}\[\]]{3,}", c))[
    :400
]
ATTRIBUTE_KEYS = _pool(k for k, _ in _entries)
ATTRIBUTE_VALUES = _pool(v for _, v in _entries if len(v) < 60)
ASSESSMENT_NAMES = _pool((a["kind"], a["name"]) for a in _assessments if a["kind"] != "issue")
ASSESSMENT_STRINGS = _pool(
    text
    for a in _assessments
    if a["value"] is not None
    for text in (a["value"], json.loads(a["value"]) if isinstance(json.loads(a["value"]), str) else None)
)
ASSESSMENT_NUMBERS = _pool(a["numeric_value"] for a in _assessments)
TOKEN_NUMBERS = _pool(v for f in _fields for v in (f["token_usage"] or {}).values())


def _numbers(pool: list[int | float]) -> st.SearchStrategy[int | float]:
    exact = st.sampled_from(pool)
    return st.one_of(
        exact,
        st.tuples(exact, st.sampled_from([-1, 1, -0.5, 0.5])).map(lambda p: p[0] + p[1]),
        exact.map(lambda n: int(n)),
    )


@st.composite
def _like(draw: st.DrawFn, pool: list[str]) -> str:
    text = draw(st.sampled_from(pool))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, len(text)))
    piece = text[start:end]
    if piece and draw(st.booleans()):
        at = draw(st.integers(0, len(piece) - 1))
        piece = piece[:at] + "_" + piece[at + 1 :]
    head = "%" if start > 0 or draw(st.booleans()) else ""
    tail = "%" if end < len(text) or draw(st.booleans()) else ""
    return head + piece + tail


REGEX_SHAPES = [
    r"\d+",
    r"^[A-Z]",
    r"[a-z]+_\d",
    r"(prod|dev)$",
    r"é",
    r"\s",
    r"^.{3}$",
    r"x|Y",
    r"\w+-\w+",
    r"%",
]


@st.composite
def _rlike(draw: st.DrawFn, pool: list[str]) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(REGEX_SHAPES))
    text = draw(st.sampled_from(pool))
    start = draw(st.integers(0, len(text)))
    piece = re.escape(text[start : draw(st.integers(start, len(text)))])
    return ("^" if start == 0 and draw(st.booleans()) else "") + piece


def _strings(pool: list[str]) -> st.SearchStrategy[str]:
    exact = st.sampled_from(pool)
    return st.one_of(exact, exact.map(str.swapcase), exact.map(str.upper), st.text(max_size=3))


def _string_clause(field: Any, pool: list[str]) -> st.SearchStrategy[Comparison]:
    return st.one_of(
        st.builds(Comparison, st.just(field), st.sampled_from([Op.EQ, Op.NE]), _strings(pool)),
        st.builds(Comparison, st.just(field), st.sampled_from([Op.LIKE, Op.ILIKE]), _like(pool)),
        st.builds(Comparison, st.just(field), st.just(Op.ILIKE), _like(pool).map(str.swapcase)),
        st.builds(Comparison, st.just(field), st.just(Op.RLIKE), _rlike(pool)),
        st.builds(
            Comparison,
            st.just(field),
            st.sampled_from([Op.IN, Op.NOT_IN]),
            st.lists(_strings(pool), min_size=1, max_size=3).map(tuple),
        ),
        st.builds(Comparison, st.just(field), st.sampled_from([Op.IS_NULL, Op.IS_NOT_NULL]), st.none()),
    )


def _numeric_clause(field: Any, pool: list[int | float]) -> st.SearchStrategy[Comparison]:
    ops = [Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.IS_NULL, Op.IS_NOT_NULL]
    return st.builds(Comparison, st.just(field), st.sampled_from(ops), _numbers(pool)).map(
        lambda c: Comparison(c.field, c.op, None) if c.op in (Op.IS_NULL, Op.IS_NOT_NULL) else c
    )


def _one_of_fields(build: Callable[[Any], st.SearchStrategy[Comparison]], fields: list[Any]) -> Any:
    return st.sampled_from(fields).flatmap(build)


dataset_leaf = st.one_of(
    *(_string_clause(Attribute(name), pool) for name, pool in ATTRIBUTE_STRINGS.items()),  # type: ignore[arg-type]
    *(_numeric_clause(Attribute(name), pool) for name, pool in ATTRIBUTE_NUMBERS.items()),  # type: ignore[arg-type]
    _one_of_fields(lambda key: _string_clause(Tag(key), TAG_VALUES), TAG_KEYS),
    _one_of_fields(lambda key: _string_clause(Metadata(key), METADATA_VALUES), METADATA_KEYS),
    *(_string_clause(SpanField(name), pool) for name, pool in SPAN_STRINGS.items()),  # type: ignore[arg-type]
    _numeric_clause(SpanField("duration_ms"), SPAN_DURATIONS),
    st.builds(
        Comparison, st.just(SpanField("content")), st.sampled_from([Op.LIKE, Op.ILIKE]), _like(CONTENT_WORDS)
    ),
    st.builds(
        Comparison,
        st.just(SpanField("content")),
        st.just(Op.ILIKE),
        st.sampled_from(CONTENT_WORDS).map(lambda w: f"%{w.swapcase()}%"),
    ),
    _one_of_fields(lambda key: _string_clause(SpanAttribute(key), ATTRIBUTE_VALUES), ATTRIBUTE_KEYS),
    _one_of_fields(
        lambda kn: st.one_of(
            _string_clause(Assessment(*kn), ASSESSMENT_STRINGS),
            _numeric_clause(Assessment(*kn), ASSESSMENT_NUMBERS),
        ),
        ASSESSMENT_NAMES,
    ),
    st.builds(Comparison, st.just(Issue()), st.just(Op.EQ), st.sampled_from(["issue-1", "x"])),
    *(
        _numeric_clause(TokenUsage(key), TOKEN_NUMBERS)
        for key in ("input_tokens", "output_tokens", "total_tokens")
    ),
)

filters = st.recursive(
    st.one_of(dataset_leaf, dataset_leaf, dataset_leaf, fuzz_leaf),
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda items: And(tuple(items))),
        st.lists(children, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
        children.map(Not),
    ),
    max_leaves=6,
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(filters)
def test_generated_filters_agree(
    opensearch: OpenSearch, search_settings: Settings, documents: list[tuple[str, dict[str, Any]]], node: Node
) -> None:
    filter_node = parsed(node)
    # Both backends get the same session lookup (the in-memory one), so that OR and NOT over
    # session-scoped assessments are compared too.
    sessions = sessions_of(documents)
    try:
        query = to_query(filter_node, sessions)
    except FilterError as error:
        with pytest.raises(UnsupportedError) as refused:
            compile_filter(filter_node, sessions)
        assert refused.value.message == error.message
        return
    body = {"query": query, "size": len(DATASET), "_source": False, "track_total_hits": False}
    index = IndexNames.from_settings(search_settings).read_alias
    hits = opensearch.search(index=index, body=body)["hits"]["hits"]
    assert in_memory(filter_node, documents, sessions) == {hit["_id"] for hit in hits}


def test_generated_filters_discriminate(documents: list[tuple[str, dict[str, Any]]]) -> None:
    """The dataset strategies reach traces: most generated leaves match some traces, not all."""
    matched = []

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(dataset_leaf)
    def sample(node: Node) -> None:
        try:
            ids = in_memory(node, documents)
        except FilterError:
            return
        matched.append(0 < len(ids) < len(documents))

    sample()
    assert sum(matched) >= 0.4 * len(matched), (sum(matched), len(matched))
