"""Scrubbing of logs and V2 spans (EAP items), checked against Relay's own expectations.

The expected results come from Relay's `relay-pii/src/eap.rs` tests (see pii_eap_cases):
piiConfig rules see attributes as objects (`<name>.value`), datascrubbingSettings see an
attribute as its value, and sentry-conventions decide which attribute values are PII.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from relay.pii import compile_config, compile_datascrubbing, compile_project_configs
from relay.pii import schema as sc
from relay.pii.eap import scrub_item
from relay.pii.value_types import vt
from tests.unit.pii_eap_cases import (
    CASES,
    DEFAULT_RULES_EXPECTED,
    DEFAULT_RULES_INPUT,
    DEFAULT_RULES_SETTINGS,
)

#: Relay's tests scrub a bare `Attributes` map entered as a field "" of the item's type.
SPAN_ATTRIBUTES = sc.Node(sc.K_ATTRIBUTES, vt("span"))
LOG_ATTRIBUTES = sc.Node(sc.K_ATTRIBUTES, vt("log"))


def _scrub_attributes(
    attributes: dict[str, Any],
    node: sc.Node,
    pii_config: dict[str, Any] | None,
    settings: dict[str, Any] | None,
) -> dict[str, Any]:
    data = copy.deepcopy(attributes)
    advanced = compile_config(pii_config) if pii_config is not None else None
    legacy = compile_datascrubbing(settings) if settings is not None else None
    scrub_item(data, node, advanced, legacy)
    return data


def _attributes_with_meta(item: dict[str, Any]) -> dict[str, Any]:
    """The item's attributes with their `_meta` inside, as Relay's snapshots show them."""
    out = dict(item["attributes"])
    meta = item.get("_meta", {}).get("attributes")
    if meta:
        out["_meta"] = meta
    return out


@pytest.mark.parametrize(("rule", "value", "expected"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("kind", ["span", "log"])
def test_string_rule_on_attribute(
    rule: str, value: str, expected: dict[str, Any], kind: str
) -> None:
    pipeline = compile_project_configs(
        {"applications": {"$string": [rule]}},
        {"scrubData": True, "scrubDefaults": False, "scrubIpAddresses": False},
    )
    attributes = {f"{rule}|{value}": {"type": "string", "value": value}}
    if kind == "span":
        span = {
            "start_timestamp": 1544719859.0,
            "end_timestamp": 1544719860.0,
            "trace_id": "5b8efff798038103d269b633813fc60c",
            "span_id": "eee19b7ec3c1b174",
            "name": "test",
            "attributes": attributes,
        }
        pipeline.process_span(span)
        assert _attributes_with_meta(span) == expected
    else:
        log = {
            "timestamp": 1544719860.0,
            "trace_id": "5b8efff798038103d269b633813fc60c",
            "span_id": "eee19b7ec3c1b174",
            "level": "info",
            "body": "Test log",
            "attributes": attributes,
        }
        pipeline.process_log(log)
        assert _attributes_with_meta(log) == expected
        assert log["body"] == "Test log"


def test_default_rules_on_attributes() -> None:
    got = _scrub_attributes(DEFAULT_RULES_INPUT, SPAN_ATTRIBUTES, None, DEFAULT_RULES_SETTINGS)
    assert got == DEFAULT_RULES_EXPECTED


def test_custom_object_rules_follow_conventions() -> None:
    names = {
        "sentry.description": "[DESCRIPTION]",  # pii true
        "user.name": "[USER NAME]",  # pii true
        "sentry.release": None,  # pii false: never scrubbed
        "url.path": "[URL PATH]",  # pii true
        "url.domain": "[URL DOMAIN]",  # pii maybe: only explicit selectors
    }
    rules: dict[str, Any] = {}
    applications: dict[str, list[str]] = {}
    for i, (name, text) in enumerate(names.items()):
        rules[f"project:{i}"] = {
            "type": "anything",
            "redaction": {"method": "replace", "text": text or "[GONE]"},
        }
        applications[f"'{name}'.value"] = [f"project:{i}"]
    attributes = {name: {"type": "string", "value": "secret123"} for name in names}
    attributes["password"] = {"type": "string", "value": "default_scrubbing_rules_are_off"}
    got = _scrub_attributes(
        attributes,
        SPAN_ATTRIBUTES,
        {"rules": rules, "applications": applications},
        {"scrubData": True, "scrubDefaults": False, "scrubIpAddresses": False},
    )
    for name, text in names.items():
        assert got[name]["value"] == (text or "secret123"), name
    assert got["password"]["value"] == "default_scrubbing_rules_are_off"
    assert got["_meta"]["url.domain"] == {
        "value": {"": {"len": 9, "rem": [["project:4", "s", 0, 12]]}}
    }


def test_sensitive_fields_address_attribute_names_not_value() -> None:
    attributes = {
        "normal_field": {"type": "string", "value": "normal_data"},
        "sensitive_custom": {"type": "string", "value": "should_be_removed"},
        "another_sensitive": {"type": "integer", "value": 42},
        "my_value": {"type": "string", "value": "this_should_be_removed_as_sensitive"},
    }
    settings = {
        "scrubData": True,
        "scrubDefaults": False,
        "sensitiveFields": ["value", "sensitive_custom", "another_sensitive"],
    }
    got = _scrub_attributes(attributes, SPAN_ATTRIBUTES, None, settings)
    assert got["normal_field"]["value"] == "normal_data"
    assert got["sensitive_custom"]["value"] == "[Filtered]"
    assert got["another_sensitive"] == {"type": "integer", "value": None}
    # "value" matches as a substring of the attribute name, not as the inner field.
    assert got["my_value"]["value"] == "[Filtered]"
    assert got["_meta"]["another_sensitive"] == {"value": {"": {"rem": [["strip-fields", "x"]]}}}
    assert got["_meta"]["sensitive_custom"] == {
        "value": {"": {"len": 17, "rem": [["strip-fields", "s", 0, 10]]}}
    }


def test_safe_fields_keep_attributes() -> None:
    attributes = {
        "password": {"type": "string", "value": "secret123"},
        "credit_card": {"type": "string", "value": "4242424242424242"},
        "secret": {"type": "string", "value": "this_should_stay"},
    }
    settings = {"scrubData": True, "scrubDefaults": True, "excludeFields": ["secret"]}
    got = _scrub_attributes(attributes, SPAN_ATTRIBUTES, None, settings)
    assert got["password"]["value"] == "[Filtered]"
    assert got["credit_card"]["value"] == "[Filtered]"
    assert got["secret"]["value"] == "this_should_stay"
    assert got["_meta"]["credit_card"]["value"][""]["rem"] == [["@creditcard:filter", "s", 0, 10]]


def test_advanced_rules_need_the_value_field() -> None:
    rule = {
        "type": "pattern",
        "pattern": "abc123",
        "redaction": {"method": "replace", "text": "abc---"},
    }
    attributes = {"remove_this_string_abc123": {"type": "string", "value": "abc123"}}
    settings = {"scrubData": True, "scrubDefaults": True}
    by_name = {"rules": {"r": rule}, "applications": {"remove_this_string_abc123": ["r"]}}
    assert _scrub_attributes(attributes, LOG_ATTRIBUTES, by_name, settings) == attributes
    by_value = {"rules": {"r": rule}, "applications": {"remove_this_string_abc123.value": ["r"]}}
    got = _scrub_attributes(attributes, LOG_ATTRIBUTES, by_value, settings)
    assert got["remove_this_string_abc123"]["value"] == "abc---"


def test_log_body_and_known_ip_attribute() -> None:
    pipeline = compile_project_configs(
        None, {"scrubData": True, "scrubDefaults": True, "scrubIpAddresses": True}
    )
    log: dict[str, Any] = {
        "__header": {"byte_size": 10},
        "timestamp": 1.0,
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "level": "info",
        "body": "API failed with Bearer ABC123TOKEN for user@example.com card 4111-1111-1111-1111",
        "attributes": {
            "client.address": {"type": "string", "value": "192.168.0.1"},
            "password": {"type": "string", "value": "hunter2"},
            "sentry.release": {"type": "string", "value": "hunter2@1.0"},
        },
    }
    pipeline.process_log(log)
    # The body only gets replace-style rules (Relay keeps it readable).
    assert log["body"] == "API failed with Bearer [token] for [email] card [creditcard]"
    assert log["attributes"]["client.address"]["value"] is None
    assert log["attributes"]["password"]["value"] == "[Filtered]"
    assert log["attributes"]["sentry.release"]["value"] == "hunter2@1.0"
    # The container header stays in front, untouched.
    assert next(iter(log)) == "__header"
    assert log["__header"] == {"byte_size": 10}
    remarks = log["_meta"]["attributes"]["client.address"]["value"][""]["rem"]
    assert remarks[-1] == ["@anything:remove", "x"]


def test_advanced_rule_removes_whole_attribute() -> None:
    pipeline = compile_project_configs(
        {"applications": {"$span.attributes.'db.password'": ["@anything:remove"]}}, None
    )
    span: dict[str, Any] = {
        "span_id": "eee19b7ec3c1b174",
        "attributes": {"db.password": {"type": "string", "value": "x"}},
    }
    pipeline.process_span(span)
    assert span["attributes"]["db.password"] is None
    assert span["_meta"]["attributes"]["db.password"] == {"": {"rem": [["@anything:remove", "x"]]}}


def test_span_links_and_nested_attribute_values() -> None:
    pipeline = compile_project_configs(
        None, {"scrubData": True, "scrubDefaults": True, "scrubIpAddresses": True}
    )
    span: dict[str, Any] = {
        "span_id": "eee19b7ec3c1b174",
        "links": [{"attributes": {"token": {"type": "string", "value": "abc"}}}],
        "attributes": {
            "custom": {"type": "array", "value": ["x", "4111-1111-1111-1111"]},
            "not.an.attribute": "secret: 4111-1111-1111-1111",
        },
    }
    pipeline.process_span(span)
    assert span["attributes"]["custom"]["value"] == ["x", "[Filtered]"]
    assert span["attributes"]["not.an.attribute"] == "[Filtered]"
    # Attribute values take their level from the conventions, also on links.
    assert span["links"][0]["attributes"]["token"]["value"] == "[Filtered]"


def test_rescrubbing_keeps_prior_remarks() -> None:
    # A processing relay scrubs what a POP relay already scrubbed: same value, remarks kept.
    pipeline = compile_project_configs(None, {"scrubData": True, "scrubDefaults": True})
    log: dict[str, Any] = {
        "body": "x",
        "attributes": {"password": {"type": "string", "value": "hunter2"}},
    }
    pipeline.process_log(log)
    once = copy.deepcopy(log)
    pipeline.process_log(log)
    assert log["attributes"] == once["attributes"]
    assert log["_meta"]["attributes"]["password"]["value"][""]["len"] == 7


@pytest.mark.parametrize("bad", [None, 1, "text", [1, 2], {"attributes": 5}, {"attributes": []}])
def test_malformed_items_do_not_crash(bad: Any) -> None:
    pipeline = compile_project_configs(
        {"applications": {"**": ["@anything:remove"]}},
        {"scrubData": True, "scrubDefaults": True},
    )
    item = {"body": "x", "attributes": bad} if not isinstance(bad, dict) else dict(bad)
    pipeline.process_log(item)
    pipeline.process_span(copy.deepcopy(item))
