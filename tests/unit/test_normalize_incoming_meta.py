"""Incoming ``_meta`` attaches to the JSON as sent: annotations of absent fields vanish."""

from __future__ import annotations

from typing import Any

import pytest
import sentry_relay.processing as sentry_relay

from relay.normalize import StoreNormalizer

ERR = {"": {"err": ["invalid_data"]}}
CASES: list[dict[str, Any]] = [
    {"release": None, "_meta": {"release": ERR}},
    {"_meta": {"release": ERR, "extra": {"foo": ERR}}},
    {"extra": {}, "_meta": {"extra": {"foo": ERR}}},
    {"extra": {"foo": None}, "_meta": {"extra": {"foo": ERR}}},
    {"tags": [["a", "b"]], "_meta": {"tags": {"0": ERR, "3": ERR}}},
    {"breadcrumbs": {"values": []}, "_meta": {"breadcrumbs": {"values": {"0": ERR}}}},
]


def _normalized(normalizer: Any, event: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = normalizer.normalize_event({"event_id": "a" * 32, **event})
    for key in ("received", "timestamp"):
        out.pop(key, None)
    return out


@pytest.mark.parametrize("event", CASES)
def test_incoming_meta_matches_relay(event: dict[str, Any]) -> None:
    ours = _normalized(StoreNormalizer(), event)
    assert ours == _normalized(sentry_relay.StoreNormalizer(), event)
