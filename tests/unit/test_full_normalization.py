"""``normalization.level``, the ``fully_normalized`` item header, and ``sdk.settings.infer_ip``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgpack
import pytest

from relay.config import config_from_dict
from relay.errors import ConfigError
from relay.kafka.producer import KafkaProducer
from relay.kafka.topics import KafkaTopic, resolve_topics
from relay.normalize import normalize_for_relay
from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.event_normalization import is_fully_normalized, mark_fully_normalized
from relay.server.outcomes import OutcomeSink
from relay.server.processor import Processor
from relay.server.request_meta import RequestMeta

KEY = "a" * 32
TOPICS = resolve_topics({})
STATE = ProjectState(
    project_id=42,
    organization_id=1,
    public_keys=[PublicKeyConfig(public_key=KEY, numeric_id=123)],
    config={},
)
NOW = 1795694700.0


def meta(from_relay: bool) -> RequestMeta:
    return RequestMeta(public_key=KEY, project_id=42, from_relay=from_relay)


def item(**headers: Any) -> Item:
    return Item.new("event", b'{"message": "hi", "custom": 1}', **headers)


def test_only_a_trusted_relay_can_claim_full_normalization() -> None:
    assert is_fully_normalized(item(fully_normalized=True), meta(from_relay=True))
    assert not is_fully_normalized(item(fully_normalized=True), meta(from_relay=False))
    assert not is_fully_normalized(item(), meta(from_relay=True))
    # Only the boolean counts, as in Relay's header parsing.
    assert not is_fully_normalized(item(fully_normalized="true"), meta(from_relay=True))


def test_mark_sets_or_removes_the_header() -> None:
    marked = item()
    mark_fully_normalized(marked, meta(from_relay=False), full=True)
    assert marked.headers["fully_normalized"] is True
    claimed = item(fully_normalized=True)
    mark_fully_normalized(claimed, meta(from_relay=False), full=False)
    assert "fully_normalized" not in claimed.headers
    trusted = item(fully_normalized=True)
    mark_fully_normalized(trusted, meta(from_relay=True), full=False)
    assert trusted.headers["fully_normalized"] is True


def test_normalization_level_config() -> None:
    assert config_from_dict({}).normalization.level == "default"
    assert config_from_dict({"normalization": {"level": "full"}}).normalization.level == "full"
    with pytest.raises(ConfigError):
        config_from_dict({"normalization": {"level": "partial"}})


def processed_event(level: str, from_relay: bool, fully_normalized: bool) -> dict[str, Any]:
    config = config_from_dict({"processing": {"enabled": True}, "normalization": {"level": level}})
    producer = KafkaProducer([("bootstrap.servers", "127.0.0.1:1")])
    proc = Processor(config, producer, TOPICS, OutcomeSink(config, producer, TOPICS))
    headers = {"fully_normalized": True} if fully_normalized else {}
    env = Envelope({"event_id": uuid.uuid4().hex}, [item(**headers)])
    plan = proc.build(env, meta(from_relay), STATE)
    [message] = [m for m in plan.messages if m.topic is KafkaTopic.EVENTS]
    event: dict[str, Any] = json.loads(msgpack.unpackb(message.value)["payload"])
    return event


def test_processing_skips_what_a_trusted_relay_normalized() -> None:
    skipped = processed_event("default", from_relay=True, fully_normalized=True)
    assert skipped["custom"] == 1 and "errors" not in skipped
    for level, from_relay, fully in (
        ("full", True, True),  # configured to normalize anyway
        ("default", False, True),  # an untrusted claim
        ("default", True, False),  # nothing claimed
    ):
        event = processed_event(level, from_relay, fully)
        assert event["errors"] == [{"type": "invalid_attribute", "name": "custom"}]


@pytest.mark.parametrize(
    ("infer_ip", "expected"),
    [("auto", "2.2.2.2"), ("never", None), ("legacy", "1.1.1.1"), ("bogus", None), (5, None)],
)
def test_infer_ip_setting(infer_ip: Any, expected: str | None) -> None:
    remote_addr = "1.1.1.1" if infer_ip == "legacy" else "2.2.2.2"
    event = {
        "sdk": {"settings": {"infer_ip": infer_ip}},
        "request": {"env": {"REMOTE_ADDR": remote_addr}},
    }
    out = normalize_for_relay(
        event, processing=True, event_id=KEY, received_at=NOW, client_ip="3.3.3.3"
    )
    assert (out.get("user") or {}).get("ip_address") == expected


def test_unknown_infer_ip_value_is_removed_with_an_error() -> None:
    out = normalize_for_relay(
        {"sdk": {"name": "x", "version": "1", "settings": {"infer_ip": "bogus"}}},
        processing=True,
        event_id=KEY,
        received_at=NOW,
    )
    assert out["sdk"]["settings"]["infer_ip"] is None
    meta_node = out["_meta"]["sdk"]["settings"]["infer_ip"][""]
    assert meta_node == {"err": ["invalid_data"], "val": "bogus"}
