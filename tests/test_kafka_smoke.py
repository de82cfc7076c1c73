"""The local broker works with both Kafka clients the project uses."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer

from tracestream.settings import Settings


def _trace_id() -> str:
    return "tr-" + uuid.uuid4().hex


def test_confluent_kafka_keeps_each_trace_on_one_partition_in_order(
    kafka_settings: Settings, unique_topic: Callable[..., str], unique_name: str
) -> None:
    topic = unique_topic(partitions=3)
    traces = [_trace_id() for _ in range(4)]
    sent = [(trace, f"{trace}/span-{n}") for n in range(5) for trace in traces]

    producer = Producer(kafka_settings.kafka.confluent_config({"acks": "all", "linger.ms": 5}))
    for key, value in sent:
        producer.produce(topic, key=key.encode(), value=value.encode())
    assert producer.flush(10) == 0

    consumer = Consumer(
        kafka_settings.kafka.confluent_config(
            {"group.id": unique_name, "auto.offset.reset": "earliest", "enable.auto.commit": False}
        )
    )
    consumer.subscribe([topic])
    received: list[tuple[str, str, int]] = []
    deadline = time.monotonic() + 30
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            received.append((message.key().decode(), message.value().decode(), message.partition()))
    finally:
        consumer.close()

    assert sorted((k, v) for k, v, _ in received) == sorted(sent)
    for trace in traces:
        spans = [(v, p) for k, v, p in received if k == trace]
        assert [v for v, _ in spans] == [v for k, v in sent if k == trace]
        assert len({p for _, p in spans}) == 1


def test_aiokafka_the_client_faust_uses_round_trips_records(
    kafka_settings: Settings, unique_topic: Callable[..., str], unique_name: str
) -> None:
    topic = unique_topic(partitions=2)
    sent = {_trace_id(): f'{{"span": {n}}}' for n in range(10)}

    async def round_trip() -> dict[str, str]:
        config = kafka_settings.kafka.aiokafka_config()
        producer = AIOKafkaProducer(**config, acks="all")
        await producer.start()
        try:
            for key, value in sent.items():
                await producer.send_and_wait(topic, key=key.encode(), value=value.encode())
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(topic, **config, group_id=unique_name, auto_offset_reset="earliest")
        await consumer.start()
        received: dict[str, str] = {}
        try:
            deadline = time.monotonic() + 30
            while len(received) < len(sent) and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    received.update((r.key.decode(), r.value.decode()) for r in records)
        finally:
            await consumer.stop()
        return received

    assert asyncio.run(round_trip()) == sent
