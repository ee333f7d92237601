"""Crash reports without an SDK: the Unreal Engine crash reporter, and cron check-ins.

* ``POST /api/{project_id}/unreal/{sentry_key}/``: the key is in the path (the crash reporter
  cannot send headers). The body, an Unreal crash archive, becomes an ``unreal_report`` item
  expanded further down the chain; ``?UserID=`` goes into the ``unreal_user_id`` envelope
  header. The answer is the new event id as plain text.
* ``/api/{project_id}/cron/{monitor_slug}[/{sentry_key}][/]`` (GET or POST): a monitor
  check-in from ``curl`` in a crontab, from query parameters or a JSON body. Answered 202.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import msgspec
from aiohttp import web

from relay.errors import BadRequest, InvalidJson
from relay.protocol.envelope import Envelope, Item, normalize_event_id
from relay.protocol.items import ItemType
from relay.server.body import read_body
from relay.server.crash_expansion import UNREAL_USER_HEADER
from relay.server.endpoints.common import (
    EmptyBody,
    EndpointContext,
    handle_envelope,
    request_meta,
    text_event_id,
)

#: The client Relay records for check-ins sent without an SDK.
CHECK_IN_CLIENT = "relay-http"
_CHECK_IN_STATUSES = frozenset({"ok", "error", "in_progress", "missed", "unknown"})
_NIL_UUID = "0" * 32


def _status(value: object) -> str:
    # Relay's CheckInStatus: unknown strings are "unknown"; a non-string is an error.
    if not isinstance(value, str):
        raise BadRequest("invalid check-in status")
    return value if value in _CHECK_IN_STATUSES else "unknown"


def _check_in_id(value: object) -> str:
    if value is None:
        return _NIL_UUID
    event_id = normalize_event_id(value) if isinstance(value, str) else None
    if event_id is None:
        raise BadRequest("invalid check_in_id")
    # Relay writes event ids in the simple form (32 hex digits).
    return event_id


def check_in_from_query(query: Any, slug: str) -> dict[str, Any]:
    """A check-in from ``?status=...&check_in_id=...&environment=...&duration=...``."""
    if "status" not in query:
        raise BadRequest("Failed to deserialize query string: missing field `status`")
    check_in: dict[str, Any] = {
        "check_in_id": _check_in_id(query.get("check_in_id")),
        "monitor_slug": slug,
        "status": _status(query["status"]),
    }
    if "environment" in query:
        check_in["environment"] = query["environment"]
    if "duration" in query:
        try:
            duration = float(query["duration"])
        except ValueError:
            raise BadRequest("Failed to deserialize query string: invalid duration") from None
        if not math.isfinite(duration):
            raise BadRequest("Failed to deserialize query string: invalid duration")
        check_in["duration"] = duration
    return check_in


def check_in_from_json(body: bytes, slug: str) -> dict[str, Any]:
    """A check-in from a JSON body; the path's slug wins over the body's."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidJson("Failed to parse the request body as JSON") from exc
    if not isinstance(data, dict) or "status" not in data:
        raise InvalidJson("Failed to deserialize the JSON body: missing field `status`")
    check_in = dict(data)
    check_in["check_in_id"] = _check_in_id(data.get("check_in_id"))
    check_in["monitor_slug"] = slug
    check_in["status"] = _status(data["status"])
    for optional in ("environment", "duration", "monitor_config", "contexts"):
        if check_in.get(optional, 0) is None:
            del check_in[optional]
    duration = check_in.get("duration")
    if isinstance(duration, int) and not isinstance(duration, bool):
        # Relay reads the duration as f64 and writes it back as a float.
        check_in["duration"] = float(duration)
    return check_in


def crash_routes(ctx: EndpointContext) -> list[web.RouteDef]:
    """Routes for ``unreal/{sentry_key}/`` and the four ``cron/`` forms."""
    limits = ctx.config.limits

    async def unreal(request: web.Request) -> web.Response:
        meta = request_meta(request, path_key=request.match_info["sentry_key"])
        body = await read_body(request, int(limits.max_attachments_size), allow_empty=True)
        if not body:
            raise EmptyBody()
        event_id = uuid.uuid4().hex
        headers: dict[str, Any] = {"event_id": event_id}
        user_id = request.query.get("UserID")
        if user_id is not None:
            headers[UNREAL_USER_HEADER] = user_id
        item = Item.new(ItemType.UNREAL_REPORT, body, content_type="application/octet-stream")
        await handle_envelope(ctx, Envelope(headers, [item]), meta)
        return text_event_id(event_id)

    async def cron(request: web.Request) -> web.Response:
        meta = request_meta(request, path_key=request.match_info.get("sentry_key"))
        slug = request.match_info["monitor_slug"]
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            body = await read_body(request, int(limits.max_event_size))
            check_in = check_in_from_json(body, slug)
        else:
            check_in = check_in_from_query(request.query, slug)
        if meta.client is None:
            meta.client = CHECK_IN_CLIENT
        item = Item.new(
            ItemType.CHECK_IN, msgspec.json.encode(check_in), content_type="application/json"
        )
        await handle_envelope(ctx, Envelope({"event_id": uuid.uuid4().hex}, [item]), meta)
        return web.Response(status=202)

    routes = [web.post("/api/{project_id}/unreal/{sentry_key}/", unreal)]
    for path in (
        "/api/{project_id}/cron/{monitor_slug}/{sentry_key}",
        "/api/{project_id}/cron/{monitor_slug}/{sentry_key}/",
        "/api/{project_id}/cron/{monitor_slug}",
        "/api/{project_id}/cron/{monitor_slug}/",
    ):
        routes += [web.get(path, cron, allow_head=False), web.post(path, cron)]
    return routes
