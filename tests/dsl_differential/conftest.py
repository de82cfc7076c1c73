"""Session fixtures of the differential suite: the dataset, and a private OpenSearch index holding it
(MLflow's side, which needs the queries, is in test_differential.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch
from searching.support import drop, private_settings

from dsl_differential.dataset import build_dataset
from tracestream.indexer import IndexNames, build_document, ensure_index_template
from tracestream.indexer.store import TraceWriter
from tracestream.schemas.records import CompletedTrace
from tracestream.settings import Settings


@pytest.fixture(scope="session")
def dataset() -> list[CompletedTrace]:
    return build_dataset()


@pytest.fixture(scope="session")
def search_settings(opensearch: OpenSearch, dataset: list[CompletedTrace]) -> Iterator[Settings]:
    """A private index prefix holding the dataset, written as the indexer writes it."""
    settings = private_settings(Settings())
    names = IndexNames.from_settings(settings)
    ensure_index_template(opensearch, settings)
    limit = settings.indexer.max_indexed_span_content_bytes
    documents = [build_document(trace, names, limit) for trace in dataset]
    try:
        report = TraceWriter(opensearch, settings).write(documents, wait=lambda _s: False)
        assert report.written == len(dataset) and not report.rejected, report
        opensearch.indices.refresh(index=names.read_alias)
        yield settings
    finally:
        drop(opensearch, settings)
