"""Tier 2: the front door (relay.server.front) against aiohttp, over raw sockets.

Envelope requests of the usual shape are served by the front door, everything else by
aiohttp on the same connection. The answers must not tell the two apart: each case is sent
once in the front door's shape and once chunked (which the front door hands to aiohttp), and
both answers are compared.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import itertools
import json
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.protocol.envelope import Envelope
from relay.server.front import FAST_BODY_MAX
from tests.integration.test_endpoints_http import KEY, PROJECT, Stack

PATH = f"/api/{PROJECT}/envelope/"
AUTH = f"Sentry sentry_key={KEY}, sentry_version=7, sentry_client=test/1.0"
#: Headers whose values differ between any two answers.
_VOLATILE = {"date"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack({"limits": {"keepalive_timeout": 1.0}})
    s.start()
    # The project config is fetched by the first envelope: later answers do not depend on
    # whether it is known yet.
    event_id = uuid.uuid4().hex
    assert exchange(s, request(envelope(event_id))).status == 200
    delivered(s, [event_id])
    yield s
    s.stop()


def take(stack: Stack, matches: Callable[[Envelope], bool], count: int) -> list[Envelope]:
    """Wait until the upstream got ``count`` envelopes that ``matches``; removes and returns
    those it got, in the order received (other envelopes are left alone)."""
    for _ in range(250):
        if sum(map(matches, stack.upstream.envelopes)) >= count:
            break
        time.sleep(0.02)
    got = [env for env in stack.upstream.envelopes if matches(env)]
    stack.upstream.envelopes[:] = [env for env in stack.upstream.envelopes if not matches(env)]
    return got


def delivered(stack: Stack, ids: list[str]) -> list[str]:
    """Wait until the upstream got an envelope for each of ``ids``; returns their ids in the
    order received."""
    envs = take(stack, lambda env: env.event_id in ids, len(ids))
    got = [env.event_id for env in envs if env.event_id is not None]  # (all: they are in ids)
    assert sorted(got) == sorted(ids)
    return got


def envelope(event_id: str | None = None) -> bytes:
    event_id = event_id or uuid.uuid4().hex
    payload = json.dumps({"message": "hello", "level": "error"}).encode()
    return b"\n".join(
        [
            json.dumps({"event_id": event_id}).encode(),
            json.dumps({"type": "event", "length": len(payload)}).encode(),
            payload,
        ]
    )


def request(
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    path: str = PATH,
    version: str = "1.1",
    chunked: bool = False,
) -> bytes:
    """A request as bytes; ``chunked=True`` sends the body in two chunks (aiohttp's shape)."""
    lines = [f"POST {path} HTTP/{version}", "Host: relay"]
    all_headers = {"X-Sentry-Auth": AUTH, **(headers or {})}
    if chunked:
        all_headers["Transfer-Encoding"] = "chunked"
    else:
        all_headers.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if not chunked:
        return raw + body
    half = len(body) // 2
    parts = [body[:half], body[half:]]
    return raw + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"


class Response:
    def __init__(self, version: str, status: int, headers: dict[str, str], body: bytes) -> None:
        self.version, self.status, self.headers, self.body = version, status, headers, body

    def comparable(self) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in self.headers.items() if k not in _VOLATILE}
        return self.status, headers, self.body


