"""A lean HTTP/1.1 front door for the ingest endpoints; every other request is aiohttp's.

aiohttp costs ~0.045 ms of CPU per request above a bare asyncio Protocol (request and
response objects, its parser's Python side, a stream reader, the writer): a tenth of what a
processing relay spends on an error event. Nearly every SDK request is the same shape,
``POST /api/<id>/envelope/`` (or ``/store/``, older SDKs' events, or a browser's report) with
a ``Content-Length`` body, so that shape is served here:
the head is split and checked in Python, the body buffered, and the request goes through
the same middlewares and the same endpoint function as through aiohttp, with a
:class:`FrontRequest` in place of ``web.Request``.

Anything else, or anything unusual, is handed to aiohttp with the bytes received so far,
and the connection stays aiohttp's from then on: other routes and methods, chunked or
``Expect: 100-continue`` uploads, bodies above :data:`FAST_BODY_MAX` (aiohttp checks their
admission before reading them), heads that are malformed or large, and percent-encoded
paths. aiohttp then answers exactly as it would have (400 for a bad head, ...).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from collections.abc import Callable, Iterable
from functools import partial, update_wrapper
from typing import cast

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict, MultiDictProxy
from yarl import URL

log = logging.getLogger(__name__)

#: Largest body served here. aiohttp buffers this much of a body before it pauses reading
#: anyway (its read buffer's high-water mark), so buffering it whole costs no more memory;
#: larger ones go to aiohttp, whose admission middleware runs before the body is read.
FAST_BODY_MAX = 64 * 1024
#: Largest request head looked at; a larger one is aiohttp's to refuse or accept.
MAX_HEAD = 16 * 1024
#: Buffered bytes of requests behind the one being served before reading pauses.
_PAUSE_AT = FAST_BODY_MAX + MAX_HEAD

# A header line as llhttp takes it strictly: a token, a colon, a value without control
# characters (tab and obs-text allowed); the value's surrounding blanks are not part of it
# (stripped after the match: a lazy value between optional blanks backtracks per character,
# 5x slower on an auth header).
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([^\x00-\x08\x0a-\x1f\x7f]*)")
#: Headers that mean the request is not the simple shape served here.
_HAND_OVER_HEADERS = frozenset({"transfer-encoding", "expect", "upgrade"})


class _Match(dict[str, str]):
    """``match_info``: the path's variables, and the aiohttp route (for metrics labels)."""

    __slots__ = ("route",)

    def __init__(self, project_id: str, route: web.AbstractRoute) -> None:
        super().__init__(project_id=project_id)
        self.route = route


class FrontRequest:
    """What the ingest middlewares and endpoints read of a ``web.Request``.

    The body is complete before the request is served, so ``content`` is the request
    itself and ``readexactly`` returns the body at once.
    """

    __slots__ = (
        "_body",
        "_handler",
        "content_length",
        "head_at",
        "headers",
        "match_info",
        "method",
        "path",
        "query_string",
        "remote",
        "version",
    )

    def __init__(
        self,
        path: str,
        query_string: str,
        headers: CIMultiDict[str],
        remote: str | None,
        content_length: int,
        match_info: _Match,
        version: int,
        handler: Handler,
    ) -> None:
        self.method = "POST"
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.remote = remote
        self.content_length = content_length
        self.match_info = match_info
        #: The minor version of HTTP/1.x.
        self.version = version
        #: Set by the protocol once all ``content_length`` bytes are in.
        self._body = b""
        #: The endpoint behind the middlewares.
        self._handler = handler
        #: When the head arrived (monotonic): a request whose head came before the drain
        #: began is served, though its body came after (relay.server.drain).
        self.head_at = time.monotonic()

    @property
    def query(self) -> MultiDictProxy[str]:
        """The query parameters, decoded as aiohttp decodes them."""
        return URL.build(query_string=self.query_string, encoded=True).query

    @property
    def content(self) -> FrontRequest:
        """The body stream (see the class docstring)."""
        return self

    async def readexactly(self, n: int) -> bytes:
        """The body; ``n`` is always its length (``content_length``)."""
        del n
        return self._body


#: The routes served at the front door, by the endpoint name in their path: SDK envelopes
#: and events, and browsers' security (CSP, ...) and network error reports.
FRONT_ROUTES = {
    name: f"/api/{{project_id}}/{name.decode()}/"
    for name in (b"envelope", b"store", b"security", b"csp-report", b"nel")
}
# The query: visible ASCII but "#" (anything else is for aiohttp's parser to judge).
_REQUEST_LINE = re.compile(
    rb"POST (/api/([0-9]{1,19})/(" + b"|".join(FRONT_ROUTES) + rb")/)"
    rb"(?:\?([\x21\x22\x24-\x7e]*))? HTTP/1\.([01])"
)


