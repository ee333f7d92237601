"""Unknown envelope items: what counts as unknown, removal, splitting, and the config key."""

from __future__ import annotations

from typing import Any

import pytest

from relay.config import config_from_dict
from relay.errors import ConfigError
from relay.protocol.envelope import Envelope, Item
from relay.protocol.unknown_items import (
    is_unknown_item,
    remove_unknown_items,
    split_unknown_items,
)


def item(item_type: str, **headers: Any) -> Item:
    return Item.new(item_type, b"something", **headers)


@pytest.mark.parametrize(
    ("it", "unknown"),
    [
        (item("event"), False),
        (item("attachment"), False),
        (item("attachment", attachment_type="event.minidump"), False),
        (item("attachment", attachment_type="unreal.logs"), False),
        (item("attachment", attachment_type=None), False),
        (item("invalid_unknown"), True),
        (item("attachment", attachment_type="attachment_unknown"), True),
        (item("attachment", attachment_type=["event.minidump"]), True),
        (item("event", attachment_type="nope"), True),
    ],
)
def test_is_unknown(it: Item, unknown: bool) -> None:
    assert is_unknown_item(it) is unknown


def test_remove_unknown_items() -> None:
    known = item("attachment")
    envelope = Envelope(
        {"event_id": "d2132d31b39445f1938d7e21b6bf0ec4"},
        [known, item("invalid_unknown"), item("attachment", attachment_type="x")],
    )
    removed = remove_unknown_items(envelope)
    assert [i.type for i in removed] == ["invalid_unknown", "attachment"]
    assert envelope.items == [known]
    assert remove_unknown_items(envelope) == []


def test_split_unknown_items() -> None:
    unknown = item("invalid_unknown")
    odd_attachment = item("attachment", attachment_type="attachment_unknown")
    envelope = Envelope({"event_id": "ab" * 16}, [unknown, odd_attachment])
    split = split_unknown_items(envelope)
    assert split is not None
    assert split.items == [unknown]
    assert split.headers == {"event_id": "ab" * 16}
    assert split.headers is not envelope.headers
    # Attachments of unknown attachment types stay with the processed items.
    assert envelope.items == [odd_attachment]


def test_split_needs_both_kinds() -> None:
    only_unknown = Envelope({}, [item("a_new_type"), item("another_one")])
    assert split_unknown_items(only_unknown) is None
    assert len(only_unknown.items) == 2
    only_known = Envelope({}, [item("event")])
    assert split_unknown_items(only_known) is None


@pytest.mark.parametrize(
    ("options", "processing", "accepts"),
    [
        ({}, False, True),
        ({}, True, False),
        ({"accept_unknown_items": False}, False, False),
        ({"accept_unknown_items": True}, True, True),
    ],
)
def test_accept_unknown_items_default(
    options: dict[str, Any], processing: bool, accepts: bool
) -> None:
    config = config_from_dict({"routing": options})
    assert config.routing.accepts_unknown_items(processing) is accepts


def test_routing_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"routing\.nope"):
        config_from_dict({"routing": {"nope": 1}})
