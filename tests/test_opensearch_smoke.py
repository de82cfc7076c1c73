"""The local OpenSearch node (the minimal distribution) supports what tracestream relies on."""

from __future__ import annotations

import pytest
from opensearchpy import OpenSearch, helpers

TRACES = [
    {
        "trace_id": "tr-8f1c0e2a9b3d4c5e6f708192a3b4c5d6",
        "name": "chat_completion",
        "state": "OK",
        "request_preview": "What is the capital of France?",
        "execution_time_ms": 812,
    },
    {
        "trace_id": "tr-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "name": "retrieve_docs",
        "state": "ERROR",
        "request_preview": "Summarise the Q3 revenue report",
        "execution_time_ms": 1530,
    },
    {
        "trace_id": "tr-f0e1d2c3b4a5968778695a4b3c2d1e0f",
        "name": "ChatAgent.invoke",
        "state": "OK",
        "request_preview": "Book a table for two in Paris",
        "execution_time_ms": 245,
    },
]

MAPPING = {
    "properties": {
        "trace_id": {"type": "keyword"},
        "name": {"type": "keyword"},
        "state": {"type": "keyword"},
        "request_preview": {"type": "wildcard"},
        "execution_time_ms": {"type": "long"},
    }
}


def _index_traces(opensearch: OpenSearch, index: str, docs: list[dict]) -> None:
    opensearch.indices.create(
        index=index, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": MAPPING}
    )
    ok, errors = helpers.bulk(
        opensearch,
        ({"_index": index, "_id": d["trace_id"], "_source": d} for d in docs),
        refresh="wait_for",
    )
    assert (ok, errors) == (len(docs), [])


def _ids(response: dict) -> set[str]:
    return {hit["_id"] for hit in response["hits"]["hits"]}


def test_bulk_indexed_traces_are_searchable(opensearch: OpenSearch, index_name: str) -> None:
    _index_traces(opensearch, index_name, TRACES)

    response = opensearch.search(
        index=index_name,
        body={
            "query": {
                "bool": {"filter": [{"term": {"state": "OK"}}, {"range": {"execution_time_ms": {"gt": 500}}}]}
            }
        },
    )

    assert _ids(response) == {TRACES[0]["trace_id"]}


def test_wildcard_field_answers_infix_like_queries(opensearch: OpenSearch, index_name: str) -> None:
    _index_traces(opensearch, index_name, TRACES)
    mapping = opensearch.indices.get_mapping(index=index_name)
    assert mapping[index_name]["mappings"]["properties"]["request_preview"]["type"] == "wildcard"

    # LIKE '%revenue%' and ILIKE '%PARIS%' as MLflow's search would send them.
    infix = opensearch.search(
        index=index_name, body={"query": {"wildcard": {"request_preview": "*revenue*"}}}
    )
    insensitive = opensearch.search(
        index=index_name,
        body={"query": {"wildcard": {"request_preview": {"value": "*PARIS*", "case_insensitive": True}}}},
    )

    assert _ids(infix) == {TRACES[1]["trace_id"]}
    assert _ids(insensitive) == {TRACES[2]["trace_id"]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"regexp": {"name": "chat.*"}}, {0}),
        ({"regexp": {"name": {"value": "chat.*", "case_insensitive": True}}}, {0, 2}),
        ({"wildcard": {"name": "*_*"}}, {0, 1}),
        ({"wildcard": {"name": {"value": "chatagent.*", "case_insensitive": True}}}, {2}),
        ({"regexp": {"request_preview": ".*[Pp]aris"}}, {2}),
    ],
)
def test_regexp_and_wildcard_queries_on_keyword_and_wildcard_fields(
    opensearch: OpenSearch, index_name: str, query: dict, expected: set[int]
) -> None:
    _index_traces(opensearch, index_name, TRACES)

    response = opensearch.search(index=index_name, body={"query": query})

    assert _ids(response) == {TRACES[i]["trace_id"] for i in expected}


def test_point_in_time_with_search_after_pages_through_every_trace_once(
    opensearch: OpenSearch, index_name: str
) -> None:
    docs = [
        {
            "trace_id": f"tr-{n:032x}",
            "name": f"agent_step_{n % 7}",
            "state": "OK",
            "request_preview": f"question number {n}",
            "execution_time_ms": 1000 - n,
        }
        for n in range(53)
    ]
    _index_traces(opensearch, index_name, docs)

    pit_id = opensearch.create_pit(index=index_name, params={"keep_alive": "1m"})["pit_id"]
    try:
        # A write after the PIT opened must not show up in its pages.
        opensearch.index(
            index=index_name, id="tr-late", body={**docs[0], "trace_id": "tr-late"}, refresh=True
        )
        seen: list[str] = []
        search_after = None
        while True:
            body: dict = {
                "size": 10,
                "pit": {"id": pit_id, "keep_alive": "1m"},
                "sort": [{"execution_time_ms": "desc"}, {"trace_id": "asc"}],
            }
            if search_after is not None:
                body["search_after"] = search_after
            hits = opensearch.search(body=body)["hits"]["hits"]
            if not hits:
                break
            seen.extend(hit["_id"] for hit in hits)
            search_after = hits[-1]["sort"]
    finally:
        opensearch.delete_pit(body={"pit_id": [pit_id]})

    assert seen == [d["trace_id"] for d in docs]