def front_routes(app: web.Application) -> dict[bytes, web.AbstractRoute]:
    """The ``POST`` routes of ``app`` that the front door serves, by endpoint name."""
    wanted = {path: name for name, path in FRONT_ROUTES.items()}
    found: dict[bytes, web.AbstractRoute] = {}
    for route in app.router.routes():
        resource = route.resource
        if route.method == "POST" and resource is not None and resource.canonical in wanted:
            found[wanted[resource.canonical]] = route
    return found


def wrap(handler: Handler, middlewares: Iterable[Middleware]) -> Handler:
    """``handler`` behind ``middlewares`` (outermost first), as aiohttp chains them."""
    for middleware in reversed(list(middlewares)):
        # aiohttp calls middlewares with the handler as keyword argument ``handler``.
        handler = update_wrapper(partial(middleware, handler=handler), handler)
    return handler


class FrontDoor:
    """The protocol factory of the main listener: ingest requests here, the rest aiohttp's.

    ``fallback`` makes aiohttp's protocol for a connection (``runner.server``); ``routes``
    are the served endpoints by name (see :data:`FRONT_ROUTES`), each with its handler
    behind the application's middlewares and its aiohttp route.
    """

    def __init__(
        self,
        fallback: Callable[[], asyncio.Protocol],
        routes: dict[bytes, tuple[Handler, web.AbstractRoute]],
        keepalive_timeout: float,
    ) -> None:
        self.fallback = fallback
        self.routes = routes
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[FrontProtocol] = set()
        #: Requests served here (not handed over to aiohttp); the tests read it.
        self.served = 0
        self._date = (0, "")

    def __call__(self) -> FrontProtocol:
        return FrontProtocol(self)

    def date(self) -> str:
        """The ``Date`` header's value, formatted once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, email.utils.formatdate(now, usegmt=True))
        return self._date[1]

    def receiving(self) -> bool:
        """Whether a connection holds part of a request: a head, or a body still arriving
        (shutdown waits for them as for requests being served)."""
        return any(conn.buffer and not conn.busy for conn in self.connections)

    def close(self) -> None:
        """Close every connection still served here (at shutdown, after the drain)."""
        for conn in list(self.connections):
            conn.close()


class FrontProtocol(asyncio.Protocol):
    """One connection, served request by request until it is handed to aiohttp."""

    def __init__(self, door: FrontDoor) -> None:
        self.door = door
        # Made by the listening server, inside its loop.
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.buffer = bytearray()
        #: A request is being served: later bytes wait in the buffer (pipelining).
        self.busy = False
        #: The client does not read its answers: no more requests are served until it does.
        self.write_paused = False
        self.paused = False
        self.closing = False
        #: The client will send no more (half-close): close once the answer is written.
        self.eof = False
        self.idle_since: float | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        #: The head of a request whose body is still arriving: (request, head size).
        self.waiting: tuple[FrontRequest, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) and peer else None
        self.door.connections.add(self)
        self._idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.door.connections.discard(self)
        self.closing = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        # A request being served completes: its data was accepted; the answer goes nowhere.

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.idle_since = None
        if self.busy or self.write_paused:
            if len(self.buffer) > _PAUSE_AT and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
            return
        self._next()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.busy:
            self._resume_reading()
            self._next()

    def eof_received(self) -> bool | None:
        # The client is done sending: what it sent is still answered, then it is closed.
        self.eof = True
        if not self.busy and not self.write_paused:
            self._next()
        return True

    def close(self) -> None:
        """Close the connection (after the response being written, if any)."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _next(self) -> None:
        """Serve the next buffered request, or hand over, or wait for more bytes."""
        if self.closing:
            return
        if not self._start_next() and self.eof:
            # Nothing more will come: what is left is at most an incomplete request.
            self.close()

    def _start_next(self) -> bool:
        """Start serving the next request or hand the connection over; False: no complete
        request is buffered."""
        buffer = self.buffer
        if self.waiting is None:
            if not buffer:
                self._idle()
                return False
            line_end = buffer.find(b"\n")
            if line_end < 0:
                if len(buffer) <= MAX_HEAD:
                    return False
                self._hand_over()
                return True
            line = _REQUEST_LINE.fullmatch(buffer, 0, line_end - 1) if line_end else None
            if line is None or buffer[line_end - 1] != 0x0D:
                self._hand_over()
                return True
            head_end = buffer.find(b"\r\n\r\n", line_end - 1)
            if head_end < 0:
                if len(buffer) <= MAX_HEAD:
                    return False
                self._hand_over()
                return True
            request = self._request(line, bytes(buffer[line_end + 1 : head_end + 2]))
            if request is None:
                self._hand_over()
                return True
            self.waiting = (request, head_end + 4)
        request, head_size = self.waiting
        total = head_size + request.content_length
        if len(buffer) < total:
            return False
        self.waiting = None
        request._body = bytes(buffer[head_size:total])
        del buffer[:total]
        self.busy = True
        self.door.served += 1
        self.loop.create_task(self._serve(request))
        return True

    def _request(self, line: re.Match[bytes], head: bytes) -> FrontRequest | None:
        """The request of a well-formed ingest head with a small ``Content-Length`` body;
        None for anything aiohttp should see."""
        path, project_id, endpoint, query, minor = line.groups()
        served = self.door.routes.get(endpoint)
        if served is None or len(head) > MAX_HEAD:
            return None
        headers: CIMultiDict[str] = CIMultiDict()
        length: int | None = None
        for raw in head.split(b"\r\n")[:-1]:
            header = _HEADER.fullmatch(raw)
            if header is None:
                return None
            name = header[1].decode("ascii")
            value = header[2].strip(b" \t").decode("utf-8", "surrogateescape")
            lower = name.lower()
            if lower == "content-length":
                if length is not None or not value.isdigit() or not value.isascii():
                    return None
                length = int(value)
            elif lower in _HAND_OVER_HEADERS:
                return None
            headers.add(name, value)
        if length is None or length > FAST_BODY_MAX:
            return None
        handler, route = served
        return FrontRequest(
            path.decode("ascii"),
            query.decode("ascii") if query else "",
            headers,
            self.remote,
            length,
            _Match(project_id.decode("ascii"), route),
            int(minor),
            handler,
        )

    async def _serve(self, request: FrontRequest) -> None:
        try:
            self._respond(request, await self._answer(request))
        except Exception:
            # Not an answer to send (a bug): the connection cannot go on in step.
            log.exception("cannot answer POST %s", request.path)
            self.close()
            return
        finally:
            self.busy = False
        if not self.write_paused:
            self._resume_reading()
            self._next()

    async def _answer(self, request: FrontRequest) -> web.Response:
        try:
            response = await request._handler(cast(web.Request, request))
        except web.HTTPException as exc:
            response = exc
        except Exception:
            # The middlewares turn errors into answers; this is a bug, not a client error.
            log.exception("unhandled error in POST %s", request.path)
            response = None
        if isinstance(response, web.Response) and isinstance(response.body, bytes | None):
            return response
        if response is not None:
            log.error("POST %s: %r is not an answer with a bytes body", request.path, response)
        return web.Response(status=500, text="internal server error")

    def _resume_reading(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def _respond(self, request: FrontRequest, response: web.Response) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = cast(bytes | None, response.body) or b""
        headers = response.headers
        connection = request.headers.get("Connection", "").lower()
        if request.version == 0:
            keep_alive = "keep-alive" in connection
        else:
            keep_alive = "close" not in connection
        if headers.get("Connection", "").lower() == "close":
            keep_alive = False
        lines = [f"HTTP/1.{request.version} {response.status} {response.reason}"]
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(body)}")
        if not keep_alive:
            lines.append("Connection: close")
        elif request.version == 0:
            lines.append("Connection: keep-alive")
        if "Date" not in headers:
            lines.append(f"Date: {self.door.date()}")
        if "Server" not in headers:
            lines.append(f"Server: {SERVER_SOFTWARE}")
        lines.append("\r\n")
        transport.write("\r\n".join(lines).encode("utf-8", "surrogateescape") + body)
        if not keep_alive:
            self.close()

    def _idle(self) -> None:
        # One timer per keep-alive period, not one per request: it re-arms itself for
        # connections that were busy meanwhile.
        loop = self.loop
        self.idle_since = loop.time()
        if self.idle_timer is None:
            self.idle_timer = loop.call_at(
                self.idle_since + self.door.keepalive_timeout, self._check_idle
            )

    def _check_idle(self) -> None:
        self.idle_timer = None
        if self.closing:
            return
        since = self.idle_since
        if since is None or self.busy or self.buffer:
            # Not idle now: _next arms the timer again when the connection goes idle.
            return
        deadline = since + self.door.keepalive_timeout
        loop = self.loop
        if loop.time() >= deadline:
            self.close()
        else:
            self.idle_timer = loop.call_at(deadline, self._check_idle)

    def _hand_over(self) -> None:
        """Give the connection, with what was received of this request, to aiohttp."""
        transport = self.transport
        assert transport is not None
        self.door.connections.discard(self)
        self.closing = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self._resume_reading()
        protocol = self.door.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data, self.buffer = bytes(self.buffer), bytearray()
        if data:
            protocol.data_received(data)
