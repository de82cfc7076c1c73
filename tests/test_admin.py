"""`tracestream admin init` creates the pipeline topics, idempotently."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType
from typer.testing import CliRunner
from waiting import wait_until

from tracestream.admin import TopicOutcome, admin_client, delete_topics, ensure_topics, pipeline_topics
from tracestream.cli import app
from tracestream.settings import Settings, TopicSettings


@pytest.fixture
def isolated_settings(kafka_settings: Settings, unique_name: str) -> Iterator[Settings]:
    """Settings whose pipeline topics are this test's own; they are deleted afterwards."""
    settings = kafka_settings.model_copy(
        update={
            "topics": TopicSettings(
                events=f"{unique_name}.events",
                completed=f"{unique_name}.completed",
                alerts=f"{unique_name}.alerts",
                dead_letters=f"{unique_name}.deadletters",
                events_partitions=4,
                completed_partitions=3,
            )
        }
    )
    yield settings
    delete_topics(settings, [spec.name for spec in pipeline_topics(settings)])


def _topic_config(settings: Settings, topic: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    admin = admin_client(settings)  # kept referenced until the future resolves
    entries = admin.describe_configs([resource])[resource].result(timeout=10)
    return {name: entry.value for name, entry in entries.items()}


def test_init_creates_the_four_pipeline_topics_with_configured_partitions(
    isolated_settings: Settings,
) -> None:
    reports = ensure_topics(isolated_settings)

    topics = isolated_settings.topics
    assert [(r.spec.name, r.outcome, r.partitions) for r in reports] == [
        (topics.events, TopicOutcome.CREATED, 4),
        (topics.completed, TopicOutcome.CREATED, 3),
        (topics.alerts, TopicOutcome.CREATED, 1),
        (topics.dead_letters, TopicOutcome.CREATED, 1),
    ]


def test_completed_traces_topic_is_compacted_and_events_topic_is_not(isolated_settings: Settings) -> None:
    ensure_topics(isolated_settings)

    completed = _topic_config(isolated_settings, isolated_settings.topics.completed)
    events = _topic_config(isolated_settings, isolated_settings.topics.events)

    assert completed["cleanup.policy"] == "compact,delete"
    assert events["cleanup.policy"] == "delete"
    assert events["retention.ms"] == str(isolated_settings.topics.events_retention_ms)
    assert int(events["max.message.bytes"]) >= 8 * 1024 * 1024


def test_init_a_second_time_changes_nothing(isolated_settings: Settings) -> None:
    ensure_topics(isolated_settings)

    again = ensure_topics(isolated_settings)

    assert {r.outcome for r in again} == {TopicOutcome.EXISTS}
    assert [r.partitions for r in again] == [4, 3, 1, 1]


def test_an_existing_topic_with_other_partitions_is_reported_and_left_alone(
    isolated_settings: Settings,
) -> None:
    ensure_topics(isolated_settings)
    wider = isolated_settings.model_copy(
        update={"topics": isolated_settings.topics.model_copy(update={"events_partitions": 12})}
    )

    reports = {r.spec.name: r for r in ensure_topics(wider)}

    events = reports[wider.topics.events]
    assert (events.outcome, events.partitions) == (TopicOutcome.PARTITIONS_DIFFER, 4)


def test_admin_init_command_prints_each_topic(
    isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tracestream.cli.get_settings", lambda: isolated_settings)

    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["admin", "init"])

    assert result.exit_code == 0, result.output
    for spec in pipeline_topics(isolated_settings):
        assert spec.name in result.output
    assert "created" in result.output


def test_deleting_a_topic_named_twice_deletes_it_once(isolated_settings: Settings) -> None:
    ensure_topics(isolated_settings)
    events = isolated_settings.topics.events

    delete_topics(isolated_settings, [events, events])

    # The broker accepts a deletion before its metadata stops listing the topic.
    admin = admin_client(isolated_settings)
    wait_until(lambda: events not in admin.list_topics(timeout=10).topics, 30, f"{events} to be deleted")
