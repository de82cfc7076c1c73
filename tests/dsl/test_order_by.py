"""order_by clauses: what they sort by, MLflow's errors, and the default tie-breakers."""

from __future__ import annotations

import re

import pytest

from tracestream.search_api.dsl import (
    Attribute,
    FilterError,
    Metadata,
    OrderBy,
    Tag,
    TokenUsage,
    parse_order_by,
    render_order_by,
    with_default_order,
)

TIMESTAMP_DESC = OrderBy(Attribute("timestamp_ms"), ascending=False)
REQUEST_ID_ASC = OrderBy(Attribute("request_id"), ascending=True)


def order_error(clauses: list[str]) -> FilterError:
    with pytest.raises(FilterError) as info:
        parse_order_by(clauses)
    return info.value


@pytest.mark.parametrize("clauses", [None, []])
def test_no_order_by_is_an_empty_list(clauses: list[str] | None) -> None:
    assert parse_order_by(clauses) == []


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("timestamp_ms DESC", OrderBy(Attribute("timestamp_ms"), ascending=False)),
        ("timestamp_ms", OrderBy(Attribute("timestamp_ms"), ascending=True)),
        ("timestamp", OrderBy(Attribute("timestamp_ms"))),
        ("timestamp desc", OrderBy(Attribute("timestamp_ms"), ascending=False)),
        ("trace.timestamp ASC", OrderBy(Attribute("timestamp_ms"))),
        ("status asc", OrderBy(Attribute("status"))),
        ("status  DESC", OrderBy(Attribute("status"), ascending=False)),
        ("status\tDesc", OrderBy(Attribute("status"), ascending=False)),
        ('"status" DESC', OrderBy(Attribute("status"), ascending=False)),
        ("attributes.request_id DESC", OrderBy(Attribute("request_id"), ascending=False)),
        ("execution_time", OrderBy(Attribute("execution_time_ms"))),
        ("end_time DESC", OrderBy(Attribute("end_time_ms"), ascending=False)),  # MLflow 3.18 crashes here
        ("experiment_id", OrderBy(Attribute("experiment_id"))),
        ("name", OrderBy(Attribute("name"))),
        ("attributes.name DESC", OrderBy(Attribute("name"), ascending=False)),
        ("tag.NAME", OrderBy(Attribute("name"))),
        ("metadata.name", OrderBy(Attribute("name"))),
        ("feedback.name", OrderBy(Attribute("name"))),  # the alias rewrite ignores the prefix
        ("tags.mlflow.traceName", OrderBy(Attribute("name"))),
        ("run_id", OrderBy(Attribute("run_id"))),
        ("metadata.mlflow.sourceRun DESC", OrderBy(Attribute("run_id"), ascending=False)),
        ("tag.prompt", OrderBy(Tag("mlflow.linkedPrompts"))),  # a plain tag when ordering
        ("tags.env DESC", OrderBy(Tag("env"), ascending=False)),
        ("tag.timestamp", OrderBy(Tag("timestamp_ms"))),
        ("`tags`.`my key` ASC", OrderBy(Tag("my key"))),
        ('tags."my key" DESC', OrderBy(Tag("my key"), ascending=False)),
        ("tags.'my key' DESC", OrderBy(Tag("my key"), ascending=False)),
        ("metadata.mlflow.trace.session", OrderBy(Metadata("mlflow.trace.session"))),
        ("request_metadata.`mlflow.user` DESC", OrderBy(Metadata("mlflow.user"), ascending=False)),
        ("total_tokens DESC", OrderBy(TokenUsage("total_tokens"), ascending=False)),  # beyond MLflow
        ("trace.input_tokens", OrderBy(TokenUsage("input_tokens"))),
    ],
)
def test_order_by_clause(clause: str, expected: OrderBy) -> None:
    assert parse_order_by([clause]) == [expected]


def test_clauses_keep_their_order() -> None:
    assert parse_order_by(["status DESC", "tags.env"]) == [
        OrderBy(Attribute("status"), ascending=False),
        OrderBy(Tag("env")),
    ]


@pytest.mark.parametrize(
    "clause",
    [
        "",
        " status DESC",
        "status ",
        "name ASC DESC",
        "status,name",
        "status DESC;",
        "timestamp_ms > 5",
        "'status'",
        "status 5",
        "status AND",
        "status NULLS LAST",
        "timestamp DESCENDING",
        "TIMESTAMP",
        "Timestamp DESC",
        "text",
        "TEXT",
        "`status",
    ],
)
def test_unparseable_clauses(clause: str) -> None:
    err = order_error([clause])
    assert err.message == f"Invalid order_by clause '{clause}'. Could not be parsed."
    assert err.error_code == "INVALID_PARAMETER_VALUE"
    assert (err.token, err.position) == (clause, None)


