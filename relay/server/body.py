"""Reading request bodies within limits, before and after decompression."""

from __future__ import annotations

from aiohttp import web

from relay.errors import BadRequest, PayloadTooLarge
from relay.protocol.encoding import decode_body

_TOO_LARGE = "request content exceeded size limits"


async def read_body(request: web.Request, limit: int) -> bytes:
    """The decoded body, refusing more than ``limit`` bytes on the wire or once inflated."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(_TOO_LARGE)
    if length is not None:
        raw = await request.content.readexactly(length) if length else b""
    else:
        # Chunked upload: accumulate with a running cap instead of trusting the sender.
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(_TOO_LARGE)
            chunks.append(chunk)
        raw = b"".join(chunks)
    body = decode_body(raw, request.headers.get("Content-Encoding"), limit)
    if not body:
        raise BadRequest("empty request body")
    return body
