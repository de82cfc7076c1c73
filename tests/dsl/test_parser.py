"""The filter language: what each filter means, and how each bad filter is rejected.

Expected messages are MLflow 3.18's (checked against the real SqlAlchemyStore); where MLflow
prints a Python set, the tests assert on fragments that do not depend on the set's order.
"""

from __future__ import annotations

import pickle
import re
import timeit

import pytest

from tracestream.search_api.dsl import (
    And,
    Assessment,
    Attribute,
    Comparison,
    FilterError,
    Issue,
    Metadata,
    Not,
    Op,
    Or,
    SpanAttribute,
    SpanField,
    Tag,
    TokenUsage,
    comparisons,
    parse_filter,
    render,
)
from tracestream.search_api.dsl.parser import Parser
from tracestream.search_api.dsl.tokens import TokenType, tokenize


def one(text: str) -> Comparison:
    node = parse_filter(text)
    assert isinstance(node, Comparison), node
    return node


def error(text: str) -> FilterError:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    return info.value


# --- no filter ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, ""])
def test_no_filter_means_no_filtering(text: str | None) -> None:
    assert parse_filter(text) is None


@pytest.mark.parametrize("text", ["AND", "AND AND", " and "])
def test_a_filter_of_only_ands_filters_nothing(text: str) -> None:
    assert parse_filter(text) is None


def test_a_whitespace_only_filter_is_rejected_as_mlflow_does() -> None:
    err = error("   ")
    assert err.message == "Invalid filter '   '. Could not be parsed."


# --- a realistic filter ------------------------------------------------------------------------------


def test_clauses_are_anded_in_order_with_their_positions() -> None:
    node = parse_filter("tags.env = 'prod' AND attributes.status = 'ERROR'")
    assert node == And(
        (Comparison(Tag("env"), Op.EQ, "prod"), Comparison(Attribute("status"), Op.EQ, "ERROR"))
    )
    assert [c.position for c in comparisons(node)] == [0, 22]


def test_positions_do_not_take_part_in_equality() -> None:
    assert Comparison(Tag("env"), Op.EQ, "prod", position=7) == Comparison(Tag("env"), Op.EQ, "prod")


# --- prefixes and aliases ----------------------------------------------------------------------------

ATTRIBUTE_SPELLINGS = [
    # every attribute prefix, and none
    ("status = 'OK'", Attribute("status"), "OK"),
    ("attribute.status = 'OK'", Attribute("status"), "OK"),
    ("attributes.status = 'OK'", Attribute("status"), "OK"),
    ("trace.status = 'OK'", Attribute("status"), "OK"),
    ("request_id = 'tr-1'", Attribute("request_id"), "tr-1"),
    ("trace.client_request_id = 'c-1'", Attribute("client_request_id"), "c-1"),
    # numeric attributes and their aliases
    ("timestamp_ms > 1700000000000", Attribute("timestamp_ms"), 1700000000000),
    ("trace.timestamp > 5", Attribute("timestamp_ms"), 5),
    ("`timestamp` > 1.5", Attribute("timestamp_ms"), 1.5),
    ("execution_time > 100", Attribute("execution_time_ms"), 100),
    ("attributes.execution_time_ms > 100", Attribute("execution_time_ms"), 100),
    ("end_time > 100", Attribute("end_time_ms"), 100),
    ("end_time_ms > 100", Attribute("end_time_ms"), 100),
]


@pytest.mark.parametrize(("text", "field", "value"), ATTRIBUTE_SPELLINGS)
def test_attribute_spellings(text: str, field: Attribute, value: object) -> None:
    c = one(text)
    assert (c.field, c.value) == (field, value)


@pytest.mark.parametrize(
    "text",
    [
        "name = 'chat'",
        "trace.name = 'chat'",
        "attributes.name = 'chat'",
        "tag.name = 'chat'",  # MLflow rewrites the key whatever the prefix
        "tags.NAME = 'chat'",
        "metadata.name = 'chat'",
        "feedback.name = 'chat'",
        "issue.name = 'chat'",
        "tags.mlflow.traceName = 'chat'",
    ],
)
def test_every_trace_name_spelling_is_the_name_attribute(text: str) -> None:
    assert one(text) == Comparison(Attribute("name"), Op.EQ, "chat")


