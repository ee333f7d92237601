"""Scrubbed logs and spans on their way to Kafka: `_meta` attributes, V1 span names."""

from __future__ import annotations

import json

from relay.kafka.item_meta import meta_attributes
from relay.kafka.spans import infer_span_name, span_v1_to_v2
from relay.pii import compile_project_configs


def test_meta_attributes_in_relay_form() -> None:
    meta = {
        "body": {"": {"len": 65, "rem": [["@bearer:replace", "s", 24, 38]]}},
        "attributes": {
            "custom_field": {"value": {"": {"len": 12, "rem": [["r", "s", 0, 10]]}}},
            "empty": {"value": {"": {}}},
        },
    }
    got = meta_attributes(meta)
    assert got == {
        "sentry._meta.fields.body": (
            '{"meta":{"":{"rem":[["@bearer:replace","s",24,38]],"len":65}}}'
        ),
        "sentry._meta.fields.attributes.custom_field": (
            '{"meta":{"value":{"":{"rem":[["r","s",0,10]],"len":12}}}}'
        ),
    }
    assert meta_attributes(None) == {}
    assert meta_attributes({"attributes": 3, "body": "x"}) == {}


def test_v1_span_is_named_after_scrubbing() -> None:
    span = span_v1_to_v2(
        {
            "span_id": "a" * 16,
            "trace_id": "b" * 32,
            "op": "http.client",
            "origin": "manual",
            "description": "GET /?mail=someone@example.com",
        }
    )
    assert span["name"] is None
    pipeline = compile_project_configs(
        {"applications": {"attributes.'sentry.description'.value": ["@email:replace"]}}, None
    )
    pipeline.process_span(span)
    # (`=` belongs to the local part of an email address in Relay's pattern.)
    assert infer_span_name(span) == "GET /?[email]"
    auto = span_v1_to_v2({"op": "db", "description": "SELECT 1", "origin": "auto"})
    assert infer_span_name(auto) == "db"
    named = span_v1_to_v2({"op": "db", "data": {"sentry.name": "custom"}})
    assert named["name"] == "custom"
    assert json.dumps(infer_span_name({"attributes": []})) == '""'
