"""The lean keep-alive HTTP/1.1 pool envelopes are forwarded with (relay.server.http_pool)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from relay.config import config_from_dict
from relay.protocol.encoding import decode_body
from relay.protocol.keys import generate_credentials
from relay.server.http_pool import HttpPool, PoolError
from relay.server.upstream import UpstreamClient, UpstreamError, encode_body

#: Answers a request (head, body) with raw bytes; None closes the connection unanswered.
Answer = Callable[[bytes, bytes], bytes | None]


class _Server:
    """A raw HTTP/1.1 server: reads requests with Content-Length, writes canned answers."""

    def __init__(self, answer: Answer, close_after: int | None = None) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                out = self.answer(head, body)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[_Server]]]:
    servers: list[_Server] = []

    async def start(answer: Answer, close_after: int | None = None) -> _Server:
        server = _Server(answer, close_after)
        server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        assert server.server is not None
        server.server.close()


def _ok(body: bytes = b'{"id":null}', extra: str = "") -> Answer:
    def answer(head: bytes, req: bytes) -> bytes:
        return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body

    return answer


def _pool(url: str, limit: int = 4, headers: dict[str, str] | None = None) -> HttpPool:
    return HttpPool(url, limit=limit, connect_timeout=1.0, default_headers=headers)


async def test_post_reuses_one_connection(serve: Callable[..., asyncio.Future[_Server]]) -> None:
    server = await serve(_ok())
    pool = _pool(server.url + "/prefix/", headers={"User-Agent": "ua"})
    try:
        for n in range(3):
            status, headers, body = await pool.post(
                "/api/42/envelope/", {"X-Sentry-Auth": "Sentry x"}, b"payload%d" % n, 2.0
            )
            assert (status, body) == (200, b'{"id":null}')
            assert ("Content-Length", "11") in headers
    finally:
        await pool.close()
    assert server.connections == 1
    head, body = server.requests[0]
    assert head.startswith(b"POST /prefix/api/42/envelope/ HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in head
    assert b"\r\nUser-Agent: ua\r\n" in head and b"\r\nX-Sentry-Auth: Sentry x\r\n" in head
    assert body == b"payload0"


async def test_chunked_and_interim_answers(serve: Callable[..., asyncio.Future[_Server]]) -> None:
    def answer(head: bytes, body: bytes) -> bytes:
        return (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n"
            b"X-Sentry-Rate-Limits: 60:error\r\nX-Sentry-Rate-Limits: 10:transaction\r\n\r\n"
            b"4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nTrailer: x\r\n\r\n"
        )

    server = await serve(answer)
    pool = _pool(server.url)
    try:
        for _ in range(2):
            status, headers, body = await pool.post("/", {}, b"", 2.0)
            assert (status, body) == (429, b"abcdefg")
            limits = [v for k, v in headers if k == "X-Sentry-Rate-Limits"]
            assert limits == ["60:error", "10:transaction"]
    finally:
        await pool.close()
    assert server.connections == 1


async def test_answer_delimited_by_close(serve: Callable[..., asyncio.Future[_Server]]) -> None:
    def answer(head: bytes, body: bytes) -> bytes | None:
        return b"HTTP/1.0 200 OK\r\n\r\nthe whole rest"

    server = await serve(answer, close_after=1)
    pool = _pool(server.url)
    try:
        assert (await pool.post("/", {}, b"x", 2.0))[2] == b"the whole rest"
        assert (await pool.post("/", {}, b"x", 2.0))[2] == b"the whole rest"
    finally:
        await pool.close()
    assert server.connections == 2


async def test_connection_closed_while_idle_is_retried(
    serve: Callable[..., asyncio.Future[_Server]],
) -> None:
    # The server closes each connection after one answer without saying so (no
    # ``Connection: close``): the next request on it finds it gone and uses a new one.
    server = await serve(_ok(), close_after=1)
    pool = _pool(server.url)
    try:
        for _ in range(3):
            assert (await pool.post("/", {}, b"x", 2.0))[0] == 200
    finally:
        await pool.close()
    assert server.connections == 3


async def test_failures_raise_pool_errors(serve: Callable[..., asyncio.Future[_Server]]) -> None:
    server = await serve(lambda head, body: None)  # closes without answering
    pool = _pool(server.url)
    with pytest.raises(PoolError):
        await pool.post("/", {}, b"x", 2.0)

    slow = await serve(lambda head, body: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    pool = _pool(slow.url)
    with pytest.raises(PoolError, match="timed out"):
        await pool.post("/", {}, b"x", 0.2)

    garbage = await serve(lambda head, body: b"SMTP ready\r\n\r\n")
    pool = _pool(garbage.url)
    with pytest.raises(PoolError, match="malformed"):
        await pool.post("/", {}, b"x", 2.0)

    with pytest.raises(PoolError, match="invalid header"):
        await pool.post("/", {"X-Evil": "a\r\nInjected: 1"}, b"x", 2.0)

    refused = _pool("http://127.0.0.1:1")
    with pytest.raises(PoolError, match="cannot connect"):
        await refused.post("/", {}, b"x", 2.0)
    await pool.close()
    with pytest.raises(PoolError, match="closed"):
        await pool.post("/", {}, b"x", 2.0)


async def test_limit_bounds_open_connections(
    serve: Callable[..., asyncio.Future[_Server]],
) -> None:
    server = await serve(_ok())
    pool = _pool(server.url, limit=2)
    try:
        results = await asyncio.gather(*(pool.post("/", {}, b"x", 5.0) for _ in range(20)))
    finally:
        await pool.close()
    assert all(status == 200 for status, _, _ in results)
    assert server.connections <= 2


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(ValueError):
        HttpPool("unix:///tmp/socket", limit=1, connect_timeout=1.0)


async def test_upstream_client_reads_rate_limits_through_the_pool(
    serve: Callable[..., asyncio.Future[_Server]],
) -> None:
    def answer(head: bytes, body: bytes) -> bytes:
        return (
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\n"
            b"X-Sentry-Rate-Limits: 60:error:project\r\nX-Sentry-Rate-Limits: 5::org\r\n"
            b"Content-Length: 0\r\n\r\n"
        )

    server = await serve(answer)
    config = config_from_dict({"relay": {"mode": "proxy", "upstream": server.url}})
    client = UpstreamClient(config, generate_credentials())
    await client.start()
    try:
        with pytest.raises(UpstreamError) as exc:
            await client.send_envelope(42, b"{}\n", {"X-Sentry-Auth": "a"}, float("inf"))
    finally:
        await client.stop()
    assert exc.value.status == 429 and exc.value.is_received
    assert exc.value.retry_after == 30
    assert exc.value.rate_limits == "60:error:project, 5::org"
    head, _ = server.requests[0]
    assert b"\r\nContent-Encoding: zstd\r\n" in head and b"X-Sentry-Relay-Signature" in head


@pytest.mark.parametrize("encoding", ["identity", "zstd", "gzip", "deflate", "br"])
def test_envelopes_are_encoded_as_http_encoding_says(encoding: str) -> None:
    data = b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n' * 20
    body, header = encode_body(data, encoding)
    assert header == (None if encoding == "identity" else encoding)
    assert decode_body(body, header, 1 << 20) == data