@pytest.mark.parametrize(
    "text",
    [
        "run_id = 'r1'",
        "trace.run_id = 'r1'",
        "metadata.run_id = 'r1'",
        "request_metadata.RUN_ID = 'r1'",
        "metadata.mlflow.sourceRun = 'r1'",
        "expectation.run_id = 'r1'",
    ],
)
def test_every_run_id_spelling_is_the_run_id_attribute(text: str) -> None:
    assert one(text) == Comparison(Attribute("run_id"), Op.EQ, "r1")


def test_run_id_keeps_metadata_comparators() -> None:
    assert one("run_id LIKE 'abc%'") == Comparison(Attribute("run_id"), Op.LIKE, "abc%")


@pytest.mark.parametrize(
    "text", ["prompt = 'qa/3'", "tag.prompt = 'qa/3'", "tags.mlflow.linkedPrompts = 'qa/3'"]
)
def test_prompt_spellings(text: str) -> None:
    assert one(text) == Comparison(Attribute("prompt"), Op.EQ, "qa/3")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("tag.env = 'x'", Tag("env")),
        ("tags.env = 'x'", Tag("env")),
        ("tags.my.dotted.tag = 'x'", Tag("my.dotted.tag")),  # split at the first dot only
        ("tags.timestamp = 'x'", Tag("timestamp_ms")),  # MLflow's alias rewrite ignores the prefix
        ("metadata.mlflow.user = 'x'", Metadata("mlflow.user")),
        ("request_metadata.mlflow.user = 'x'", Metadata("mlflow.user")),
        ("metadata.mlflow.trace.session = 'x'", Metadata("mlflow.trace.session")),
        ("tags. = 'x'", Tag("")),
    ],
)
def test_tag_and_metadata_prefixes(text: str, field: object) -> None:
    assert one(text).field == field


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("span.name = 'x'", SpanField("name")),
        ("span.type = 'x'", SpanField("type")),
        ("span.status = 'x'", SpanField("status")),
        ("span.`name` = 'x'", SpanField("name")),
        ("span.attributes.model LIKE '%x%'", SpanAttribute("model")),
        ("span.attributes.gen_ai.request.model LIKE '%x%'", SpanAttribute("gen_ai.request.model")),
        ("span.attributes.`tool.name` LIKE '%x%'", SpanAttribute("tool.name")),
    ],
)
def test_span_prefix(text: str, field: object) -> None:
    assert one(text).field == field


@pytest.mark.parametrize(
    "text",
    [
        "trace.text ILIKE '%timeout%'",
        "attributes.text ILIKE '%timeout%'",
        "`text` ILIKE '%timeout%'",
        "span.content ILIKE '%timeout%'",
        "tags.text ILIKE '%timeout%'",
    ],
)
def test_full_text_spellings(text: str) -> None:
    assert one(text) == Comparison(SpanField("content"), Op.ILIKE, "%timeout%")


def test_full_text_comparators_are_case_insensitive_through_trace_text() -> None:
    # Only span.* comparators are checked before MLflow upper-cases them.
    assert one("trace.text like '%x%'").op is Op.LIKE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("feedback.correctness = 'true'", Comparison(Assessment("feedback", "correctness"), Op.EQ, "true")),
        ("expectation.answer != 'Paris'", Comparison(Assessment("expectation", "answer"), Op.NE, "Paris")),
        (
            "feedback.`relevance score` > 0.5",
            Comparison(Assessment("feedback", "relevance score"), Op.GT, 0.5),
        ),
        ('feedback."relevance score" <= 3', Comparison(Assessment("feedback", "relevance score"), Op.LE, 3)),
        ("expectation.score < -2", Comparison(Assessment("expectation", "score"), Op.LT, -2)),
        ("feedback.quality RLIKE '^hi'", Comparison(Assessment("feedback", "quality"), Op.RLIKE, "^hi")),
        ("feedback.quality IS NULL", Comparison(Assessment("feedback", "quality"), Op.IS_NULL)),
        ("expectation.x IS NOT NULL", Comparison(Assessment("expectation", "x"), Op.IS_NOT_NULL)),
    ],
)
def test_assessment_prefixes(text: str, expected: Comparison) -> None:
    assert one(text) == expected


