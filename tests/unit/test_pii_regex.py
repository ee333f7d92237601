"""Rust-regex semantics that Python's `re` does not share, checked against Relay itself."""

from __future__ import annotations

from typing import Any

import pytest
import sentry_relay.processing as sentry_relay

import relay.pii as pii

DEFAULT = sentry_relay.convert_datascrubbing_config(
    {"scrubData": True, "scrubDefaults": True, "scrubIpAddresses": True}
)
PATTERNS: dict[str, Any] = {
    "rules": {
        "end": {"type": "pattern", "pattern": "^abc$", "redaction": {"method": "remove"}},
        "ws": {"type": "pattern", "pattern": r"x\sy", "redaction": {"method": "remove"}},
        "nws": {"type": "pattern", "pattern": r"q\S+", "redaction": {"method": "mask"}},
        "ml": {"type": "pattern", "pattern": "(?m)^z$", "redaction": {"method": "hash"}},
    },
    "applications": {"$string": ["end", "ws", "nws", "ml"]},
}
VALUES = [
    "otp",
    "otp\n",
    "two-factor\n",
    "x\nauth",
    "Bearer\x1fabc",
    "Bearer abc",
    "Bearer\u00a0abc",
    "abc\n",
    "abc",
    "x\x1cy",
    "x\u2003y",
    "x y",
    "q\x1dw",
    "a\nz\nb",
    "z\n",
    "1::2\n",
    "fe80::1\x1e",
    "4111\x1f1111 1111 1111",
    "4111 1111 1111 1111",
    "10.0.0.1",
    "ab\x00c 10.0.0.1",
]


@pytest.mark.parametrize("config", [DEFAULT, PATTERNS], ids=["default", "patterns"])
@pytest.mark.parametrize("value", VALUES)
def test_regex_edge_cases_match_relay(config: dict[str, Any], value: str) -> None:
    event = sentry_relay.pii_strip_event({}, {"extra": {"foo": value, "token": value}})
    assert pii.pii_strip_event(config, event) == sentry_relay.pii_strip_event(config, event)
