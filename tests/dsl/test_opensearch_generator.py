"""The OpenSearch generator, pinned: representative filters and the exact query each becomes
(sqlglot's ``validate_all``), and the AST nodes it refuses with its typed error. No server needed:
tests/dsl_differential runs these queries against OpenSearch and MLflow.

Field names are the index's (``indexer.mapping``); ``\x1f`` is the separator of span attribute
entries (``key<US>value``).
"""

from __future__ import annotations

from typing import Any

import pytest

from tracestream.indexer.query import to_query, to_sort
from tracestream.search_api.dsl import (
    Comparison,
    FilterError,
    Op,
    SpanAttribute,
    SpanField,
    UnsupportedError,
    parse_filter,
    parse_order_by,
    with_default_order,
)

# The two JSON spellings of prompt version qa/2 in the mlflow.linkedPrompts tag.
QUOTED_VERSION = '*{"name": "qa", "version": "2"}*'
NUMBER_VERSION = '*{"name": "qa", "version": 2}*'


def validate(filter_string: str, expect: dict[str, Any]) -> None:
    assert to_query(parse_filter(filter_string)) == expect


def test_no_filter_matches_every_trace() -> None:
    assert to_query(None) == {"match_all": {}}


@pytest.mark.parametrize(
    ("filter_string", "expect"),
    [
        pytest.param(
            "status = 'OK'",
            {"term": {"state": "OK"}},
            id="attribute =",
        ),
        pytest.param(
            "trace.status != 'ERROR'",
            {"bool": {"must_not": [{"term": {"state": "ERROR"}}]}},
            id="attribute != on a field every trace has",
        ),
        pytest.param(
            "name != 'chat'",
            {"bool": {"filter": [{"exists": {"field": "name"}}], "must_not": [{"term": {"name": "chat"}}]}},
            id="attribute != on a field a trace may lack: SQL's NULL never matches",
        ),
        pytest.param(
            "request_id IN ('tr-1', 'tr-2')",
            {"terms": {"trace_id": ["tr-1", "tr-2"]}},
            id="attribute IN",
        ),
        pytest.param(
            "client_request_id ILIKE 'req-%'",
            {"wildcard": {"client_request_id.lower": {"value": "req-*"}}},
            id="attribute ILIKE on its lower-cased sibling",
        ),
        pytest.param(
            "status RLIKE 'O.'",
            {
                "regexp": {
                    "state": {"value": ".*(O[^\n]).*", "flags": "NONE", "max_determinized_states": 10000}
                }
            },
            id="attribute RLIKE, unanchored like re.search",
        ),
        pytest.param(
            "run_id = 'r1'",
            {
                "bool": {
                    "should": [{"term": {"run_id": "r1"}}, {"term": {"linked_run_ids": "r1"}}],
                    "minimum_should_match": 1,
                }
            },
            id="run id: the source run or a linked run, as MLflow",
        ),
        pytest.param(
            "run_id != 'r1'",
            {
                "bool": {
                    "filter": [{"exists": {"field": "run_id"}}],
                    "must_not": [{"term": {"run_id": "r1"}}],
                }
            },
            id="run id !=: the source run only, as MLflow",
        ),
        pytest.param(
            "prompt = 'qa/2'",
            {
                "bool": {
                    "should": [
                        {"term": {"linked_prompts": "qa/2"}},
                        {
                            "nested": {
                                "path": "tags",
                                "query": {
                                    "bool": {
                                        "filter": [{"term": {"tags.key": "mlflow.linkedPrompts"}}],
                                        "should": [
                                            {"wildcard": {"tags.value": {"value": QUOTED_VERSION}}},
                                            {"wildcard": {"tags.value": {"value": NUMBER_VERSION}}},
                                        ],
                                        "minimum_should_match": 1,
                                    }
                                },
                                "score_mode": "none",
                            }
                        },
                    ],
                    "minimum_should_match": 1,
                }
            },
            id="linked prompt version, or the linkedPrompts tag in either JSON spelling",
        ),
        pytest.param(
            "timestamp_ms > 1700000000000",
            {"range": {"timestamp_ms": {"gt": 1700000000000}}},
            id="timestamp >",
        ),
        pytest.param(
            "timestamp > 1700000000000",
            {"range": {"timestamp_ms": {"gt": 1700000000000}}},
            id="timestamp alias",
        ),
        pytest.param(
            "trace.end_time_ms < 1700000000000",
            {"range": {"end_time_ms": {"lt": 1700000000000}}},
            id="end time <",
        ),
        pytest.param(
            "execution_time_ms <= 500",
            {"range": {"execution_time_ms": {"lte": 500}}},
            id="execution time <=",
        ),
        pytest.param(
            "timestamp_ms = 99999999999999999999",
            {"match_none": {}},
            id="a number no long holds is decided without OpenSearch",
        ),
        pytest.param(
            "tags.env = 'prod'",
            {
                "nested": {
                    "path": "tags",
                    "query": {
                        "bool": {"filter": [{"term": {"tags.key": "env"}}, {"term": {"tags.value": "prod"}}]}
                    },
                    "score_mode": "none",
                }
            },
            id="tag =",
        ),
        pytest.param(
            "tags.env != 'prod'",
            {
                "nested": {
                    "path": "tags",
                    "query": {
                        "bool": {
                            "filter": [{"term": {"tags.key": "env"}}],
                            "must_not": [{"term": {"tags.value": "prod"}}],
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="tag != needs the key",
        ),
        pytest.param(
            "tags.env IS NULL",
            {
                "bool": {
                    "must_not": [
                        {
                            "nested": {
                                "path": "tags",
                                "query": {"term": {"tags.key": "env"}},
                                "score_mode": "none",
                            }
                        }
                    ]
                }
            },
            id="tag IS NULL is the key's absence",
        ),
        pytest.param(
            "tags.env LIKE 'a*b%'",
            {
                "nested": {
                    "path": "tags",
                    "query": {
                        "bool": {
                            "filter": [
                                {"term": {"tags.key": "env"}},
                                {"wildcard": {"tags.value": {"value": "a\\*b*"}}},
                            ]
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="tag LIKE, Lucene metacharacters literal",
        ),
        pytest.param(
            "tags.env ILIKE 'PRO_'",
            {
                "nested": {
                    "path": "tags",
                    "query": {
                        "bool": {
                            "filter": [
                                {"term": {"tags.key": "env"}},
                                {"wildcard": {"tags.value.lower": {"value": "pro?"}}},
                            ]
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="tag ILIKE",
        ),
        pytest.param(
            "tags.env RLIKE '^pr.d$'",
            {
                "nested": {
                    "path": "tags",
                    "query": {
                        "bool": {
                            "filter": [
                                {"term": {"tags.key": "env"}},
                                {
                                    "regexp": {
                                        "tags.value": {
                                            "value": "(pr[^\n]d)\n?",
                                            "flags": "NONE",
                                            "max_determinized_states": 10000,
                                        }
                                    }
                                },
                            ]
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="tag RLIKE, anchored",
        ),
        pytest.param(
            "tags.`my key` = 'v'",
            {
                "nested": {
                    "path": "tags",
                    "query": {
                        "bool": {"filter": [{"term": {"tags.key": "my key"}}, {"term": {"tags.value": "v"}}]}
                    },
                    "score_mode": "none",
                }
            },
            id="tag key in backticks",
        ),
        pytest.param(
            "metadata.user = 'alice'",
            {
                "nested": {
                    "path": "metadata",
                    "query": {
                        "bool": {
                            "filter": [
                                {"term": {"metadata.key": "user"}},
                                {"term": {"metadata.value": "alice"}},
                            ]
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="metadata =",
        ),
        pytest.param(
            "feedback.correctness = 'yes'",
            {
                "nested": {
                    "path": "assessments",
                    "query": {
                        "bool": {
                            "filter": [
                                {"term": {"assessments.kind": "feedback"}},
                                {"term": {"assessments.name": "correctness"}},
                                {"term": {"assessments.valid": True}},
                                {"terms": {"assessments.value": ['"yes"', "yes"]}},
                            ]
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="feedback =, as stored and as json.dumps",
        ),
        pytest.param(
            "feedback.score != 'bad'",
            {
                "nested": {
                    "path": "assessments",
                    "query": {
                        "bool": {
                            "filter": [
                                {"term": {"assessments.kind": "feedback"}},
                                {"term": {"assessments.name": "score"}},
                                {"term": {"assessments.valid": True}},
                            ],
                            "must_not": [{"terms": {"assessments.value": ['"bad"', "bad"]}}],
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="feedback != among valid assessments",
        ),
        pytest.param(
            "feedback.score > 0.5",
            {
                "nested": {
                    "path": "assessments",
                    "query": {
                        "bool": {
                            "filter": [
                                {"term": {"assessments.kind": "feedback"}},
                                {"term": {"assessments.name": "score"}},
                                {"term": {"assessments.valid": True}},
                                {"range": {"assessments.numeric_value": {"gt": 0.5}}},
                            ]
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="feedback > on the numeric value",
        ),
        pytest.param(
            "feedback.score IS NULL",
            {
                "bool": {
                    "must_not": [
                        {
                            "nested": {
                                "path": "assessments",
                                "query": {
                                    "bool": {
                                        "filter": [
                                            {"term": {"assessments.kind": "feedback"}},
                                            {"term": {"assessments.name": "score"}},
                                            {"term": {"assessments.valid": True}},
                                        ]
                                    }
                                },
                                "score_mode": "none",
                            }
                        }
                    ]
                }
            },
            id="feedback IS NULL",
        ),
        pytest.param(
            "expectation.answer IS NOT NULL",
            {
                "nested": {
                    "path": "assessments",
                    "query": {
                        "bool": {
                            "filter": [
                                {"term": {"assessments.kind": "expectation"}},
                                {"term": {"assessments.name": "answer"}},
                                {"term": {"assessments.valid": True}},
                            ]
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="expectation IS NOT NULL",
        ),
        pytest.param(
            "issue.id = 'iss-1'",
            {
                "nested": {
                    "path": "assessments",
                    "query": {
                        "bool": {
                            "filter": [
                                {"term": {"assessments.kind": "issue"}},
                                {"term": {"assessments.name": "iss-1"}},
                            ]
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="issue id",
        ),
        pytest.param(
            "span.name = 'retrieve'",
            {
                "nested": {
                    "path": "spans",
                    "query": {"term": {"spans.name": "retrieve"}},
                    "score_mode": "none",
                }
            },
            id="span field =",
        ),
        pytest.param(
            "span.name IN ('a', 'b')",
            {
                "nested": {
                    "path": "spans",
                    "query": {"terms": {"spans.name": ["a", "b"]}},
                    "score_mode": "none",
                }
            },
            id="span field IN",
        ),
        pytest.param(
            "span.name NOT IN ('a')",
            {
                "nested": {
                    "path": "spans",
                    "query": {"bool": {"must_not": [{"terms": {"spans.name": ["a"]}}]}},
                    "score_mode": "none",
                }
            },
            id="span field NOT IN",
        ),
        pytest.param(
            "span.type = 'TOOL' AND span.status = 'ERROR'",
            {
                "nested": {
                    "path": "spans",
                    "query": {
                        "bool": {
                            "filter": [{"term": {"spans.type": "TOOL"}}, {"term": {"spans.status": "ERROR"}}]
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="span clauses of one AND hold for one span",
        ),
        pytest.param(
            "span.attributes.model = 'gpt-4'",
            {
                "nested": {
                    "path": "spans",
                    "query": {"term": {"spans.attributes": "model\x1fgpt-4"}},
                    "score_mode": "none",
                }
            },
            id="span attribute = on key<US>value",
        ),
        pytest.param(
            "span.attributes.model ILIKE 'GPT%'",
            {
                "nested": {
                    "path": "spans",
                    "query": {
                        "wildcard": {"spans.attributes": {"value": "model\x1fGPT*", "case_insensitive": True}}
                    },
                    "score_mode": "none",
                }
            },
            id="span attribute ILIKE",
        ),
        pytest.param(
            "span.attributes.model RLIKE 'gpt'",
            {
                "nested": {
                    "path": "spans",
                    "query": {
                        "regexp": {
                            "spans.attributes": {
                                "value": "model\x1f(.*(gpt).*)|\x1f",
                                "flags": "NONE",
                                "max_determinized_states": 10000,
                            }
                        }
                    },
                    "score_mode": "none",
                }
            },
            id="span attribute RLIKE keeps the language larger than one string",
        ),
        pytest.param(
            "span.duration_ms >= 100",
            {
                "nested": {
                    "path": "spans",
                    "query": {"range": {"spans.duration_ms": {"gte": 100}}},
                    "score_mode": "none",
                }
            },
            id="span duration >=",
        ),
        pytest.param(
            "trace.text LIKE '%refund%'",
            {
                "nested": {
                    "path": "spans",
                    "query": {"wildcard": {"spans.content": {"value": "*refund*"}}},
                    "score_mode": "none",
                }
            },
            id="full text LIKE",
        ),
        pytest.param(
            "trace.text ILIKE '%Refund%'",
            {
                "nested": {
                    "path": "spans",
                    "query": {"wildcard": {"spans.content": {"value": "*Refund*", "case_insensitive": True}}},
                    "score_mode": "none",
                }
            },
            id="full text ILIKE",
        ),
        pytest.param(
            "total_tokens > 1000",
            {"range": {"token_usage.total_tokens": {"gt": 1000}}},
            id="token count >",
        ),
        pytest.param(
            "input_tokens IS NOT NULL",
            {"exists": {"field": "token_usage.input_tokens"}},
            id="token count IS NOT NULL",
        ),
        pytest.param(
            "NOT tags.env = 'prod'",
            {
                "bool": {
                    "must_not": [
                        {
                            "nested": {
                                "path": "tags",
                                "query": {
                                    "bool": {
                                        "filter": [
                                            {"term": {"tags.key": "env"}},
                                            {"term": {"tags.value": "prod"}},
                                        ]
                                    }
                                },
                                "score_mode": "none",
                            }
                        }
                    ]
                }
            },
            id="NOT",
        ),
        pytest.param(
            "status = 'OK' OR (tags.env = 'prod' AND NOT name = 'x')",
            {
                "bool": {
                    "should": [
                        {"term": {"state": "OK"}},
                        {
                            "bool": {
                                "filter": [
                                    {
                                        "nested": {
                                            "path": "tags",
                                            "query": {
                                                "bool": {
                                                    "filter": [
                                                        {"term": {"tags.key": "env"}},
                                                        {"term": {"tags.value": "prod"}},
                                                    ]
                                                }
                                            },
                                            "score_mode": "none",
                                        }
                                    },
                                    {"bool": {"must_not": [{"term": {"name": "x"}}]}},
                                ]
                            }
                        },
                    ],
                    "minimum_should_match": 1,
                }
            },
            id="OR of an AND with NOT, in parentheses",
        ),
    ],
)
def test_a_filter_becomes_this_query(filter_string: str, expect: dict[str, Any]) -> None:
    validate(filter_string, expect)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        pytest.param(
            Comparison(SpanField("content"), Op.EQ, "refund"),
            "Comparator '=' is not supported for span.content",
            id="full text compares with LIKE and ILIKE only",
        ),
        pytest.param(
            Comparison(SpanAttribute("model"), Op.IS_NULL),
            "Comparator 'IS NULL' is not supported for span.attributes.model",
            id="a span attribute's absence is not a span's",
        ),
        pytest.param(
            parse_filter("span.name RLIKE '(?<=a)b'"),
            "RLIKE pattern '(?<=a)b': groups with (?...) (lookarounds, flags, named or non-capturing "
            "groups) are not supported",
            id="a regex construct Lucene lacks",
        ),
        pytest.param(
            ("not", "a node"),
            "Unsupported filter node tuple",
            id="a node the generator does not know",
        ),
    ],
)
def test_what_the_generator_cannot_translate_is_an_unsupported_error(node: Any, message: str) -> None:
    with pytest.raises(UnsupportedError) as info:
        to_query(node)

    assert isinstance(info.value, FilterError)
    assert info.value.message == message


SORT_TAIL = [
    {"timestamp_ms": {"order": "desc", "missing": "_last"}},
    {"trace_order_high": {"order": "asc", "missing": "_last", "unmapped_type": "long"}},
    {"trace_order_low": {"order": "asc", "missing": "_last", "unmapped_type": "long"}},
]


@pytest.mark.parametrize(
    ("order_by", "expect"),
    [
        pytest.param(None, SORT_TAIL, id="newest first, then by trace id"),
        pytest.param(["timestamp_ms DESC"], SORT_TAIL, id="the default, spelled out"),
        pytest.param(["request_id"], [*SORT_TAIL[1:], SORT_TAIL[0]], id="by trace id, two longs"),
        pytest.param(
            ["tags.env DESC"],
            [
                {
                    "tags.value": {
                        "order": "desc",
                        "missing": "_last",
                        "mode": "min",
                        "nested": {"path": "tags", "filter": {"term": {"tags.key": "env"}}},
                    }
                },
                *SORT_TAIL,
            ],
            id="by a tag's value",
        ),
        pytest.param(
            ["total_tokens"],
            [{"token_usage.total_tokens": {"order": "asc", "missing": "_last"}}, *SORT_TAIL],
            id="by a token count",
        ),
    ],
)
def test_an_order_by_becomes_these_sort_clauses(order_by: list[str] | None, expect: list[Any]) -> None:
    assert to_sort(with_default_order(parse_order_by(order_by))) == expect
