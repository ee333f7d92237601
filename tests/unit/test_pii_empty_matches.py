"""Patterns that can match the empty string step through text as Rust's regex does."""

from __future__ import annotations

import pytest
import sentry_relay.processing as sentry_relay

import relay.pii as pii

TEXTS = ["aa-b xa", "", "a", "ééa", "x\ny"]


@pytest.mark.parametrize("pattern", ["|a", "a??", "(?U)-?", "x*", "a|", r"\b", "^", "$", "(?m)^"])
@pytest.mark.parametrize("method", ["replace", "mask", "remove"])
def test_empty_matches_scrub_as_relay(pattern: str, method: str) -> None:
    redaction = {"method": method, "text": "#"} if method == "replace" else {"method": method}
    rule = {"type": "pattern", "pattern": pattern, "redaction": redaction}
    config = {"rules": {"r": rule}, "applications": {"$string": ["r"]}}
    event = {"extra": {f"k{i}": text for i, text in enumerate(TEXTS)}}
    assert pii.pii_strip_event(config, event) == sentry_relay.pii_strip_event(config, event)
