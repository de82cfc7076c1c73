"""The in-memory backend's patterns run in time linear in the value (RE2, like Lucene's automata):
a pattern that makes a backtracking engine explode (``(a+)+$``, ``%a%a%a%a%a%b_``) against a long
value must not stall the stream worker, which tests every completed trace with every rule.

The cases run in a subprocess with a generous timeout (10 s; here they take milliseconds, after
the imports): Python's ``re``, which the backend used before, takes far longer than that on each
one of them alone (minutes to ages; checked by hand)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tracestream.indexer import predicate
from tracestream.search_api.dsl import UnsupportedError, parse_filter

LONG = 5000  # characters of "a": a backtracking engine needs exponential or O(n^5) steps

# A trace whose tag, span attribute, span input and trace id are long runs of "a" ending in "!".
SCRIPT = f"""
import json, random, sys
from tracestream.indexer.document import searched_fields
from tracestream.indexer.mapping import F
from tracestream.indexer.predicate import compile_filter
from tracestream.schemas.samples import completed_trace
from tracestream.search_api.dsl import parse_filter

text = "a" * {LONG} + "!"
trace = completed_trace(random.Random(1), min_spans=1, max_spans=1, min_io_bytes=10, max_io_bytes=20)
trace["info"]["tags"]["env"] = text
trace["spans"][0]["attributes"]["model"] = json.dumps(text)
trace["spans"][0]["attributes"]["mlflow.spanInputs"] = json.dumps(text)
document = searched_fields(trace, 131_072)
document[F.TRACE_ID] = "tr-" + text
print(json.dumps([compile_filter(parse_filter(f))(document) for f in json.loads(sys.argv[1])]))
"""


def evaluate(filters: list[str], timeout_s: float = 10) -> list[bool]:
    """The filters' answers for the trace of SCRIPT, from a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(filters)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    )
    return json.loads(done.stdout)


CASES = [
    ("tags.env RLIKE '(a+)+$'", False),  # nested quantifiers: exponential when backtracking
    ("tags.env RLIKE '^(a|aa)+$'", False),
    ("tags.env RLIKE 'a*a*a*a*a*b'", False),  # polynomial: O(n^6)
    ("tags.env RLIKE '(a+)+!'", True),
    ("tags.env LIKE '%a%a%a%a%a%b_'", False),  # "_" makes the wildcard a regex
    ("span.attributes.model RLIKE '(a|a)*b'", False),
    ("span.content LIKE '%a%a%a%a%a%b_'", False),
    ("request_id ILIKE 'TR-%A%A%A%A%A%B'", False),  # ASCII case folding: a regex too
    ("request_id ILIKE 'TR-%A%A%A%A%A%!'", True),
]


def test_pathological_patterns_against_a_long_value_finish() -> None:
    filters = [text for text, _ in CASES]
    assert dict(zip(filters, evaluate(filters), strict=True)) == dict(CASES)


def test_ilike_on_a_plain_keyword_folds_ascii_letters_only() -> None:
    # Lucene's case_insensitive folds ASCII only: the Kelvin sign is no "k" (RE2's own case
    # folding would say it is, so the backend writes [kK] instead).
    test = predicate.compile_filter(parse_filter("request_id ILIKE 'TR-K_'"))
    assert test({"trace_id": "tr-kx"}) is True
    assert test({"trace_id": "TR-Kx"}) is True
    assert test({"trace_id": "tr-\u212ax"}) is False
    assert predicate.compile_filter(parse_filter("request_id ILIKE 'tr-_'"))({"trace_id": "tr-\n"}) is True


def test_counted_repetitions_too_large_for_an_automaton_are_refused_with_the_pattern() -> None:
    with pytest.raises(UnsupportedError) as refused:
        predicate.compile_filter(parse_filter("tags.env RLIKE 'x(a{100}){20}'"))
    assert "RLIKE pattern 'x(a{100}){20}' is too complex" in refused.value.message
    assert refused.value.position == 0
