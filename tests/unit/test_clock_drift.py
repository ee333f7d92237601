"""Clock drift correction from the envelope's ``sent_at`` (relay.normalize.clock_drift)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from relay.normalize import normalize_for_relay
from relay.normalize.clock_drift import MINIMUM_CLOCK_DRIFT_SECS, drift_ns, sent_at_now
from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.event_normalization import normalize_event_payload
from relay.server.request_meta import RequestMeta

NOW = 1795694700.0
DAY = 24 * 3600
EID = "a" * 32
KEY = "a" * 32


def transaction(ts: float) -> dict[str, object]:
    return {
        "type": "transaction",
        "transaction": "/hello",
        "timestamp": ts,
        "start_timestamp": ts - 2,
        "contexts": {"trace": {"trace_id": "a" * 32, "span_id": "b" * 16}},
        "spans": [
            {"span_id": "c" * 16, "trace_id": "a" * 32, "start_timestamp": ts - 1, "timestamp": ts}
        ],
        "breadcrumbs": {"values": [{"timestamp": ts - 1, "message": "crumb"}]},
    }


def test_drift_below_the_minimum_is_none() -> None:
    sec = 1_000_000_000
    assert drift_ns(0, (MINIMUM_CLOCK_DRIFT_SECS - 1) * sec, MINIMUM_CLOCK_DRIFT_SECS) is None
    # Whole seconds count: 54:59.9 is not yet a drift.
    almost = MINIMUM_CLOCK_DRIFT_SECS * sec - 100_000_000
    assert drift_ns(0, almost, MINIMUM_CLOCK_DRIFT_SECS) is None
    assert drift_ns(0, MINIMUM_CLOCK_DRIFT_SECS * sec, MINIMUM_CLOCK_DRIFT_SECS) == (
        MINIMUM_CLOCK_DRIFT_SECS * sec
    )
    # Clocks running ahead are corrected too (negative drift).
    assert drift_ns(3600 * sec, 0, MINIMUM_CLOCK_DRIFT_SECS) == -3600 * sec


def test_old_clock_shifts_every_timestamp_and_records_both_clocks() -> None:
    sent = NOW - 30 * DAY
    out = normalize_for_relay(
        transaction(sent), processing=False, event_id=EID, received_at=NOW, sent_at=sent
    )
    assert out["timestamp"] == NOW
    assert out["start_timestamp"] == NOW - 2
    assert out["spans"][0]["start_timestamp"] == NOW - 1
    assert out["breadcrumbs"]["values"][0]["timestamp"] == NOW - 1
    kind, data = out["_meta"]["timestamp"][""]["err"][0]
    assert kind == "clock_drift"
    assert data["sdk_time"].startswith(datetime.fromtimestamp(sent, UTC).strftime("%Y-%m-%dT"))
    assert data["server_time"].startswith(datetime.fromtimestamp(NOW, UTC).strftime("%Y-%m-%dT"))


def test_clock_ahead_is_shifted_back() -> None:
    sent = NOW + 2 * 3600
    event = {"message": "hi", "timestamp": sent}
    out = normalize_for_relay(event, processing=True, event_id=EID, received_at=NOW, sent_at=sent)
    assert out["timestamp"] == NOW
    assert out["_meta"]["timestamp"][""]["err"][0][0] == "clock_drift"


def test_small_drift_leaves_timestamps_alone() -> None:
    sent = NOW - 300
    out = normalize_for_relay(
        transaction(sent), processing=False, event_id=EID, received_at=NOW, sent_at=sent
    )
    assert out["timestamp"] == sent
    assert "_meta" not in out


def test_without_sent_at_the_past_timestamp_check_applies() -> None:
    old = NOW - 100 * DAY
    out = normalize_for_relay(
        {"message": "hi", "timestamp": old}, processing=False, event_id=EID, received_at=NOW
    )
    assert out["timestamp"] == NOW
    assert out["_meta"]["timestamp"][""]["err"][0][0] == "past_timestamp"


def test_server_reads_sent_at_from_the_envelope_header() -> None:
    sent = datetime.fromtimestamp(NOW - 30 * DAY, UTC)
    payload = b'{"message": "hi", "timestamp": %d}' % int(NOW - 30 * DAY)
    env = Envelope(
        headers={"event_id": uuid.uuid4().hex, "sent_at": sent.isoformat()},
        items=[Item.new("event", payload)],
    )
    meta = RequestMeta(public_key=KEY, project_id=42, received_at=NOW)
    state = ProjectState(
        project_id=42, public_keys=[PublicKeyConfig(public_key=KEY, numeric_id=7)], config={}
    )
    event = normalize_event_payload(env.items[0], env, meta, state, processing=False)
    assert event["timestamp"] == NOW
    assert event["_meta"]["timestamp"][""]["err"][0][0] == "clock_drift"


def test_sent_at_now_is_an_rfc3339_utc_timestamp() -> None:
    value = sent_at_now()
    assert value.endswith("Z")
    parsed = datetime.fromisoformat(value)
    assert abs(parsed.timestamp() - datetime.now(UTC).timestamp()) < 60
