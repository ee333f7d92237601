"""The benchmark's fake upstream (bench/servers.py): a bare HTTP/1.1 protocol playing Sentry."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


def _servers() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "servers.py"
    spec = importlib.util.spec_from_file_location("bench_servers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_servers", module)
    spec.loader.exec_module(module)
    return module


servers = _servers()


def _request(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.decode().split("\r\n")[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    return status, await reader.readexactly(length)


async def _exchange(chunks: list[bytes], answers: int) -> list[tuple[int, bytes]]:
    server = await servers.serve_upstream(KEY, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
        out = [await _read_response(reader) for _ in range(answers)]
        writer.close()
        return out
    finally:
        server.close()


async def test_pipelined_envelopes_on_one_connection_get_200_each() -> None:
    data = _request("/api/42/envelope/", b"x" * 5000) + _request("/api/42/envelope/", b"{}")
    # Split mid-body: the parser must wait for the rest.
    answers = await _exchange([data[:100], data[100:3000], data[3000:]], 2)
    assert answers == [(200, b"{}"), (200, b"{}")]


async def test_chunked_body() -> None:
    head = b"POST /api/42/envelope/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n"
    assert await _exchange([head, body[:7], body[7:]], 1) == [(200, b"{}")]


async def test_registration_and_project_configs_with_global_config() -> None:
    challenge = _request("/api/0/relays/register/challenge/", b'{"relay_id": "r1"}')
    configs = _request(
        "/api/0/relays/projectconfigs/?version=3",
        json.dumps({"publicKeys": [KEY, "other"], "global": True}).encode(),
    )
    (s1, b1), (s2, b2) = await _exchange([challenge + configs], 2)
    assert (s1, json.loads(b1)) == (200, {"relay_id": "r1", "token": "t"})
    answer = json.loads(b2)
    assert s2 == 200 and list(answer["configs"]) == [KEY]
    assert answer["globalStatus"] == "ready" and "global" in answer


@pytest.mark.parametrize(
    "data",
    [
        _request("/api/0/relays/projectconfigs/", b"not json"),
        _request("/api/0/relays/register/challenge/", b"[1]"),
        _request("/api/0/relays/register/challenge/", b"{}"),
    ],
)
async def test_bad_json_on_config_routes_is_a_400(data: bytes) -> None:
    [(status, body)] = await _exchange([data], 1)
    assert status == 400 and b"detail" in body


@pytest.mark.parametrize(
    "data",
    [
        b"garbage\r\n\r\n",
        b"POST /x HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: many\r\n\r\n",
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_malformed_requests_get_400_and_close(data: bytes) -> None:
    [(status, _)] = await _exchange([data], 1)
    assert status == 400


def test_other_routes_are_accepted() -> None:
    upstream = servers.Upstream(KEY)
    assert upstream.answer("POST", "/api/0/relays/outcomes/", b"{}").startswith(b"HTTP/1.1 200")
    assert upstream.answer("GET", "/api/0/relays/live/", b"").startswith(b"HTTP/1.1 200")
    upstream.answer("POST", "/api/42/envelope/?sentry_key=x", b"...")
    assert upstream.envelopes == 1
