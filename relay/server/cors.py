"""CORS for the ingestion routes, as Relay answers browsers, and headers on every response."""

from __future__ import annotations

from aiohttp import web

from relay.server.http_errors import Handler

_ALLOW_HEADERS = ", ".join(
    (
        "x-sentry-auth", "x-requested-with", "x-forwarded-for", "origin", "referer", "accept",
        "content-type", "authentication", "authorization", "content-encoding",
        "transfer-encoding",
    )
)  # fmt: skip
_EXPOSE_HEADERS = "x-sentry-error, x-sentry-rate-limits, retry-after"


def _is_cors_route(request: web.Request) -> bool:
    # Ingestion routes are /api/{project_id}/...; relay-to-relay (/api/0/) and internal
    # (/api/relay/) routes are not for browsers.
    path = request.path
    return path.startswith("/api/") and not path.startswith(("/api/0/", "/api/relay/"))


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer preflights; add CORS and resource-policy headers to responses."""
    cors = _is_cors_route(request)
    if cors and request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=200)
        if request.headers.get("Access-Control-Request-Method"):
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = _ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = "3600"
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
    if cors and request.headers.get("Origin") is not None:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = _EXPOSE_HEADERS
        response.headers.add("Vary", "origin, access-control-request-method, "
                                     "access-control-request-headers")  # fmt: skip
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    if isinstance(response, web.HTTPException):
        raise response
    return response
