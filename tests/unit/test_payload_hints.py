"""Item headers filled in from payloads before rate limiting: span counts, profile platforms."""

from __future__ import annotations

import json

import pytest

from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory, ItemType
from relay.quotas.payload_hints import (
    ensure_profile_platforms,
    ensure_span_count,
    parse_span_count,
)


def transaction(payload: bytes, **headers: object) -> Item:
    item = Item.new(ItemType.TRANSACTION, payload)
    item.headers.update(headers)
    return item


def test_span_count_from_spans() -> None:
    item = transaction(json.dumps({"type": "transaction", "spans": [{}, {"op": "x"}]}).encode())
    envelope = Envelope({}, [Item.new(ItemType.ATTACHMENT, b"a"), item])
    ensure_span_count(envelope)
    assert item.headers["span_count"] == 2
    # The transaction counts itself as a span too.
    assert (DataCategory.SPAN, 3) in item.quantities()


def test_span_count_header_is_kept() -> None:
    item = transaction(b'{"spans": [{}]}', span_count=7)
    ensure_span_count(Envelope({}, [item]))
    assert item.headers["span_count"] == 7


@pytest.mark.parametrize("payload", [b"{}", b'{"spans": null}', b"not json", b"[1]"])
def test_unreadable_spans_leave_no_header(payload: bytes) -> None:
    item = transaction(payload)
    ensure_span_count(Envelope({}, [item]))
    assert "span_count" not in item.headers
    assert parse_span_count(item) is None


def test_parse_span_count_ignores_other_items() -> None:
    assert parse_span_count(Item.new(ItemType.EVENT, b'{"spans": [{}]}')) is None


def profile(payload: dict[str, object] | bytes, **headers: object) -> Item:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    item = Item.new(ItemType.PROFILE, raw)
    item.headers.update(headers)
    return item


@pytest.mark.parametrize(
    ("payload", "platform"),
    [
        ({"version": "1", "platform": "cocoa", "profile": {}}, "cocoa"),
        ({"version": "1", "platform": "python"}, "python"),
        ({"platform": "android", "android_api_level": 30}, "android"),
        # Metadata Relay cannot read: rejected later, counted without a platform.
        ({"version": "2", "platform": "cocoa"}, None),
        ({"platform": "<this does not exist>"}, None),
        ({"version": "1"}, None),
        (b"foobar", None),
    ],
)
def test_profile_platform_from_metadata(
    payload: dict[str, object] | bytes, platform: str | None
) -> None:
    item = profile(payload)
    ensure_profile_platforms(Envelope({}, [item]))
    assert item.platform == platform


def test_profile_platform_header_is_kept() -> None:
    item = profile({"version": "1", "platform": "cocoa"}, platform="python")
    ensure_profile_platforms(Envelope({}, [item]))
    assert item.platform == "python"
