"""Every topic's messages, built by the processor from the corpus and from hand-built
envelopes, validated with sentry-kafka-schemas; and how items become outcomes."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

import msgpack
import pytest
from sentry_kafka_schemas import get_codec

from relay.config import config_from_dict
from relay.kafka.metrics import MetricBucket, encode_buckets
from relay.kafka.monitors import InvalidCheckIn, normalize_check_in
from relay.kafka.outcomes import OutcomeCode
from relay.kafka.producer import KafkaProducer
from relay.kafka.topics import KafkaTopic, resolve_topics
from relay.protocol.envelope import Envelope, Item, parse_envelope
from relay.protocol.items import DataCategory
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.outcome_aggregator import Scoping
from relay.server.outcomes import OutcomeSink
from relay.server.processor import Message, Processor
from relay.server.request_meta import RequestMeta
from tests.paths import CORPUS

PUBLIC_KEY = "a" * 32
STATIC_RELAY = str(uuid.uuid4())
STATE = ProjectState(
    project_id=42,
    organization_id=7,
    public_keys=[PublicKeyConfig(public_key=PUBLIC_KEY, numeric_id=123)],
    config={"features": ["organizations:session-replay"]},
)
TOPICS = resolve_topics({})


def make_processor() -> Processor:
    config = config_from_dict(
        {
            "processing": {"enabled": True, "attachment_chunk_size": "1KiB"},
            "auth": {"static_relays": {STATIC_RELAY: {"public_key": "x", "internal": True}}},
        }
    )
    # Never started: building messages does not touch the producer.
    producer = KafkaProducer([("bootstrap.servers", "127.0.0.1:1")])
    return Processor(config, producer, TOPICS, OutcomeSink(config, producer, TOPICS))


def meta(**extra: Any) -> RequestMeta:
    return RequestMeta(public_key=PUBLIC_KEY, project_id=42, client="test/1.0", **extra)


def schema_topic(message: Message) -> str:
    name = TOPICS[message.topic]
    if message.topic is KafkaTopic.ATTACHMENTS:
        kind = msgpack.unpackb(message.value)["type"]
        if kind == "event":
            # The attachments topic's schema describes chunks and attachments; events there
            # are the ingest-events message.
            return "ingest-events"
        if kind == "user_report":
            return ""
    return name


def validate(messages: list[Message]) -> Counter[str]:
    seen: Counter[str] = Counter()
    for message in messages:
        topic = schema_topic(message)
        seen[TOPICS[message.topic]] += 1
        if topic:
            get_codec(topic).decode(message.value, validate=True)
    return seen


def envelope(event_id: str | None, *items: Item) -> Envelope:
    headers = {"event_id": event_id} if event_id else {}
    return Envelope(headers, list(items))


def json_item(kind: str, payload: Any, **headers: Any) -> Item:
    return Item.new(kind, json.dumps(payload).encode(), **headers)


CORPUS_FILES = sorted(CORPUS.glob("*.envelope"))


def test_corpus_messages_validate() -> None:
    processor = make_processor()
    seen: Counter[str] = Counter()
    for path in CORPUS_FILES:
        env = parse_envelope(path.read_bytes())
        plan = processor.build(env, meta(), STATE)
        seen += validate(plan.messages)
    assert seen["ingest-events"] and seen["ingest-transactions"] and seen["ingest-monitors"]
    assert seen["snuba-items"] and seen["profiles"] and seen["ingest-attachments"]
    # Nothing in the corpus is invalid.
    assert processor.outcomes.totals[(int(OutcomeCode.INVALID), int(DataCategory.ERROR))] == 0


def test_hand_built_item_types_validate() -> None:
    processor = make_processor()
    event_id = uuid.uuid4().hex
    now = time.time()
    replay = envelope(
        event_id,
        json_item("replay_event", {"type": "replay_event", "replay_id": event_id}),
        Item.new("replay_recording", b'{"segment_id":0}\n[]'),
    )
    spans_v2 = Item.new(
        "span",
        json.dumps({"items": [{"trace_id": uuid.uuid4().hex, "span_id": "a" * 16, "name": "x",
                               "status": "ok", "start_timestamp": now,
                               "end_timestamp": now + 1}]}).encode(),
        content_type="application/vnd.sentry.items.span.v2+json", item_count=1,
    )  # fmt: skip
    span_v1 = json_item(
        "span",
        {"trace_id": uuid.uuid4().hex, "span_id": "b" * 16, "op": "db", "start_timestamp": now,
         "timestamp": now + 1, "data": {"n": 1}},
    )  # fmt: skip
    others = envelope(
        event_id,
        json_item("feedback", {"contexts": {"feedback": {"message": "hi"}}}),
        Item.new("attachment", b"x" * 3000, filename="big.bin"),
        json_item("check_in", {"check_in_id": uuid.uuid4().hex, "monitor_slug": "m",
                               "status": "ok", "duration": 1}),
        Item.new("profile_chunk", b'{"platform":"python","version":"2"}', platform="python"),
        spans_v2,
        span_v1,
    )  # fmt: skip
    buckets = [MetricBucket(timestamp=int(now), name="c:sessions/session@none", type="c",
                            value=1.0, tags={"session.status": "init"})]  # fmt: skip
    metrics = envelope(None, Item.new("metric_buckets", encode_buckets(buckets)))
    seen: Counter[str] = Counter()
    for env in (replay, others, metrics):
        seen += validate(processor.build(env, meta(relay_id=STATIC_RELAY), STATE).messages)
    assert seen["ingest-replay-recordings"] == 1
    assert seen["ingest-feedback-events"] == 1
    assert seen["ingest-spans"] == 2
    assert seen["ingest-monitors"] == 1
    assert seen["profiles"] == 1
    assert seen["ingest-metrics"] == 1
    # 3000 bytes at 1 KiB chunks: 3 chunks and the standalone attachment message.
    assert seen["ingest-attachments"] == 4
    assert not processor.outcomes.emitted


def test_chunks_precede_the_event_that_references_them() -> None:
    processor = make_processor()
    event_id = uuid.uuid4().hex
    env = envelope(
        event_id,
        json_item("event", {"message": "hi"}),
        Item.new("attachment", b"y" * 2500, filename="a.txt"),
    )
    [unit] = processor.build(env, meta(), STATE).units
    assert [msgpack.unpackb(m.value)["type"] for m in unit.first] == ["attachment_chunk"] * 3
    [event] = unit.then
    assert event.topic is KafkaTopic.ATTACHMENTS
    assert msgpack.unpackb(event.value)["attachments"][0]["chunks"] == 3
    assert {m.key for m in (*unit.first, event)} == {unit.then[0].key}


def totals(processor: Processor) -> dict[tuple[int, int], int]:
    return dict(processor.outcomes.totals)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([json_item("event", {"message": "x"}).__class__({"type": "event"}, b"{nope")],
         {(3, 1): 1}),
        ([Item.new("attachment", b"0123456789", filename="a")], {(3, 4): 10, (3, 22): 1}),
        ([Item.new("replay_event", b"nope"), Item.new("replay_recording", b"nope")],
         {(3, 7): 2}),
        ([json_item("transaction", {"spans": [{"op": "x"}]})],
         {(3, 2): 1, (3, 9): 1, (3, 12): 2, (3, 16): 2}),
        ([json_item("span", {"op": "no ids"})], {(3, 12): 1, (3, 16): 1}),
        ([Item.new("profile", b"foobar")], {(3, 6): 1, (3, 11): 1}),
        ([json_item("check_in", {"status": "ok"})], {(3, 10): 1}),
    ],
    ids=["invalid-json", "attachment-without-event-id", "invalid-replay", "invalid-transaction",
         "invalid-span", "invalid-profile", "check-in-without-slug"],
)  # fmt: skip
def test_invalid_items_become_outcomes(
    items: list[Item], expected: dict[tuple[int, int], int]
) -> None:
    processor = make_processor()
    # The attachment case has no event id on purpose; the others need one.
    event_id = None if items[0].type == "attachment" else uuid.uuid4().hex
    plan = processor.build(envelope(event_id, *items), meta(), STATE)
    assert plan.messages == []
    assert totals(processor) == expected


def test_client_reports_become_outcomes() -> None:
    processor = make_processor()
    now = time.time()
    report = {
        "timestamp": now,
        "discarded_events": [{"reason": "queue_overflow", "category": "error", "quantity": 4}],
        "filtered_sampling_events": [{"reason": "Sampled:3000", "category": "transaction",
                                      "quantity": 2}, {"reason": "bogus", "category": "error",
                                                       "quantity": 1}],
        "rate_limited_events": [{"reason": "", "category": "unknown_thing", "quantity": 1}],
    }  # fmt: skip
    future = {"timestamp": now + 3600, "discarded_events": [
        {"reason": "x", "category": "error", "quantity": 9}]}  # fmt: skip
    env = envelope(None, json_item("client_report", report), json_item("client_report", future))
    processor.build(env, meta(), STATE)
    assert totals(processor) == {(5, 1): 4, (1, 2): 2}


def test_outcome_buckets_only_from_internal_relays() -> None:
    processor = make_processor()
    bucket = MetricBucket(timestamp=int(time.time()), name="c:outcomes/filtered@none", type="c",
                          value=3.0, tags={"category": "1", "reason": "release-version",
                                           "source": "pop"})  # fmt: skip
    env = envelope(None, Item.new("metric_buckets", encode_buckets([bucket])))
    processor.build(env, meta(relay_id=str(uuid.uuid4())), STATE)
    assert totals(processor) == {}
    processor.build(env, meta(relay_id=STATIC_RELAY), STATE)
    assert totals(processor) == {(1, 1): 3}
    [(key, quantity)] = processor.outcomes.aggregator.take_due(time.time() + 3600)
    assert (key.source, key.reason, quantity) == ("pop", "release-version", 3)
    assert key.scoping == Scoping(PUBLIC_KEY, 42, 7, 123)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"monitor_slug": "m", "status": "missed", "duration": 2},
         {"check_in_id": "0" * 32, "monitor_slug": "m", "status": "unknown", "duration": 2.0}),
        ({"check_in_id": "a460c25f-f255-4577-b920-fcfacae4e5eb", "monitor_slug": "s" * 60,
          "status": "ok", "extra": 1},
         {"check_in_id": "a460c25ff2554577b920fcfacae4e5eb", "monitor_slug": "s" * 50,
          "status": "ok", "extra": 1}),
    ],
)  # fmt: skip
def test_check_in_normalization(payload: dict[str, Any], expected: dict[str, Any]) -> None:
    normalized, _ = normalize_check_in(json.dumps(payload).encode())
    assert json.loads(normalized) == expected


def test_check_in_rejects_empty_slug() -> None:
    with pytest.raises(InvalidCheckIn):
        normalize_check_in(b'{"monitor_slug": "", "status": "ok"}')
