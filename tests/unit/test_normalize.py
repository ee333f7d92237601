"""Unit tests of the relay-mode normalization entry point (POP and processing)."""

from __future__ import annotations

import pytest

from relay.normalize import InvalidTransaction, normalize_for_relay

NOW = 1795694700.0
EID = "a" * 32


def test_pop_formats_message_into_logentry() -> None:
    out = normalize_for_relay(
        {"message": "Hello, World!"}, processing=False, event_id=EID, received_at=NOW
    )
    assert out["logentry"] == {"formatted": "Hello, World!"}
    assert out["event_id"] == EID
    assert out["received"] == NOW
    assert out["timestamp"] == NOW
    assert out["type"] == "default"
    assert out["platform"] == "other"


def test_pop_keeps_unknown_fields_and_emits_no_errors() -> None:
    out = normalize_for_relay(
        {"foo": 1, "level": "bogus"}, processing=False, event_id=EID, received_at=NOW
    )
    assert out["foo"] == 1
    assert "errors" not in out
    assert out["_meta"]["level"][""]["val"] == "bogus"


def test_processing_removes_unknown_fields_with_errors() -> None:
    out = normalize_for_relay({"foo": 1}, processing=True, event_id=EID, received_at=NOW)
    assert out["foo"] is None
    assert out["errors"] == [{"type": "invalid_attribute", "name": "foo"}]


def test_envelope_event_id_wins() -> None:
    out = normalize_for_relay(
        {"event_id": "b" * 32}, processing=True, event_id=EID, received_at=NOW
    )
    assert out["event_id"] == EID


def test_auto_ip_uses_client_ip_unless_scrubbed() -> None:
    event = {"user": {"ip_address": "{{auto}}"}}
    out = normalize_for_relay(
        dict(event), processing=True, event_id=EID, received_at=NOW, client_ip="10.0.0.1"
    )
    assert out["user"]["ip_address"] == "10.0.0.1"
    out = normalize_for_relay(
        {"user": {"ip_address": "{{auto}}"}},
        processing=True,
        event_id=EID,
        received_at=NOW,
        client_ip="10.0.0.1",
        scrub_ip_addresses=True,
    )
    assert out["user"]["ip_address"] == "{{auto}}"


def test_future_timestamp_is_corrected_with_error() -> None:
    out = normalize_for_relay(
        {"timestamp": NOW + 3600}, processing=True, event_id=EID, received_at=NOW
    )
    assert out["timestamp"] == NOW
    assert out["errors"][0]["type"] == "future_timestamp"


def test_transaction_without_trace_context_is_invalid() -> None:
    with pytest.raises(InvalidTransaction):
        normalize_for_relay(
            {"type": "transaction", "start_timestamp": NOW - 1, "timestamp": NOW},
            processing=True,
            event_id=EID,
            received_at=NOW,
        )
