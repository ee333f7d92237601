"""The legacy ``store`` endpoint: ``POST`` a JSON event, or ``GET ?sentry_data=`` (a pixel).

``POST /api/{project_id}/store/`` takes one event as JSON (also base64 or base64+zlib, see
:mod:`relay.protocol.store`), or an envelope when the Content-Type says so, and answers
``{"id": ...}``. ``GET`` with the event in ``sentry_data`` answers a 1x1 GIF, so that it works
from an ``<img>`` tag. ``/api/store/`` takes the project from the key's config.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from relay.errors import BadRequest
from relay.protocol.envelope import (
    ENVELOPE_CONTENT_TYPE,
    Envelope,
    envelope_from_event,
    normalize_event_id,
    parse_minimal_event,
)
from relay.protocol.items import ItemType
from relay.protocol.store import decode_store_body, is_legacy_python_client, translate_python_json
from relay.server.body import read_body
from relay.server.endpoints.common import (
    EmptyBody,
    EndpointContext,
    InternalEnvelope,
    handle_envelope,
    json_id,
    parse_request_envelope,
    request_meta,
)
from relay.server.request_meta import RequestMeta

#: The 1x1 transparent GIF answered to ``GET`` store requests.
PIXEL = b"GIF89a\x01\x00\x01\x00\x00\xff\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x00;"


def event_envelope(body: bytes, meta: RequestMeta, limit: int) -> Envelope:
    """Turn a store body into an envelope with one event item (Relay's ``parse_event``)."""
    body = decode_store_body(body, limit)
    if not body:
        raise EmptyBody()
    if is_legacy_python_client(meta.client):
        body = translate_python_json(body)
    minimal = parse_minimal_event(body)
    event_id = normalize_event_id(minimal.event_id) if minimal.event_id else None
    return envelope_from_event(body, event_id or uuid.uuid4().hex, event_type=minimal.type)


def _content_type(request: web.Request) -> str:
    # Relay compares the raw header value (without parameters is how SDKs send it).
    return request.headers.get("Content-Type", "").strip().lower()


def store_routes(ctx: EndpointContext) -> list[web.RouteDef]:
    """Routes for ``/api/{project_id}/store/`` and the legacy ``/api/store/``."""
    limit = int(ctx.config.limits.max_event_size)

    async def store_post(request: web.Request) -> web.Response:
        meta = request_meta(request)
        body = await read_body(request, limit)
        if _content_type(request) == ENVELOPE_CONTENT_TYPE:
            env = parse_request_envelope(body)
            if any(item.type == ItemType.INTEGRATION for item in env.items):
                raise InternalEnvelope()
        else:
            env = event_envelope(body, meta, limit)
        await handle_envelope(ctx, env, meta)
        return json_id(env.event_id)

    async def store_get(request: web.Request) -> web.Response:
        meta = request_meta(request)
        data = request.query.get("sentry_data")
        if data is None:
            raise BadRequest("Failed to deserialize query string: missing field `sentry_data`")
        raw = data.encode()
        if len(raw) > limit:
            raise BadRequest("request content exceeded size limits")
        env = event_envelope(raw, meta, limit)
        await handle_envelope(ctx, env, meta)
        return web.Response(body=PIXEL, content_type="image/gif")

    routes: list[web.RouteDef] = []
    # Like Relay, only with the trailing slash: other spellings go to the forward endpoint.
    for path in ("/api/{project_id}/store/", "/api/store/"):
        routes.append(web.post(path, store_post))
        routes.append(web.get(path, store_get, allow_head=False))
    return routes
