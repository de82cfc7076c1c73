"""The language's errors: one root (FilterError) with a class per stage, each knowing where in
the filter it is and showing it with a caret, while the message stays MLflow's."""

from __future__ import annotations

import pickle

import pytest

from tracestream.indexer.query import to_query
from tracestream.search_api.dsl import FilterError, ParseError, UnsupportedError, parse_filter, parse_order_by


def parse_error(text: str) -> FilterError:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    return info.value


def test_a_parse_error_points_a_caret_at_its_token() -> None:
    err = parse_error("tags.env = 'prod' AND status = OK")

    assert type(err) is ParseError
    assert err.highlight() == "tags.env = 'prod' AND status = OK\n                               ^^"


def test_the_caret_is_under_the_clause_of_an_invalid_comparator() -> None:
    err = parse_error("tags.env = 'prod' AND status < 'OK'")

    assert err.message.startswith("Invalid comparator '<'")
    assert err.highlight() is not None
    line, carets = err.highlight().split("\n")  # type: ignore[union-attr]
    assert line == "tags.env = 'prod' AND status < 'OK'"
    assert carets.index("^") == err.position


def test_in_a_filter_of_several_lines_the_caret_is_under_the_line_that_fails() -> None:
    err = parse_error("tags.env = 'prod'\n\tAND status = OK")

    assert err.highlight() == "\tAND status = OK\n\t             ^^"


def test_an_invalid_clause_lists_mlflows_units_and_marks_the_token_that_breaks_it() -> None:
    err = parse_error("tags.env = 'prod' AND status IS 'x'")

    assert isinstance(err, ParseError)
    assert err.message == "Invalid clause(s) in filter string: 'status', 'IS', ''x''"
    assert err.highlight() == "tags.env = 'prod' AND status IS 'x'\n                                ^^^"


def test_an_unfinished_clause_is_marked_where_it_stops() -> None:
    err = parse_error("tags.env = 'prod' AND nonsense")

    assert err.message == "Invalid clause(s) in filter string: 'nonsense'"
    assert err.highlight() == "tags.env = 'prod' AND nonsense\n                              ^"


def test_an_error_at_the_end_of_the_filter_points_past_its_last_character() -> None:
    err = parse_error("status =")

    assert err.position == len("status =")
    assert err.highlight() == "status =\n        ^"


def test_the_generator_refuses_what_it_cannot_translate_with_the_same_root() -> None:
    text = "span.name RLIKE '(?<=a)b'"
    node = parse_filter(text)

    with pytest.raises(UnsupportedError) as info:
        to_query(node)

    err = info.value
    assert isinstance(err, FilterError)
    assert err.message.startswith("RLIKE pattern '(?<=a)b': groups with (?...)")
    # The generator sees the AST only; the caller that has the filter passes it.
    assert err.highlight() is None
    assert err.highlight(text) == f"{text}\n^"


def test_an_order_by_error_has_no_position_and_so_no_highlight() -> None:
    with pytest.raises(ParseError) as info:
        parse_order_by(["timestamp_ms DESCENDING"])

    assert info.value.position is None
    assert info.value.highlight() is None


def test_errors_pickle_as_their_public_class_with_the_filter() -> None:
    err = parse_error("tags.env = 'prod' AND nonsense")  # the parser's private _InvalidClause

    copy = pickle.loads(pickle.dumps(err))

    assert type(copy) is ParseError
    assert (copy.message, copy.position, copy.token, copy.error_code, copy.source) == (
        err.message,
        err.position,
        err.token,
        err.error_code,
        err.source,
    )
    assert copy.highlight() == err.highlight()
