"""Folding duplicate slashes in request paths before routing, as Relay's ``NormalizePath``.

``/api/42/store//`` and ``//api/42/store/`` reach the store endpoint. aiohttp routes a request
before the middlewares run, so this middleware (the innermost one) routes the folded path again
and calls the handler it finds; the outer middlewares (errors, CORS) see the request as usual.
"""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web
from yarl import URL

from relay.server.http_errors import Handler

_SLASHES: Final = re.compile(r"/{2,}")


@web.middleware
async def fold_slashes_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Re-route requests whose path has ``//`` to the path with single slashes."""
    raw_path = request.rel_url.raw_path
    if "//" not in raw_path:
        return await handler(request)
    folded = URL.build(
        path=_SLASHES.sub("/", raw_path), query_string=request.rel_url.raw_query_string,
        encoded=True,
    )  # fmt: skip
    clone = request.clone(rel_url=folded)
    match_info = await request.app.router.resolve(clone)
    match_info.add_app(request.app)
    match_info.freeze()
    # aiohttp has no public way to route a cloned request again; this is what its own
    # dispatcher does for a fresh request.
    clone._match_info = match_info
    return await match_info.handler(clone)
