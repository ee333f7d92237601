"""A lean keep-alive HTTP/1.1 client for the envelope hot path of a POP relay.

Forwarding is one POST per envelope to the same upstream. aiohttp's ``ClientSession`` costs
more CPU per request than the aiohttp server that received the envelope (URL objects,
cookie jar, tracing hooks, a streaming payload writer, a response object with lazily parsed
headers). This pool does only what that POST needs: a bare :class:`asyncio.Protocol` per
connection that writes the serialized request in one call and parses the answer's status
line, headers and body (``Content-Length``, chunked or until close).

Connections are reused LIFO (the most recently used is the one most likely still open),
closed after ``keepalive`` seconds idle, and at most ``limit`` exist at once (more requests
wait for a free one). A reused connection that the server closed before answering anything
is retried once on a new connection, as the race with a server's idle timeout is normal and
not an upstream failure. Every failure (connect, reset, timeout, malformed answer) raises
:class:`PoolError`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

__all__ = ["HttpPool", "PoolError", "PoolResponse"]

#: Answers larger than this are refused: an upstream's answer to an envelope is tiny.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: Bodies up to this size are joined with the head and sent in one ``write``.
_JOIN_BELOW = 64 * 1024

#: (status, headers as (name, value) pairs in order, body).
PoolResponse = tuple[int, list[tuple[str, str]], bytes]


class PoolError(Exception):
    """The request did not get a complete answer (network error, timeout, bad HTTP)."""


class _Stale(PoolError):
    """A reused connection was closed before any answer byte arrived (safe to retry)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    __slots__ = (
        "_body_len",
        "_buf",
        "_chunks",
        "_head",
        "_pos",
        "_waiter",
        "closed",
        "idle_since",
        "keep_alive",
        "transport",
        "used",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = False
        self.idle_since = 0.0
        self.keep_alive = True
        self._buf = bytearray()
        self._waiter: asyncio.Future[PoolResponse] | None = None
        self._head: tuple[int, list[tuple[str, str]]] | None = None
        #: Body length once known (-1: chunked, -2: until close).
        self._body_len = 0
        self._pos = 0
        self._chunks: list[bytes] = []

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Nothing was asked: an unsolicited answer makes the connection unusable.
            self.close()
            return
        self._buf += data
        if len(self._buf) > MAX_RESPONSE_BYTES:
            self._fail(PoolError("upstream answer too large"))
            return
        try:
            self._parse()
        except (ValueError, UnicodeDecodeError) as exc:
            self._fail(PoolError(f"malformed HTTP answer: {exc}"))

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._head is not None and self._body_len == -2:
            # A body delimited by the end of the connection is complete now.
            status, headers = self._head
            self._finish(status, headers, bytes(self._buf))
            return
        reason = f": {exc}" if exc else ""
        if self.used and not self._buf and self._head is None:
            waiter.set_exception(_Stale(f"connection closed before an answer{reason}"))
        else:
            waiter.set_exception(PoolError(f"connection closed before the answer ended{reason}"))
        self._waiter = None

    # -- requests

    def send(self, data: list[bytes]) -> asyncio.Future[PoolResponse]:
        """Write a serialized request; the future gets the answer."""
        assert self.transport is not None and self._waiter is None
        waiter: asyncio.Future[PoolResponse] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._buf.clear()
        self._head = None
        self._pos = 0
        self._chunks = []
        if len(data) == 1:
            self.transport.write(data[0])
        else:
            self.transport.writelines(data)
        return waiter

    def close(self) -> None:
        """Close the connection (an unfinished request fails)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self, error: PoolError) -> None:
        """Fail the current request and drop the connection (timeouts)."""
        self._fail(error)

    def _fail(self, error: PoolError) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _finish(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        waiter = self._waiter
        self._waiter = None
        if not self.keep_alive:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((status, headers, body))

    def _parse(self) -> None:
        buf = self._buf
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            status, headers, version = _parse_head(head)
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            self._head = (status, headers)
            self._body_len = self._body_length(status, headers, version)
        status, headers = self._head
        size = self._body_len
        if size >= 0:
            if len(buf) >= size:
                if len(buf) > size:
                    self.keep_alive = False  # more than asked for: do not trust the rest
                self._finish(status, headers, bytes(buf[:size]))
            return
        if size == -1:
            body = self._parse_chunked()
            if body is not None:
                self._finish(status, headers, body)

    def _body_length(self, status: int, headers: list[tuple[str, str]], version: str) -> int:
        connection = ""
        length: str | None = None
        chunked = False
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                length = value
            elif lower == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif lower == "connection":
                connection = value.lower()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        else:
            self.keep_alive = "close" not in connection
        if status in (204, 304):
            return 0
        if chunked:
            return -1
        if length is not None:
            size = int(length.strip())
            if size < 0:
                raise ValueError("negative Content-Length")
            return size
        self.keep_alive = False
        return -2

    def _parse_chunked(self) -> bytes | None:
        """Decode what is buffered; the body once the last chunk (and trailers) arrived."""
        buf = self._buf
        pos = self._pos
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                break
            size = int(bytes(buf[pos:line_end]).split(b";", 1)[0].strip(), 16)
            if size < 0:
                raise ValueError("negative chunk size")
            if size == 0:
                # Trailers (ignored) end with an empty line; without trailers that is the
                # CRLF right after this one.
                if buf.find(b"\r\n\r\n", line_end) < 0:
                    break
                return b"".join(self._chunks)
            start = line_end + 2
            if len(buf) < start + size + 2:
                break
            self._chunks.append(bytes(buf[start : start + size]))
            pos = start + size + 2
        # Keep only what is not decoded yet.
        del buf[:pos]
        self._pos = 0
        return None


def _parse_head(head: str) -> tuple[int, list[tuple[str, str]], str]:
    lines = head.split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/"):
        raise ValueError(f"not an HTTP answer: {lines[0][:40]!r}")
    status = int(rest[:3])
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line[:40]!r}")
        headers.append((name.strip(), value.strip()))
    return status, headers, version


class HttpPool:
    """Keep-alive connections to one ``http``/``https`` origin, for POST requests."""

    def __init__(
        self,
        base_url: str,
        *,
        limit: int,
        connect_timeout: float,
        keepalive: float = 30.0,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported upstream URL {base_url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        #: Path prefix of the upstream URL (a relay behind a path).
        self.prefix = parts.path.rstrip("/")
        default_port = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default_port else f"{host}:{self.port}"
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self.tls else None
        self.limit = max(1, limit)
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._defaults = dict(default_headers or {})
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def post(
        self, path: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> PoolResponse:
        """POST ``body`` to ``path``; raises PoolError without a complete answer in time."""
        head = self._head(path, headers, len(body))
        data = [head + body] if len(body) < _JOIN_BELOW else [head, body]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for _ in range(2):
            conn = await self._acquire(deadline)
            try:
                return await self._exchange(conn, data, deadline)
            except _Stale:
                continue  # the server had closed it while idle: once more, on a new one
            finally:
                self._release(conn)
        raise PoolError("connection closed before an answer, twice")

    async def close(self) -> None:
        """Close idle connections; connections in use close when their request ends."""
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolError("the connection pool is closed"))

    def _head(self, path: str, headers: Mapping[str, str], length: int) -> bytes:
        lines = [f"POST {self.prefix}{path} HTTP/1.1", f"Host: {self.host_header}"]
        merged = {**self._defaults, **headers} if self._defaults else headers
        for name, value in merged.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
                raise PoolError(f"invalid header {name!r}")
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {length}\r\n\r\n")
        return "\r\n".join(lines).encode("latin-1", "replace")

    async def _exchange(
        self, conn: _Connection, data: list[bytes], deadline: float
    ) -> PoolResponse:
        loop = asyncio.get_running_loop()
        waiter = conn.send(data)
        timer = loop.call_at(deadline, conn.abort, PoolError("timed out waiting for the answer"))
        try:
            return await waiter
        finally:
            timer.cancel()
            conn.used = True

    async def _acquire(self, deadline: float) -> _Connection:
        if self._closed:
            raise PoolError("the connection pool is closed")
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or now - conn.idle_since > self.keepalive:
                conn.close()
                self._open -= 1
                self._wake()
                continue
            return conn
        if self._open >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(waiter, max(0.0, remaining))
            except TimeoutError:
                raise PoolError("timed out waiting for a free connection") from None
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            return await self._acquire(deadline)
        self._open += 1
        try:
            return await self._connect(deadline)
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        timeout = max(0.0, min(self.connect_timeout, deadline - loop.time()))
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    _Connection, self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self.tls else None,
                ),
                timeout,
            )  # fmt: skip
        except TimeoutError:
            raise PoolError(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise PoolError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.closed or not conn.keep_alive or conn._waiter is not None or self._closed:
            conn.close()
            self._open -= 1
        else:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
