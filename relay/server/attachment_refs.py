"""Attachment placeholders in processing relays: check them, and find the stored object.

An attachment uploaded through the TUS endpoint reaches the processing relay as a
placeholder item whose JSON payload holds the upload's final, signed location. The object
is already in objectstore under the location's key; the Kafka message references it by that
key (``stored_id``). A placeholder is only honoured when its location was signed by the
upload keys of this relay (or its peers), is final, is not older than ``upload.max_age``, and
states the same length as the item's ``attachment_length``: anything else could point at
another project's object. Invalid placeholders are dropped (``invalid_placeholder_attachment``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from relay.protocol.envelope import Envelope, Item
from relay.protocol.objectstore import is_attachment_ref
from relay.protocol.upload import INVALID_ATTACHMENT_REF, decode_placeholder, parse_location
from relay.server.uploads import UploadKeys


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    """What a valid placeholder stands for: the object's key, size and content type."""

    key: str
    size: int
    content_type: str | None


def resolve(item: Item, keys: UploadKeys | None, project_id: int) -> StoredAttachment | None:
    """The stored attachment of a placeholder item, or ``None`` if it is not valid."""
    placeholder = decode_placeholder(item.payload)
    signed = parse_location(placeholder.location) if placeholder is not None else None
    if placeholder is None or signed is None or keys is None:
        return None
    location = keys.verify(signed)
    if location is None or not location.is_final or location.project_id != project_id:
        return None
    size = item.attachment_body_size()
    if location.upload_length != size:
        return None
    return StoredAttachment(location.key, size, placeholder.content_type)


def resolve_placeholders(
    envelope: Envelope,
    keys: UploadKeys | None,
    project_id: int,
    drop: Callable[[Item, str], None],
) -> dict[int, StoredAttachment]:
    """Resolve every placeholder of the envelope, by ``id(item)``; invalid ones are removed
    from the envelope and passed to ``drop`` with their outcome reason."""
    resolved: dict[int, StoredAttachment] = {}
    invalid: list[Item] = []
    for item in envelope.items:
        if not is_attachment_ref(item):
            continue
        stored = resolve(item, keys, project_id)
        if stored is None:
            invalid.append(item)
        else:
            resolved[id(item)] = stored
    if invalid:
        gone = {id(item) for item in invalid}
        envelope.items = [item for item in envelope.items if id(item) not in gone]
        for item in invalid:
            drop(item, INVALID_ATTACHMENT_REF)
    return resolved
