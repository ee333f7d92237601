"""The server's normalization + scrubbing step on an envelope's event item."""

from __future__ import annotations

import json
import uuid

import msgspec
import pytest

from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.event_normalization import EventRejected, normalize_event_payload
from relay.server.request_meta import RequestMeta

KEY = "a" * 32


def state(**config: object) -> ProjectState:
    return ProjectState(
        project_id=42,
        public_keys=[PublicKeyConfig(public_key=KEY, numeric_id=7)],
        config=dict(config),
    )


def envelope(payload: bytes, item_type: str = "event") -> Envelope:
    return Envelope(headers={"event_id": uuid.uuid4().hex}, items=[Item.new(item_type, payload)])


META = RequestMeta(public_key=KEY, project_id=42, client="sentry.python/2.0.0",
                   remote_addr="10.1.2.3", forwarded_for="10.1.2.3")  # fmt: skip


def test_pop_pass_formats_message_and_keeps_unknown_fields() -> None:
    env = envelope(b'{"message": "Hello, World!", "custom_field": 1}')
    event = normalize_event_payload(env.items[0], env, META, state(), processing=False)
    assert event["logentry"] == {"formatted": "Hello, World!"}
    assert event["event_id"] == env.event_id
    assert json.loads(env.items[0].payload)["custom_field"] == 1
    assert env.items[0].headers["length"] == len(env.items[0].payload)


def test_processing_pass_scrubs_with_datascrubbing_settings() -> None:
    payload = msgspec.json.encode({"message": "x", "extra": {"password": "hunter2"}})
    env = envelope(payload)
    settings = {"scrubData": True, "scrubDefaults": True, "sensitiveFields": [],
                "excludeFields": []}  # fmt: skip
    event = normalize_event_payload(
        env.items[0], env, META, state(datascrubbingSettings=settings), processing=True
    )
    assert event["extra"]["password"] == "[Filtered]"
    assert b"hunter2" not in env.items[0].payload


def test_invalid_json_is_rejected() -> None:
    env = envelope(b"{nope")
    with pytest.raises(EventRejected) as info:
        normalize_event_payload(env.items[0], env, META, state(), processing=False)
    assert info.value.reason == "invalid_json"


def test_inbound_filter_rejects_with_filtered_outcome() -> None:
    env = envelope(b'{"message": "x", "release": "1.0-bad"}')
    settings = {"releases": {"releases": ["*-bad"]}}
    with pytest.raises(EventRejected) as info:
        normalize_event_payload(
            env.items[0], env, META, state(filterSettings=settings), processing=True
        )
    assert (info.value.reason, int(info.value.code)) == ("release-version", 1)


def test_attachment_rules_scrub_plain_attachments_in_place() -> None:
    from relay.server.event_normalization import scrub_attachments

    env = Envelope(
        headers={"event_id": uuid.uuid4().hex},
        items=[Item.new("attachment", b"token=hunter2 ok", filename="app.log")],
    )
    pii = {"applications": {"$attachments.'app.log'": ["@password"]}}
    scrub_attachments(env, state(piiConfig=pii))
    payload = env.items[0].payload
    assert b"hunter2" not in payload
    assert len(payload) == len(b"token=hunter2 ok")
