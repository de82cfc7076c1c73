"""The indexer: completed traces from Kafka into OpenSearch, idempotently. It owns the traces
index (mapping, names) and the reads the search API makes on it."""

from indexer.document import TraceDocument as TraceDocument
from indexer.document import build_document as build_document
from indexer.document import hit_fetch as hit_fetch
from indexer.document import trace_from_hit as trace_from_hit
from indexer.mapping import MAPPING_VERSION as MAPPING_VERSION
from indexer.mapping import F as F
from indexer.mapping import IndexNames as IndexNames
from indexer.mapping import index_template as index_template
from indexer.service import Indexer as Indexer
from indexer.service import run_indexer as run_indexer
from indexer.store import TraceWriter as TraceWriter
from indexer.store import delete_indices_older_than as delete_indices_older_than
from indexer.store import ensure_index_template as ensure_index_template
from indexer.store import get_trace as get_trace
from indexer.store import opensearch_client as opensearch_client
