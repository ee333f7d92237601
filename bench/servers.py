"""Servers the benchmark runs in subprocesses: the bare baseline and a fake upstream.

``python bench/servers.py baseline PORT`` answers every POST after reading its body, the
least any HTTP relay must do (aiohttp + uvloop: the issue's baseline).

``python bench/servers.py upstream PORT KEY`` plays Sentry for a relay: registration,
``projectconfigs`` (with the global config) for one key, and ``200 {}`` for envelopes and
everything else. It is a bare :class:`asyncio.Protocol` that parses just enough HTTP/1.1
(request line, ``Content-Length`` or chunked bodies, keep-alive) and decodes JSON only on the
registration and config routes. In production the upstream is another machine; an aiohttp
upstream cost ~0.1 ms per envelope, a fifth of what the POP itself costs, so wherever it is
placed it should cost as little as possible.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, cast

from aiohttp import web

from relay.server.runner import install_event_loop, wait_for_signal

#: Largest request head accepted before the connection is dropped (a broken client).
MAX_HEAD = 64 * 1024


async def _read_and_ok(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"id": None})


def baseline_app() -> web.Application:
    """The bare aiohttp handler every other target is compared with."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", _read_and_ok)
    return app


def _response(status: int, body: bytes, close: bool = False) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


_OK = _response(200, b"{}")


class Upstream:
    """What the fake Sentry answers, per route (JSON only where the relay needs an answer)."""

    def __init__(self, public_key: str) -> None:
        self.public_key = public_key
        #: Envelopes received (for tests and logs).
        self.envelopes = 0

    def answer(self, method: str, path: str, body: bytes) -> bytes:
        """The whole HTTP response to one request."""
        route = path.split("?", 1)[0]
        if "/envelope/" in route:
            self.envelopes += 1
            return _OK
        handler = {
            "/api/0/relays/register/challenge/": self._challenge,
            "/api/0/relays/register/response/": self._registered,
            "/api/0/relays/projectconfigs/": self._configs,
        }.get(route)
        if handler is None:
            # Outcomes, metrics, the outage monitor's live check, ...: accepted.
            return _OK
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not an object")
            answer = handler(data)
        except (ValueError, KeyError, TypeError) as exc:
            return _response(400, json.dumps({"detail": str(exc)}).encode())
        return _response(200, json.dumps(answer).encode())

    @staticmethod
    def _challenge(body: dict[str, Any]) -> dict[str, Any]:
        return {"relay_id": body["relay_id"], "token": "t"}

    @staticmethod
    def _registered(body: dict[str, Any]) -> dict[str, Any]:
        return {"relay_id": body["relay_id"]}

    def _configs(self, body: dict[str, Any]) -> dict[str, Any]:
        state = {
            "projectId": 42, "organizationId": 1, "rev": "1",
            "publicKeys": [{"publicKey": self.public_key, "isEnabled": True}],
            "config": {"allowedDomains": ["*"]},
        }  # fmt: skip
        keys = body.get("publicKeys") or []
        answer: dict[str, Any] = {"configs": {k: state for k in keys if k == self.public_key}}
        if body.get("global"):
            # As Sentry: relays hold envelopes back until they have the global config.
            answer.update({"global": {"measurements": {}}, "globalStatus": "ready"})
        return answer


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection: parse requests as they complete, answer each in order."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self.transport is not None and self._next():
            pass

    def _fail(self, reason: str) -> bool:
        assert self.transport is not None
        self.transport.write(_response(400, json.dumps({"detail": reason}).encode(), True))
        self.transport.close()
        self.transport = None
        return False

    def _next(self) -> bool:
        """Answer the first complete request in the buffer; False when none is complete."""
        buf = self._buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False if len(buf) <= MAX_HEAD else self._fail("request head too large")
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return self._fail("bad request line")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                return self._fail("bad header line")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            try:
                parsed = _dechunk(buf, start)
            except ValueError as exc:
                return self._fail(str(exc))
            if parsed is None:
                return False
            body, consumed = parsed
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                return self._fail("bad Content-Length")
            if length < 0:
                return self._fail("bad Content-Length")
            if len(buf) < start + length:
                return False
            body, consumed = bytes(buf[start : start + length]), start + length
        del buf[:consumed]
        assert self.transport is not None
        self.transport.write(self.upstream.answer(parts[0], parts[1], body))
        if headers.get("connection", "").lower() == "close":
            self.transport.close()
            self.transport = None
            return False
        return True


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """(body, bytes consumed) of a complete chunked body at ``start``; None if incomplete."""
    out = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        except ValueError:
            raise ValueError("bad chunk size") from None
        if size == 0:
            # No trailers expected from a relay: the body ends with an empty line.
            if len(buf) < eol + 4:
                return None
            return bytes(out), eol + 4
        if len(buf) < eol + 2 + size + 2:
            return None
        out += buf[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


async def serve_upstream(public_key: str, port: int, host: str = "127.0.0.1") -> asyncio.Server:
    """Start the fake upstream on ``host:port`` (0: any free port)."""
    upstream = Upstream(public_key)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: UpstreamProtocol(upstream), host, port, backlog=1024, reuse_address=True
    )


async def _serve_baseline(port: int) -> None:
    # The baseline reads (and, as aiohttp does by default, gunzips) each body.
    runner = web.AppRunner(baseline_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await wait_for_signal()
    await runner.cleanup()


async def _serve_upstream(public_key: str, port: int) -> None:
    server = await serve_upstream(public_key, port)
    await wait_for_signal()
    server.close()


if __name__ == "__main__":
    install_event_loop()
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "baseline":
        asyncio.run(_serve_baseline(port))
    else:
        asyncio.run(_serve_upstream(sys.argv[3], port))
