"""Envelope items this relay does not know (Relay's ``Item::is_unknown``).

An item is unknown when its type is not one of :data:`~relay.protocol.items.KNOWN_ITEM_TYPES`
(newer SDKs send types older relays have never heard of) or when it carries an
``attachment_type`` header that is not a known attachment type. POP relays forward such
items so the upstream decides; with ``routing.accept_unknown_items: false`` (the default on
processing relays) they are removed at the door, silently: no outcome, as in Relay.
"""

from __future__ import annotations

from typing import Final

from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import KNOWN_ITEM_TYPES, AttachmentType

__all__ = [
    "KNOWN_ATTACHMENT_TYPES",
    "is_unknown_item",
    "remove_unknown_items",
    "split_unknown_items",
]

KNOWN_ATTACHMENT_TYPES: Final = frozenset(
    value
    for name, value in vars(AttachmentType).items()
    if name.isupper() and isinstance(value, str)
)


def is_unknown_item(item: Item) -> bool:
    """Whether the item's type, or its ``attachment_type`` header, is unknown."""
    if item.type not in KNOWN_ITEM_TYPES:
        return True
    value = item.headers.get("attachment_type")
    if value is None:
        return False
    # Present but not a known type (or not a string at all): the header cannot be read.
    return not isinstance(value, str) or value not in KNOWN_ATTACHMENT_TYPES


def remove_unknown_items(envelope: Envelope) -> list[Item]:
    """Remove the envelope's unknown items; returns them (they get no outcome)."""
    unknown = [item for item in envelope.items if is_unknown_item(item)]
    if unknown:
        envelope.items = [item for item in envelope.items if not is_unknown_item(item)]
    return unknown


def split_unknown_items(envelope: Envelope) -> Envelope | None:
    """Move items of unknown types into an envelope of their own (same headers).

    Relay forwards unknown items on their own, apart from what it processes; returns None
    when there is nothing to split off (no unknown types, or nothing else).
    """
    unknown = [item for item in envelope.items if item.type not in KNOWN_ITEM_TYPES]
    if not unknown or len(unknown) == len(envelope.items):
        return None
    envelope.items = [item for item in envelope.items if item.type in KNOWN_ITEM_TYPES]
    return Envelope(dict(envelope.headers), unknown)
