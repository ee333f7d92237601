"""Reading request bodies within limits, before and after decompression.

The wire body is read with a running cap (a ``Content-Length`` above the limit is refused before
reading anything), then decoded with :func:`relay.protocol.encoding.decode_body`, whose decoders
stop as soon as their output passes the same limit. A gzip bomb therefore costs at most about
``limit`` bytes of wire data and ``limit`` bytes of output, and is answered 413.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from relay.errors import BadRequest, PayloadTooLarge
from relay.protocol.encoding import decode_body

TOO_LARGE = "request content exceeded size limits"


async def read_raw_body(request: web.Request, limit: int) -> bytes:
    """The body as sent (still encoded), refusing more than ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(TOO_LARGE)
    if length is not None:
        return await request.content.readexactly(length) if length else b""
    # Chunked upload: accumulate with a running cap instead of trusting the sender.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: web.Request, limit: int, *, allow_empty: bool = False) -> bytes:
    """The decoded body, refusing more than ``limit`` bytes on the wire or once inflated.

    An empty body is refused with 400 "empty request body" unless ``allow_empty``.
    """
    try:
        raw = await read_raw_body(request, limit)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        # A truncated upload (the client went away or lied about the length).
        raise BadRequest("invalid request body") from exc
    body = decode_body(raw, request.headers.get("Content-Encoding"), limit)
    if not body and not allow_empty:
        raise BadRequest("empty request body")
    return body
