"""A lean HTTP/1.1 load generator for ``make bench``: fixed rate and maximum rate.

It replays recorded SDK requests (path, headers, body) over keep-alive connections. Each
request is serialized once, up front; a connection is a bare :class:`asyncio.Protocol` that
writes those bytes and parses only the status line and ``Content-Length`` of the answer.
An aiohttp ``ClientSession`` costs about twice the CPU of the aiohttp server it measures
(DESIGN.md), so on a 2-core machine it would measure itself rather than the server.

* :func:`max_rate`: a closed loop, ``concurrency`` connections each sending its next request
  as soon as the answer arrives.
* :func:`fixed_rate`: an open loop, requests scheduled every ``1/rate`` seconds whether or not
  earlier ones finished. Latency is measured from the scheduled time (or, when the loop's
  millisecond timer found it due late, from then), so a server that falls behind shows it in
  the tail (no coordinated omission) but the load generator's own timer lag does not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

#: One recorded request: path (with query), headers to send, and the body as sent on the wire.
WireRequest = tuple[str, dict[str, str], bytes]

#: Shortest wait between two dispatches of the fixed-rate loop (the timers' resolution).
TICK = 0.001

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
    #: Connections the run used (at most, for a fixed-rate run).
    connections: int = 0

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
    """One keep-alive connection with at most one request in flight.

    Each complete answer is handed to ``on_answer`` from ``data_received`` itself, which may
    write the next request right there: no future and no task wake-up per request (against
    the bare baseline, on a CPU of its own: 14 -> 13 us of load generator CPU per request).
    """

    def __init__(self, on_answer: Callable[[_Connection, int, float], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.on_answer = on_answer
        self._buffer = bytearray()
        #: perf_counter time the request in flight counts its latency from (None: idle).
        self.since: float | None = None
        self.closed = asyncio.get_running_loop().create_future()
        #: The last answer said ``Connection: close``: no request is sent on it any more.
        self.last_answer = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport (so no isinstance check).
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        since, self.since = self.since, None
        if since is not None:
            self.on_answer(self, 0, since)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while (since := self.since) is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self.close()  # an answer without Content-Length: counted as a failure
                return
            stop = head.find(b"\r\n", at + 2)
            total = end + 4 + int(head[at + 17 : stop if stop > 0 else len(head)])
            if len(buf) < total:
                return
            del buf[:total]
            self.since = None
            self.last_answer = b"\r\nconnection: close" in head
            self.on_answer(self, int(head[9:12]), since)

    def send(self, request: bytes, since: float) -> None:
        """Write ``request``; its latency counts from ``since``."""
        assert self.transport is not None
        self.since = since
        self.transport.write(request)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def gone(self) -> bool:
        """Closed by the server, or about to be: a new connection must take its place."""
        transport = self.transport
        return (
            self.last_answer
            or self.closed.done()
            or (transport is not None and transport.is_closing())
        )


class _Run:
    """The connections of one load run and what they measured.

    A status of 0 from a connection means it closed with a request in flight: a failure,
    after which the run opens a new connection in its place (off the hot path, in a task).
    """

    def __init__(self, host: str, port: int, result: LoadResult) -> None:
        self.host, self.port, self.result = host, port, result
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        self.conns: list[_Connection] = []
        self._reconnects: set[asyncio.Task[None]] = set()
        self.reconnecting = 0

    async def connect(self) -> _Connection:
        _, protocol = await self.loop.create_connection(
            lambda: _Connection(self.answered), self.host, self.port
        )
        self.conns.append(protocol)
        return protocol

    def answered(self, conn: _Connection, status: int, since: float) -> None:
        """Record one answer (status 0: a failure) to a request sent at ``since``; go on."""
        raise NotImplementedError

    def replace(self, conn: _Connection, failed: bool = True) -> None:
        """Open a new connection in place of ``conn`` (closed, or failed), then give it work."""
        self.result.failures += failed
        conn.close()
        self.conns.remove(conn)
        self.reconnecting += 1

        async def reconnect() -> None:
            for attempt in range(20):
                try:
                    fresh = await self.connect()
                    break
                except OSError as exc:
                    if attempt == 19:  # the server is gone for 2 s: end the run with it
                        if not self.done.done():
                            self.done.set_exception(exc)
                        return
                    await asyncio.sleep(0.1)
            self.reconnecting -= 1
            self.idle(fresh)

        task = self.loop.create_task(reconnect())
        self._reconnects.add(task)
        task.add_done_callback(self._reconnects.discard)

    def idle(self, conn: _Connection) -> None:
        """``conn`` has nothing in flight: give it work (or leave it idle)."""
        raise NotImplementedError

    async def finish(self) -> None:
        await self.done
        for task in list(self._reconnects):
            task.cancel()
        for conn in self.conns:
            conn.close()
        await asyncio.gather(*(conn.closed for conn in self.conns))


class _MaxRun(_Run):
    """Closed loop: each connection sends its next request as soon as an answer arrives."""

    def __init__(self, host: str, port: int, result: LoadResult, requests: list[bytes]) -> None:
        super().__init__(host, port, result)
        self.requests = requests
        #: Set once every connection is open (see :func:`max_rate`).
        self.stop_at = 0.0
        self.next = 0
        self.busy = 0

    def answered(self, conn: _Connection, status: int, since: float) -> None:
        now = time.perf_counter()
        self.busy -= 1
        if not status:
            self.replace(conn)
            return
        self.result.statuses[status] += 1
        self.result.latencies.append(now - since)
        self.idle(conn)

    def idle(self, conn: _Connection) -> None:
        now = time.perf_counter()
        if now >= self.stop_at:
            if not self.busy and not self.reconnecting and not self.done.done():
                self.done.set_result(None)
            return
        if conn.gone:  # the server closed it between requests, or said it would
            self.replace(conn, failed=False)
            return
        self.busy += 1
        request = self.requests[self.next % len(self.requests)]
        self.next += 7  # successive requests walk the corpus mix, not one scenario
        conn.send(request, now)


class _FixedRun(_Run):
    """Open loop: request ``i`` is due at ``began + i / rate``; free connections take it."""

    def __init__(
        self, host: str, port: int, result: LoadResult, requests: list[bytes], rate: float,
        total: int,
    ) -> None:  # fmt: skip
        super().__init__(host, port, result)
        self.requests, self.interval, self.total = requests, 1.0 / rate, total
        self.began = 0.0
        self.next = 0  # the next request not yet due
        #: Due requests (index, latency counted from) that no connection was free for.
        self.due: deque[tuple[int, float]] = deque()
        self.free: list[_Connection] = []
        self.answers = 0

    def start(self) -> None:
        self.began = time.perf_counter() + 0.01
        self.loop.call_later(0.01, self.tick)

    def tick(self) -> None:
        """Queue every request now due, hand them to free connections, re-arm the timer.

        The event loop's timers have millisecond resolution, so a tick finds requests up to
        ~1 ms after they were due. That lateness is the load generator's, not the server's:
        a request's latency counts from the later of its due time and the tick that found it
        due. Waiting for a free connection after that (the server lagging) does count.
        """
        now = time.perf_counter()
        due_count = min(self.total, int((now - self.began) / self.interval) + 1)
        self.due.extend(
            (i, max(now, self.began + i * self.interval)) for i in range(self.next, due_count)
        )
        self.next = max(self.next, due_count)
        while self.due and self.free:
            # A free connection may have been closed while it waited (keep-alive timeout).
            self.idle(self.free.pop())
        if self.next < self.total:
            wait = self.began + self.next * self.interval - time.perf_counter()
            # Never sooner than the timer resolution: shorter waits would spin the CPU.
            self.loop.call_later(max(TICK, wait), self.tick)

    def _send(self, conn: _Connection, due: tuple[int, float]) -> None:
        index, since = due
        conn.send(self.requests[index % len(self.requests)], since)

    def answered(self, conn: _Connection, status: int, since: float) -> None:
        now = time.perf_counter()
        self.answers += 1
        if status:
            self.result.statuses[status] += 1
        # A failed request is a latency sample too, so the run still ends after ``total``.
        self.result.latencies.append(now - since)
        if not status:
            self.replace(conn)
        else:
            self.idle(conn)
        if self.answers >= self.total and not self.done.done():
            self.done.set_result(None)

    def idle(self, conn: _Connection) -> None:
        if conn.gone:  # the server closed it between requests, or said it would
            self.replace(conn, failed=False)
        elif self.due:
            self._send(conn, self.due.popleft())
        else:
            self.free.append(conn)


async def max_rate(
    host: str, port: int, requests: list[bytes], seconds: float, concurrency: int
) -> LoadResult:
    """Closed loop: ``concurrency`` connections, each sending back to back for ``seconds``."""
    result = LoadResult("max", seconds, connections=concurrency)
    run = _MaxRun(host, port, result, requests)
    for _ in range(concurrency):
        await run.connect()
    run.stop_at = time.perf_counter() + seconds
    began = time.perf_counter()
    for conn in list(run.conns):
        run.idle(conn)
    await run.finish()
    result.seconds = time.perf_counter() - began
    return result


async def fixed_rate(
    host: str, port: int, requests: list[bytes], seconds: float, rate: float, max_conns: int = 64
) -> LoadResult:
    """Open loop at ``rate`` requests/s; latency counts from each request's scheduled time.

    ``max_conns`` connections take the next scheduled request as soon as they are free; a
    request that finds every connection busy waits, and that wait is part of its latency.
    """
    result = LoadResult("fixed", seconds, target_rate=rate, connections=max_conns)
    total = int(rate * seconds)
    run = _FixedRun(host, port, result, requests, rate, total)
    # All connections up front: a connection storm when the server lags would measure SYN
    # retransmits (1 s) rather than the server.
    for _ in range(max_conns):
        run.free.append(await run.connect())
    if total:
        run.start()
    else:
        run.done.set_result(None)
    await run.finish()
    result.seconds = max(seconds, time.perf_counter() - run.began)
    return result
