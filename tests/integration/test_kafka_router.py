"""The Kafka router producing through two configs to a real broker (Tansu)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from relay.kafka.router import KafkaRouter
from relay.kafka.topics import KafkaTopic, resolve_topics


async def consume(bootstrap: str, topic: str, count: int, max_wait: float = 20.0) -> list[Any]:
    """Read ``count`` records of ``topic`` from the beginning."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + max_wait
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    assert len(records) == count, f"got {len(records)} of {count} records from {topic}"
    return records


async def test_two_configs_produce_to_their_topics(kafka_bootstrap: str) -> None:
    outcomes = f"outcomes-{uuid.uuid4().hex[:12]}"
    billing = f"outcomes-billing-{uuid.uuid4().hex[:12]}"
    primary = [("bootstrap.servers", kafka_bootstrap), ("client.id", "primary")]
    secondary = {"foo": [("bootstrap.servers", kafka_bootstrap), ("client.id", "foo")]}
    topics = resolve_topics(
        {"outcomes": {"name": outcomes, "config": "foo"}, "outcomes_billing": billing}, secondary
    )
    router = KafkaRouter(primary, secondary, topics)
    assert set(router.producers) == {None, "foo"}
    await router.start()
    try:
        await router.send(topics[KafkaTopic.OUTCOMES], b"via-foo")
        await router.send(topics[KafkaTopic.OUTCOMES_BILLING], b"via-primary")
        assert router.in_flight_bytes == 0
    finally:
        await router.stop(5.0)
    (via_foo,) = await consume(kafka_bootstrap, outcomes, 1)
    (via_primary,) = await consume(kafka_bootstrap, billing, 1)
    assert via_foo.value == b"via-foo"
    assert via_primary.value == b"via-primary"
