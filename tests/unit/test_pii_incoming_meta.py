"""PII scrubbing of events whose client ``_meta`` was never vetted by the normalizer (a
trusted relay's ``fully_normalized`` event skips it): odd remark shapes are no crash."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from relay.pii import pii_strip_event

CONFIG = {"applications": {"$string": ["@anything:mask", "@email:replace"]}}
REMARKS: list[Any] = [5, "s", None, {"a": 1}, [5], [["r"]], [[5, "x"]], [["r", "x", "a", "b"]]]
ERRORS: list[Any] = [5, "s", [5], [["n", 5]], None]


@pytest.mark.parametrize(("rem", "err"), list(itertools.product(REMARKS, ERRORS)))
def test_odd_incoming_meta_is_scrubbed_without_crash(rem: Any, err: Any) -> None:
    event = {
        "message": "hi foo@bar.com",
        "extra": {"x": "a b"},
        "_meta": {
            "extra": {"x": {"": {"rem": rem, "err": err, "len": "z"}}},
            "message": {"": {"rem": rem}},
        },
    }
    out = pii_strip_event(CONFIG, json.loads(json.dumps(event)))
    assert out["extra"]["x"] == "***"
    assert "foo@bar.com" not in json.dumps(out)
