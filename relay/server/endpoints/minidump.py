"""The ``minidump`` endpoint: ``POST /api/{project_id}/minidump[/]``.

The dump comes as the body (Content-Type ``application/octet-stream`` or
``application/x-dmp``) or as the ``upload_file_minidump`` field of a multipart form, next to
other attachments and ``sentry[...]`` form fields. The answer is the event id as a hyphenated
UUID in plain text, which Breakpad/Crashpad clients expect; rate limits are never answered with
429 here because crash reporters retry.
"""

from __future__ import annotations

import contextlib
import uuid

from aiohttp import web

from relay.errors import PayloadTooLarge, RateLimited, RelayError
from relay.kafka.outcomes import OutcomeCode
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import AttachmentType, DataCategory, ItemType
from relay.protocol.minidump import (
    MINIDUMP_CONTENT_TYPE,
    MINIDUMP_FIELD_NAME,
    MissingMinidump,
    decode_minidump,
    remove_container_extension,
    validate_minidump,
)
from relay.protocol.multipart import Part, embedded_boundary, parse_multipart
from relay.protocol.objectstore import is_attachment_ref
from relay.protocol.project_config import ProjectState
from relay.server.body import read_body
from relay.server.endpoints.common import (
    EndpointContext,
    ItemTooLarge,
    handle_envelope,
    request_meta,
    text_event_id,
)
from relay.server.endpoints.crash_uploads import (
    CrashUploads,
    Decision,
    crash_uploads,
    unread_item,
    upload_or_drop,
)
from relay.server.endpoints.multipart import event_id_from_items, multipart_items, request_parts
from relay.server.endpoints.project_fetch import endpoint_project
from relay.server.outcomes import scoping_for
from relay.server.request_meta import RequestMeta

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


async def _emit_rejected(
    ctx: EndpointContext,
    meta: RequestMeta,
    state: ProjectState | None,
    rejected: list[tuple[Item, str]],
    error_reason: str | None,
) -> None:
    """Outcomes for what the upload lost: its error (if it failed) and dropped items."""
    outcomes = ctx.outcomes
    if outcomes is None or (not rejected and error_reason is None):
        return
    if state is None:
        # Only for the scoping (organization, key id); a missing config is not an error here.
        try:
            state = await ctx.ingestor.projects.get(meta.public_key, ctx.config.http.timeout)
        except Exception:
            state = None
    scoping = scoping_for(meta, state)
    invalid = int(OutcomeCode.INVALID)
    if error_reason is not None:
        # The crash the upload would have become.
        outcomes.track(scoping, invalid, error_reason, int(DataCategory.ERROR), 1)
    for item, reason in rejected:
        for category, quantity in item.quantities():
            outcomes.track(scoping, invalid, reason, int(category), quantity)


