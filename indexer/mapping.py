"""The traces index: names, the index template, and every field the query generator targets.

One module owns the mapping and the field names so that the DSL's OpenSearch generator
(``indexer.query``) and the document builder (``indexer.document``) cannot drift apart.
The design and its reasons are in ``indexer/DESIGN.md``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from tracestream.settings import IndexerSettings, Settings

# Bumped whenever the mapping changes; stored in the template's _meta so an operator can see
# which mapping an index was created with.
MAPPING_VERSION = 3

DEFAULT_MAX_CLOCK_SKEW_MS: int = IndexerSettings.model_fields["max_clock_skew_s"].default * 1000

# Separator between an attribute key and its value in span attribute entries: a control
# character that does not occur in real attribute keys, so "key=value" cannot be ambiguous.
ENTRY_SEPARATOR = "\x1f"

LOWERCASE_NORMALIZER = "tracestream_lowercase"

# Lucene refuses a doc-values term over 32,766 bytes, and a lowercase copy can be a few bytes
# longer than the original, so indexed strings are cut a little below that.
MAX_TERM_BYTES = 32_000
# Span attribute entries ("key<US>value") are indexed up to this length: filters on attributes
# name short values (model, tool, temperature); long inputs and outputs are searched through
# the span content instead, which is indexed in full up to its own limit.
MAX_ATTRIBUTE_ENTRY_BYTES = 2_048


class F:
    """Field paths of a trace document."""

    TRACE_ID = "trace_id"
    # The trace id's 128 bits as two signed longs, in the id's order: the tie-breaker of every
    # sort. Sorting on the high-cardinality trace_id keyword itself cost ~7 ms a query at 20,000
    # traces (a terms-dictionary lookup per competitive hit); longs cost nothing measurable.
    TRACE_ORDER_HIGH = "trace_order_high"
    TRACE_ORDER_LOW = "trace_order_low"
    REVISION = "revision"
    EXPERIMENT_ID = "experiment_id"
    LOCATION_TYPE = "location_type"
    CLIENT_REQUEST_ID = "client_request_id"
    TIMESTAMP_MS = "timestamp_ms"
    EXECUTION_TIME_MS = "execution_time_ms"
    END_TIME_MS = "end_time_ms"
    STATE = "state"
    NAME = "name"
    RUN_ID = "run_id"
    # Runs and prompt versions ("name/version") linked to the trace (MLflow's entity
    # associations): ``run_id =`` matches a linked run too, ``prompt =`` a linked version.
    LINKED_RUN_IDS = "linked_run_ids"
    LINKED_PROMPTS = "linked_prompts"
    SESSION_ID = "session_id"
    USER = "user"
    REQUEST_PREVIEW = "request_preview"
    RESPONSE_PREVIEW = "response_preview"
    INPUT_TOKENS = "token_usage.input_tokens"
    OUTPUT_TOKENS = "token_usage.output_tokens"
    TOTAL_TOKENS = "token_usage.total_tokens"
    SIZE_BYTES = "size_bytes"
    NUM_SPANS = "num_spans"
    COMPLETED_TIME_MS = "completed_time_ms"
    TRACE = "trace"
    # MLflow's TraceInfo JSON (with assessments) again, as binary doc values, outside _source: a
    # page of search results reads it from doc values alone. Fetching the same from _source
    # meant decompressing and parsing each whole trace (12.5 -> 3 ms a page of 100 at 20k).
    INFO_JSON = "info_json"

    # key/value entries: nested, one hidden document per entry
    TAGS = "tags"
    METADATA = "metadata"
    ENTRY_KEY = "key"
    ENTRY_VALUE = "value"

    SPANS = "spans"
    SPAN_ID = "spans.span_id"
    SPAN_PARENT_ID = "spans.parent_span_id"
    SPAN_NAME = "spans.name"
    SPAN_TYPE = "spans.type"
    SPAN_STATUS = "spans.status"
    SPAN_START_TIME_NS = "spans.start_time_ns"
    SPAN_DURATION_MS = "spans.duration_ms"
    SPAN_CONTENT = "spans.content"
    SPAN_ATTRIBUTES = "spans.attributes"

    ASSESSMENTS = "assessments"
    ASSESSMENT_ID = "assessments.assessment_id"
    ASSESSMENT_KIND = "assessments.kind"
    ASSESSMENT_NAME = "assessments.name"
    ASSESSMENT_VALID = "assessments.valid"
    ASSESSMENT_VALUE = "assessments.value"
    ASSESSMENT_NUMERIC_VALUE = "assessments.numeric_value"
    ASSESSMENT_SESSION_ID = "assessments.session_id"

    # The case-insensitive sibling of a string field (ILIKE): the same text, lowercased.
    LOWER = ".lower"


def lower(field: str) -> str:
    return field + F.LOWER


# ---------------------------------------------------------------- field types

_KEYWORD: dict[str, Any] = {"type": "keyword"}
_KEYWORD_CI: dict[str, Any] = {
    "type": "keyword",
    "fields": {"lower": {"type": "keyword", "normalizer": LOWERCASE_NORMALIZER}},
}
# Substring and regexp search over long text: the wildcard type indexes 3-grams. Inside nested
# documents it needs doc values to verify candidates (without them it matches nothing). No
# lowercase copy: it would double the most expensive part of indexing (measured 16 -> 39 docs/s
# without it); ILIKE uses the query's case_insensitive flag (it folds Unicode letters too).
_WILDCARD: dict[str, Any] = {"type": "wildcard", "doc_values": True}
_LONG: dict[str, Any] = {"type": "long"}
_SORT_ONLY_LONG: dict[str, Any] = {"type": "long", "index": False}
_STORED_ONLY: dict[str, Any] = {"type": "keyword", "index": False, "doc_values": False}
_ENTRIES: dict[str, Any] = {
    "type": "nested",
    "properties": {"key": _KEYWORD, "value": _KEYWORD_CI},
}

MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    # Span text is indexed from the document but kept in _source only once, inside "trace".
    "_source": {"excludes": [F.SPAN_CONTENT, F.SPAN_ATTRIBUTES, F.INFO_JSON]},
    "properties": {
        F.TRACE_ID: _KEYWORD,
        F.TRACE_ORDER_HIGH: _SORT_ONLY_LONG,
        F.TRACE_ORDER_LOW: _SORT_ONLY_LONG,
        F.INFO_JSON: {"type": "binary", "doc_values": True},
        F.REVISION: _LONG,
        F.EXPERIMENT_ID: _KEYWORD,
        F.LOCATION_TYPE: _KEYWORD,
        F.CLIENT_REQUEST_ID: _KEYWORD_CI,
        F.TIMESTAMP_MS: _LONG,
        F.EXECUTION_TIME_MS: _LONG,
        F.END_TIME_MS: _LONG,
        F.STATE: _KEYWORD_CI,
        F.NAME: _KEYWORD_CI,
        F.RUN_ID: _KEYWORD_CI,
        F.LINKED_RUN_IDS: _KEYWORD,
        F.LINKED_PROMPTS: _KEYWORD,
        F.SESSION_ID: _KEYWORD,
        F.USER: _KEYWORD,
        F.REQUEST_PREVIEW: _STORED_ONLY,
        F.RESPONSE_PREVIEW: _STORED_ONLY,
        "token_usage": {"properties": {"input_tokens": _LONG, "output_tokens": _LONG, "total_tokens": _LONG}},
        F.SIZE_BYTES: _LONG,
        F.NUM_SPANS: {"type": "integer"},
        F.COMPLETED_TIME_MS: _LONG,
        F.TAGS: _ENTRIES,
        F.METADATA: _ENTRIES,
        F.SPANS: {
            "type": "nested",
            "properties": {
                "span_id": _KEYWORD,
                "parent_span_id": _KEYWORD,
                "name": _KEYWORD_CI,
                "type": _KEYWORD_CI,
                "status": _KEYWORD_CI,
                "start_time_ns": _LONG,
                "duration_ms": _LONG,
                "content": _WILDCARD,
                "attributes": _WILDCARD,
            },
        },
        F.ASSESSMENTS: {
            "type": "nested",
            "properties": {
                "assessment_id": _KEYWORD,
                "kind": _KEYWORD,
                "name": _KEYWORD,
                "valid": {"type": "boolean"},
                "value": _KEYWORD_CI,
                "numeric_value": {"type": "double"},
                "session_id": _KEYWORD,
            },
        },
        # The whole trace as MLflow renders it, returned by reads; never searched.
        F.TRACE: {"type": "object", "enabled": False},
    },
}


# ---------------------------------------------------------------- names


def is_clock_skewed(request_time_ms: int, first_seen_ms: int, max_skew_ms: int) -> bool:
    """A trace's start time further than ``max_skew_ms`` from when the stream first saw it."""
    return not first_seen_ms - max_skew_ms <= request_time_ms <= first_seen_ms + max_skew_ms


