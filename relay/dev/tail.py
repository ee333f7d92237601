"""``relay tail TOPIC``: print what lands in a Kafka topic, decoded, one JSON per line."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import msgpack
import msgspec

from relay.config import Config


def decode_message(value: bytes) -> Any:
    """Decode a Relay Kafka message (JSON or msgpack), with JSON payloads expanded."""
    try:
        message: Any = msgspec.json.decode(value)
    except msgspec.DecodeError:
        try:
            message = msgpack.unpackb(value, raw=False)
        except Exception:
            return {"raw": value.decode("utf-8", "replace")}
    if isinstance(message, dict) and isinstance(message.get("payload"), bytes):
        payload = message["payload"]
        try:
            message["payload"] = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            message["payload"] = f"<{len(payload)} bytes>"
    return message


def _bootstrap_from(config: Config) -> str:
    for param in config.processing.kafka_config:
        if param.name == "bootstrap.servers":
            return str(param.value)
    return "127.0.0.1:9092"


async def _tail(bootstrap: str, topic: str, from_beginning: bool, count: int) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    try:
        async for record in consumer:
            line = json.dumps(decode_message(record.value), default=repr)
            print(line, flush=True)
            seen += 1
            if count and seen >= count:
                return
    finally:
        await consumer.stop()


def tail(
    config: Config, topic: str, bootstrap: str | None, from_beginning: bool, count: int
) -> int:
    """Consume ``topic`` until Ctrl-C (or ``count`` messages)."""
    try:
        asyncio.run(_tail(bootstrap or _bootstrap_from(config), topic, from_beginning, count))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
