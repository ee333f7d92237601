"""How the processor hands a plan to Kafka, and what each send result becomes.

A single-unit envelope (the usual event) and single-message steps are awaited without a
task of their own; these tests pin down that the results are the same as with the
``gather`` used for several units or messages: accepted outcomes, ``internal`` outcomes for
refused messages, a retry (raise) for transient errors, chunks before their event, and
cancellation propagating.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any

import msgpack
import pytest

from relay.config import config_from_dict
from relay.kafka.keys import partition_key_for
from relay.kafka.outcomes import OutcomeCode
from relay.kafka.producer import KafkaMessageRejected, KafkaProduceError
from relay.kafka.topics import resolve_topics
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.outcome_aggregator import Scoping
from relay.server.outcomes import OutcomeSink
from relay.server.processor import Processor
from relay.server.request_meta import RequestMeta

PUBLIC_KEY = "a" * 32
STATE = ProjectState(
    project_id=42,
    organization_id=7,
    public_keys=[PublicKeyConfig(public_key=PUBLIC_KEY, numeric_id=123)],
)
TOPICS = resolve_topics({})


class FakeKafka:
    """Records sends in order; ``fail`` maps a message type to the error its send raises."""

    def __init__(self, fail: dict[str, BaseException] | None = None, delay: float = 0.0) -> None:
        self.fail = fail or {}
        self.delay = delay
        self.log: list[tuple[str, str]] = []

    @property
    def unknown_params(self) -> list[tuple[str, str]]:
        return []

    @property
    def in_flight_bytes(self) -> int:
        return 0

    @property
    def max_in_flight_bytes(self) -> int:
        return 1

    async def start(self) -> None:
        return None

    async def stop(self, timeout: float = 10.0) -> None:
        return None

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        kind = str(msgpack.unpackb(value).get("type"))
        self.log.append(("start", kind))
        if self.delay:
            await asyncio.sleep(self.delay)
        error = self.fail.get(kind)
        if error is not None:
            raise error
        self.log.append(("done", kind))


class RecordingOutcomes(OutcomeSink):
    """Keeps tracked outcomes instead of aggregating them."""

    def __init__(self) -> None:
        super().__init__(config_from_dict({"processing": {"enabled": True}}))
        self.tracked: list[tuple[int, str | None, int, int]] = []

    def track(
        self,
        scoping: Scoping,
        outcome: int,
        reason: str | None,
        category: int,
        quantity: int,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.tracked.append((outcome, reason, category, quantity))


def make(kafka: FakeKafka) -> tuple[Processor, RecordingOutcomes]:
    config = config_from_dict(
        {"processing": {"enabled": True, "attachment_chunk_size": "1KiB"}},
    )
    outcomes = RecordingOutcomes()
    return Processor(config, kafka, TOPICS, outcomes), outcomes


def meta() -> RequestMeta:
    return RequestMeta(public_key=PUBLIC_KEY, project_id=42, client="test/1.0")


def event_envelope(*extra: Item, kind: str = "event", payload: Any = None) -> Envelope:
    body = payload if payload is not None else {"message": "hi"}
    items = [Item.new(kind, json.dumps(body).encode()), *extra]
    return Envelope({"event_id": uuid.uuid4().hex}, items)


def check_in() -> Item:
    return Item.new("check_in", json.dumps({"monitor_slug": "m", "status": "ok"}).encode())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_one_event_is_produced() -> None:
    kafka = FakeKafka()
    processor, outcomes = make(kafka)
    run(processor.accept(event_envelope(), meta(), STATE))
    assert kafka.log == [("start", "event"), ("done", "event")]
    assert outcomes.tracked == []
    assert processor.failed_items == 0


def test_one_refused_event_becomes_an_internal_outcome() -> None:
    kafka = FakeKafka({"event": KafkaMessageRejected("too large")})
    processor, outcomes = make(kafka)
    run(processor.accept(event_envelope(), meta(), STATE))  # answered as accepted
    assert outcomes.tracked == [(int(OutcomeCode.INVALID), "internal", int(DataCategory.ERROR), 1)]
    assert processor.failed_items == 1


def test_one_transient_failure_is_raised_for_a_retry() -> None:
    kafka = FakeKafka({"event": KafkaProduceError("broker down")})
    processor, outcomes = make(kafka)
    with pytest.raises(KafkaProduceError):
        run(processor.accept(event_envelope(), meta(), STATE))
    assert outcomes.tracked == []
    assert processor.failed_items == 1


def test_one_transaction_counts_as_accepted_once_in_kafka() -> None:
    kafka = FakeKafka()
    processor, outcomes = make(kafka)
    transaction = {
        "type": "transaction",
        "transaction": "/",
        "start_timestamp": 1_700_000_000.0,
        "timestamp": 1_700_000_001.0,
        "contexts": {"trace": {"trace_id": uuid.uuid4().hex, "span_id": "a" * 16}},
        "spans": [],
    }
    run(processor.accept(event_envelope(kind="transaction", payload=transaction), meta(), STATE))
    accepted = int(OutcomeCode.ACCEPTED)
    assert (accepted, None, int(DataCategory.TRANSACTION), 1) in outcomes.tracked
    assert (accepted, None, int(DataCategory.SPAN), 1) in outcomes.tracked


def test_several_units_each_get_their_own_result() -> None:
    # The check-in is refused for good, the event goes through: only the check-in is lost.
    kafka = FakeKafka({"check_in": KafkaMessageRejected("refused")}, delay=0.001)
    processor, outcomes = make(kafka)
    run(processor.accept(event_envelope(check_in()), meta(), STATE))
    assert ("done", "event") in kafka.log
    assert outcomes.tracked == [
        (int(OutcomeCode.INVALID), "internal", int(DataCategory.MONITOR), 1)
    ]


def test_transient_failure_of_one_unit_still_lets_the_others_finish() -> None:
    kafka = FakeKafka({"check_in": KafkaProduceError("timeout")}, delay=0.001)
    processor, _ = make(kafka)
    with pytest.raises(KafkaProduceError):
        run(processor.accept(event_envelope(check_in()), meta(), STATE))
    assert ("done", "event") in kafka.log


@pytest.mark.parametrize("size", [500, 2500])
def test_chunks_are_acknowledged_before_the_event_is_sent(size: int) -> None:
    # 500 bytes: one chunk (sent alone); 2500: three chunks (sent together).
    kafka = FakeKafka(delay=0.001)
    processor, _ = make(kafka)
    attachment = Item.new("attachment", b"y" * size, filename="a.txt")
    run(processor.accept(event_envelope(attachment), meta(), STATE))
    chunks = (size + 1023) // 1024
    assert [k for step, k in kafka.log if step == "start"] == ["attachment_chunk"] * chunks + [
        "event"
    ]
    first_event = kafka.log.index(("start", "event"))
    assert kafka.log[:first_event].count(("done", "attachment_chunk")) == chunks


def test_a_refused_chunk_loses_the_whole_unit() -> None:
    kafka = FakeKafka({"attachment_chunk": KafkaMessageRejected("refused")})
    processor, outcomes = make(kafka)
    attachment = Item.new("attachment", b"y" * 100, filename="a.txt")
    run(processor.accept(event_envelope(attachment), meta(), STATE))
    assert ("start", "event") not in kafka.log
    categories = {c for _, reason, c, _ in outcomes.tracked if reason == "internal"}
    assert categories == {int(DataCategory.ERROR), int(DataCategory.ATTACHMENT)} | {
        int(DataCategory.ATTACHMENT_ITEM)
    }


def test_cancellation_is_not_swallowed() -> None:
    kafka = FakeKafka(delay=10)
    processor, outcomes = make(kafka)

    async def cancelled() -> None:
        task = asyncio.create_task(processor.accept(event_envelope(), meta(), STATE))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancelled())
    assert outcomes.tracked == []
    assert processor.failed_items == 0


def _reference_key(event_id: uuid.UUID, org_id: int) -> bytes | None:
    # Relay's key, spelled out: the id's bytes, org id (u64 big-endian) XORed into 0..8.
    raw = event_id.bytes
    if raw == bytes(16):
        return None
    org = (org_id & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")
    return bytes(a ^ b for a, b in zip(raw[:8], org, strict=True)) + raw[8:]


def test_partition_key_matches_the_bytewise_definition() -> None:
    rng = random.Random(11)
    orgs = [0, 1, 7, 2**63, 2**64 - 1, 2**64, -1, 2**70 + 5]
    for _ in range(2000):
        event_id = uuid.UUID(int=rng.getrandbits(128))
        org = rng.choice([*orgs, rng.getrandbits(64)])
        expected = _reference_key(event_id, org)
        assert partition_key_for(event_id, org) == expected
        assert partition_key_for(event_id.hex, org) == expected
        assert partition_key_for(str(event_id), org) == expected
    assert partition_key_for(uuid.UUID(int=0), 5) is None
    assert partition_key_for("0" * 32, 5) is None


def test_event_message_and_key_use_the_envelope_event_id() -> None:
    kafka = FakeKafka()
    processor, _ = make(kafka)
    env = event_envelope()
    [unit] = processor.build(env, meta(), STATE).units
    [message] = unit.then
    event_id = uuid.UUID(str(env.event_id))
    assert msgpack.unpackb(message.value)["event_id"] == event_id.hex
    assert message.key == _reference_key(event_id, 7)