def test_issue_prefix() -> None:
    assert one("issue.id = 'iss-42'") == Comparison(Issue(), Op.EQ, "iss-42")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("total_tokens > 1000", "total_tokens"),
        ("attributes.input_tokens >= 10", "input_tokens"),
        ("trace.output_tokens < 5", "output_tokens"),
        ("attribute.total_tokens = 7", "total_tokens"),
    ],
)
def test_token_usage_fields_beyond_mlflow(text: str, key: str) -> None:
    assert one(text).field == TokenUsage(key)  # type: ignore[arg-type]


def test_token_usage_can_be_absent() -> None:
    assert one("total_tokens IS NULL") == Comparison(TokenUsage("total_tokens"), Op.IS_NULL)


def test_span_duration_beyond_mlflow() -> None:
    assert one("span.duration_ms >= 2500") == Comparison(SpanField("duration_ms"), Op.GE, 2500)


def test_tags_and_metadata_named_like_token_usage_stay_tags() -> None:
    assert one("tags.total_tokens = '5'").field == Tag("total_tokens")


def test_reserved_metadata_is_plain_metadata_for_equality() -> None:
    text = "metadata.`mlflow.trace.tokenUsage` = '{\"input_tokens\": 10}'"
    assert one(text) == Comparison(Metadata("mlflow.trace.tokenUsage"), Op.EQ, '{"input_tokens": 10}')


@pytest.mark.parametrize("op", ["IS NULL", "IS NOT NULL", "!="])
def test_reserved_metadata_allows_existence_and_inequality(op: str) -> None:
    value = "" if "NULL" in op else " '{}'"
    assert one(f"metadata.`mlflow.trace.cost` {op}{value}").field == Metadata("mlflow.trace.cost")


# --- operators ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ("status = 'OK'", Op.EQ, "OK"),
        ("status != 'OK'", Op.NE, "OK"),
        ("timestamp_ms < 5", Op.LT, 5),
        ("timestamp_ms <= 5", Op.LE, 5),
        ("timestamp_ms > 5", Op.GT, 5),
        ("timestamp_ms >= 5", Op.GE, 5),
        ("status LIKE 'O%'", Op.LIKE, "O%"),
        ("status ILIKE 'o%'", Op.ILIKE, "o%"),
        ("status RLIKE '^O'", Op.RLIKE, "^O"),
        ("status IN ('OK', 'ERROR')", Op.IN, ("OK", "ERROR")),
        ("status NOT IN ('OK', 'ERROR')", Op.NOT_IN, ("OK", "ERROR")),
        ("tags.env IS NULL", Op.IS_NULL, None),
        ("tags.env IS NOT NULL", Op.IS_NOT_NULL, None),
    ],
)
def test_every_operator(text: str, op: Op, value: object) -> None:
    c = one(text)
    assert (c.op, c.value) == (op, value)


@pytest.mark.parametrize(
    "text",
    ["tags.env like 'p%'", "tags.env Like 'p%'", "tags.env LIKE 'p%'"],
)
def test_keywords_are_case_insensitive(text: str) -> None:
    assert one(text).op is Op.LIKE


def test_is_not_null_is_case_insensitive() -> None:
    assert one("metadata.k is  not   null").op is Op.IS_NOT_NULL


def test_span_not_in_is_accepted_in_lower_case() -> None:
    # MLflow builds 'NOT IN' itself, so only IN alone hits the span case quirk.
    assert one("span.name not in ('a')").op is Op.NOT_IN


def test_whitespace_around_operators_is_optional() -> None:
    node = parse_filter("tags.env='prod'AND status='OK'")
    assert node == And((Comparison(Tag("env"), Op.EQ, "prod"), Comparison(Attribute("status"), Op.EQ, "OK")))


# --- key quoting -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "tags.`my key` = 'x'",
        "tags.\"my key\" = 'x'",
        "tags.'my key' = 'x'",
        "`tags`.`my key` = 'x'",
    ],
)
def test_key_quoting_forms(text: str) -> None:
    assert one(text).field == Tag("my key")


def test_quoted_keys_may_contain_dots() -> None:
    assert one("metadata.`mlflow.trace.user` = 'x'").field == Metadata("mlflow.trace.user")


@pytest.mark.parametrize("text", ["`status` = 'OK'", "\"status\" = 'OK'"])
def test_a_quoted_bare_key_is_an_attribute(text: str) -> None:
    assert one(text).field == Attribute("status")


