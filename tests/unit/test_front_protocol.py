"""The front door's protocol on a real socket pair, with a plain handler in place of the app.

The relay's own answers through it are compared with aiohttp's in
tests/integration/test_front_door.py; this covers flow control, which needs a client that
stops reading, and the head's grammar.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket

from aiohttp import web
from aiohttp.typedefs import Handler
from hypothesis import given
from hypothesis import strategies as st

from relay.server.front import _HEADER, FrontDoor, FrontProtocol, FrontRequest

PATH = "/api/1/envelope/"


async def _echo(request: web.Request) -> web.Response:
    body = await request.content.readexactly(request.content_length or 0)
    return web.Response(body=body, headers={"Content-Type": "application/octet-stream"})


def _request(body: bytes) -> bytes:
    return f"POST {PATH} HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def _no_fallback() -> asyncio.Protocol:
    raise AssertionError("nothing here is for aiohttp")


async def _serve(sock: socket.socket, door: FrontDoor) -> FrontProtocol:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_accepted_socket(door, sock)
    # Tiny buffers, so that a client that does not read makes the server stop writing.
    transport.set_write_buffer_limits(high=1024)
    assert isinstance(protocol, FrontProtocol)
    return protocol


def _door(handler: Handler = _echo) -> FrontDoor:
    route = web.post(PATH, _echo)
    app = web.Application()
    app.add_routes([route])
    [resource_route] = [r for r in app.router.routes() if r.method == "POST"]
    return FrontDoor(_no_fallback, {b"envelope": (handler, resource_route)}, keepalive_timeout=30)


async def test_a_client_that_does_not_read_pauses_the_server() -> None:
    server_sock, client_sock = socket.socketpair()
    server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    door = _door()
    protocol = await _serve(server_sock, door)
    body = b"x" * 2000
    count = 400
    client_sock.setblocking(False)
    # Pipeline far more answers than the socket buffers hold, without reading any.
    data = _request(body) * count
    sent = 0
    while sent < len(data):
        try:
            sent += client_sock.send(data[sent : sent + 65536])
        except BlockingIOError:
            if protocol.write_paused and protocol.paused:
                break
            await asyncio.sleep(0.001)
    assert protocol.write_paused, "the server kept writing to a client that does not read"
    assert protocol.paused, "the server kept reading from a client that does not read"
    served = door.served
    await asyncio.sleep(0.05)
    assert door.served == served
    # The client reads (and sends the rest): every answer arrives, in order.
    received = b""
    expected = (f"Content-Length: {len(body)}\r\n").encode()
    while received.count(expected) < count:
        if sent < len(data):
            with contextlib.suppress(BlockingIOError):
                sent += client_sock.send(data[sent : sent + 65536])
        try:
            chunk = client_sock.recv(65536)
        except BlockingIOError:
            await asyncio.sleep(0.001)
            continue
        assert chunk
        received += chunk
    assert door.served == count
    assert received.count(body) == count
    client_sock.close()


async def test_request_fields() -> None:
    server_sock, client_sock = socket.socketpair()
    seen: list[FrontRequest] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request)  # type: ignore[arg-type]
        return web.Response(body=b"{}", headers={"Content-Type": "application/json"})

    await _serve(server_sock, _door(handler))
    reader, writer = await asyncio.open_connection(sock=client_sock)
    writer.write(
        b"POST /api/42/envelope/?sentry_key=k&a=%20b+c HTTP/1.0\r\n"
        b"X-Sentry-Auth: Sentry sentry_key=k\r\nx-a:  spaced value \t\r\nX-A: second\r\n"
        b"Content-Length: 3\r\nConnection: keep-alive\r\n\r\nabc"
    )
    answer = await reader.readuntil(b"{}")
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and b"Connection: keep-alive" in answer
    [request] = seen
    assert (request.path, request.query_string) == (
        PATH.replace("1", "42"),
        "sentry_key=k&a=%20b+c",
    )
    assert dict(request.query) == {"sentry_key": "k", "a": " b c"}
    assert request.headers.getall("X-A") == ["spaced value", "second"]
    assert request.match_info == {"project_id": "42"} and request.version == 0
    assert await request.content.readexactly(3) == b"abc"
    writer.close()


async def test_a_broken_handler_gets_a_500_and_the_connection_goes_on() -> None:
    server_sock, client_sock = socket.socketpair()
    answers: list[web.StreamResponse] = [web.StreamResponse(), web.Response(body=b"{}")]

    async def handler(request: web.Request) -> web.StreamResponse:
        if not answers:
            raise RuntimeError("a bug")
        return answers.pop(0)

    await _serve(server_sock, _door(handler))
    reader, writer = await asyncio.open_connection(sock=client_sock)
    writer.write(_request(b"a") * 3)
    statuses = []
    for _ in range(3):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        statuses.append(int(head[9:12]))
    assert statuses == [500, 200, 500]
    writer.close()


#: The header grammar the front door follows (llhttp's strict mode), spelled out directly:
#: a token, a colon, blanks, a value of non-control characters (tab allowed), blanks.
_REFERENCE_HEADER = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*((?:[^\x00-\x1f\x7f]|\t)*?)[ \t]*"
)


@given(
    st.lists(
        st.sampled_from(
            [
                b" ",
                b"\t",
                b"a",
                b":",
                b"-",
                b"\x00",
                b"\x0b",
                b"\x1f",
                b"\x7f",
                b"\xc3\xa9",
                b"\r",
                b"\n",
                b"(",
                b"X",
            ]
        ),
        max_size=12,
    )
)
def test_header_lines_split_as_the_strict_grammar(parts: list[bytes]) -> None:
    line = b"".join(parts)
    expected = _REFERENCE_HEADER.fullmatch(line)
    got = _HEADER.fullmatch(line)
    assert (expected is None) == (got is None)
    if expected is not None and got is not None:
        assert (got[1], got[2].strip(b" \t")) == (expected[1], expected[2])
