"""The one place where errors become HTTP responses: ``{"detail": ..., "causes": [...]}`` JSON.

Relay renders every rejection as an ``ApiErrorResponse``: ``detail`` is the error's message and
``causes`` (left out when empty) the messages of the errors that led to it. We take the causes
from the exception chain (``raise ... from exc``), so an endpoint only has to chain the low-level
error to have it reported. Never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from relay.errors import RateLimited, RelayError, ServiceUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: At most this many causes are rendered (chains are short; this only bounds odd cases).
_MAX_CAUSES = 8


def error_body(detail: str, causes: list[str] | None = None) -> bytes:
    """Relay's error JSON: ``{"detail": ...}`` plus ``causes`` when there are any."""
    body: dict[str, object] = {"detail": detail}
    if causes:
        body["causes"] = causes
    return msgspec.json.encode(body)


def error_response(
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    causes: list[str] | None = None,
) -> web.Response:
    """A JSON error body the way Relay writes it."""
    return web.Response(
        body=error_body(detail, causes),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def error_causes(exc: BaseException) -> list[str]:
    """The messages of the errors ``exc`` was raised from, outermost first."""
    causes: list[str] = []
    cause = exc.__cause__
    while cause is not None and len(causes) < _MAX_CAUSES:
        text = str(cause)
        if text:
            causes.append(text)
        cause = cause.__cause__
    return causes


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map RelayError (and anything unexpected) onto a JSON answer."""
    try:
        return await handler(request)
    except RelayError as exc:
        headers: dict[str, str] = dict(getattr(exc, "headers", None) or {})
        if isinstance(exc, RateLimited | ServiceUnavailable):
            headers.setdefault("Retry-After", str(max(1, round(exc.retry_after))))
        if isinstance(exc, RateLimited) and exc.rate_limits:
            headers.setdefault("X-Sentry-Rate-Limits", exc.rate_limits)
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc.detail)
        else:
            log.debug(
                "%s %s rejected (%s): %s", request.method, request.path, exc.status, exc.detail
            )
        return error_response(exc.status, exc.detail, headers, error_causes(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {
            name: value
            for name, value in exc.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        return error_response(exc.status, exc.reason or "error", kept)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal server error")
