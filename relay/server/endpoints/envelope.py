"""The ``envelope`` endpoint: ``POST /api/{project_id}/envelope/``.

Auth comes from the request (headers, query) like everywhere else. Only when the request has
none at all does Relay read the envelope header's ``dsn`` instead; an envelope whose first line
has no valid DSN is then refused with 401 "bad envelope authentication header".
"""

from __future__ import annotations

import uuid

import msgspec
from aiohttp import web

from relay.errors import AuthError, BadRequest
from relay.protocol.auth import Auth, parse_dsn, validate_auth
from relay.protocol.items import ItemType
from relay.server.body import read_body
from relay.server.endpoints.common import (
    EndpointContext,
    InternalEnvelope,
    handle_envelope,
    json_id,
    parse_request_envelope,
)
from relay.server.request_meta import (
    MissingAuth,
    build_meta,
    parse_project_id,
    request_auth,
)

_BAD_ENVELOPE_AUTH = "bad envelope authentication header"


def envelope_routes(ctx: EndpointContext) -> list[web.RouteDef]:
    """Routes for ``/api/{project_id}/envelope/`` (and ``/api/envelope/``, project from the DSN)."""
    limits = ctx.config.limits
    ingestor = ctx.ingestor

    async def envelope(request: web.Request) -> web.Response:
        path_project = parse_project_id(request.match_info.get("project_id"))
        auth: Auth | None
        try:
            auth = request_auth(request, None)
        except MissingAuth:
            auth = None
        body = await read_body(request, limits.max_envelope_size)
        if auth is None:
            _check_dsn_auth(body)
        env = parse_request_envelope(body)
        project_id = path_project
        if auth is None:
            dsn = parse_dsn(str(env.dsn))
            auth = Auth(public_key=dsn.public_key)
            validate_auth(auth)
            # With DSN auth, Relay takes the project from the DSN, not from the path.
            project_id = dsn.numeric_project_id
        if project_id is None:
            if not env.dsn:
                raise BadRequest("missing project id")
            project_id = parse_dsn(env.dsn).numeric_project_id
        if project_id is None:
            raise BadRequest("missing project id")
        trusted = ingestor.is_trusted_relay(request, body)
        if not trusted and any(item.type == ItemType.INTEGRATION for item in env.items):
            # Integration items are Relay-internal; only another relay of ours may send them.
            raise InternalEnvelope()
        meta = build_meta(request, auth, project_id, env, trusted_relay=trusted)
        if env.event_id is None and env.event_item() is not None:
            env.headers["event_id"] = uuid.uuid4().hex
        await handle_envelope(ctx, env, meta)
        return json_id(env.event_id)

    # Like Relay, only with the trailing slash: other spellings go to the forward endpoint.
    return [web.post("/api/{project_id}/envelope/", envelope), web.post("/api/envelope/", envelope)]


def _check_dsn_auth(body: bytes) -> None:
    """Relay reads the first line as the request meta when the request had no auth."""
    line = body.split(b"\n", 1)[0]
    try:
        header = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        raise AuthError(_BAD_ENVELOPE_AUTH) from exc
    dsn = header.get("dsn") if isinstance(header, dict) else None
    if not isinstance(dsn, str):
        raise AuthError(_BAD_ENVELOPE_AUTH)
    try:
        parsed = parse_dsn(dsn)
    except AuthError as exc:
        raise AuthError(_BAD_ENVELOPE_AUTH) from exc
    if parsed.numeric_project_id is None:
        raise AuthError(_BAD_ENVELOPE_AUTH)
