"""Helpers of the search API's tests: traces written straight into a private index (the
indexer's own path is tested in tests/indexing) and an API client over the real app."""

from __future__ import annotations

import random
import uuid
from typing import Any

from opensearchpy import OpenSearch, helpers

from indexer import IndexNames, build_document, ensure_index_template
from schemas.records import CompletedTrace
from schemas.samples import completed_trace
from tracestream.settings import Settings


def private_settings(base: Settings, **api: Any) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return base.model_copy(
        update={
            "opensearch": base.opensearch.model_copy(update={"index_prefix": prefix}),
            "api": base.api.model_copy(update=api),
        }
    )


def write_traces(client: OpenSearch, settings: Settings, traces: list[CompletedTrace]) -> None:
    """Index ``traces`` as the indexer does (same documents, versions) and make them searchable."""
    names = IndexNames.from_settings(settings)
    ensure_index_template(client, settings)
    limit = settings.indexer.max_indexed_span_content_bytes
    actions = (
        {
            "_index": document.index,
            "_id": document.trace_id,
            "version": document.revision,
            "version_type": "external",
            "_source": document.source,
        }
        for document in (build_document(trace, names, limit) for trace in traces)
    )
    helpers.bulk(client, actions, chunk_size=500, max_chunk_bytes=10 * 1024 * 1024, request_timeout=120)
    client.indices.refresh(index=names.read_alias)


def drop(client: OpenSearch, settings: Settings) -> None:
    names = IndexNames.from_settings(settings)
    client.indices.delete(index=names.pattern, ignore_unavailable=True, allow_no_indices=True)
    client.indices.delete_index_template(name=names.template, ignore=[404])


def small_traces(
    count: int, seed: int, start_ms: int, step_ms: int = 1000, **kwargs: Any
) -> list[CompletedTrace]:
    """``count`` light agent traces one ``step_ms`` apart, starting at ``start_ms``."""
    rng = random.Random(seed)
    return [
        completed_trace(
            rng,
            request_time_ms=start_ms + n * step_ms,
            min_spans=2,
            max_spans=4,
            min_io_bytes=100,
            max_io_bytes=600,
            **kwargs,
        )
        for n in range(count)
    ]
