"""``/api/v1/live/alerts``: the alerts topic as server-sent events, for the explorer's live view.

Each connection reads the topic with a consumer of its own, assigned by hand to the end of each
partition at the moment of the request (no group is joined and nothing is committed, so viewers
never take alerts from the alerting consumers), and sends each alert as ``event: alert`` with the
decoded ``TraceAlert`` as JSON. ``tracestream alerts tail`` (stream/alerts.py) reads the same way;
the API server may not import the stream's modules (docs/layers.md), hence this short second
reader.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tracestream import schemas
from tracestream.admin import kafka_client_logger
from tracestream.search_api.access import PrincipalDep, Right
from tracestream.search_api.deps import SettingsDep
from tracestream.search_api.search import SearchError
from tracestream.settings import Settings

logger = logging.getLogger(__name__)

POLL_S = 0.5
# A comment line this often keeps proxies from closing an idle stream.
KEEP_ALIVE_S = 15.0

router = APIRouter(prefix="/api/v1/live")


def open_alerts_consumer(settings: Settings) -> Consumer:
    """A consumer positioned at the end of every partition of the alerts topic, as of now (not of
    its first fetch: an alert produced right after the request is read)."""
    kafka = settings.kafka
    topic = settings.topics.alerts
    consumer = Consumer(
        kafka.confluent_config(
            {
                "group.id": f"tracestream-api-live-{uuid.uuid4().hex[:8]}",  # required, never joined
                "enable.auto.commit": False,
                "logger": kafka_client_logger,
            }
        )
    )
    try:
        found = consumer.list_topics(topic, timeout=kafka.request_timeout_s).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise SearchError(503, "TEMPORARILY_UNAVAILABLE", f"the alerts topic {topic} does not exist")
        partitions = []
        for partition in sorted(found.partitions):
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=kafka.request_timeout_s
            )
            partitions.append(TopicPartition(topic, partition, high))
        consumer.assign(partitions)
    except KafkaException as exc:
        consumer.close()
        logger.warning("live alerts: Kafka unreachable: %s", exc)
        raise SearchError(503, "TEMPORARILY_UNAVAILABLE", "Kafka is unreachable") from exc
    except BaseException:
        consumer.close()
        raise
    return consumer


@router.get("/alerts")
async def live_alerts(request: Request, settings: SettingsDep, principal: PrincipalDep) -> StreamingResponse:
    """Alerts from the moment of the request on, as server-sent events (`event: alert`), of the
    traces of experiments the API key may read."""
    readable = principal.scope(Right.READ, None)
    consumer = await run_in_threadpool(open_alerts_consumer, settings)
    codec = schemas.alerts_codec(settings.kafka.schema_registry_url, settings.topics.alerts)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"  # sends the headers: the client knows it is live
            quiet_since = time.monotonic()
            while not await request.is_disconnected():
                message = await run_in_threadpool(consumer.poll, POLL_S)
                if message is None or message.error() is not None:
                    if time.monotonic() - quiet_since >= KEEP_ALIVE_S:
                        quiet_since = time.monotonic()
                        yield b": keep-alive\n\n"
                    continue
                try:
                    alert = codec.decode(message.value())
                except schemas.DecodeError:
                    continue
                if (
                    readable is not None
                    and (alert.get("location") or {}).get("experiment_id") not in readable
                ):
                    continue
                quiet_since = time.monotonic()
                yield b"event: alert\ndata: " + orjson.dumps(alert) + b"\n\n"
        finally:
            await run_in_threadpool(consumer.close)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
