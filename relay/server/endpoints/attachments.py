"""The attachment endpoint: ``POST /api/{project_id}/events/{event_id}/attachments/``.

A multipart upload of attachments for an event sent separately; every file field becomes an
``event.attachment``. The whole request is limited to ``max_attachments_size``; the answer is
an empty 201.
"""

from __future__ import annotations

from aiohttp import web

from relay.errors import BadRequest
from relay.protocol.envelope import Envelope, normalize_event_id
from relay.protocol.items import AttachmentType
from relay.protocol.multipart import Part
from relay.server.body import read_body
from relay.server.endpoints.common import EndpointContext, handle_envelope, request_meta
from relay.server.endpoints.multipart import multipart_items, request_parts


def _plain_attachment(_: Part) -> str:
    return AttachmentType.ATTACHMENT


def attachment_routes(ctx: EndpointContext) -> list[web.RouteDef]:
    """The route for ``/api/{project_id}/events/{event_id}/attachments/``."""
    config = ctx.config

    async def attachments(request: web.Request) -> web.Response:
        meta = request_meta(request)
        event_id = normalize_event_id(request.match_info["event_id"])
        if event_id is None:
            raise BadRequest("invalid event id in the path")
        body = await read_body(request, int(config.limits.max_attachments_size))
        parts = request_parts(request, body)
        items = multipart_items(parts, config, _plain_attachment, lambda _: False)
        envelope = Envelope({"event_id": event_id}, items)
        await handle_envelope(ctx, envelope, meta)
        return web.Response(status=201)

    return [web.post("/api/{project_id}/events/{event_id}/attachments/", attachments)]
