"""The ``envelope`` and ``store`` endpoints.

Handlers only parse and authenticate; :class:`relay.server.ingest.Ingestor` decides what
happens to the data.
"""

from __future__ import annotations

import uuid

import msgspec
from aiohttp import web

from relay.config import Config
from relay.errors import BadRequest, InvalidJson
from relay.protocol.auth import parse_dsn
from relay.protocol.envelope import Envelope, envelope_from_event, parse_envelope
from relay.server.body import read_body
from relay.server.ingest import Ingestor
from relay.server.request_meta import build_meta, parse_project_id, request_auth


def _json_id(event_id: str | None) -> web.Response:
    body = msgspec.json.encode({"id": event_id} if event_id else {})
    return web.Response(body=body, content_type="application/json")


def envelope_routes(config: Config, ingestor: Ingestor) -> list[web.RouteDef]:
    """Routes for ``/api/{project_id}/envelope/`` and ``/api/{project_id}/store/``."""
    limits = config.limits

    async def envelope(request: web.Request) -> web.Response:
        body = await read_body(request, limits.max_envelope_size)
        env = parse_envelope(body)
        auth = request_auth(request, env)
        project_id = parse_project_id(request.match_info.get("project_id"))
        if project_id is None:
            if not env.dsn:
                raise BadRequest("missing project id")
            project_id = parse_project_id(parse_dsn(env.dsn).project_id)
            assert project_id is not None
        trusted = ingestor.is_trusted_relay(request, body)
        meta = build_meta(request, auth, project_id, env, trusted_relay=trusted)
        if env.event_id is None and env.event_item() is not None:
            env.headers["event_id"] = uuid.uuid4().hex
        await ingestor.submit(env, meta)
        return _json_id(env.event_id)

    async def store(request: web.Request) -> web.Response:
        body = await read_body(request, limits.max_event_size)
        auth = request_auth(request, None)
        project_id = parse_project_id(request.match_info.get("project_id"))
        if project_id is None:
            raise BadRequest("missing project id")
        try:
            event = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise InvalidJson(f"invalid JSON data: {exc}") from None
        if not isinstance(event, dict):
            raise InvalidJson("invalid JSON data: expected an object")
        event_id = _event_id(event.get("event_id"))
        env: Envelope = envelope_from_event(body, event_id)
        meta = build_meta(request, auth, project_id, None)
        await ingestor.submit(env, meta)
        return _json_id(event_id)

    routes = []
    for path in ("/api/{project_id}/envelope", "/api/envelope"):
        routes += [web.post(path + "/", envelope), web.post(path, envelope)]
    for path in ("/api/{project_id}/store",):
        routes += [web.post(path + "/", store), web.post(path, store)]
    return routes


def _event_id(raw: object) -> str:
    if raw is None:
        return uuid.uuid4().hex
    if isinstance(raw, str):
        try:
            return uuid.UUID(raw).hex
        except ValueError:
            pass
    raise BadRequest("invalid event id")
