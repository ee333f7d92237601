"""The benchmark's load generator (bench/loadgen.py): counts, latencies and reconnection."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, cast

KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


def _module(name: str) -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(f"bench_{name}", module)
    spec.loader.exec_module(module)
    return module


loadgen = _module("loadgen")
servers = _module("servers")

REQUESTS = loadgen.serialize(
    [("/api/42/envelope/", {"content-type": "application/x-sentry-envelope"}, b"{}\n")],
    "127.0.0.1",
    0,
)


class _Flaky(asyncio.Protocol):
    """Answers 200 to each request, but drops the connection unanswered every ``every``th."""

    count = 0
    every = 5

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            # The requests here carry 3-byte bodies.
            self.buffer = self.buffer[end + 4 + 3 :]
            _Flaky.count += 1
            if _Flaky.count % self.every == 0:
                self.transport.close()
                return
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")


async def _upstream_port() -> tuple[asyncio.Server, int]:
    server = await servers.serve_upstream(KEY, 0)
    return server, server.sockets[0].getsockname()[1]


def test_max_rate_counts_every_answer() -> None:
    async def run() -> None:
        server, port = await _upstream_port()
        try:
            result = await loadgen.max_rate("127.0.0.1", port, REQUESTS, 0.3, 4)
        finally:
            server.close()
        assert result.count > 50
        assert result.ok == result.count and result.failures == 0
        assert all(0 < latency < 1 for latency in result.latencies)
        assert 0.3 <= result.seconds < 1.5

    asyncio.run(run())


def test_fixed_rate_sends_exactly_rate_times_seconds() -> None:
    async def run() -> None:
        server, port = await _upstream_port()
        try:
            result = await loadgen.fixed_rate("127.0.0.1", port, REQUESTS, 0.4, 500, max_conns=4)
            empty = await loadgen.fixed_rate("127.0.0.1", port, REQUESTS, 0.0, 500, max_conns=2)
        finally:
            server.close()
        assert result.count == result.ok == 200
        # The last of the 200 is due 0.4 s after the first: the run cannot end sooner.
        assert result.seconds >= 0.4
        assert empty.count == 0

    asyncio.run(run())


def _load(protocol: Callable[[], asyncio.Protocol], mode: str, seconds: float, rate: float) -> Any:
    """A max-rate or fixed-rate run of 3 connections against a server speaking ``protocol``."""

    async def run() -> Any:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            if mode == "max":
                return await loadgen.max_rate("127.0.0.1", port, REQUESTS, seconds, 3)
            # Bounded: a run that never ends is the failure these tests look for.
            fixed = loadgen.fixed_rate("127.0.0.1", port, REQUESTS, seconds, rate, 3)
            return await asyncio.wait_for(fixed, 10)
        finally:
            server.close()

    return asyncio.run(run())


def test_dropped_connections_are_failures_and_replaced() -> None:
    for mode in ("max", "fixed"):
        result = _load(_Flaky, mode, 0.3, 300)
        assert result.failures > 0
        assert result.ok > 0
        if mode == "fixed":
            # Every scheduled request is one answer or one failure, and the run ends.
            assert result.ok + result.failures == result.count == 90


class _AnswerThenClose(asyncio.Protocol):
    """Answers one request (as ``Connection: close`` answers do), then closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 503 Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
        )
        self.transport.close()


def test_connections_closed_after_an_answer_are_replaced() -> None:
    for mode in ("max", "fixed"):
        # At 100/s answered connections wait, closed, among the free ones.
        result = _load(_AnswerThenClose, mode, 0.5 if mode == "fixed" else 0.3, 100)
        assert result.failures == 0 and result.statuses[503] == result.count > 0
        if mode == "fixed":
            assert result.count == 50