# --- literals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("status = 'OK'", "OK"),
        ('status = "OK"', "OK"),
        ("status = ''", ""),
        ('tags.q = "it\'s"', "it's"),
        ("tags.q = 'a\"b'", 'a"b'),
        # no escape processing: only the outer quotes go
        ("tags.q = 'it''s'", "it''s"),
        ("tags.q = 'it\\'s'", "it\\'s"),
        ("tags.v = 'v[0-9]+\\.[0-9]'", "v[0-9]+\\.[0-9]"),
        ("tags.q = '%90%%'", "%90%%"),
        ("tags.q = '世界'", "世界"),
    ],
)
def test_string_literals(text: str, value: str) -> None:
    assert one(text).value == value


@pytest.mark.parametrize(
    ("literal", "value"),
    [("10", 10), ("-5", -5), ("1.5", 1.5), ("1.5e3", 1500.0), ("1E3", 1000.0), (".5", 0.5), ("5.", 5.0)],
)
def test_number_literals(literal: str, value: float) -> None:
    c = one(f"timestamp_ms > {literal}")
    assert c.value == value and type(c.value) is type(value)


def test_a_quoted_number_on_a_numeric_attribute_is_a_number() -> None:
    assert one("execution_time_ms > '250'").value == 250


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("status IN ('OK')", ("OK",)),
        ("status IN ('OK',)", ("OK",)),
        ("status IN ( 'OK' , \"ERROR\" )", ("OK", "ERROR")),
        # list items are Python literals in MLflow (ast.literal_eval)
        ("status IN ('a\\'b')", ("a'b",)),
        ("status IN ('it''s')", ("its",)),
        ("status IN ('a' 'b')", ("ab",)),
    ],
)
def test_list_literals(text: str, value: tuple[str, ...]) -> None:
    assert one(text).value == value


# --- statement level ---------------------------------------------------------------------------------


def test_stray_and_duplicate_ands_are_ignored() -> None:
    node = parse_filter("AND tags.a = 'x' AND AND tags.b = 'y' AND")
    assert node == And((Comparison(Tag("a"), Op.EQ, "x"), Comparison(Tag("b"), Op.EQ, "y")))


def test_and_is_case_insensitive() -> None:
    assert isinstance(parse_filter("tags.a = 'x' and tags.b = 'y'"), And)


def test_juxtaposed_clauses_are_anded_as_in_mlflow() -> None:
    node = parse_filter("status = 'OK' tags.env = 'prod'")
    assert node == And((Comparison(Attribute("status"), Op.EQ, "OK"), Comparison(Tag("env"), Op.EQ, "prod")))


def test_a_bare_timestamp_works_with_an_integer() -> None:
    assert one("timestamp >= 1700000000000") == Comparison(Attribute("timestamp_ms"), Op.GE, 1700000000000)


# --- OR, NOT and parentheses (beyond MLflow) ---------------------------------------------------------

A = Comparison(Tag("a"), Op.EQ, "1")
B = Comparison(Tag("b"), Op.EQ, "2")
C = Comparison(Tag("c"), Op.EQ, "3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tags.a = '1' OR tags.b = '2'", Or((A, B))),
        ("tags.a = '1' or tags.b = '2'", Or((A, B))),
        ("tags.a = '1' OR tags.b = '2' AND tags.c = '3'", Or((A, And((B, C))))),
        ("tags.a = '1' AND tags.b = '2' OR tags.c = '3'", Or((And((A, B)), C))),
        ("(tags.a = '1' OR tags.b = '2') AND tags.c = '3'", And((Or((A, B)), C))),
        ("NOT tags.a = '1'", Not(A)),
        ("not tags.a = '1' AND tags.b = '2'", And((Not(A), B))),
        ("NOT (tags.a = '1' AND tags.b = '2')", Not(And((A, B)))),
        ("NOT NOT tags.a = '1'", Not(Not(A))),
        ("(tags.a = '1')", A),
        ("((tags.a = '1'))", A),
        ("tags.a = '1' AND (tags.b = '2' AND tags.c = '3')", And((A, B, C))),
        ("tags.a = '1' OR (tags.b = '2' OR tags.c = '3')", Or((A, B, C))),
        ("(tags.a = '1' AND AND tags.b = '2')", And((A, B))),
    ],
)
def test_precedence_is_not_then_and_then_or(text: str, expected: object) -> None:
    assert parse_filter(text) == expected


