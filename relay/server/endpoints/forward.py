"""Forwarding every other ``/api/...`` request to the upstream, as Relay's ``forward`` endpoint.

sentry-cli and SDK extras (release files, chunk uploads, user feedback APIs, ...) talk to
``/api/0/...`` paths Relay does not implement; Relay passes them through unless
``http.forward`` is false. Paths outside ``/api/`` (and ``/api/`` itself) are 404.

The body is decoded (``Content-Encoding``) within a per-path limit (release files and chunk
uploads get larger ones) and sent as is; hop-by-hop headers, ``Host``, ``Content-Encoding`` and
``Content-Length`` are not passed on, ``X-Forwarded-For`` gets the client appended. The upstream's
answer comes back with its status, headers and body. A request that outlives ``http.timeout``
is answered 504, an unreachable upstream 502.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from typing import Final

from aiohttp import web
from multidict import CIMultiDict

from relay.config import Config
from relay.errors import RelayError
from relay.server.body import read_body
from relay.server.ingest import Ingestor
from relay.server.upstream import UpstreamError

_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade"}
)  # fmt: skip
_NOT_FORWARDED: Final = _HOP_BY_HOP | {"host", "content-encoding", "content-length"}
# The upstream client decodes response bodies, so their encoding headers no longer apply.
_NOT_RETURNED: Final = _HOP_BY_HOP | {"content-encoding", "content-length"}

_FILE_UPLOADS: Final = (
    re.compile(fnmatch.translate("/api/0/projects/*/*/releases/*/files/")),
    re.compile(fnmatch.translate("/api/0/projects/*/*/releases/*/dsyms/")),
)
_CHUNK_UPLOADS: Final = re.compile(fnmatch.translate("/api/0/organizations/*/chunk-upload/"))


class GatewayTimeout(RelayError):
    """The upstream did not answer a forwarded request in time."""

    status = 504


class BadGateway(RelayError):
    """The upstream could not be reached for a forwarded request."""

    status = 502


def forward_limit(path: str, config: Config) -> int:
    """The body size limit for a forwarded request to ``path``."""
    limits = config.limits
    if any(pattern.match(path) for pattern in _FILE_UPLOADS):
        return int(limits.max_api_file_upload_size)
    if _CHUNK_UPLOADS.match(path):
        return int(limits.max_api_chunk_upload_size)
    return int(limits.max_api_payload_size)


def forward_route(config: Config, ingestor: Ingestor) -> web.RouteDef:
    """The catch-all route; it must be added after every other route."""

    async def forward(request: web.Request) -> web.StreamResponse:
        path = request.path
        if not config.http.forward or path == "/api/" or not path.startswith("/api/"):
            raise web.HTTPNotFound()
        if path.startswith("/api/relay/"):
            # Relay's own internal namespace is never forwarded.
            raise web.HTTPNotFound()
        allowed = await _allowed_methods(request)
        if allowed:
            # A known endpoint asked with another method: 405, as Relay's router answers.
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        body = await read_body(request, forward_limit(path, config), allow_empty=True)
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _NOT_FORWARDED and name.lower() != "x-forwarded-for"
        )
        forwarded = request.headers.get("X-Forwarded-For", "")
        peer = request.remote or ""
        headers["X-Forwarded-For"] = (
            f"{forwarded}, {peer}" if forwarded and peer else (forwarded or peer)
        )
        try:
            status, resp_headers, data = await asyncio.wait_for(
                ingestor.upstream.request(
                    request.method, request.rel_url.raw_path_qs, body=body,
                    headers=headers, signed=False,
                    timeout=config.http.timeout,
                ),
                config.http.timeout,
            )  # fmt: skip
        except TimeoutError:
            raise GatewayTimeout("upstream request timed out") from None
        except UpstreamError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise GatewayTimeout("upstream request timed out") from None
            raise BadGateway("could not reach the upstream") from exc
        response = web.Response(status=status, body=data)
        for name, value in resp_headers.items():
            if name.lower() not in _NOT_RETURNED:
                response.headers.add(name, value)
        return response

    return web.route("*", "/{tail:.*}", forward)


async def _allowed_methods(request: web.Request) -> set[str]:
    """Methods of other routes whose path matches this request (empty if none does)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    return allowed
