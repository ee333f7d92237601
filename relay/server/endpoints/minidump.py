"""The ``minidump`` endpoint: ``POST /api/{project_id}/minidump[/]``.

The dump comes as the body (Content-Type ``application/octet-stream`` or
``application/x-dmp``) or as the ``upload_file_minidump`` field of a multipart form, next to
other attachments and ``sentry[...]`` form fields. The answer is the event id as a hyphenated
UUID in plain text, which Breakpad/Crashpad clients expect; rate limits are never answered with
429 here because crash reporters retry.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from relay.errors import PayloadTooLarge
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import AttachmentType, ItemType
from relay.protocol.minidump import (
    MINIDUMP_CONTENT_TYPE,
    MINIDUMP_FIELD_NAME,
    MissingMinidump,
    decode_minidump,
    remove_container_extension,
    validate_minidump,
)
from relay.protocol.multipart import Part, embedded_boundary, parse_multipart
from relay.server.body import read_body
from relay.server.endpoints.common import (
    EndpointContext,
    ItemTooLarge,
    handle_envelope,
    request_meta,
    text_event_id,
)
from relay.server.endpoints.multipart import event_id_from_items, multipart_items, request_parts

_RAW_CONTENT_TYPES = frozenset({"application/octet-stream", "application/x-dmp"})
_MINIDUMP_FILENAME = "Minidump"
_FIELD_TYPES = {
    MINIDUMP_FIELD_NAME: AttachmentType.MINIDUMP,
    "__sentry-breadcrumb1": AttachmentType.BREADCRUMBS,
    "__sentry-breadcrumb2": AttachmentType.BREADCRUMBS,
    "__sentry-event": AttachmentType.EVENT_PAYLOAD,
    "view-hierarchy.json": AttachmentType.VIEW_HIERARCHY,
}


def infer_minidump_field_type(part: Part) -> str:
    """The attachment type of a file field of a minidump upload."""
    filename = part.filename or ""
    if filename.endswith(".nv-gpudmp"):
        return AttachmentType.NV_GPU_DUMP
    if filename.endswith(".nvdbg"):
        return AttachmentType.NV_SHADER_DEBUG
    return _FIELD_TYPES.get(part.name or "", AttachmentType.ATTACHMENT)


def _decode(data: bytes, limit: int) -> bytes:
    try:
        payload = decode_minidump(data, limit)
    except PayloadTooLarge:
        raise ItemTooLarge("attachment:minidump") from None
    validate_minidump(payload)
    return payload


def _unwrap_minidump(item: Item, limit: int) -> None:
    payload = item.payload
    boundary = embedded_boundary(payload)
    if boundary is not None:
        # Some clients nest a whole multipart body in the minidump field.
        for part in parse_multipart(payload, boundary):
            if part.name == MINIDUMP_FIELD_NAME:
                payload = part.data
                break
    item.set_payload(_decode(payload, limit), MINIDUMP_CONTENT_TYPE)
    filename = item.filename
    if filename is not None:
        item.headers["filename"] = remove_container_extension(filename)


def minidump_routes(ctx: EndpointContext) -> list[web.RouteDef]:
    """Routes for ``/api/{project_id}/minidump`` with and without the trailing slash."""
    config = ctx.config
    limits = config.limits
    max_attachment = int(limits.max_attachment_size)

    async def minidump(request: web.Request) -> web.Response:
        meta = request_meta(request)
        content_type = request.headers.get("Content-Type", "")
        items: list[Item]
        if content_type in _RAW_CONTENT_TYPES:
            try:
                body = await read_body(request, max_attachment)
            except PayloadTooLarge:
                raise ItemTooLarge("attachment:minidump") from None
            item = Item.new(
                ItemType.ATTACHMENT,
                _decode(body, max_attachment),
                attachment_type=AttachmentType.MINIDUMP,
                filename=_MINIDUMP_FILENAME,
                content_type=MINIDUMP_CONTENT_TYPE,
            )
            items = [item]
        else:
            body = await read_body(
                request, int(limits.max_upload_size) + int(limits.max_attachments_size)
            )
            parts = request_parts(request, body)
            items = multipart_items(
                parts,
                config,
                infer_minidump_field_type,
                # Oversized ordinary attachments are dropped; an oversized dump is an error.
                lambda attachment_type: attachment_type != AttachmentType.MINIDUMP,
            )
            dump = next((i for i in items if i.attachment_type == AttachmentType.MINIDUMP), None)
            if dump is None:
                raise MissingMinidump()
            _unwrap_minidump(dump, max_attachment)
        event_id = event_id_from_items(items) or uuid.uuid4().hex
        envelope = Envelope({"event_id": event_id}, items)
        await handle_envelope(ctx, envelope, meta)
        return text_event_id(event_id)

    return [
        web.post("/api/{project_id}/minidump", minidump),
        web.post("/api/{project_id}/minidump/", minidump),
    ]