def test_not_in_after_a_field_is_the_operator_not_negation() -> None:
    assert one("status NOT IN ('OK')") == Comparison(Attribute("status"), Op.NOT_IN, ("OK",))
    assert parse_filter("NOT status IN ('OK')") == Not(Comparison(Attribute("status"), Op.IN, ("OK",)))


def test_comparisons_walks_left_to_right() -> None:
    node = parse_filter("(tags.a = '1' OR NOT tags.b = '2') AND tags.c = '3'")
    assert list(comparisons(node)) == [A, B, C]


# --- invalid filters ---------------------------------------------------------------------------------

INVALID = [
    # (filter, fragment of the message, position)
    # statement level
    ("status = 'OK'; status = 'ERROR'", "Search filter contained multiple expression", 13),
    ("status = 'OK';", "Invalid clause(s) in filter string: ';'", 13),
    ("tags.env = true", "Invalid clause(s) in filter string: 'tags.env', '=', 'true'", 11),
    ("status =", "Invalid clause(s) in filter string: 'status', '='", 8),
    ("status", "Invalid clause(s) in filter string: 'status'", 6),
    ("tags.x IS NOT", "Invalid clause(s) in filter string: 'tags.x', 'IS', 'NOT'", 13),
    ("status IN 'OK'", "Invalid clause(s) in filter string: 'status', 'IN', ''OK''", 10),
    ("status = 'OK' OR", "Invalid clause(s) in filter string: 'OR'", 14),
    ("OR status = 'OK'", "Invalid clause(s) in filter string: 'OR'", 0),
    ("status = 'OK' AND NOT", "Invalid clause(s) in filter string: 'NOT'", 18),
    ("()", "Invalid clause(s) in filter string: '()'", 0),
    ("status = 'OK')", "Invalid clause(s) in filter string: ')'", 13),
    ("status = 'OK", "Invalid clause(s) in filter string: 'status', '=', ''', 'OK'", 9),
    ("text ILIKE '%x%'", "Invalid clause(s) in filter string: 'text', 'ILIKE', ''%x%''", 0),
    ("TIMESTAMP > 5", "Invalid clause(s) in filter string: 'TIMESTAMP', '>', '5'", 0),
    ("timestamp > 1.5", "Invalid clause(s) in filter string: 'timestamp', '>', '1.5', 'timestamp'", 0),
    ("timestamp = '5'", "'timestamp', '=', ''5'', 'timestamp'", 0),
    ("'OK' = status", "Invalid comparison clause. Expected 'Identifier' found ''OK''", 0),
    # identifiers
    ("TAG.env = 'x'", "Invalid entity type 'TAG'. Valid values are {", 0),
    ("run.id = 'x'", "Invalid entity type 'run'", 0),
    ("assessment.x = 'x'", "Invalid entity type 'assessment'", 0),
    ("attr.status = 'x'", "Invalid entity type 'attr'", 0),
    ("state = 'OK'", "Invalid attribute key 'state' specified. Valid keys are '{", 0),
    ("NAME = 'x'", "Invalid attribute key 'NAME' specified", 0),
    ("trace.tags.env = 'x'", "Invalid attribute key 'tags.env' specified", 0),
    (
        "span.duration > '5'",
        "Invalid span attribute 'duration'. Supported attributes: name, status, type, "
        "attributes.<attribute_name>.",
        0,
    ),
    ("span. = 'x'", "Invalid span attribute ''", 0),
    ("span.attributes. LIKE '%x%'", "Span attribute name cannot be empty after 'attributes.'", 0),
    ("feedback. = 'x'", "Assessment field name cannot be empty", 0),
    ("issue.foo = 'x'", "Invalid issue attribute 'foo'. Supported attributes: id", 0),
    # values
    (
        "status = OK",
        "Parameter value is either not quoted or unidentified quote types used for string value OK. "
        "Use either single or double quotes.",
        9,
    ),
    ("status = `OK`", "for string value `OK`.", 9),
    ("status = 5", "attributes support comparison with numeric values.", 9),
    (
        "status = null",
        "Expected a quoted string value or a list of quoted string values for attributes. Got value null",
        9,
    ),
    ("tags.env = 5", "Expected a quoted string value for tag (e.g. 'my-value'). Got value 5", 11),
    (
        "metadata.v IN ('v1.2.3')",
        "Expected a quoted string value for request_metadata (e.g. 'my-value'). Got value ('v1.2.3')",
        14,
    ),
    ("span.name = 5", "Expected a quoted string value for span (e.g. 'my-value'). Got value 5", 12),
    ("issue.id = 5", "Expected a quoted string value for issue (e.g. 'my-value'). Got value 5", 11),
    ("feedback.score = 4", "Expected a quoted string value for feedback (e.g. 'my-value'). Got value 4", 17),
    (
        "feedback.score > '3'",
        "Expected a numeric value for feedback when using comparator '>'. Got value '3'",
        17,
    ),
    (
        "feedback.q IN ('high', 'low')",
        "Expected a quoted string value for feedback (e.g. 'my-value'). Got value ('high', 'low')",
        14,
    ),
    ("timestamp_ms IN ('1')", "supports comparison with a list of quoted string values.", 16),
    ("status IN ()", "expected a non-empty list of string values, but got empty list", 10),
    ("status IN (1, 2)", "but got different type in list: (1, 2)", 10),
    ("status IN ('a',,)", "but got ill-formed list.", 15),
    # comparators
    ("status < 'OK'", "Invalid comparator '<' not one of '{", 7),
    ("status <> 'OK'", "Invalid comparator '<>' not one of", 7),
    ("status == 'OK'", "Invalid comparator '==' not one of", 7),
    ("status IS NULL", "Invalid comparator 'IS NULL' not one of", 7),
    ("timestamp_ms LIKE '1%'", "Invalid comparator 'LIKE' not one of", 13),
    ("tags.env NOT LIKE 'p%'", "Invalid comparator 'NOT LIKE' not one of", 9),
    ("tags.env IN ('a')", "Invalid comparator 'IN' not one of", 9),
    ("name IN ('a')", "Invalid comparator 'IN' not one of", 5),
    ("run_id IN ('a')", "Invalid comparator 'IN' not one of", 7),
    ("metadata.k > 'a'", "Invalid comparator '>' not one of", 11),
    ("span.type > 'LLM'", "span.type comparator '>' not one of '{", 10),
    ("span.name like 'chat%'", "span.name comparator 'like' not one of", 10),
    ("span.name in ('chat')", "span.name comparator 'in' not one of", 10),
    ("span.name IS NULL", "span.name comparator 'IS NULL' not one of", 10),
    ("span.content = 'x'", "span.content comparator '=' not one of '{'ILIKE', 'LIKE'}'", 13),
    ("trace.text RLIKE 'x'", "span.content comparator 'RLIKE' not one of", 11),
    ("feedback.q NOT LIKE 'x'", "assessment.q comparator 'NOT LIKE' not one of", 11),
    ("issue.id != 'x'", "issue.id comparator '!=' not one of '{'='}'", 9),
    (
        "prompt LIKE 'qa/%'",
        "Invalid comparator 'LIKE' for prompts filter. Only '=' is supported with format: "
        'prompt = "name/version"',
        7,
    ),
    ("prompt = 'qa'", "Invalid prompts filter value 'qa'. Expected format: prompt = \"name/version\"", 9),
    (
        "metadata.`mlflow.trace.tokenUsage` LIKE '%'",
        "Comparator 'LIKE' is not supported for reserved metadata "
        "'mlflow.trace.tokenUsage'. Only '=', '!=', 'IS NULL', and 'IS NOT NULL' are supported.",
        35,
    ),
]


