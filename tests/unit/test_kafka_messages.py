"""Kafka message encoders: Relay's shapes, validated against sentry-kafka-schemas."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from sentry_kafka_schemas import get_codec

from relay.errors import ConfigError
from relay.kafka import (
    DEFAULT_TOPIC_NAMES,
    UNNAMED_ATTACHMENT,
    AttachmentRef,
    AttachmentType,
    DataCategory,
    KafkaTopic,
    Outcome,
    OutcomeCode,
    chunk_attachment,
    encode_attachment_chunk,
    encode_attachment_message,
    encode_event_message,
    encode_outcome,
    encode_user_report_message,
    event_topic,
    format_outcome_timestamp,
    outcome_topic,
    partition_key_for,
    partitioner,
    resolve_topics,
    safe_timestamp,
    sends_individual_attachments,
    unused_topic_keys,
)

EVENT_ID = "2107c4e968514c8690d3a3a24570c40d"
EVENT_PAYLOAD = json.dumps({"event_id": EVENT_ID, "level": "error", "platform": "python"}).encode()


def decode(topic: str, message: bytes) -> dict[str, Any]:
    """Decode and validate ``message`` with the schema of ``topic``."""
    decoded: dict[str, Any] = get_codec(topic).decode(message, validate=True)
    return decoded


# --- topics -------------------------------------------------------------------------


def test_every_default_topic_has_a_schema() -> None:
    assert set(DEFAULT_TOPIC_NAMES) == set(KafkaTopic)
    for topic in KafkaTopic:
        get_codec(topic.default_name)


def test_default_topic_names() -> None:
    topics = resolve_topics({})
    assert topics[KafkaTopic.EVENTS] == "ingest-events"
    assert topics[KafkaTopic.ATTACHMENTS] == "ingest-attachments"
    assert topics[KafkaTopic.TRANSACTIONS] == "ingest-transactions"
    assert topics[KafkaTopic.OUTCOMES] == "outcomes"
    assert topics[KafkaTopic.OUTCOMES_BILLING] == "outcomes-billing"
    assert topics[KafkaTopic.METRICS_SESSIONS] == "ingest-metrics"
    assert topics[KafkaTopic.FEEDBACK] == "ingest-feedback-events"
    assert topics[KafkaTopic.ITEMS] == "snuba-items"
    assert KafkaTopic.SPANS.default_name == "ingest-spans"


def test_resolve_topics_by_key_alias_and_object() -> None:
    topics = resolve_topics(
        {
            "events": "my-events",
            "ingest-transactions": "my-transactions",
            "profiles": {"name": "my-profiles"},
            "outcomes": ["my-outcomes"],
            "ingest-something-new": "ignored",
        }
    )
    assert topics[KafkaTopic.EVENTS] == "my-events"
    assert topics[KafkaTopic.TRANSACTIONS] == "my-transactions"
    assert topics[KafkaTopic.PROFILES] == "my-profiles"
    assert topics[KafkaTopic.OUTCOMES] == "my-outcomes"
    assert topics[KafkaTopic.ATTACHMENTS] == "ingest-attachments"
    assert unused_topic_keys({"events": "x", "ingest-something-new": "y"}) == [
        "ingest-something-new"
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"events": "a", "ingest-events": "b"},
        {"events": ["a", "b"]},
        {"events": {"name": "a", "config": "secondary"}},
        {"events": {"config": "secondary"}},
        {"events": ""},
        {"events": 3},
    ],
)
def test_resolve_topics_rejects_what_it_cannot_honour(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        resolve_topics(overrides)


# --- events -------------------------------------------------------------------------


def test_event_message_matches_relay_and_schema() -> None:
    message = encode_event_message(
        event_id=uuid.UUID(EVENT_ID),
        project_id=42,
        payload=EVENT_PAYLOAD,
        start_time=1709691573,
        remote_addr="127.0.0.1",
    )
    decoded = decode("ingest-events", message)
    assert decoded == {
        "type": "event",
        "payload": EVENT_PAYLOAD,
        "start_time": 1709691573,
        "event_id": EVENT_ID,
        "project_id": 42,
        "remote_addr": "127.0.0.1",
        "attachments": [],
    }
    # Relay's field order, and the payload as msgpack bin rather than str.
    assert list(decoded) == [
        "type",
        "payload",
        "start_time",
        "event_id",
        "project_id",
        "remote_addr",
        "attachments",
    ]
    assert isinstance(msgpack.unpackb(message, raw=True)[b"payload"], bytes)


def test_transaction_message_validates_for_transactions_topic() -> None:
    payload = json.dumps({"type": "transaction", "event_id": EVENT_ID}).encode()
    message = encode_event_message(
        event_id=str(uuid.UUID(EVENT_ID)),  # hyphenated input is normalized
        project_id=1,
        payload=payload,
        start_time=1718661778,
        remote_addr=None,
    )
    decoded = decode("ingest-transactions", message)
    # Relay writes type "event" for every event; the topic tells transactions apart.
    assert decoded["type"] == "event"
    assert decoded["event_id"] == EVENT_ID
    assert decoded["remote_addr"] is None
    assert decode("ingest-feedback-events", message)["payload"] == payload


def test_event_message_lists_attachment_refs() -> None:
    ref, chunks = chunk_attachment(
        b"x" * 10,
        4,
        event_id=EVENT_ID,
        project_id=42,
        name="log.txt",
        content_type="Text/Plain",
        attachment_id="5b4d2f8e-a6a4-4d3c-9bb0-6f0c6d0e8c1a",
    )
    minidump = AttachmentRef(
        id="other",
        name="crash.dmp",
        size=0,
        attachment_type=AttachmentType.MINIDUMP,
        rate_limited=True,
        chunks=0,
    )
    message = encode_event_message(
        event_id=EVENT_ID,
        project_id=42,
        payload=EVENT_PAYLOAD,
        start_time=1,
        remote_addr="::1",
        attachments=[ref, minidump],
    )
    # Relay sends events with attachments to ingest-attachments, whose schema only
    # describes attachment and chunk messages: the event shape is ingest-events'.
    decoded = decode("ingest-events", message)
    assert len(chunks) == 3
    assert decoded["attachments"] == [
        {
            "id": "5b4d2f8e-a6a4-4d3c-9bb0-6f0c6d0e8c1a",
            "name": "log.txt",
            "rate_limited": False,
            "content_type": "text/plain",
            "attachment_type": "event.attachment",
            "size": 10,
            "retention_days": 90,
            "chunks": 3,
        },
        {
            "id": "other",
            "name": "crash.dmp",
            "rate_limited": True,
            "attachment_type": "event.minidump",
            "size": 0,
            "retention_days": 90,
            "chunks": 0,
        },
    ]


def test_event_topic_routing() -> None:
    assert event_topic("transaction", has_attachments=True) is KafkaTopic.TRANSACTIONS
    assert event_topic("user_report_v2") is KafkaTopic.FEEDBACK
    assert event_topic("error") is KafkaTopic.EVENTS
    assert event_topic(None) is KafkaTopic.EVENTS
    assert event_topic("error", has_attachments=True) is KafkaTopic.ATTACHMENTS
    assert event_topic("default", has_user_reports=True) is KafkaTopic.ATTACHMENTS
    assert sends_individual_attachments("transaction")
    assert sends_individual_attachments("user_report_v2")
    assert not sends_individual_attachments("error")


def test_safe_timestamp() -> None:
    assert safe_timestamp(1709691573.9) == 1709691573
    assert safe_timestamp(datetime(2024, 1, 1, tzinfo=UTC)) == 1704067200
    assert safe_timestamp(-5) > 1704067200


# --- attachments --------------------------------------------------------------------


def test_chunk_attachment_splits_and_reassembles() -> None:
    payload = bytes(range(256)) * 40  # 10240 bytes
    ref, messages = chunk_attachment(payload, 4096, event_id=EVENT_ID, project_id=7)
    assert ref.chunks == 3
    assert ref.size == len(payload)
    assert ref.name == UNNAMED_ATTACHMENT
    assert ref.content_type is None
    assert str(uuid.UUID(ref.id)) == ref.id  # hyphenated uuid, as Relay generates
    decoded = [decode("ingest-attachments", m) for m in messages]
    assert [d["chunk_index"] for d in decoded] == [0, 1, 2]
    assert [len(d["payload"]) for d in decoded] == [4096, 4096, 2048]
    assert b"".join(d["payload"] for d in decoded) == payload
    first = decoded[0]
    assert first["type"] == "attachment_chunk"
    assert first["event_id"] == EVENT_ID
    assert first["project_id"] == 7
    # ``id`` is what Sentry's consumer reads, ``attachment_id`` what the schema wants.
    assert first["id"] == first["attachment_id"] == ref.id


def test_chunk_attachment_exact_multiple_and_empty() -> None:
    ref, messages = chunk_attachment(b"a" * 8, 4, event_id=EVENT_ID, project_id=1)
    assert (ref.chunks, len(messages)) == (2, 2)
    ref, messages = chunk_attachment(b"", 4, event_id=EVENT_ID, project_id=1, inline=True)
    assert (ref.chunks, ref.data, messages) == (0, None, [])


def test_chunk_attachment_inline_only_below_chunk_size() -> None:
    ref, messages = chunk_attachment(b"abc", 4, event_id=EVENT_ID, project_id=1, inline=True)
    assert (ref.chunks, ref.data, messages) == (None, b"abc", [])
    # Relay inlines only when the payload is strictly smaller than one chunk.
    ref, messages = chunk_attachment(b"abcd", 4, event_id=EVENT_ID, project_id=1, inline=True)
    assert (ref.chunks, ref.data, len(messages)) == (1, None, 1)


def test_attachment_message_matches_relay_and_schema() -> None:
    ref, _ = chunk_attachment(
        b"\x89PNG...",
        event_id=EVENT_ID,
        project_id=3,
        name="screenshot.png",
        content_type="image/png",
        inline=True,
        retention_days=30,
    )
    decoded = decode(
        "ingest-attachments",
        encode_attachment_message(event_id=EVENT_ID, project_id=3, attachment=ref),
    )
    assert decoded == {
        "type": "attachment",
        "event_id": EVENT_ID,
        "project_id": 3,
        "attachment": {
            "id": ref.id,
            "name": "screenshot.png",
            "rate_limited": False,
            "content_type": "image/png",
            "attachment_type": "event.attachment",
            "size": 7,
            "retention_days": 30,
            "data": b"\x89PNG...",
        },
    }


def test_attachment_ref_stored_and_invalid() -> None:
    ref = AttachmentRef(id="a", name="n", size=5, stored_id="key/123")
    assert ref.to_message_dict()["stored_id"] == "key/123"
    assert "chunks" not in ref.to_message_dict()
    with pytest.raises(ValueError):
        AttachmentRef(id="a", name="n", size=5)
    with pytest.raises(ValueError):
        AttachmentRef(id="a", name="n", size=5, chunks=1, data=b"x")


def test_single_chunk_encoder() -> None:
    decoded = decode(
        "ingest-attachments",
        encode_attachment_chunk(
            event_id=EVENT_ID, project_id=1, attachment_id="att", chunk_index=4, payload=b""
        ),
    )
    assert decoded["chunk_index"] == 4
    assert decoded["payload"] == b""


def test_user_report_message_matches_relay() -> None:
    report = json.dumps({"event_id": EVENT_ID, "name": "A", "comments": "broken"}).encode()
    message = encode_user_report_message(project_id=5, start_time=1700000000, payload=report)
    # Relay does not write the event id into user report messages, which the
    # ingest-attachments schema requires; decode without validating.
    decoded = get_codec("ingest-attachments").decode(message, validate=False)
    assert decoded == {
        "type": "user_report",
        "project_id": 5,
        "start_time": 1700000000,
        "payload": report,
    }


# --- outcomes -----------------------------------------------------------------------


def test_outcome_matches_relay_and_schema() -> None:
    outcome = Outcome(
        timestamp=format_outcome_timestamp(datetime(2024, 1, 1, tzinfo=UTC)),
        org_id=1,
        project_id=42,
        key_id=123,
        outcome=OutcomeCode.RATE_LIMITED,
        reason="key_quota",
        source="pop-relay",
        category=DataCategory.ERROR,
        quantity=1,
    )
    raw = encode_outcome(outcome)
    assert raw == (
        b'{"timestamp":"2024-01-01T00:00:00.000000Z","org_id":1,"project_id":42,'
        b'"key_id":123,"outcome":2,"reason":"key_quota","source":"pop-relay",'
        b'"category":1,"quantity":1}'
    )
    decoded = decode("outcomes", raw)
    assert decoded["outcome"] == 2
    assert decode("outcomes-billing", raw) == decoded


def test_minimal_outcome_omits_missing_fields() -> None:
    outcome = Outcome(
        timestamp="2024-01-01T00:00:00.000000Z",
        project_id=1,
        outcome=OutcomeCode.INVALID,
        reason="project_id",
        event_id=EVENT_ID,
        remote_addr="127.0.0.1",
    )
    decoded = decode("outcomes", encode_outcome(outcome))
    assert decoded == {
        "timestamp": "2024-01-01T00:00:00.000000Z",
        "project_id": 1,
        "outcome": 3,
        "reason": "project_id",
        "event_id": EVENT_ID,
        "remote_addr": "127.0.0.1",
    }


def test_outcome_codes_and_topics() -> None:
    assert [c.value for c in OutcomeCode] == [0, 1, 2, 3, 4, 5, 6]
    assert OutcomeCode.ACCEPTED.is_billing and OutcomeCode.RATE_LIMITED.is_billing
    assert not OutcomeCode.FILTERED.is_billing
    assert outcome_topic(OutcomeCode.ACCEPTED) is KafkaTopic.OUTCOMES_BILLING
    assert outcome_topic(2) is KafkaTopic.OUTCOMES_BILLING
    assert outcome_topic(OutcomeCode.CLIENT_DISCARD) is KafkaTopic.OUTCOMES
    assert DataCategory.ATTACHMENT.value == 4
    assert DataCategory.USER_REPORT_V2.value == 14
    assert DataCategory.LOG_BYTE.value == 24


def test_outcome_timestamp_format() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_outcome_timestamp(moment) == "2024-05-06T05:08:09.123456Z"
    assert format_outcome_timestamp(datetime(2024, 1, 1)) == "2024-01-01T00:00:00.000000Z"
    assert format_outcome_timestamp(1704067200.5) == "2024-01-01T00:00:00.500000Z"
    assert format_outcome_timestamp().endswith("Z")


# --- partition keys -----------------------------------------------------------------


def test_partition_key_mixes_org_into_event_id() -> None:
    key = partition_key_for(EVENT_ID, 1)
    assert key is not None
    raw = uuid.UUID(EVENT_ID).bytes
    assert len(key) == 16
    assert key[:7] == raw[:7]
    assert key[7] == raw[7] ^ 1
    assert key[8:] == raw[8:]
    assert partition_key_for(uuid.UUID(EVENT_ID), 0) == raw
    assert partition_key_for(str(uuid.UUID(EVENT_ID)), 1) == key
    assert partition_key_for(EVENT_ID, 2) != key
    assert partition_key_for("00000000000000000000000000000000", 1) is None


def test_partitioners() -> None:
    parts = [0, 1, 2, 3]
    key = partition_key_for(EVENT_ID, 1)
    consistent = partitioner()
    assert consistent(key, parts, parts) == consistent(key, parts, parts)
    assert consistent(None, parts, [2]) == 2  # unkeyed: random among available
    murmur = partitioner("murmur2_random")
    assert murmur(key, parts, parts) in parts
    with pytest.raises(ConfigError):
        partitioner("fnv1a")
