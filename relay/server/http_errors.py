"""The one place where errors become HTTP responses: ``{"detail": ...}`` JSON, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from relay.errors import RateLimited, RelayError, ServiceUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error body the way Relay writes it."""
    return web.json_response({"detail": detail}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map RelayError (and anything unexpected) onto a JSON answer."""
    try:
        return await handler(request)
    except RelayError as exc:
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited | ServiceUnavailable):
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc.detail)
        else:
            log.debug(
                "%s %s rejected (%s): %s", request.method, request.path, exc.status, exc.detail
            )
        return error_response(exc.status, exc.detail, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason or "error", dict(exc.headers))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal server error")