def minidump_routes(ctx: EndpointContext) -> list[web.RouteDef]:
    """Routes for ``/api/{project_id}/minidump`` with and without the trailing slash."""
    config = ctx.config
    limits = config.limits
    max_attachment = int(limits.max_attachment_size)

    async def raw_items(
        request: web.Request, rejected: list[tuple[Item, str]], uploads: CrashUploads | None
    ) -> list[Item]:
        dump_uploads = uploads is not None and uploads.minidumps is Decision.UPLOAD
        try:
            body = await read_body(
                request, int(limits.max_upload_size) if dump_uploads else max_attachment
            )
        except PayloadTooLarge:
            raise ItemTooLarge("attachment:minidump") from None
        if uploads is not None and uploads.uploads(AttachmentType.MINIDUMP, len(body)):
            placeholder = await upload_or_drop(
                ctx, uploads, body, AttachmentType.MINIDUMP, _MINIDUMP_FILENAME,
                MINIDUMP_CONTENT_TYPE, rejected,
            )  # fmt: skip
            assert placeholder is not None  # a failed dump upload raises
            return [placeholder]
        item = Item.new(
            ItemType.ATTACHMENT,
            body,
            attachment_type=AttachmentType.MINIDUMP,
            filename=_MINIDUMP_FILENAME,
            content_type=MINIDUMP_CONTENT_TYPE,
        )
        try:
            item.set_payload(_decode(body, max_attachment))
        except RelayError as exc:
            rejected.append((item, exc.reason))
            raise
        return [item]

    async def multipart_upload(
        request: web.Request,
        rejected: list[tuple[Item, str]],
        uploads: CrashUploads | None,
        unread: list[Item],
    ) -> list[Item]:
        body = await read_body(
            request, int(limits.max_upload_size) + int(limits.max_attachments_size)
        )
        parts = request_parts(request, body)
        inline: list[Part] = []
        to_upload: list[tuple[Part, str]] = []
        for part in parts:
            attachment_type = infer_minidump_field_type(part)
            if uploads is None or part.filename is None:
                inline.append(part)
            elif uploads.decision(attachment_type) is Decision.DROP:
                unread.append(unread_item(attachment_type, part.filename))
            elif uploads.uploads(attachment_type, len(part.data)):
                to_upload.append((part, attachment_type))
            else:
                inline.append(part)
        # Uploaded files first: if the rest of the request then fails, they are lost with it
        # (and counted with their uploaded size), as Relay counts the files it has read.
        placeholders: list[Item] = []
        for part, attachment_type in to_upload:
            assert uploads is not None
            placeholder = await upload_or_drop(
                ctx, uploads, part.data, attachment_type, part.filename,
                part.content_type, rejected,
            )  # fmt: skip
            if placeholder is not None:
                placeholders.append(placeholder)
        items = multipart_items(
            inline,
            config,
            infer_minidump_field_type,
            # Oversized ordinary attachments are dropped; an oversized dump is an error.
            lambda attachment_type: attachment_type != AttachmentType.MINIDUMP,
            rejected,
            earlier=placeholders,
        )
        items.extend(placeholders)
        try:
            dump = next((i for i in items if i.attachment_type == AttachmentType.MINIDUMP), None)
            if dump is None:
                raise MissingMinidump()
            if not is_attachment_ref(dump):
                _unwrap_minidump(dump, max_attachment)
        except RelayError as exc:
            rejected.extend((item, exc.reason) for item in items)
            raise
        return items

    async def minidump(request: web.Request) -> web.Response:
        meta = request_meta(request)
        state = await endpoint_project(ctx, meta)
        uploads = crash_uploads(ctx, meta, state)
        if uploads is not None and uploads.minidumps is Decision.DROP:
            # Errors are rate limited: the crash is dropped unread, and still answered as
            # accepted because crash reporters retry.
            _track_rate_limited(ctx, meta, state, [], uploads.drop_reason, crash=True)
            return text_event_id(uuid.uuid4().hex)
        rejected: list[tuple[Item, str]] = []
        unread: list[Item] = []
        try:
            if request.headers.get("Content-Type", "") in _RAW_CONTENT_TYPES:
                items = await raw_items(request, rejected, uploads)
            else:
                items = await multipart_upload(request, rejected, uploads, unread)
        except RelayError as exc:
            await _emit_rejected(ctx, meta, state, rejected, exc.reason)
            raise
        await _emit_rejected(ctx, meta, state, rejected, None)
        if unread and uploads is not None:
            _track_rate_limited(ctx, meta, state, unread, uploads.drop_reason, crash=False)
        event_id = event_id_from_items(items) or uuid.uuid4().hex
        envelope = Envelope({"event_id": event_id}, items)
        # Crash reporters retry on 429 and would send the dump again: the limits are applied
        # (the dropped items are outcomes) but the answer is a success.
        with contextlib.suppress(RateLimited):
            await handle_envelope(ctx, envelope, meta)
        return text_event_id(event_id)

    return [
        web.post("/api/{project_id}/minidump", minidump),
        web.post("/api/{project_id}/minidump/", minidump),
    ]


def _track_rate_limited(
    ctx: EndpointContext,
    meta: RequestMeta,
    state: ProjectState | None,
    items: list[Item],
    reason: str | None,
    *,
    crash: bool,
) -> None:
    """Outcomes for a crash (or files) dropped by a known rate limit before being read."""
    outcomes = ctx.outcomes
    if outcomes is None:
        return
    scoping = scoping_for(meta, state)
    limited = int(OutcomeCode.RATE_LIMITED)
    if crash:
        outcomes.track(scoping, limited, reason, int(DataCategory.ERROR), 1)
    for item in items:
        for category, quantity in item.quantities():
            outcomes.track(scoping, limited, reason, int(category), quantity)
