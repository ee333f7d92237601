"""An ``event`` item never holds a transaction: its declared type is inferred anew."""

from __future__ import annotations

import uuid

import msgspec

from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.event_normalization import normalize_event_payload
from relay.server.request_meta import RequestMeta

KEY = "a" * 32
META = RequestMeta(public_key=KEY, project_id=42, client="sentry.python/2.0.0")
STATE = ProjectState(
    project_id=42, public_keys=[PublicKeyConfig(public_key=KEY, numeric_id=7)], config={}
)


def _normalize(payload: dict[str, object], item_type: str = "event") -> dict[str, object]:
    item = Item.new(item_type, msgspec.json.encode(payload))
    env = Envelope(headers={"event_id": uuid.uuid4().hex}, items=[item])
    return normalize_event_payload(item, env, META, STATE, processing=True)


def test_error_declared_as_transaction_is_an_error() -> None:
    bogus: dict[str, object] = {
        "type": "transaction",
        "exception": {"values": [{"type": "ValueError", "value": "Should not happen"}]},
    }
    assert _normalize(bogus)["type"] == "error"


def test_message_declared_as_transaction_is_a_default_event() -> None:
    assert _normalize({"type": "transaction", "message": "hi"})["type"] == "default"
