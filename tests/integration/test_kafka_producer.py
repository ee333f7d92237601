"""The Kafka producer against a real broker (Tansu), read back with a real consumer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import pytest
from sentry_kafka_schemas import get_codec

from relay.dev.services import free_port, start_kafka
from relay.errors import ConfigError, ServiceUnavailable
from relay.kafka import (
    DataCategory,
    KafkaBudgetExceeded,
    KafkaProduceError,
    KafkaProducer,
    Outcome,
    OutcomeCode,
    chunk_attachment,
    encode_event_message,
    encode_outcome,
    format_outcome_timestamp,
    partition_key_for,
)
from tests.kafka_utils import read_records


def unique(prefix: str) -> str:
    """A topic name no other test uses (Tansu creates it on first use)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def producer(kafka_bootstrap: str) -> Any:
    kafka = KafkaProducer([("bootstrap.servers", kafka_bootstrap), ("compression.type", "lz4")])
    await kafka.start()
    yield kafka
    await kafka.stop(5.0)


async def test_event_with_attachment_and_outcome_round_trip(
    producer: KafkaProducer, kafka_bootstrap: str
) -> None:
    events_topic = unique("ingest-attachments")
    outcomes_topic = unique("outcomes")
    event_id = uuid.uuid4().hex
    key = partition_key_for(event_id, org_id=17)
    payload = json.dumps({"event_id": event_id, "message": "boom"}).encode()

    ref, chunks = chunk_attachment(
        b"0123456789" * 300, 1024, event_id=event_id, project_id=42, name="log.txt"
    )
    for chunk in chunks:
        await producer.send(events_topic, chunk, key=key)
    event = encode_event_message(
        event_id=event_id,
        project_id=42,
        payload=payload,
        start_time=int(time.time()),
        remote_addr="10.0.0.1",
        attachments=[ref],
    )
    await producer.send(events_topic, event, key=key)
    outcome = Outcome(
        timestamp=format_outcome_timestamp(),
        org_id=17,
        project_id=42,
        outcome=OutcomeCode.FILTERED,
        reason="release-version",
        category=DataCategory.ERROR,
        quantity=1,
    )
    await producer.send(outcomes_topic, encode_outcome(outcome), headers=[("h", b"v")])
    assert producer.in_flight_bytes == 0

    records = await read_records(kafka_bootstrap, events_topic, len(chunks) + 1)
    # Same key, same partition: the consumer sees the chunks before their event.
    assert {r.partition for r in records} == {records[0].partition}
    assert all(r.key == key for r in records)
    attachments = get_codec("ingest-attachments")
    decoded_chunks = [attachments.decode(r.value, validate=True) for r in records[:-1]]
    assert b"".join(c["payload"] for c in decoded_chunks) == b"0123456789" * 300
    decoded_event = get_codec("ingest-events").decode(records[-1].value, validate=True)
    assert decoded_event["event_id"] == event_id
    assert decoded_event["payload"] == payload
    assert decoded_event["attachments"][0]["chunks"] == len(chunks)

    (record,) = await read_records(kafka_bootstrap, outcomes_topic, 1)
    assert record.key is None
    assert list(record.headers) == [("h", b"v")]
    decoded_outcome = get_codec("outcomes").decode(record.value, validate=True)
    assert decoded_outcome["reason"] == "release-version"
    assert decoded_outcome["org_id"] == 17


async def test_many_concurrent_sends(producer: KafkaProducer, kafka_bootstrap: str) -> None:
    topic = unique("ingest-events")
    messages = [
        encode_event_message(
            event_id=uuid.uuid4(),
            project_id=1,
            payload=b"{}" * 2000,
            start_time=int(time.time()),
            remote_addr=None,
        )
        for _ in range(300)
    ]
    await asyncio.gather(*(producer.send(topic, m) for m in messages))
    records = await read_records(kafka_bootstrap, topic, len(messages))
    codec = get_codec("ingest-events")
    for record in records:
        codec.decode(record.value, validate=True)
    assert sorted(r.value for r in records) == sorted(messages)


async def test_large_message_fits(producer: KafkaProducer, kafka_bootstrap: str) -> None:
    topic = unique("ingest-transactions")
    message = encode_event_message(
        event_id=uuid.uuid4(),
        project_id=1,
        payload=b"x" * (5 * 1024 * 1024),
        start_time=int(time.time()),
        remote_addr=None,
    )
    await producer.send(topic, message)
    (record,) = await read_records(kafka_bootstrap, topic, 1)
    assert record.value == message


