"""The in-memory backend without servers: its comparator tables are the generator's (so both
refuse the same filters), it compiles once and evaluates many times, and a few semantics that
are easy to get wrong. Agreement with OpenSearch: tests/dsl_differential/test_predicate_agreement.py."""

from __future__ import annotations

import random

import pytest

from tracestream.indexer import predicate, query
from tracestream.indexer.document import searched_fields
from tracestream.schemas.samples import completed_trace
from tracestream.search_api.dsl import UnsupportedError, parse_filter


def test_comparator_tables_are_the_generators() -> None:
    assert predicate.KEYWORD_TESTS.keys() == query.KEYWORD_OPS.keys()
    assert predicate.NUMERIC_TESTS.keys() == query.NUMERIC_OPS.keys()
    assert predicate.ENTRY_TESTS.keys() == query.ENTRY_OPS.keys()
    assert predicate.SPAN_ATTRIBUTE_TESTS.keys() == query.SPAN_ATTRIBUTE_OPS.keys()
    assert predicate.SPAN_CONTENT_TESTS.keys() == query.SPAN_CONTENT_OPS.keys()
    assert predicate.ASSESSMENT_TESTS.keys() == query.ASSESSMENT_OPS.keys()
    assert predicate.SPAN_FIELD_TESTS.keys() == query.SPAN_FIELD_TRANSFORMS.keys()
    assert predicate.FIELD_TESTS.keys() == query.FIELD_TRANSFORMS.keys()
    assert predicate.TRANSFORMS.keys() == query.TRANSFORMS.keys()


@pytest.fixture(scope="module")
def document() -> dict[str, object]:
    trace = completed_trace(random.Random(1), min_spans=3, max_spans=6, min_io_bytes=100, max_io_bytes=800)
    return searched_fields(trace, 131_072)


def matches(text: str, document: dict[str, object]) -> bool:
    return predicate.compile_filter(parse_filter(text))(document)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status = 'OK'", True),
        ("status = 'ok'", False),
        ("status ILIKE 'ok'", True),
        ("tags.env = 'prod' AND tags.missing IS NULL", True),
        ("tags.missing != 'x'", False),  # != needs the key
        ("NOT tags.missing = 'x'", True),
        ("span.type = 'TOOL' AND span.name = 'search_kb'", True),
        ("span.type = 'TOOL' AND span.name = 'chat'", False),  # one span must hold both
        ("span.type = 'TOOL' OR span.name = 'chat'", True),
        ("span.attributes.model = 'claude-3-5-sonnet'", True),
        ("span.attributes.model RLIKE 'sonnet$'", True),
        ("trace.text LIKE '%A30736%'", True),
        ("trace.text LIKE 'A30736'", False),  # LIKE matches the whole text
        ("total_tokens > 2709 AND total_tokens <= 2710", True),
        ("feedback.rating = '2' AND feedback.rating < 2.5", True),
        ("run_id IS NULL", True),
        ("name != 'x'", True),
    ],
)
def test_semantics(text: str, expected: bool, document: dict[str, object]) -> None:
    assert matches(text, document) is expected


def test_no_filter_matches_every_trace(document: dict[str, object]) -> None:
    assert predicate.compile_filter(None)(document) is True


def test_refuses_what_the_generator_refuses() -> None:
    node = parse_filter("tags.env RLIKE '(?i)prod'")
    with pytest.raises(UnsupportedError) as generator:
        query.to_query(node)
    with pytest.raises(UnsupportedError) as in_memory:
        predicate.compile_filter(node)
    assert in_memory.value.message == generator.value.message
