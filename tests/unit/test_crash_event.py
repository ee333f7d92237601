"""Crash uploads: event parts merged into an event (relay.normalize.crash_event)."""

from __future__ import annotations

import msgpack
import msgspec
import pytest

from relay.normalize.crash_event import (
    CrashEventError,
    expand_crash_items,
    merge_form_data,
    sentry_entry_keys,
    take_crash_event,
)
from relay.protocol.envelope import Item
from relay.protocol.items import AttachmentType, ItemType
from relay.protocol.multipart import FormDataWriter


def _form(*fields: tuple[str, str]) -> bytes:
    writer = FormDataWriter()
    for key, value in fields:
        writer.append(key, value)
    return writer.getvalue()


def _attachment(attachment_type: str, payload: bytes) -> Item:
    return Item.new(ItemType.ATTACHMENT, payload, attachment_type=attachment_type)


def test_sentry_json_field_and_nested_keys() -> None:
    event: dict[str, object] = {}
    merge_form_data(
        event,
        _form(
            ("sentry", '{"event_id":"abc","user":{"id":"1"}}'),
            ("sentry[user][id]", "2"),
            ("sentry[tags][a]", "b"),
            ("other", "x"),
        ),
    )
    # The JSON field came first, so the nested key does not overwrite it.
    assert event == {
        "event_id": "abc",
        "user": {"id": "1"},
        "tags": {"a": "b"},
        "extra": {"other": "x"},
    }


def test_namespace_and_chunked_fields() -> None:
    event: dict[str, object] = {}
    payload = '{"event_id":"abc","user":{"id":"123"}}'
    merge_form_data(
        event,
        _form(
            ("sentry__2", payload[10:]),
            ("sentry__1", payload[:10]),
            ("sentry___global", '{"release":"r1"}'),
        ),
    )
    assert event == {"event_id": "abc", "user": {"id": "123"}, "release": "r1"}


def test_invalid_json_is_ignored() -> None:
    event: dict[str, object] = {}
    merge_form_data(event, _form(("sentry", "{{{{"), ("sentry__1", "{nope")))
    assert event == {}


def test_nesting_too_deep() -> None:
    with pytest.raises(CrashEventError) as info:
        merge_form_data({}, _form(("sentry" + "[a]" * 16, "x")))
    assert info.value.reason == "nesting_too_deep"


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("sentry[a][b][33]", ["a", "b", "33"]),
        ("sentry[a]b[33]", None),
        ("sentry[abc][123][]=SomeVal", ["abc", "123", ""]),
        ("other[a]", None),
    ],
)
def test_sentry_entry_keys(name: str, keys: list[str] | None) -> None:
    assert sentry_entry_keys(name) == keys


def test_event_from_msgpack_attachments_orders_and_truncates_breadcrumbs() -> None:
    items = [
        _attachment(AttachmentType.EVENT_PAYLOAD, msgpack.packb({"user": {"id": "123"}})),
        _attachment(
            AttachmentType.BREADCRUMBS,
            msgpack.packb({"timestamp": 20, "message": "late"}),
        ),
        _attachment(
            AttachmentType.BREADCRUMBS,
            msgpack.packb({"timestamp": 5, "message": "a"})
            + msgpack.packb({"timestamp": 10, "message": "b"}),
        ),
        _attachment(AttachmentType.ATTACHMENT, b"keep"),
    ]
    event = take_crash_event(items, 1024)
    assert event is not None
    assert event["user"] == {"id": "123"}
    # Ordered by last timestamp, cut to the longer file's length (2), keeping the newest.
    assert [c["message"] for c in event["breadcrumbs"]["values"]] == ["b", "late"]
    assert [i.payload for i in items] == [b"keep"]


def test_invalid_msgpack_and_too_large() -> None:
    with pytest.raises(CrashEventError) as info:
        take_crash_event([_attachment(AttachmentType.EVENT_PAYLOAD, b"\xc1")], 1024)
    assert info.value.reason == "invalid_msgpack"
    with pytest.raises(CrashEventError) as info:
        take_crash_event([_attachment(AttachmentType.EVENT_PAYLOAD, b"x" * 20)], 10)
    assert info.value.reason == "too_large:attachment:event_payload"


def test_expand_crash_items_builds_event_item() -> None:
    items = [
        _attachment(AttachmentType.MINIDUMP, b"MDMP"),
        Item.new(ItemType.FORM_DATA, _form(("sentry[user][id]", "7"))),
    ]
    assert expand_crash_items(items, 1024)
    assert [i.type for i in items] == [ItemType.EVENT, ItemType.ATTACHMENT]
    assert msgspec.json.decode(items[0].payload) == {"user": {"id": "7"}}


def test_expand_crash_items_keeps_event_item_and_ignores_non_crash() -> None:
    items = [
        Item.new(ItemType.EVENT, b'{"message":"hi"}'),
        _attachment(AttachmentType.MINIDUMP, b"MDMP"),
        Item.new(ItemType.FORM_DATA, _form(("a", "b"))),
    ]
    assert expand_crash_items(items, 1024)
    assert [i.type for i in items] == [ItemType.EVENT, ItemType.ATTACHMENT]
    assert items[0].payload == b'{"message":"hi"}'
    plain = [Item.new(ItemType.FORM_DATA, _form(("a", "b")))]
    assert not expand_crash_items(plain, 1024)
    assert len(plain) == 1
