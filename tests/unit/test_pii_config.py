"""piiConfig validation and selector parsing, checked against `sentry_relay`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sentry_relay.processing as sentry_relay

import relay.pii as pii
from relay.pii.selector import parse_selector, selector_to_str
from tests.unit.pii_oracle import relay_accepts

CASES: list[Any] = [
    {},
    {"foo": 1},
    [],
    "x",
    5,
    {"rules": None},
    {"vars": None},
    {"vars": {"hashKey": "x"}},
    {"vars": {"hashKey": 5}},
    {"applications": None},
    {"rules": {"a": {"type": "unknown"}}},
    {"rules": {"a": {"type": "foo"}}},
    {"rules": {"a": {"type": "url_auth"}}},
    {"rules": {"a": {"type": "urlauth"}}},
    {"rules": {"a": {"type": "us_ssn"}}},
    {"rules": {"a": {"type": "redactPair", "keyPattern": "x"}}},
    {"rules": {"a": {"type": "redact_pair"}}},
    {"rules": {"a": {"type": "pattern", "pattern": "("}}},
    {"rules": {"a": {"type": "pattern", "pattern": "("}}, "applications": {"$string": ["a"]}},
    {"rules": {"a": {"type": "pattern", "pattern": "(?=x)"}}, "applications": {"a": ["a"]}},
    {"rules": {"a": {"type": "pattern", "pattern": "\\1"}}, "applications": {"a": ["a"]}},
    {"rules": {"a": {"type": "pattern", "pattern": "x{2,1}"}}, "applications": {"a": ["a"]}},
    {"rules": {"a": {"type": "pattern", "pattern": "[[:alpha:]]+"}}, "applications": {"a": ["a"]}},
    {"rules": {"a": {"type": "pattern", "pattern": "(?P<x>a)"}}, "applications": {"a": ["a"]}},
    {"rules": {"a": {"type": "pattern", "pattern": "x", "replaceGroups": None}}},
    {"rules": {"a": {"type": "pattern", "pattern": "x", "replaceGroups": [300]}}},
    {"rules": {"a": {"type": "pattern", "pattern": "x", "replaceGroups": [-1]}}},
    {"rules": {"a": {"type": "pattern", "pattern": "x", "replaceGroups": "x"}}},
    {"rules": {"a": {"type": "ip", "redaction": {"method": "foo"}}}},
    {"rules": {"a": {"type": "ip", "redaction": {}}}},
    {"rules": {"a": {"type": "ip", "redaction": {"method": "replace"}}}},
    {"rules": {"a": {"type": "ip", "redaction": {"method": "replace", "text": 5}}}},
    {"rules": {"a": {"type": "ip", "redaction": None}}},
    {"rules": {"a": {"type": "ip", "extra": 1}}},
    {"rules": {"a": {"type": "multiple"}}},
    {"rules": {"a": {"type": "multiple", "rules": ["x"], "hideInner": 1}}},
    {"rules": {"a": {"type": "alias", "rule": "x"}}},
    {"applications": {"": ["a"]}},
    {"applications": {"*": ["a"]}},
    {"applications": {"a.**.b.**": ["a"]}},
    {"applications": {"$foo": ["a"]}},
    {"applications": {"freeform": ["a"]}},
    {"applications": {"a": "b"}},
    {"applications": {"a": [1]}},
    {"applications": {"a . b || !(c && $frame.vars.'x''y')": ["@ip"]}},
    {"applications": {"123abc": ["a"]}},
    {"applications": {"!!a": ["a"]}},
    {"applications": {"' a '": ["a"]}},
]


@pytest.mark.parametrize("case", CASES, ids=[json.dumps(c)[:60] for c in CASES])
def test_validate_pii_config_agrees_with_relay(case: Any) -> None:
    text = json.dumps(case)
    expected = relay_accepts(text)
    try:
        pii.validate_pii_config(text)
        actual = True
    except ValueError as exc:
        assert str(exc)
        actual = False
    assert actual == expected


@pytest.mark.parametrize(
    ("selector", "rendered"),
    [
        ("!(!a)", "!(!a)"),
        ("!a || !b", "!a || !b"),
        ("!a && !b", "!a && !b"),
        ("!(a && !b)", "!(a && !b)"),
        ("(a | b) & c", "(a || b) && c"),
        ("$request.headers.'user-agent'", "$http.headers.user-agent"),
        ("'it''s'", "'it''s'"),
        ("a . 0 . **", "a.0.**"),
    ],
)
def test_selector_display(selector: str, rendered: str) -> None:
    assert selector_to_str(parse_selector(selector)) == rendered


def test_invalid_selectors() -> None:
    for text in ["*", "* && foo", "$frame.**.foo.**", "$nope", "a..b", "(a", "'unterminated"]:
        with pytest.raises(ValueError):
            parse_selector(text)


def test_hash_is_uppercase_hmac_sha1_with_empty_key() -> None:
    event = {"extra": {"foo": "jane@example.com"}}
    config = {"vars": {"hashKey": "ignored"}, "applications": {"$string": ["@email:hash"]}}
    expected = sentry_relay.pii_strip_event(config, event)
    assert pii.pii_strip_event(config, event) == expected
    assert expected["extra"]["foo"].isupper()
