"""A lean HTTP/1.1 load generator for ``make bench``: fixed rate and maximum rate.

It replays recorded SDK requests (path, headers, body) over keep-alive connections. Each
request is serialized once, up front; a connection is a bare :class:`asyncio.Protocol` that
writes those bytes and parses only the status line and ``Content-Length`` of the answer.
An aiohttp ``ClientSession`` costs about twice the CPU of the aiohttp server it measures
(DESIGN.md), so on a 2-core machine it would measure itself rather than the server.

* :func:`max_rate`: a closed loop, ``concurrency`` connections each sending its next request
  as soon as the answer arrives.
* :func:`fixed_rate`: an open loop, requests scheduled every ``1/rate`` seconds whether or not
  earlier ones finished. Latency is measured from the scheduled time, so a server that falls
  behind shows it in the tail (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

#: One recorded request: path (with query), headers to send, and the body as sent on the wire.
WireRequest = tuple[str, dict[str, str], bytes]

_HEADERS_KEPT = ("content-type", "content-encoding", "x-sentry-auth", "user-agent")


def load_corpus(folder: Path, labels: set[str] | None = None) -> list[WireRequest]:
    """The recorded SDK requests in ``folder`` (``NNN.meta.json`` + ``NNN.body``)."""
    out: list[WireRequest] = []
    for meta_path in sorted(folder.glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        if labels is not None and meta.get("label") not in labels:
            continue
        body = meta_path.with_name(meta_path.name.replace(".meta.json", ".body")).read_bytes()
        headers = {k: v for k, v in meta["headers"] if k.lower() in _HEADERS_KEPT}
        path = meta["path"] + (f"?{meta['query']}" if meta.get("query") else "")
        out.append((path, headers, body))
    return out


def serialize(requests: list[WireRequest], host: str, port: int) -> list[bytes]:
    """The raw HTTP/1.1 bytes of each request, for ``host:port``."""
    out = []
    for path, headers, body in requests:
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        out.append(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return out


@dataclass
class LoadResult:
    """What one load run measured; latencies in seconds."""

    mode: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0
    target_rate: float | None = None

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        buf = self._buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            waiter.set_exception(ValueError("answer without Content-Length"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop > 0 else len(head)])
        total = end + 4 + length
        if len(buf) < total:
            return
        del buf[:total]
        waiter.set_result(int(head[9:12]))

    async def send(self, request: bytes) -> int:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(host: str, port: int) -> _Connection:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(_Connection, host, port)
    # uvloop's transports do not subclass asyncio.Transport (so no isinstance check).
    protocol.transport = transport
    return protocol


async def _send(
    conn: _Connection, request: bytes, host: str, port: int, result: LoadResult
) -> _Connection:
    """Send on ``conn`` (reconnecting once if it was closed); record the status."""
    try:
        if conn.closed:
            conn = await _connect(host, port)
        status = await conn.send(request)
    except (OSError, ValueError):
        result.failures += 1
        conn.close()
        return await _connect(host, port)
    result.statuses[status] += 1
    return conn


async def max_rate(
    host: str, port: int, requests: list[bytes], seconds: float, concurrency: int
) -> LoadResult:
    """Closed loop: ``concurrency`` connections, each sending back to back for ``seconds``."""
    result = LoadResult("max", seconds)
    conns = [await _connect(host, port) for _ in range(concurrency)]
    stop_at = time.perf_counter() + seconds
    clock = time.perf_counter
    latencies = result.latencies

    async def loop(index: int) -> None:
        conn = conns[index]
        i = index * 7
        while clock() < stop_at:
            started = clock()
            conn = await _send(conn, requests[i % len(requests)], host, port, result)
            latencies.append(clock() - started)
            i += 1
        conns[index] = conn

    began = clock()
    await asyncio.gather(*(loop(n) for n in range(concurrency)))
    result.seconds = clock() - began
    for conn in conns:
        conn.close()
    return result


async def fixed_rate(
    host: str, port: int, requests: list[bytes], seconds: float, rate: float, max_conns: int = 64
) -> LoadResult:
    """Open loop at ``rate`` requests/s; latency counts from each request's scheduled time.

    ``max_conns`` connections take the next scheduled request as soon as they are free; a
    request that finds every connection busy waits, and that wait is part of its latency.
    """
    result = LoadResult("fixed", seconds, target_rate=rate)
    # All connections up front: a connection storm when the server lags would measure SYN
    # retransmits (1 s) rather than the server.
    conns = [await _connect(host, port) for _ in range(max_conns)]
    clock = time.perf_counter
    total = int(rate * seconds)
    interval = 1.0 / rate
    latencies = result.latencies
    next_index = 0
    began = clock() + 0.01

    async def loop(slot: int) -> None:
        nonlocal next_index
        conn = conns[slot]
        while next_index < total:
            i = next_index
            next_index += 1
            scheduled = began + i * interval
            delay = scheduled - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            conn = await _send(conn, requests[i % len(requests)], host, port, result)
            latencies.append(clock() - scheduled)
        conns[slot] = conn

    await asyncio.gather(*(loop(n) for n in range(max_conns)))
    result.seconds = max(seconds, clock() - began)
    for conn in conns:
        conn.close()
    return result
