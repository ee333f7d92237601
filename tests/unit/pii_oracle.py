"""`sentry_relay`'s piiConfig validation as a yes/no oracle for the parity tests."""

from __future__ import annotations

import json

import sentry_relay.processing as sentry_relay


def pattern_config(pattern: str) -> str:
    """A piiConfig (JSON) with one masking rule of ``pattern`` applied to every string."""
    rule = {"type": "pattern", "pattern": pattern, "redaction": {"method": "mask"}}
    return json.dumps({"rules": {"r": rule}, "applications": {"$string": ["r"]}})


def relay_accepts(config: str) -> bool:
    """Whether ``sentry_relay.validate_pii_config`` accepts the piiConfig JSON ``config``."""
    try:
        sentry_relay.validate_pii_config(config)  # type: ignore[no-untyped-call]
    except Exception:
        return False
    return True