# Filters MLflow gets wrong (a crash, a meaningless comparison) or that go beyond MLflow: our own messages.
INVALID_BEYOND_MLFLOW = [
    ("(status = 'OK'", "Invalid clause(s) in filter string: '(status = 'OK''", 0),
    ("status = 'OK' && tags.x = 'y'", "Invalid clause(s) in filter string: '&&'", 14),
    ("status IN (a, b)", "but got ill-formed list.", 11),  # MLflow: an internal error
    (
        "execution_time_ms > 'fast'",  # MLflow: compares text to a number (sqlite)
        "Expected numeric value type for numeric attribute: execution_time_ms. Found 'fast'",
        20,
    ),
    ("total_tokens LIKE '1%'", "Invalid comparator 'LIKE' not one of", 13),
    ("total_tokens = 'many'", "Expected numeric value type for numeric attribute: total_tokens", 15),
    ("span.duration_ms LIKE '1%'", "span.duration_ms comparator 'LIKE' not one of", 17),
    ("span.duration_ms > 'slow'", "numeric attribute: span.duration_ms. Found 'slow'", 19),
]


@pytest.mark.parametrize(
    ("text", "fragment", "position"),
    INVALID + INVALID_BEYOND_MLFLOW,
    ids=[t for t, _, _ in INVALID + INVALID_BEYOND_MLFLOW],
)
def test_invalid_filters_are_rejected(text: str, fragment: str, position: int) -> None:
    err = error(text)
    assert fragment in err.message
    assert err.position == position
    assert err.error_code == "INVALID_PARAMETER_VALUE"


