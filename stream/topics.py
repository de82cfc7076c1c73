"""The stream's topics: the pipeline's (events in; completed traces, alerts, dead letters out) and
its internal ticks topic, and the creation of Faust's internal topics before it starts."""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import CollectionT, TopicT
from mode.utils.times import want_seconds

from tracestream.admin import TopicSpec, ensure_topics
from tracestream.settings import Settings

_RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


@dataclass(frozen=True, slots=True)
class Topics:
    events: TopicT
    completed: TopicT
    alerts: TopicT
    dead_letters: TopicT
    # Timer ticks, keyed by trace id to the trace's own partition: Faust timers may not modify
    # tables, so the timer only sends a tick and the tick agent acts in the partition's context.
    ticks: TopicT


def ticks_topic_name(settings: Settings) -> str:
    return f"{settings.stream.app_id}-ticks"


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    topics = settings.topics
    return Topics(
        events=app.topic(topics.events, **_RAW),
        completed=app.topic(topics.completed, **_RAW),
        alerts=app.topic(topics.alerts, **_RAW),
        dead_letters=app.topic(topics.dead_letters, **_RAW),
        ticks=app.topic(
            ticks_topic_name(settings), internal=True, partitions=topics.events_partitions, **_RAW
        ),
    )


def ensure_internal_topics(settings: Settings, tables: list[CollectionT]) -> None:
    """Create Faust's internal topics (changelogs, ticks, leader) before Faust starts.

    Why: Faust creates them at start-up through its producer's client, but its consumer's
    client may have read the cluster metadata before they existed (seen with one worker, and
    with two workers starting together, one creating the topics the other had just looked
    for). Until that client's metadata is refreshed (minutes), the group leader assigns no
    partition of a missing topic ("Ignoring missing topic"), and a table whose changelog is
    missing fails every write with PartitionsMismatch ("changelog ... has 0 partitions"): events
    went to the dead-letter topic and idle traces were never finalized. Created here, through
    another client and waited for, they are in the metadata Faust's clients read first.
    """
    rf = settings.topics.replication_factor
    specs = []
    for table in tables:
        changelog = table.changelog_topic
        flags = (("compact", changelog.compacting), ("delete", changelog.deleting))
        cleanup = [flag for flag, on in flags if on]
        config = {"cleanup.policy": ",".join(cleanup)} if cleanup else {}
        if changelog.retention:
            config["retention.ms"] = str(int(want_seconds(changelog.retention) * 1000))
        specs.append(TopicSpec(changelog.get_topic_name(), changelog.partitions or 1, rf, config))
    stream = settings.stream
    # Ticks are only useful for a few timeouts; replaying old ones is harmless but slow.
    ticks_retention_ms = int(max(stream.late_window_s, stream.idle_timeout_s, 1800) * 2 * 1000)
    specs.append(
        TopicSpec(
            ticks_topic_name(settings),
            settings.topics.events_partitions,
            rf,
            {"cleanup.policy": "delete", "retention.ms": str(ticks_retention_ms)},
        )
    )
    specs.append(TopicSpec(f"{stream.app_id}-__assignor-__leader", 1, rf))
    ensure_topics(settings, specs)