async def test_unknown_params_are_reported(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = KafkaProducer(
        [
            ("bootstrap.servers", kafka_bootstrap),
            ("queue.buffering.max.messages", "10000"),
            ("statistics.interval.ms", "0"),
            ("message.max.bytes", "2097152"),
            ("batch.size", "65536"),
            ("linger.ms", "1"),
            ("acks", "1"),
            ("client.id", "relay-test"),
            ("enable.idempotence", "false"),
        ]
    )
    assert kafka.unknown_params == [
        ("queue.buffering.max.messages", "10000"),
        ("statistics.interval.ms", "0"),
    ]
    options = kafka.client_options()
    assert options["max_request_size"] == 2097152
    assert options["max_batch_size"] == 65536
    assert options["linger_ms"] == 1.0
    assert options["acks"] == 1
    assert options["client_id"] == "relay-test"
    assert options["enable_idempotence"] is False
    with caplog.at_level(logging.WARNING, logger="relay.kafka.producer"):
        await kafka.start()
    try:
        assert "queue.buffering.max.messages, statistics.interval.ms" in caplog.text
        await kafka.send(unique("outcomes"), b"{}")
    finally:
        await kafka.stop(5.0)


def test_kafka_config_defaults_and_errors() -> None:
    kafka = KafkaProducer([{"name": "bootstrap.servers", "value": "a:9092, b:9092"}])
    options = kafka.client_options()
    assert options["bootstrap_servers"] == ["a:9092", "b:9092"]
    assert options["max_request_size"] >= 10_000_000
    assert options["max_batch_size"] >= 1024 * 1024
    assert options["enable_idempotence"] is False
    assert kafka.max_in_flight_bytes == 64 * 1024 * 1024
    assert kafka.unknown_params == []
    with_budget = KafkaProducer(
        [("bootstrap.servers", "a:1"), ("queue.buffering.max.kbytes", "1024")]
    )
    assert with_budget.max_in_flight_bytes == 1024 * 1024
    idempotent = KafkaProducer([("bootstrap.servers", "a:1"), ("enable.idempotence", "true")])
    assert idempotent.unknown_params == [("enable.idempotence", "true")]
    assert idempotent.client_options()["enable_idempotence"] is False
    sasl = KafkaProducer(
        [
            ("bootstrap.servers", "a:1"),
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "SCRAM-SHA-256"),
            ("sasl.username", "relay"),
            ("sasl.password", "secret"),
        ]
    ).client_options()
    assert sasl["security_protocol"] == "SASL_PLAINTEXT"
    assert sasl["sasl_mechanism"] == "SCRAM-SHA-256"
    assert sasl["sasl_plain_username"] == "relay"
    assert sasl["sasl_plain_password"] == "***"
    for bad in (
        [],
        [("bootstrap.servers", "a:1"), ("compression.type", "brotli")],
        [("bootstrap.servers", "a:1"), ("linger.ms", "soon")],
        [("bootstrap.servers", "a:1"), ("acks", "2")],
        [("bootstrap.servers", "a:1"), ("partitioner", "fnv1a")],
    ):
        with pytest.raises(ConfigError):
            KafkaProducer(bad)


async def test_send_waits_for_budget_then_fails_with_503(kafka_bootstrap: str) -> None:
    # A long linger keeps the first message in flight while the second asks for budget.
    kafka = KafkaProducer(
        [("bootstrap.servers", kafka_bootstrap), ("linger.ms", "800")],
        max_in_flight_bytes=1000,
        budget_timeout=0.2,
    )
    await kafka.start()
    topic = unique("ingest-events")
    try:
        await kafka.send(topic, b"warm-up")  # topic metadata, so the linger dominates
        first = asyncio.create_task(kafka.send(topic, b"a" * 800))
        await asyncio.sleep(0.05)
        assert kafka.in_flight_bytes == 800
        started = time.monotonic()
        with pytest.raises(KafkaBudgetExceeded) as excinfo:
            await kafka.send(topic, b"b" * 800)
        assert 0.15 < time.monotonic() - started < 1.0
        assert isinstance(excinfo.value, KafkaProduceError)
        assert isinstance(excinfo.value, ServiceUnavailable)
        assert excinfo.value.status == 503
        await first
        assert kafka.in_flight_bytes == 0
        # Bigger than the whole budget: waits for an empty budget and goes alone.
        await kafka.send(topic, b"c" * 5000)
    finally:
        await kafka.stop(5.0)
    records = await read_records(kafka_bootstrap, topic, 3)
    assert sorted(len(r.value) for r in records) == [7, 800, 5000]


async def test_message_over_max_size_fails_typed(kafka_bootstrap: str) -> None:
    kafka = KafkaProducer([("bootstrap.servers", kafka_bootstrap), ("message.max.bytes", "1000")])
    await kafka.start()
    try:
        with pytest.raises(KafkaProduceError):
            await kafka.send(unique("ingest-events"), b"x" * 2000)
        assert kafka.in_flight_bytes == 0
    finally:
        await kafka.stop(5.0)


async def test_unreachable_broker() -> None:
    kafka = KafkaProducer([("bootstrap.servers", f"127.0.0.1:{free_port()}")])
    with pytest.raises(KafkaProduceError):
        await kafka.send("outcomes", b"{}")  # not started
    with pytest.raises(KafkaProduceError):
        await kafka.start()


async def test_broker_going_away_fails_within_delivery_timeout() -> None:
    service = start_kafka()
    kafka = KafkaProducer(
        [("bootstrap.servers", service.address), ("request.timeout.ms", "500")],
        delivery_timeout=2.0,
    )
    try:
        await kafka.start()
        topic = unique("ingest-events")
        await kafka.send(topic, b"delivered")
        # SIGKILL: the broker vanishes at once, without a graceful shutdown.
        assert service.proc is not None
        service.proc.kill()
        service.proc.wait()
        started = time.monotonic()
        with pytest.raises(KafkaProduceError):
            await kafka.send(topic, b"lost")
        assert time.monotonic() - started < 4.0
        assert kafka.in_flight_bytes == 0
    finally:
        await kafka.stop(1.0)
        service.stop()