def test_the_whole_filter_is_quoted_in_the_multiple_statements_message() -> None:
    assert error("a = 'x'; b = 'y'").message == (
        "Search filter contained multiple expression \"a = 'x'; b = 'y'\". Provide AND-ed expression list."
    )


def test_set_reprs_in_messages_are_sorted() -> None:
    assert error("status < 'OK'").message == (
        "Invalid comparator '<' not one of '{'!=', '=', 'ILIKE', 'IN', 'LIKE', 'NOT IN', 'RLIKE'}'"
    )


def test_the_invalid_key_message_lists_every_attribute_key_a_filter_accepts() -> None:
    message = error("trace_id = 'tr-1'").message
    listed = re.search(r"Valid keys are '\{(.*)\}'$", message).group(1).split(", ")  # type: ignore[union-attr]
    keys = [key.strip("'") for key in listed]

    assert {"input_tokens", "output_tokens", "total_tokens", "request_id", "text"} <= set(keys)
    for key in keys:
        try:
            parse_filter(f"`{key}` IS NULL")
        except FilterError as rejected:  # a comparator a key does not take is another matter
            assert not rejected.message.startswith("Invalid attribute key"), rejected.message


def test_mlflows_missing_closing_quote_is_reproduced() -> None:
    assert error("tags.env IN ('a')").message.endswith("'RLIKE'}")


def test_the_numeric_attribute_message_lists_the_string_comparators_as_mlflow_does() -> None:
    assert "'NOT IN'" in error("timestamp_ms LIKE '1%'").message


def test_every_invalid_clause_is_listed() -> None:
    err = error("status = 'OK' AND tags.x = true AND foo")
    assert err.message == "Invalid clause(s) in filter string: 'tags.x', '=', 'true', 'foo'"


def test_invalid_clauses_are_reported_before_value_errors() -> None:
    assert "Invalid clause(s)" in error("tags.x = 5 AND status = true").message


def test_value_errors_are_reported_before_comparator_errors() -> None:
    # MLflow checks every clause's identifier and value before any comparator.
    assert "Got value 5" in error("status < 'x' AND tags.x = 5").message


def test_comparator_errors_come_in_clause_order() -> None:
    err = error("tags.x LIKE 'a' AND status < 'x' AND prompt = 'a'")
    assert err.message.startswith("Invalid comparator '<'")


@pytest.mark.parametrize(
    "text", ["span.attributes.model IN ('gpt-4o')", "span.attributes.model NOT IN ('gpt-4o')"]
)
def test_span_attribute_lists_are_bad_requests_as_in_mlflow(text: str) -> None:
    err = error(text)
    assert err.error_code == "BAD_REQUEST"
    assert err.message == (
        "IN expression list, SELECT construct, or bound parameter object expected, "
        "got '%\"model\"(\\'gpt-4o\\',)%'."
    )


@pytest.mark.parametrize("text", ["status = ('OK')", "tags.env LIKE ('a', 'b')"])
def test_a_list_with_a_non_list_comparator_is_a_bad_request(text: str) -> None:
    err = error(text)
    assert err.error_code == "BAD_REQUEST"
    assert "use IN or NOT IN" in err.message


def test_an_error_names_its_position_and_token() -> None:
    err = error("tags.env = 'prod' AND status = OK")
    assert (err.position, err.token) == (31, "OK")
    assert str(err) == f"{err.message} (at position 31)"


def test_filter_error_is_a_value_error_and_pickles() -> None:
    err = error("status = OK")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.message, copy.position, copy.token, copy.error_code) == (
        err.message,
        err.position,
        err.token,
        err.error_code,
    )


# --- tokens ------------------------------------------------------------------------------------------


