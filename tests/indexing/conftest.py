"""Fixtures of the indexer's tests: private topics, index prefix and consumer group per test,
and indexers running in threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opensearchpy import OpenSearch

from indexing.support import RunningIndexer, drop_indices, isolated_settings
from tracestream.admin import delete_topics, ensure_topics, pipeline_topics
from tracestream.settings import Settings


@pytest.fixture
def settings(kafka_settings: Settings, opensearch: OpenSearch, unique_name: str) -> Iterator[Settings]:
    isolated = isolated_settings(kafka_settings, unique_name)
    ensure_topics(isolated)
    yield isolated
    delete_topics(isolated, [spec.name for spec in pipeline_topics(isolated)])
    drop_indices(opensearch, isolated)


@pytest.fixture
def start_indexer() -> Iterator[Callable[..., RunningIndexer]]:
    started: list[RunningIndexer] = []

    def start(settings: Settings, client: OpenSearch | None = None) -> RunningIndexer:
        running = RunningIndexer(settings, client)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
