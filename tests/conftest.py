"""Fixtures for tests against the real servers.

The servers' addresses come from the settings (by default the local stack of infra/up).
A test that needs a server it cannot reach is skipped on a developer's machine, and fails
with a message naming the server when CI=true: CI never passes by skipping.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from functools import cache

import pytest
from opensearchpy import OpenSearch

from tracestream.admin import TopicSpec, admin_client, delete_topics, ensure_topics
from tracestream.health import kafka_health, opensearch_health
from tracestream.settings import Settings

SERVER_FIXTURES = {"kafka_settings": "kafka", "opensearch": "opensearch"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Mark tests by the servers they need, so `pytest -m "not kafka and not opensearch"`
    # runs the unit tests alone.
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture, marker in SERVER_FIXTURES.items():
            if fixture in fixtures or (marker == "kafka" and "unique_topic" in fixtures):
                item.add_marker(getattr(pytest.mark, marker))


@cache
def _unreachable(server: str) -> str | None:
    """Why ``server`` cannot be used, or None when it is healthy. Checked once per run."""
    settings = Settings()
    report = kafka_health(settings) if server == "kafka" else opensearch_health(settings)
    if report.healthy:
        return None
    return f"{server} at {report.address} is not reachable: {report.error or report.details}"


def require_server(server: str) -> None:
    reason = _unreachable(server)
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"{reason} (CI=true: tests that need {server} fail instead of skipping; start it with infra/up)",
            pytrace=False,
        )
    pytest.skip(f"{reason}; start it with infra/up")


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A lowercase name no other test or run uses, readable in server listings."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"ts-test-{slug}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def kafka_settings() -> Settings:
    require_server("kafka")
    return Settings()


@pytest.fixture
def unique_topic(kafka_settings: Settings, unique_name: str) -> Iterator[Callable[..., str]]:
    """Creates topics with unique names for one test and deletes them afterwards."""
    created: list[str] = []
    admin = admin_client(kafka_settings)

    def create(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"{unique_name}-{len(created)}"
        ensure_topics(kafka_settings, [TopicSpec(name, partitions, 1, config or {})], admin=admin)
        created.append(name)
        return name

    yield create
    delete_topics(kafka_settings, created, admin=admin)


@pytest.fixture(scope="session")
def opensearch() -> Iterator[OpenSearch]:
    require_server("opensearch")
    client = OpenSearch(**Settings().opensearch.client_kwargs())
    yield client
    client.close()


@pytest.fixture
def index_name(opensearch: OpenSearch, unique_name: str) -> Iterator[str]:
    """A unique index name (prefixed like the project's indices); the index is deleted afterwards."""
    name = f"{Settings().opensearch.index_prefix}-{unique_name}"
    yield name
    opensearch.indices.delete(index=f"{name}*", ignore_unavailable=True, allow_no_indices=True)