class IndexNames:
    """The names of one deployment's traces indices, template and read alias."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.read_alias = f"{prefix}-traces"
        self.pattern = f"{prefix}-traces-*"
        self.template = f"{prefix}-traces"
        self._daily = f"{prefix}-traces-"

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexNames:
        return cls(settings.opensearch.index_prefix)

    def daily(self, request_time_ms: int) -> str:
        """The index of a trace: the UTC day it started. Fixed for the trace's whole life, so a
        later revision always lands on the same document (rollover would break that)."""
        day = datetime.fromtimestamp(request_time_ms / 1000, tz=UTC)
        return f"{self._daily}{day:%Y.%m.%d}"

    def for_trace(self, request_time_ms: int, first_seen_ms: int, max_skew_ms: int) -> tuple[str, bool]:
        """The index of a trace and whether its clock is skewed: the day it started, unless that
        is further than ``max_skew_ms`` from when the stream first saw it (a client's clock
        must not decide which indices exist); then the day it was first seen. Both times are
        the same on every revision, so the index is too."""
        if not is_clock_skewed(request_time_ms, first_seen_ms, max_skew_ms):
            return self.daily(request_time_ms), False
        return self.daily(first_seen_ms), True

    def day_of(self, index: str) -> date | None:
        """The day a daily index holds, or None for a name that is not one of ours."""
        if not index.startswith(self._daily):
            return None
        try:
            return datetime.strptime(index[len(self._daily) :], "%Y.%m.%d").date()
        except ValueError:
            return None


# How long an index remembers a deleted trace's version. Revisions reach the indexer in their
# partition's order, so one older than the delete only comes late from a previous owner's bulk
# request still in flight across a rebalance (its timeout and retries: well under a minute).
# Five minutes instead of OpenSearch's 60 s is margin for that, at the cost of one version-map
# entry per deleted trace for that long; later events of a deleted trace the stream drops.
GC_DELETES = "5m"


def index_template(settings: Settings) -> dict[str, Any]:
    """The composable index template every daily traces index is created from."""
    names = IndexNames.from_settings(settings)
    return {
        "index_patterns": [names.pattern],
        "priority": 200,
        "template": {
            "settings": {
                "index": {
                    "number_of_shards": settings.indexer.number_of_shards,
                    "number_of_replicas": settings.opensearch.number_of_replicas,
                    "refresh_interval": settings.indexer.refresh_interval,
                    # Spans, tags, metadata and assessments are nested documents; a large agent
                    # trace has thousands of spans.
                    "mapping.nested_objects.limit": 100_000,
                    "gc_deletes": GC_DELETES,
                },
                "analysis": {
                    # Built only from the core "lowercase" filter, so it works on the minimal
                    # distribution (no analysis-common module).
                    "normalizer": {LOWERCASE_NORMALIZER: {"type": "custom", "filter": ["lowercase"]}}
                },
            },
            "mappings": MAPPINGS,
            "aliases": {names.read_alias: {}},
        },
        "_meta": {"mapping_version": MAPPING_VERSION, "owner": "tracestream-indexer"},
    }


_HEX_DIGITS = frozenset("0123456789abcdef")
_SIGN = 1 << 63
# Ids not of MLflow's form sort after every MLflow id with the same timestamp.
_UNORDERED = (_SIGN - 1, _SIGN - 1)


def trace_order(trace_id: str) -> tuple[int, int]:
    """The values of ``F.TRACE_ORDER_HIGH``/``LOW`` for ``trace_id``: for MLflow's ids (``tr-`` and
    32 lowercase hex digits) numeric order equals the ids' string order; each half is shifted by
    2^63 to fit a signed long without changing its order."""
    digits = trace_id[3:]
    if len(trace_id) != 35 or not trace_id.startswith("tr-") or not _HEX_DIGITS.issuperset(digits):
        return _UNORDERED
    return int(digits[:16], 16) - _SIGN, int(digits[16:], 16) - _SIGN
