"""Turning a multipart upload into envelope items, with Relay's per-field limits.

File fields become ``attachment`` items (their type inferred per endpoint); plain fields are
collected into one ``form_data`` item. Limits, as in Relay's ``multipart_items``:

* a file over ``max_attachment_size``: the endpoint decides (the minidump endpoint skips
  ordinary attachments but refuses an oversized dump; the attachment endpoint refuses it),
  refused as 400 "invalid multipart data";
* all files together over ``max_attachments_size``: 413;
* the serialized form fields over ``max_event_size``: 413 ``too_large:form_data``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec
from aiohttp import web

from relay.config import Config
from relay.errors import PayloadTooLarge
from relay.protocol.envelope import Item, normalize_event_id
from relay.protocol.items import AttachmentType, ItemType
from relay.protocol.limits import discard_item_type
from relay.protocol.multipart import (
    FormDataWriter,
    InvalidMultipart,
    Part,
    iter_form_data,
    parse_boundary,
    parse_multipart,
)
from relay.server.endpoints.common import ItemTooLarge

__all__ = ["event_id_from_items", "multipart_items", "request_parts"]

#: Decides the ``attachment_type`` of a file field.
InferType = Callable[[Part], str]
#: Whether an oversized file of this attachment type is skipped (True) or refused (False).
SkipOversized = Callable[[str], bool]


def request_parts(request: web.Request, body: bytes) -> list[Part]:
    """Parse a multipart request body read by the endpoint."""
    boundary = parse_boundary(request.headers.get("Content-Type"))
    return parse_multipart(body, boundary)


def attachment_item(part: Part, attachment_type: str, data: bytes | None = None) -> Item:
    """An ``attachment`` item for a file field (with ``data`` instead of the field's, if given)."""
    headers: dict[str, object] = {"attachment_type": attachment_type}
    if part.filename is not None:
        headers["filename"] = part.filename
    if part.content_type:
        headers["content_type"] = part.content_type
    return Item.new(ItemType.ATTACHMENT, part.data if data is None else data, **headers)


def _reject_all(items: list[Item], reason: str, rejected: list[tuple[Item, str]] | None) -> None:
    # What was read before the request failed is dropped with the request's reason.
    if rejected is not None:
        rejected.extend((item, reason) for item in items)


def multipart_items(
    parts: list[Part],
    config: Config,
    infer_type: InferType,
    skip_oversized: SkipOversized,
    rejected: list[tuple[Item, str]] | None = None,
    earlier: Sequence[Item] = (),
) -> list[Item]:
    """The envelope items of a multipart upload; raises when a limit is exceeded.

    Items dropped on the way (a skipped oversized file, or everything read before the
    request fails, ``earlier`` items of the request included) are appended to ``rejected``
    with their outcome reason, as Relay emits outcomes for them.
    """
    limits = config.limits
    max_attachment = int(limits.max_attachment_size)
    max_attachments = int(limits.max_attachments_size)
    max_form = int(limits.max_event_size)
    items: list[Item] = []
    form_data = FormDataWriter()
    attachments_size = 0
    for part in parts:
        if part.filename is not None:
            attachment_type = infer_type(part)
            if len(part.data) > max_attachment:
                # Relay reads one byte past the limit to know it is exceeded, and counts it.
                item = attachment_item(part, attachment_type, part.data[: max_attachment + 1])
                reason = "too_large:" + discard_item_type(item)
                if rejected is not None:
                    rejected.append((item, reason))
                if skip_oversized(attachment_type):
                    continue
                _reject_all([*earlier, *items], reason, rejected)
                raise InvalidMultipart(
                    f"field {part.name!r} exceeded the size limit of {max_attachment} bytes"
                )
            items.append(attachment_item(part, attachment_type))
            attachments_size += len(part.data)
            if attachments_size > max_attachments:
                _reject_all([*earlier, *items], "too_large:attachment:attachment", rejected)
                raise PayloadTooLarge("request content exceeded size limits")
        elif part.name is not None:
            # Decoded leniently, as Django decodes POST data.
            value = part.data[: max_form + 1].decode("utf-8", "replace")
            form_data.append(part.name, value)
            if len(form_data) > max_form:
                _reject_all([*earlier, *items], "too_large:form_data", rejected)
                raise ItemTooLarge("form_data")
    if len(form_data):
        items.append(Item.new(ItemType.FORM_DATA, form_data.getvalue(), content_type="text/plain"))
    return items


def _event_id_from_json(data: bytes) -> str | None:
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) else None


def _event_id_from_msgpack(data: bytes) -> str | None:
    try:
        value = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) else None


def event_id_from_items(items: list[Item]) -> str | None:
    """The event id the items carry (Relay's ``event_id_from_items``), if any.

    Looked up in order: an ``event`` item, the msgpack ``__sentry-event`` attachment, the
    ``sentry`` JSON form field, then the ``sentry[event_id]`` form field.
    """
    candidates: list[str | None] = []
    for item in items:
        if item.type == ItemType.EVENT:
            candidates.append(_event_id_from_json(item.payload))
            break
    for item in items:
        if item.attachment_type == AttachmentType.EVENT_PAYLOAD:
            candidates.append(_event_id_from_msgpack(item.payload))
            break
    for item in items:
        if item.type == ItemType.FORM_DATA:
            for key, value in iter_form_data(item.payload):
                if key == "sentry":
                    candidates.append(_event_id_from_json(value.encode()))
                    break
                if key == "sentry[event_id]":
                    candidates.append(value)
                    break
            break
    for candidate in candidates:
        if candidate is not None:
            event_id = normalize_event_id(candidate)
            if event_id is not None:
                return event_id
    return None
