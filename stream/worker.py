"""Running a stream worker: `tracestream stream worker`."""

from __future__ import annotations

import logging

import faust

from tracestream.settings import Settings
from tracestream.stream.agents import TraceAssembler
from tracestream.stream.app import store_url
from tracestream.stream.topics import ensure_internal_topics

logger = logging.getLogger("stream")

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"  # the messages say "stream: ..."


def create_app(settings: Settings) -> TraceAssembler:
    return TraceAssembler(settings)


def _log_own_lines_at_info(settings: Settings) -> None:
    """The worker's own lines (start-up, assignment, status) at INFO whatever Faust's level.

    Faust's log level (``stream.log_level``, "warning" by default) is its root handler's level
    too: the worker's INFO lines went nowhere and a normal run printed nothing. They get a
    handler of their own; Faust and aiokafka stay at ``log_level``, where they are not chatty."""
    handler = logging.StreamHandler()  # stderr, as the indexer's lines
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.handlers[:] = [handler]
    faust_level = logging.getLevelNamesMapping().get(settings.stream.log_level.upper(), logging.WARNING)
    logger.setLevel(min(logging.INFO, faust_level))
    logger.propagate = False  # the root handler (Faust's) would print the warnings twice
    # Faust's services log "Starting..."/"Stopping..." through our transport module's logger.
    logging.getLogger("tracestream.stream.transport").setLevel(faust_level)


def run_worker(settings: Settings) -> None:
    """Run a worker until stopped (SIGINT/SIGTERM). Several workers share the partitions."""
    _log_own_lines_at_info(settings)
    assembler = create_app(settings)
    # Kafka unreachable: ensure_topics raises, the command says so in a line or two (no start line).
    tables = [assembler.tables.spans, assembler.tables.traces]
    if assembler.rule_tables is not None:
        tables += [assembler.rule_tables.windows, assembler.rule_tables.marks]
    ensure_internal_topics(settings, tables)
    topics = settings.topics
    logger.info(
        "stream: worker of app %s starting: events %s (%d partitions) -> completed %s, alerts %s, "
        "dead letters %s; store %s in %s; Kafka at %s",
        settings.stream.app_id,
        topics.events,
        topics.events_partitions,
        topics.completed,
        topics.alerts,
        topics.dead_letters,
        store_url(settings),
        settings.stream.data_dir,
        settings.kafka.bootstrap_servers,
    )
    if assembler.rule_set is not None:
        logger.info(
            "stream: %d alert rules from %s: %s",
            len(assembler.rule_set.rules),
            assembler.rule_set.path,
            ", ".join(rule.name for rule in assembler.rule_set.rules) or "none",
        )
    worker = faust.Worker(assembler.app, loglevel=settings.stream.log_level, quiet=True)
    # At a log level of WARNING or above, Faust's start-up spinner sets the root logger to DEBUG
    # and animates on every record: each debug call of aiokafka and Faust then built a record
    # (about 3 per event, 7% of the worker's time) and wrote escape codes to the log.
    worker.spinner = None
    worker.execute_from_commandline()
