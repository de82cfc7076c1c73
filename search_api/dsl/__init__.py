"""The filter-DSL front end: MLflow ``search_traces`` filter strings and order_by clauses -> AST.

Engine-agnostic: nothing here knows about OpenSearch. ``parse_filter`` accepts every filter MLflow
3.18 accepts, with the same meaning, and rejects what MLflow rejects with MLflow's message; beyond
MLflow it also accepts ``OR``, ``NOT`` and parentheses, token-usage fields and ``span.duration_ms``.
"""

from tracestream.search_api.dsl.ast import And as And
from tracestream.search_api.dsl.ast import Assessment as Assessment
from tracestream.search_api.dsl.ast import Attribute as Attribute
from tracestream.search_api.dsl.ast import Comparison as Comparison
from tracestream.search_api.dsl.ast import Field as Field
from tracestream.search_api.dsl.ast import Issue as Issue
from tracestream.search_api.dsl.ast import Metadata as Metadata
from tracestream.search_api.dsl.ast import Node as Node
from tracestream.search_api.dsl.ast import Not as Not
from tracestream.search_api.dsl.ast import Op as Op
from tracestream.search_api.dsl.ast import Or as Or
from tracestream.search_api.dsl.ast import OrderBy as OrderBy
from tracestream.search_api.dsl.ast import SpanAttribute as SpanAttribute
from tracestream.search_api.dsl.ast import SpanField as SpanField
from tracestream.search_api.dsl.ast import Tag as Tag
from tracestream.search_api.dsl.ast import TokenUsage as TokenUsage
from tracestream.search_api.dsl.ast import Value as Value
from tracestream.search_api.dsl.ast import comparisons as comparisons
from tracestream.search_api.dsl.ast import render as render
from tracestream.search_api.dsl.ast import render_order_by as render_order_by
from tracestream.search_api.dsl.errors import FilterError as FilterError
from tracestream.search_api.dsl.errors import ParseError as ParseError
from tracestream.search_api.dsl.errors import UnsupportedError as UnsupportedError
from tracestream.search_api.dsl.parser import parse_filter as parse_filter
from tracestream.search_api.dsl.parser import parse_order_by as parse_order_by
from tracestream.search_api.dsl.parser import with_default_order as with_default_order

__all__ = [
    "And",
    "Assessment",
    "Attribute",
    "Comparison",
    "Field",
    "FilterError",
    "Issue",
    "Metadata",
    "Node",
    "Not",
    "Op",
    "Or",
    "OrderBy",
    "ParseError",
    "SpanAttribute",
    "SpanField",
    "Tag",
    "TokenUsage",
    "UnsupportedError",
    "Value",
    "comparisons",
    "parse_filter",
    "parse_order_by",
    "render",
    "render_order_by",
    "with_default_order",
]
