"""The indexer: completed traces from Kafka into OpenSearch, idempotently. It owns the traces
index (mapping, names) and the reads the search API makes on it."""

from tracestream.indexer.document import TraceDocument as TraceDocument
from tracestream.indexer.document import build_document as build_document
from tracestream.indexer.document import hit_fetch as hit_fetch
from tracestream.indexer.document import trace_from_hit as trace_from_hit
from tracestream.indexer.mapping import MAPPING_VERSION as MAPPING_VERSION
from tracestream.indexer.mapping import F as F
from tracestream.indexer.mapping import IndexNames as IndexNames
from tracestream.indexer.mapping import index_template as index_template
from tracestream.indexer.service import Indexer as Indexer
from tracestream.indexer.service import run_indexer as run_indexer
from tracestream.indexer.store import TraceWriter as TraceWriter
from tracestream.indexer.store import delete_indices_older_than as delete_indices_older_than
from tracestream.indexer.store import ensure_index_template as ensure_index_template
from tracestream.indexer.store import get_trace as get_trace
from tracestream.indexer.store import opensearch_client as opensearch_client