def test_every_token_carries_its_offset() -> None:
    tokens = tokenize("tags.`a b` >= -1.5e3 AND x IN ('p', \"q\")")
    assert [(t.type, t.text, t.start) for t in tokens] == [
        (TokenType.IDENT, "tags.`a b`", 0),
        (TokenType.OP, ">=", 11),
        (TokenType.NUMBER, "-1.5e3", 14),
        (TokenType.AND, "AND", 21),
        (TokenType.IDENT, "x", 25),
        (TokenType.IN, "IN", 27),
        (TokenType.LPAREN, "(", 30),
        (TokenType.STRING, "'p'", 31),
        (TokenType.COMMA, ",", 34),
        (TokenType.DSTRING, '"q"', 36),
        (TokenType.RPAREN, ")", 39),
        (TokenType.EOF, "", 40),
    ]


@pytest.mark.parametrize("text", ["<>", "==", "=<", "!=="])
def test_runs_of_comparison_characters_are_one_token(text: str) -> None:
    assert [t.type for t in tokenize(text)] == [TokenType.OP, TokenType.EOF]


@pytest.mark.parametrize("key", ["0", "12x", "0e5", "0x1f", "in", "AS", "v1.2", "a$b"])
def test_keys_that_sqlparse_splits_must_be_quoted(key: str) -> None:
    # MLflow's lexer reads `.0`, `.1`, `0e5`, `0x1f` as numbers and IN/AS as keywords there.
    with pytest.raises(FilterError, match="Invalid clause"):
        parse_filter(f"tags.{key} = 'x'")
    assert one(f"tags.`{key}` = 'x'").field == Tag(key)
    assert render(Comparison(Tag(key), Op.EQ, "x")) == f"tags.`{key}` = 'x'"


@pytest.mark.parametrize("key", ["0a", "inx", "_x", "select", "日本"])
def test_keys_that_sqlparse_keeps_whole_need_no_quotes(key: str) -> None:
    assert one(f"tags.{key} = 'x'").field == Tag(key)


def test_an_unclosed_quote_is_an_invalid_clause() -> None:
    assert [t.type for t in tokenize("'OK")] == [TokenType.UNCLOSED, TokenType.IDENT, TokenType.EOF]


def test_a_string_may_contain_doubled_or_backslashed_quotes() -> None:
    assert [t.text for t in tokenize("'it''s' 'a\\'b'")][:2] == ["'it''s'", "'a\\'b'"]


# --- rendering ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "tags.env = 'prod' AND attributes.status = 'ERROR'",
        "(tags.a = '1' OR NOT tags.b = '2') AND tags.c = '3'",
        'tags.`my key` = "it\'s"',
        "status IN ('a\\'b', \"c\")",
        "span.attributes.`tool.name` LIKE '%x%'",
        "feedback.`relevance score` >= 0.5 AND expectation.x IS NULL",
        "trace.text ILIKE '%timeout%' AND total_tokens > 1e20",
        "metadata.`mlflow.trace.tokenUsage` IS NOT NULL OR issue.id = 'i-1' OR prompt = 'qa/1'",
        "timestamp > 5 AND run_id = 'r' AND name != 'n' AND span.duration_ms < 2.5",
    ],
)
def test_render_parses_back_to_the_same_ast(text: str) -> None:
    node = parse_filter(text)
    assert node is not None
    assert parse_filter(render(node)) == node


def test_render_spells_fields_canonically() -> None:
    node = parse_filter("trace.timestamp > 5 AND tag.NAME = 'chat' AND NOT metadata.mlflow.sourceRun = 'r'")
    assert node is not None
    assert render(node) == "timestamp_ms > 5 AND name = 'chat' AND NOT run_id = 'r'"


@pytest.mark.parametrize("value", ["both ' and \"", "ends in \\"])
def test_render_refuses_strings_the_language_cannot_express(value: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        render(Comparison(Tag("k"), Op.EQ, value))


# --- speed -------------------------------------------------------------------------------------------


def test_a_typical_filter_parses_in_well_under_a_millisecond_without_the_cache() -> None:
    text = "tags.env = 'prod' AND timestamp_ms > 1700000000000 AND span.type = 'LLM' AND feedback.ok = 'true'"
    per_parse = min(timeit.repeat(lambda: Parser(text).parse(), number=200, repeat=5)) / 200
    assert per_parse < 250e-6  # about 40 µs on the project's machines; generous for slow CI