class Conn:
    """A raw client connection that reads HTTP/1.x answers (Content-Length bodies)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def response(self) -> Response:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"closed before an answer: {self.buf!r}"
        raw_head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = raw_head.decode("latin-1").split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            assert self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return Response(version, int(status), headers, body)

    def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the connection within ``timeout`` (no more bytes)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def connection(port: int) -> Iterator[Conn]:
    conn = Conn(port)
    try:
        yield conn
    finally:
        conn.close()


def exchange(stack: Stack, data: bytes) -> Response:
    with connection(stack.port) as conn:
        conn.send(data)
        return conn.response()


def both_ways(
    stack: Stack, body: bytes, headers: dict[str, str] | None = None, path: str = PATH
) -> tuple[Response, Response]:
    """The answers of the front door and of aiohttp to the same request."""
    door = stack.relay.front_door
    assert door is not None
    before = door.served
    fast = exchange(stack, request(body, headers, path=path))
    assert door.served == before + 1, "the front door did not serve the request"
    slow = exchange(stack, request(body, headers, path=path, chunked=True))
    assert door.served == before + 1, "the front door served a chunked request"
    return fast, slow


def test_envelope_is_served_at_the_front_door(stack: Stack) -> None:
    event_id = uuid.uuid4().hex
    fast, slow = both_ways(stack, envelope(event_id))
    assert fast.comparable() == slow.comparable()
    assert fast.status == 200 and json.loads(fast.body) == {"id": event_id}
    assert fast.headers["content-type"] == "application/json"
    assert "date" in fast.headers and fast.headers["server"] == slow.headers["server"]
    assert delivered(stack, [event_id, event_id]) == [event_id, event_id]


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"", None, 400),  # empty body
        (b"{}\n{", None, 400),  # bad envelope
        (b"{}\n", {"X-Sentry-Auth": "Sentry sentry_key=nope"}, 400),
        (b"{}\n", {"X-Sentry-Auth": "Sentry sentry_version=7"}, 401),
        (b"{}\n", {"Origin": "https://a.allowed.com"}, 200),  # CORS headers
        (envelope(), {"Origin": "https://evil.com"}, 403),
        (gzip.compress(b"{}\n"), {"Content-Encoding": "gzip"}, 200),
        (b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}, 400),
        (envelope(), {"X-Forwarded-For": "10.1.2.3", "User-Agent": "sdk/1"}, 200),
    ],
)
def test_answers_match_aiohttp(
    stack: Stack, body: bytes, headers: dict[str, str] | None, status: int
) -> None:
    fast, slow = both_ways(stack, body, headers)
    assert fast.status == status, fast.body
    assert fast.comparable() == slow.comparable()
    if status == 200 and body.startswith(b'{"event_id"'):
        event_id = json.loads(fast.body)["id"]
        delivered(stack, [event_id, event_id])


STORE = f"/api/{PROJECT}/store/"


def store_event(event_id: str) -> bytes:
    return json.dumps({"event_id": event_id, "message": "hello", "level": "error"}).encode()


@pytest.mark.parametrize(
    ("encode", "headers", "status"),
    [
        (lambda body: body, None, 200),
        (lambda body: base64.b64encode(zlib.compress(body)), None, 200),  # older SDKs
        (gzip.compress, {"Content-Encoding": "gzip"}, 200),
        (lambda body: body, {"Origin": "https://evil.com"}, 403),
        (lambda body: b"", None, 400),
        (lambda body: b"{not json", None, 400),
    ],
)
def test_store_answers_match_aiohttp(
    stack: Stack, encode: Callable[[bytes], bytes], headers: dict[str, str] | None, status: int
) -> None:
    event_id = uuid.uuid4().hex
    fast, slow = both_ways(stack, encode(store_event(event_id)), headers, path=STORE)
    assert fast.status == status, fast.body
    assert fast.comparable() == slow.comparable()
    if status == 200:
        assert json.loads(fast.body) == {"id": event_id}
        delivered(stack, [event_id, event_id])


def test_store_takes_envelopes_and_pipelines_with_them(stack: Stack) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    door = stack.relay.front_door
    assert door is not None
    before = door.served
    as_envelope = {"Content-Type": "application/x-sentry-envelope"}
    data = (
        request(store_event(ids[0]), path=STORE)
        + request(envelope(ids[1]), as_envelope, path=STORE)
        + request(envelope(ids[2]))
    )
    assert answered_ids(stack, [data], 3) == ids
    assert door.served == before + 3
    delivered(stack, ids)
    # The legacy path without a project id stays aiohttp's.
    answer = exchange(stack, request(store_event(uuid.uuid4().hex), path="/api/store/"))
    assert answer.status == 200 and door.served == before + 3


CSP = (
    b'{"csp-report": {"document-uri": "https://x.allowed.com/TOKEN", '
    b'"violated-directive": "script-src", "blocked-uri": "https://evil.com/x.js"}}'
)
NEL = (
    b'[{"age": 0, "type": "network-error", "url": "https://x.allowed.com/TOKEN", "body": '
    b'{"type": "http.error", "status_code": 500, "phase": "application", "elapsed_time": 9, '
    b'"method": "GET", "protocol": "http/1.1", "referrer": "", "sampling_fraction": 1.0, '
    b'"server_ip": "10.0.0.1"}}]'
)


@pytest.mark.parametrize(
    ("endpoint", "body", "content_type", "status"),
    [
        ("security", CSP, "application/csp-report", 200),
        ("csp-report", b"[" + CSP + b"," + CSP + b"]", "application/reports+json", 200),
        ("security", CSP, "text/plain", 415),
        ("security", b"", "application/json", 400),  # empty
        ("nel", NEL, "application/reports+json", 200),
    ],
)
def test_browser_reports_match_aiohttp(
    stack: Stack, endpoint: str, body: bytes, content_type: str, status: int
) -> None:
    token = uuid.uuid4().hex.encode()
    body = body.replace(b"TOKEN", token)
    path = f"/api/{PROJECT}/{endpoint}/?sentry_key={KEY}"
    headers = {"Content-Type": content_type, "X-Sentry-Auth": ""}
    fast, slow = both_ways(stack, body, headers, path=path)
    assert fast.status == status, fast.body
    assert fast.comparable() == slow.comparable()
    if status == 200:
        # Each report is an envelope of its own, once per way.
        expected = 2 * body.count(token)
        ours = take(stack, lambda env: any(token in item.payload for item in env.items), expected)
        assert len(ours) == expected


def test_query_auth_and_dsn_auth(stack: Stack) -> None:
    event_id = uuid.uuid4().hex
    fast, slow = both_ways(
        stack, envelope(event_id), {"X-Sentry-Auth": "ignored"}, path=f"{PATH}?sentry_key={KEY}"
    )
    assert fast.comparable() == slow.comparable() and fast.status == 200
    delivered(stack, [event_id, event_id])
    # No auth anywhere: the envelope header's DSN is the auth (as in Relay).
    dsn = f"http://{KEY}@relay/{PROJECT}"
    body = json.dumps({"dsn": dsn}).encode() + b"\n"
    raw = f"POST {PATH} HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    assert exchange(stack, raw).status == 200


def test_keep_alive_mixes_front_door_and_aiohttp(stack: Stack) -> None:
    door = stack.relay.front_door
    assert door is not None
    ids = [uuid.uuid4().hex for _ in range(3)]
    with connection(stack.port) as conn:
        before = door.served
        conn.send(request(envelope(ids[0])))
        assert conn.response().status == 200
        conn.send(request(envelope(ids[1])))
        assert conn.response().status == 200
        assert door.served == before + 2
        # Another route on the same connection: from here on it is aiohttp's.
        conn.send(b"GET /api/relay/healthcheck/live/ HTTP/1.1\r\nHost: relay\r\n\r\n")
        live = conn.response()
        assert live.status == 200 and json.loads(live.body) == {"is_healthy": True}
        conn.send(request(envelope(ids[2])))
        assert conn.response().status == 200
        assert door.served == before + 2
    delivered(stack, ids)


def answered_ids(stack: Stack, chunks: list[bytes], count: int) -> list[str]:
    """The event ids of the first ``count`` answers to ``chunks``, sent one by one."""
    with connection(stack.port) as conn:
        for chunk in chunks:
            conn.send(chunk)
            if len(chunks) > 1:
                time.sleep(0.001)  # separate reads on the server's side
        return [json.loads(conn.response().body)["id"] for _ in range(count)]


def test_pipelined_requests_in_one_write(stack: Stack) -> None:
    ids = [uuid.uuid4().hex for _ in range(5)]
    assert answered_ids(stack, [b"".join(request(envelope(i)) for i in ids)], 5) == ids
    delivered(stack, ids)


def test_pipelined_envelope_then_other_route(stack: Stack) -> None:
    ids = [uuid.uuid4().hex for _ in range(2)]
    with connection(stack.port) as conn:
        conn.send(
            request(envelope(ids[0]))
            + b"GET /api/relay/healthcheck/ready/ HTTP/1.1\r\nHost: relay\r\n\r\n"
            + request(envelope(ids[1]))
        )
        assert [conn.response().status for _ in range(3)] == [200, 200, 200]
    delivered(stack, ids)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=12))
def test_any_split_of_the_bytes(stack: Stack, cuts: list[int]) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    data = b"".join(request(envelope(i)) for i in ids)
    points = [0, *sorted({c % len(data) for c in cuts} - {0}), len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    assert answered_ids(stack, chunks, 3) == ids
    delivered(stack, ids)


def test_http_1_0_and_connection_close(stack: Stack) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    with connection(stack.port) as conn:
        conn.send(request(envelope(ids[0]), version="1.0"))
        answer = conn.response()
        assert (answer.version, answer.status) == ("HTTP/1.0", 200)
        assert answer.headers["connection"] == "close"
        assert conn.closed()
    with connection(stack.port) as conn:
        conn.send(request(envelope(ids[1]), {"Connection": "keep-alive"}, version="1.0"))
        answer = conn.response()
        assert answer.headers["connection"] == "keep-alive"
        conn.send(request(envelope(ids[2]), {"Connection": "close"}))
        answer = conn.response()
        assert (answer.version, answer.headers["connection"]) == ("HTTP/1.1", "close")
        assert conn.closed()
    delivered(stack, ids)


def test_no_host_header_is_accepted(stack: Stack) -> None:
    # Relay takes HTTP/1.1 requests without Host (the relay suite sends them).
    event_id = uuid.uuid4().hex
    body = envelope(event_id)
    raw = f"POST {PATH} HTTP/1.1\r\nX-Sentry-Auth: {AUTH}\r\nContent-Length: {len(body)}\r\n\r\n"
    assert exchange(stack, raw.encode() + body).status == 200
    delivered(stack, [event_id])


@pytest.mark.parametrize(
    "raw_head",
    [
        # A header name with a space, a value with a control character, folded lines,
        # two lengths, a signed length: all handed to aiohttp, which refuses them.
        f"POST {PATH} HTTP/1.1\r\nBad Header: x\r\nContent-Length: 3\r\n\r\n",
        f"POST {PATH} HTTP/1.1\r\nX-A: a\x01b\r\nContent-Length: 3\r\n\r\n",
        f"POST {PATH} HTTP/1.1\r\nX-A: a\r\n b\r\nContent-Length: 3\r\n\r\n",
        f"POST {PATH} HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        f"POST {PATH} HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
        f"POST {PATH} HTTP/1.1\nContent-Length: 3\n\n",
    ],
)
def test_malformed_heads_get_aiohttp_answers(stack: Stack, raw_head: str) -> None:
    door = stack.relay.front_door
    assert door is not None
    before = door.served
    with connection(stack.port) as conn:
        conn.send(raw_head.encode() + b"{}\n")
        answer = conn.response()
    assert door.served == before
    assert answer.status == 400 or (answer.status == 401 and raw_head.count("\n\n") == 1)


def test_large_bodies_and_expect_go_to_aiohttp(stack: Stack) -> None:
    door = stack.relay.front_door
    assert door is not None
    before = door.served
    ids = [uuid.uuid4().hex for _ in range(2)]
    padding = b"x" * (FAST_BODY_MAX + 1)
    item = json.dumps({"type": "attachment", "length": len(padding)}).encode()
    big = envelope(ids[0]) + b"\n" + item + b"\n" + padding
    assert exchange(stack, request(big)).status == 200
    with connection(stack.port) as conn:
        body = envelope(ids[1])
        conn.send(request(body, {"Expect": "100-continue"})[: -len(body)])
        assert conn.response().status == 100
        conn.send(body)
        assert conn.response().status == 200
    assert door.served == before
    delivered(stack, ids)


def test_half_closed_client_gets_its_answer(stack: Stack) -> None:
    event_id = uuid.uuid4().hex
    with connection(stack.port) as conn:
        conn.send(request(envelope(event_id)))
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.response().status == 200
        assert conn.closed()
    delivered(stack, [event_id])


def test_half_closed_client_gets_every_pipelined_answer(stack: Stack) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    with connection(stack.port) as conn:
        conn.send(b"".join(request(envelope(i)) for i in ids) + request(b"{}")[:20])
        conn.sock.shutdown(socket.SHUT_WR)
        assert [json.loads(conn.response().body)["id"] for _ in ids] == ids
        # The incomplete request after them is dropped with the connection.
        assert conn.closed()
    delivered(stack, ids)


def test_idle_connections_are_closed_after_the_keepalive_timeout(stack: Stack) -> None:
    event_id = uuid.uuid4().hex
    with connection(stack.port) as conn:
        conn.send(request(envelope(event_id)))
        assert conn.response().status == 200
        started = time.monotonic()
        assert conn.closed(timeout=10)
        # limits.keepalive_timeout is 1 s in this stack.
        assert 0.5 < time.monotonic() - started < 5
    delivered(stack, [event_id])


def test_shutdown_closes_front_door_connections() -> None:
    s = Stack({})
    s.start()
    with connection(s.port) as conn:
        event_id = uuid.uuid4().hex
        conn.send(request(envelope(event_id)))
        assert conn.response().status == 200
        delivered(s, [event_id])
        s.stop()
        assert conn.closed(timeout=5)


def test_a_request_in_flight_at_shutdown_is_served() -> None:
    # Its head came before the drain began, its last byte after: it is answered and its
    # envelope forwarded, as Relay completes requests in flight on SIGTERM.
    s = Stack({})
    s.start()
    event_id = uuid.uuid4().hex
    raw = request(envelope(event_id))
    with connection(s.port) as conn:
        conn.send(raw[:-1])
        time.sleep(0.1)
        stopping = threading.Thread(target=s.stop)
        stopping.start()
        for _ in range(100):
            if s.relay.drain_gate.closed:
                break
            time.sleep(0.01)
        assert s.relay.drain_gate.closed
        conn.send(raw[-1:])
        assert conn.response().status == 200
        stopping.join(30)
    delivered(s, [event_id])


def test_draining_relay_refuses_with_connection_close() -> None:
    s = Stack({})
    s.start()
    try:
        with connection(s.port) as conn:
            s.relay.drain_gate.close()
            conn.send(request(envelope()))
            answer = conn.response()
            assert answer.status == 503 and answer.headers["connection"] == "close"
            assert json.loads(answer.body) == {"detail": "relay is shutting down"}
            assert conn.closed()
    finally:
        s.stop()


def test_the_front_door_can_be_turned_off() -> None:
    s = Stack({"relay": {"front_door": False}})
    s.start()
    try:
        assert s.relay.front_door is None
        event_id = uuid.uuid4().hex
        answer = exchange(s, request(envelope(event_id)))
        assert answer.status == 200 and json.loads(answer.body) == {"id": event_id}
        delivered(s, [event_id])
    finally:
        s.stop()
