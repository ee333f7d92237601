"""Browser reports: ``security`` / ``csp-report`` (CSP, HPKP, Expect-CT, Expect-Staple) and ``nel``.

Browsers post these without an SDK: auth is the ``sentry_key`` query parameter, the body is the
report as the browser wrote it. Relay only checks the media type here and wraps the body:

* security reports: ``application/json``, ``application/csp-report`` or
  ``application/reports+json`` (anything else: an empty 415). A JSON array (Reporting API
  batches) becomes one envelope per report. Each report is a ``raw_security`` item, with the
  ``sentry_release``/``sentry_environment`` query parameters as item headers; it is parsed into
  an event further down the chain.
* NEL: ``application/json`` or ``application/reports+json``; the body becomes an
  ``integration`` item (browser NEL logs, expanded into logs by
  relay.server.log_integrations), answered 200 even when rate limited.
"""

from __future__ import annotations

import uuid

import msgspec
from aiohttp import web

from relay import __version__
from relay.errors import BadRequest, RateLimited
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.server.body import read_body
from relay.server.endpoints.common import (
    EmptyBody,
    EndpointContext,
    handle_envelope,
    request_meta,
)

#: The client name Relay puts on envelopes it creates itself (integrations).
RELAY_CLIENT = f"sentry.relay/{__version__}"
NEL_CONTENT_TYPE = "application/vnd.sentry.integration.browser.nel+json"

_reports_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def parse_mime(value: str | None) -> tuple[str, str, str | None]:
    """``(type, subtype, suffix)`` of a Content-Type, lower case; 400 if it is not a MIME type.

    ``application/reports+json`` gives ``("application", "reports", "json")``.
    """
    essence = (value or "").split(";", 1)[0].strip().lower()
    main, sep, sub = essence.partition("/")
    if not sep or not main or not sub or any(c in essence for c in ' \t"(),:<>@[\\]{}'):
        raise BadRequest("invalid Content-Type: not a MIME type")
    subtype, plus, suffix = sub.partition("+")
    if not subtype or (plus and not suffix):
        raise BadRequest("invalid Content-Type: not a MIME type")
    return main, subtype, suffix or None


def is_security_mime(mime: tuple[str, str, str | None]) -> bool:
    """Media types Relay accepts for security reports."""
    return mime in (
        ("application", "json", None),
        ("application", "csp-report", None),
        ("application", "reports", "json"),
    )


def is_nel_mime(mime: tuple[str, str, str | None]) -> bool:
    """Media types Relay accepts for NEL reports."""
    return mime in (("application", "json", None), ("application", "reports", "json"))


def split_reports(body: bytes) -> list[bytes]:
    """One payload per report: the elements of a JSON array, else the body as it is."""
    try:
        reports = _reports_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return [body]
    return [bytes(report) for report in reports]


def security_routes(ctx: EndpointContext) -> list[web.RouteDef]:
    """Routes for ``security/``, ``csp-report/`` and ``nel/``."""
    limits = ctx.config.limits

    async def security(request: web.Request) -> web.Response:
        mime = parse_mime(request.headers.get("Content-Type"))
        meta = request_meta(request)
        body = await read_body(request, int(limits.max_event_size), allow_empty=True)
        if not is_security_mime(mime):
            return web.Response(status=415)
        if not body:
            raise EmptyBody()
        item_headers: dict[str, object] = {}
        for name in ("sentry_release", "sentry_environment"):
            value = request.query.get(name)
            if value is not None:
                item_headers[name] = value
        for report in split_reports(body):
            item = Item.new(
                ItemType.RAW_SECURITY, report, content_type="application/json", **item_headers
            )
            envelope = Envelope({"event_id": uuid.uuid4().hex}, [item])
            await handle_envelope(ctx, envelope, msgspec.structs.replace(meta))
        return web.Response(status=200)

    async def nel(request: web.Request) -> web.Response:
        mime = parse_mime(request.headers.get("Content-Type"))
        meta = request_meta(request)
        body = await read_body(request, int(limits.max_container_size), allow_empty=True)
        if not is_nel_mime(mime):
            return web.Response(status=415)
        if not body:
            raise EmptyBody()
        item = Item.new(ItemType.INTEGRATION, body, content_type=NEL_CONTENT_TYPE)
        meta.client = RELAY_CLIENT
        try:
            await handle_envelope(ctx, Envelope({}, [item]), meta)
        except RateLimited as exc:
            # Browsers do not back off on 429, so Relay never answers it here. Quota limits
            # (they carry X-Sentry-Rate-Limits) already dropped the items with outcomes; a
            # memory-pressure refusal (none) means the data was not taken and is passed on.
            if exc.rate_limits is None:
                raise
        return web.Response(status=200)

    return [
        web.post("/api/{project_id}/security/", security),
        web.post("/api/{project_id}/csp-report/", security),
        web.post("/api/{project_id}/nel/", nel),
    ]
