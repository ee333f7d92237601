"""Reading what the relay wrote to Kafka, for integration and process tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from sentry_kafka_schemas import get_codec


def decode_validated(topic: str, value: bytes) -> dict[str, Any]:
    """Decode a message as Sentry's consumers would, validating it against the schema."""
    try:
        data: dict[str, Any] = msgspec.json.decode(value)
    except msgspec.DecodeError:
        data = msgpack.unpackb(value, raw=False)
    schema_topic = topic
    if topic == "ingest-attachments" and data.get("type") == "user_report":
        # Relay writes user reports without an event_id, which the topic's schema requires;
        # Sentry's consumer reads only project_id, start_time and payload. Same as Relay.
        return data
    if topic == "ingest-attachments" and data.get("type") == "event":
        # Relay writes events with attachments to ingest-attachments, but that topic's
        # schema only describes chunk and attachment messages; the event message is the
        # one ingest-events' schema describes (Sentry's consumer reads both the same way).
        schema_topic = "ingest-events"
    get_codec(schema_topic).decode(value, validate=True)
    return data


async def consume(
    bootstrap: str,
    topics: Sequence[str],
    on_record: Callable[[ConsumerRecord[bytes, bytes]], None],
    enough: Callable[[], bool],
    timeout: float = 45.0,
    linger: float = 0.0,
) -> None:
    """Feed every message of ``topics`` (from the beginning) to ``on_record`` until
    ``enough()`` holds or ``timeout`` passes; then read ``linger`` seconds more, for what
    may follow (late outcomes, or more messages than expected)."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        lingering = False
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                for record in batch:
                    on_record(record)
            if not lingering and enough():
                if linger <= 0:
                    break
                lingering = True
                deadline = min(deadline, time.monotonic() + linger)
    finally:
        await consumer.stop()


async def read_records(
    bootstrap: str, topic: str, count: int, max_wait: float = 20.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Exactly ``count`` records of ``topic`` from the beginning (asserted)."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    await consume(bootstrap, [topic], records.append, lambda: len(records) >= count, max_wait)
    assert len(records) == count, f"got {len(records)} of {count} records from {topic}"
    return records


async def collect(
    bootstrap: str,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 45.0,
    validate: bool = True,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning until ``until(messages)`` holds or time runs out."""
    messages: list[dict[str, Any]] = []

    def add(record: ConsumerRecord[bytes, bytes]) -> None:
        value = record.value or b""
        if validate:
            messages.append(decode_validated(topic, value))
        else:
            messages.append(msgpack.unpackb(value, raw=False))

    await consume(bootstrap, [topic], add, lambda: until(messages), timeout)
    return messages


def by_event_id(messages: list[dict[str, Any]], event_id: str) -> list[dict[str, Any]]:
    """Messages whose ``event_id`` matches (hyphens ignored)."""
    wanted = event_id.replace("-", "")
    return [m for m in messages if str(m.get("event_id", "")).replace("-", "") == wanted]
