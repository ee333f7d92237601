"""Kafka output benchmark: the processing path against a raw aiokafka loop.

Both runs go to one Tansu broker started for the run, in one process, with the same
batch settings. The processing path is ``Processor.accept`` for the corpus envelopes
(routing, encoding, the byte budget, waiting for acknowledgements, outcomes); the raw loop
sends the very bytes the processor produced. The ratio is processor msgs/s / raw msgs/s.

    .venv/bin/python bench/kafka.py [--rounds N] [--concurrency N] [--glob PATTERN]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relay.config import config_from_dict
from relay.dev.services import start_kafka
from relay.kafka.producer import DEFAULT_LINGER_MS, DEFAULT_MAX_BATCH_SIZE, KafkaProducer
from relay.kafka.topics import resolve_topics
from relay.protocol.envelope import Envelope, parse_envelope
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.outcomes import OutcomeSink
from relay.server.processor import Processor
from relay.server.request_meta import RequestMeta

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "python"
KEY = "b" * 32
STATE = ProjectState(
    project_id=42, organization_id=1, public_keys=[PublicKeyConfig(KEY, numeric_id=1)]
)


def corpus(pattern: str = "*.envelope") -> list[bytes]:
    return [p.read_bytes() for p in sorted(CORPUS.glob(pattern))]


async def run_processor(
    processor: Processor, raw: list[bytes], rounds: int, concurrency: int
) -> tuple[int, float]:
    slots = asyncio.Semaphore(concurrency)
    sent = 0

    async def one(data: bytes) -> None:
        nonlocal sent
        envelope: Envelope = parse_envelope(data)
        meta = RequestMeta(public_key=KEY, project_id=42)
        async with slots:
            plan = processor.build(envelope, meta, STATE)
            sent += len(plan.messages)
            await asyncio.gather(*(processor._send_unit(u) for u in plan.units))

    start = time.perf_counter()
    await asyncio.gather(*(one(d) for _ in range(rounds) for d in raw))
    return sent, time.perf_counter() - start


async def run_raw(
    bootstrap: str, messages: Sequence[tuple[str, bytes, bytes | None]], rounds: int
) -> tuple[int, float]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=DEFAULT_LINGER_MS,
        max_batch_size=DEFAULT_MAX_BATCH_SIZE, max_request_size=16 * 1024 * 1024,
        enable_idempotence=False,
    )  # fmt: skip
    await producer.start()
    try:
        start = time.perf_counter()
        futures = []
        for _ in range(rounds):
            for topic, value, key in messages:
                futures.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*futures)
        return len(futures), time.perf_counter() - start
    finally:
        await producer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--glob", default="*.envelope",
        help="corpus envelopes to send, e.g. '*error-unhandled__event-error.envelope'",
    )  # fmt: skip
    args = parser.parse_args()
    raw = corpus(args.glob)
    if not raw:
        print("bench/kafka.py: corpus not found, skipped")
        return
    kafka = start_kafka()
    try:
        bootstrap = f"127.0.0.1:{kafka.port}"
        config = config_from_dict(
            {"processing": {"enabled": True}, "outcomes": {"source": "bench"},
             "aggregator": {"bucket_interval": 1, "initial_delay": 0}}
        )  # fmt: skip
        topics = resolve_topics({})
        producer = KafkaProducer([("bootstrap.servers", bootstrap)])
        await producer.start()
        processor = Processor(config, producer, topics, OutcomeSink(config, producer, topics))
        # Warm up: creates the topics and connections for both runs.
        await run_processor(processor, raw, 1, args.concurrency)
        messages = [
            (topics[m.topic], m.value, m.key)
            for d in raw
            for m in processor.build(
                parse_envelope(d), RequestMeta(public_key=KEY, project_id=42), STATE
            ).messages
        ]
        ours, ours_secs = await run_processor(processor, raw, args.rounds, args.concurrency)
        theirs, raw_secs = await run_raw(bootstrap, messages, args.rounds)
        await producer.stop()
    finally:
        kafka.stop()
    ours_rate, raw_rate = ours / ours_secs, theirs / raw_secs
    result = {
        "bench": "kafka",
        "envelopes": len(raw) * args.rounds,
        "processor_msgs": ours,
        "processor_msgs_per_s": round(ours_rate),
        "raw_aiokafka_msgs_per_s": round(raw_rate),
        "ratio": round(ours_rate / raw_rate, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
