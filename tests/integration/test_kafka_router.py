"""The Kafka router producing through two configs to a real broker (Tansu)."""

from __future__ import annotations

import uuid

from relay.kafka.router import KafkaRouter
from relay.kafka.topics import KafkaTopic, resolve_topics
from tests.kafka_utils import read_records


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
    (via_foo,) = await read_records(kafka_bootstrap, outcomes, 1)
    (via_primary,) = await read_records(kafka_bootstrap, billing, 1)
    assert via_foo.value == b"via-foo"
    assert via_primary.value == b"via-primary"
