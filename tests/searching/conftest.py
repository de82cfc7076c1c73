"""Fixtures of the search API's tests: a private index per test module, the real FastAPI app."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from searching.support import drop, private_settings
from tracestream.search_api.api import create_app
from tracestream.settings import Settings


@pytest.fixture(scope="module")
def settings(opensearch: OpenSearch) -> Iterator[Settings]:
    """A private index prefix for a module's traces, written once and dropped after the module."""
    settings = private_settings(Settings())
    yield settings
    drop(opensearch, settings)


@pytest.fixture
def api_settings(opensearch: OpenSearch) -> Iterator[Settings]:
    settings = private_settings(Settings())
    yield settings
    drop(opensearch, settings)


@pytest.fixture
def api(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as client:
        yield client


@pytest.fixture
def write_settings(
    kafka_settings: Settings, opensearch: OpenSearch, unique_topic: Callable[..., str]
) -> Iterator[Settings]:
    """A private index and a private one-partition events topic: what the API publishes (links,
    deletes) is read back alone (``support.published_events``)."""
    topics = kafka_settings.topics.model_copy(update={"events": unique_topic(partitions=1)})
    settings = private_settings(kafka_settings.model_copy(update={"topics": topics}))
    yield settings
    drop(opensearch, settings)
