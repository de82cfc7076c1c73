"""Property: every filter the parser accepts becomes a query OpenSearch runs.

Random ASTs (the strategies of tests/dsl/test_parser_fuzz.py) are rendered to filter strings and
parsed back, so only ASTs the parser really produces are used; the generator either refuses one
with its typed error (an RLIKE construct OpenSearch has no equivalent for) or produces a query and
sort that real OpenSearch executes against the differential dataset's index without an error.
The one error OpenSearch may answer is the bounded determinization of a pathological regex, which
the API turns into a clear 400 by design (tests/searching/test_api.py).
"""

from __future__ import annotations

import json
from typing import Any

from dsl.test_parser_fuzz import metadata, orderable_attributes, tags, token_usage, trees
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from tracestream.indexer import IndexNames
from tracestream.indexer.query import experiments_query, to_query, to_sort
from tracestream.search_api.dsl import FilterError, Node, OrderBy, parse_filter, render, with_default_order
from tracestream.settings import Settings

orders = st.lists(
    st.builds(OrderBy, st.one_of(orderable_attributes, tags, metadata, token_usage), st.booleans()),
    max_size=3,
    unique_by=lambda order: order.field,
)


def parsed(node: Node) -> Node:
    """``node`` as the parser produces it from its rendering; rejects ASTs it cannot produce."""
    try:
        result = parse_filter(render(node))
    except (ValueError, FilterError):  # FilterError is a ValueError; both mean "not a filter"
        assume(False)
        raise
    assert result is not None
    return result


def run(client: OpenSearch, index: str, body: dict[str, Any]) -> None:
    try:
        client.search(index=index, body=body, ignore_unavailable=True)
    except TransportError as exc:
        text = json.dumps(exc.info) if isinstance(exc.info, dict) else str(exc.info)
        assert exc.status_code == 400 and "too_complex_to_determinize" in text, (
            f"OpenSearch refused a generated query ({exc.status_code}): {text[:1500]}\n"
            f"query: {json.dumps(body)[:3000]}"
        )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(trees, orders, st.lists(st.sampled_from(["0", "1", "2", "11"]), max_size=2))
def test_every_generated_query_runs_on_opensearch(
    opensearch: OpenSearch,
    search_settings: Settings,
    node: Node,
    order_by: list[OrderBy],
    locations: list[str],
) -> None:
    filter_node = parsed(node)
    try:
        query = to_query(filter_node)
    except FilterError as error:
        # Only RLIKE constructs without a Lucene equivalent are refused at this stage.
        assert error.message.startswith("RLIKE pattern"), error.message
        return
    body = {
        "query": {"bool": {"filter": [query, experiments_query(locations)]}} if locations else query,
        "sort": to_sort(with_default_order(order_by)),
        "size": 5,
        "track_total_hits": False,
        "_source": False,
    }
    run(opensearch, IndexNames.from_settings(search_settings).read_alias, body)
