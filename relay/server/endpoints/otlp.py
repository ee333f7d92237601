"""OTLP/HTTP: ``POST /api/{project_id}/integration/otlp/v1/{traces,logs}[/]``.

OpenTelemetry exporters send ``ExportTraceServiceRequest``/``ExportLogsServiceRequest`` as
protobuf (``application/x-protobuf``) or JSON (``application/json``). Like Relay, the endpoint
does not decode them: the body becomes an ``integration`` item (OTel spans or logs, JSON or
protobuf) that is expanded into spans or logs further down the chain. Logs require the
``organizations:ourlogs-ingestion`` feature, recorded in the envelope's ``required_features``.

Answers follow the OTLP/HTTP spec in the request's encoding: success is an empty
``Export*ServiceResponse`` (``{}`` or zero protobuf bytes); errors are a ``Status`` message
(``{"code": <gRPC code>, "message": ...}``) with Relay's HTTP status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from aiohttp import web

from relay.errors import RateLimited, RelayError, ServiceUnavailable
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.server.body import read_body
from relay.server.endpoints.common import EndpointContext, handle_envelope, request_meta
from relay.server.endpoints.security import RELAY_CLIENT

JSON: Final = "json"
PROTOBUF: Final = "protobuf"
_FORMATS: Final = {"application/json": JSON, "application/x-protobuf": PROTOBUF}
_LOGS_FEATURE: Final = "organizations:ourlogs-ingestion"

# gRPC status codes for HTTP statuses, as Relay maps them.
_GRPC_CODES: Final = {
    400: 3, 415: 3, 401: 16, 403: 7, 404: 5, 413: 8, 429: 8, 501: 12, 502: 14, 503: 14, 504: 4,
}  # fmt: skip


def grpc_code(status: int) -> int:
    """The gRPC status code Relay reports for an HTTP status."""
    code = _GRPC_CODES.get(status)
    if code is not None:
        return code
    return 13 if status >= 500 else 2


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int32 values are encoded as 64-bit two's complement
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_status_protobuf(code: int, message: str) -> bytes:
    """``google.rpc.Status`` with ``code`` (field 1) and ``message`` (field 2)."""
    out = b""
    if code:
        out += b"\x08" + _varint(code)
    raw = message.encode()
    if raw:
        out += b"\x12" + _varint(len(raw)) + raw
    return out


def otlp_error(fmt: str, status: int, message: str, headers: dict[str, str]) -> web.Response:
    """An OTLP error answer in the request's encoding."""
    code = grpc_code(status)
    if fmt == PROTOBUF:
        body = encode_status_protobuf(code, message)
        content_type = "application/x-protobuf"
    else:
        body = msgspec.json.encode({"code": code, "message": message})
        content_type = "application/json"
    return web.Response(body=body, status=status, headers=headers, content_type=content_type)


def _success(fmt: str) -> web.Response:
    if fmt == PROTOBUF:
        return web.Response(body=b"", content_type="application/x-protobuf")
    return web.Response(body=b"{}", content_type="application/json")


def otlp_routes(ctx: EndpointContext) -> list[web.RouteDef]:
    """Routes for OTLP traces and logs, with and without the trailing slash."""
    limit = int(ctx.config.limits.max_container_size)

    def handler(product: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            raw_type = request.headers.get("Content-Type", "")
            fmt = _FORMATS.get(raw_type.split(";", 1)[0].strip().lower())
            if fmt is None:
                return otlp_error(JSON, 415, f"unsupported content type: {raw_type}", {})
            try:
                meta = request_meta(request)
                body = await read_body(request, limit, allow_empty=True)
                meta.client = RELAY_CLIENT
                content_type = f"application/vnd.sentry.integration.otel.{product}+{fmt}"
                item = Item.new(ItemType.INTEGRATION, body, content_type=content_type)
                headers: dict[str, object] = {}
                if product == "logs":
                    headers["required_features"] = [_LOGS_FEATURE]
                await handle_envelope(ctx, Envelope(headers, [item]), meta)
            except RelayError as exc:
                extra: dict[str, str] = {}
                if isinstance(exc, RateLimited | ServiceUnavailable):
                    extra["Retry-After"] = str(max(1, round(exc.retry_after)))
                return otlp_error(fmt, exc.status, exc.detail, extra)
            return _success(fmt)

        return handle

    routes: list[web.RouteDef] = []
    for name, product in (("traces", "spans"), ("logs", "logs")):
        handle = handler(product)
        for suffix in ("", "/"):
            path = f"/api/{{project_id}}/integration/otlp/v1/{name}{suffix}"
            routes.append(web.post(path, handle))
    return routes