@pytest.mark.parametrize("clause", ["timestamp_ms DESCENDING", "tags.env newest"])
def test_an_unknown_direction_is_an_invalid_ordering_key(clause: str) -> None:
    assert order_error([clause]).message == f"Invalid ordering key in order_by clause '{clause}'."


@pytest.mark.parametrize("clause", ["client_request_id", "prompt", "`text`", "state", "trace.tags.env"])
def test_attributes_that_cannot_be_ordered(clause: str) -> None:
    message = order_error([clause]).message
    assert message.startswith("Invalid attribute key '")
    assert "specified. Valid keys are '{" in message
    assert "'experiment_id'" in message


def test_the_invalid_key_message_lists_exactly_the_keys_that_can_be_ordered_by() -> None:
    # The CLI's users read this list to find a key that works: the token counts work too.
    message = order_error(["trace_id DESC"]).message
    listed = re.search(r"Valid keys are '\{(.*)\}'$", message).group(1).split(", ")  # type: ignore[union-attr]
    keys = [key.strip("'") for key in listed]

    assert {"input_tokens", "output_tokens", "total_tokens", "request_id"} <= set(keys)
    for key in keys:
        assert parse_order_by([f"{key} DESC"])  # every listed key is accepted


@pytest.mark.parametrize(
    ("clause", "entity"),
    [
        ("span.name", "span"),
        ("span.x DESC", "span"),
        ("feedback.correctness", "feedback"),
        ("expectation.answer", "expectation"),
        ("issue.id", "issue"),
        ("tag.text", "span"),  # rewritten to span.content first
    ],
)
def test_fields_of_spans_and_assessments_cannot_be_ordered(clause: str, entity: str) -> None:
    assert order_error([clause]).message == f"Invalid identifier type '{entity}'"


def test_an_invalid_prefix() -> None:
    assert order_error(["TAG.env"]).message.startswith("Invalid entity type 'TAG'. Valid values are {")


@pytest.mark.parametrize("key", ["mlflow.trace.tokenUsage", "mlflow.trace.cost"])
def test_reserved_metadata_cannot_be_ordered(key: str) -> None:
    assert order_error([f"metadata.`{key}` DESC"]).message == (
        f"Ordering by reserved metadata '{key}' is not supported because it is represented by "
        "multiple columns."
    )


@pytest.mark.parametrize(
    "clauses",
    [
        ["timestamp ASC", "timestamp_ms DESC"],
        ["tags.env", "tag.env DESC"],
        ["name", "tag.mlflow.traceName"],
        ["run_id", "metadata.mlflow.sourceRun"],
    ],
)
def test_duplicates_after_aliasing_are_a_user_error(clauses: list[str]) -> None:
    err = order_error(clauses)
    assert err.message == f"`order_by` contains duplicate fields: {clauses}"
    # MLflow answers INTERNAL_ERROR (HTTP 500) here; a user's duplicate is a 400.
    assert err.error_code == "INVALID_PARAMETER_VALUE"


def test_each_clause_is_checked_before_duplicates() -> None:
    assert order_error(["span.name", "span.name"]).message == "Invalid identifier type 'span'"


# --- default order -----------------------------------------------------------------------------------


@pytest.mark.parametrize("clauses", [None, []])
def test_the_default_order_is_newest_first_then_request_id(clauses: list[str] | None) -> None:
    assert with_default_order(clauses) == [TIMESTAMP_DESC, REQUEST_ID_ASC]


def test_tie_breakers_follow_the_given_order() -> None:
    assert with_default_order(["tags.env DESC"]) == [
        OrderBy(Tag("env"), ascending=False),
        TIMESTAMP_DESC,
        REQUEST_ID_ASC,
    ]


def test_an_ordered_timestamp_is_not_repeated() -> None:
    assert with_default_order(["trace.timestamp ASC"]) == [OrderBy(Attribute("timestamp_ms")), REQUEST_ID_ASC]


def test_an_ordered_request_id_is_not_repeated() -> None:
    assert with_default_order(["request_id DESC"]) == [
        OrderBy(Attribute("request_id"), ascending=False),
        TIMESTAMP_DESC,
    ]


def test_default_order_accepts_parsed_clauses() -> None:
    orders = parse_order_by(["status"])
    assert with_default_order(orders) == [OrderBy(Attribute("status")), TIMESTAMP_DESC, REQUEST_ID_ASC]


def test_default_order_reports_bad_clauses() -> None:
    with pytest.raises(FilterError, match="Could not be parsed"):
        with_default_order(["status,name"])


@pytest.mark.parametrize(
    "clause",
    ["status DESC", "tags.`my key` ASC", "name DESC", "metadata.mlflow.user ASC", "total_tokens DESC"],
)
def test_render_order_by_parses_back(clause: str) -> None:
    (order,) = parse_order_by([clause])
    assert parse_order_by([render_order_by(order)]) == [order]
