"""Tier 2: the disk spool (SQLite/WAL) and a POP relay that spools while its upstream is down."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from relay.config import config_from_dict
from relay.protocol.encoding import zstd_decompress
from relay.protocol.envelope import parse_envelope
from relay.server import forwarder as forwarder_module
from relay.server.app import RelayApp
from relay.server.spool import Spool, SpoolFull, WaitingEnvelope, inspect_spool
from tests.polling import until

pytestmark = pytest.mark.asyncio(loop_scope="session")
KEY = uuid.uuid4().hex
AUTH = {"X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_version=7"}


# --- the store ------------------------------------------------------------------------


async def _fresh_usage(tmp_path: Path) -> int:
    """Bytes a new, empty spool file uses: its schema's pages (Relay's measure)."""
    spool = Spool(tmp_path / "fresh.db", max_bytes=1 << 20)
    await spool.open()
    await spool.close()
    return spool.bytes


async def test_order_restart_and_cap(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    cap = await _fresh_usage(tmp_path) + 10_000
    spool = Spool(path, max_bytes=cap)
    await spool.open()
    for n in range(5):
        await spool.push(1, KEY, {"X-Sentry-Auth": "a"}, f"envelope {n}".encode())
    assert len(spool) == 5
    first = await spool.peek(2)
    assert [e.body for e in first] == [b"envelope 0", b"envelope 1"]
    await spool.remove(first)
    await spool.close()

    # Survives a restart, in order.
    again = Spool(path, max_bytes=cap)
    await again.open()
    assert len(again) == 3
    assert [e.body for e in await again.peek(10)] == [b"envelope 2", b"envelope 3", b"envelope 4"]
    assert again.oldest_received_at is not None
    # Over the cap: refused, counted, nothing written; full (for readiness) until an
    # envelope fits again.
    assert not again.full
    with pytest.raises(SpoolFull):
        await again.push(1, KEY, {}, os.urandom(20_000))
    assert again.refused == 1 and len(again) == 3
    assert again.full
    await again.push(1, KEY, {}, b"small")
    assert not again.full
    await again.close()


async def test_corrupt_rows_are_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, max_bytes=1 << 20)
    await spool.open()
    for n in range(3):
        await spool.push(1, KEY, {}, f"envelope {n}".encode())
    await spool.close()
    with sqlite3.connect(path) as conn:  # bit rot in the middle row
        conn.execute("UPDATE envelopes SET body = X'00ff00ff' WHERE id = 2")
    spool = Spool(path, max_bytes=1 << 20)
    await spool.open()
    entries = await spool.peek(10)
    assert [e.body for e in entries] == [b"envelope 0", b"envelope 2"]
    assert spool.quarantined == 1 and len(spool) == 2
    assert await spool.quarantine_count() == 1
    await spool.close()


async def test_corrupt_waiting_rows_are_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, max_bytes=1 << 20)
    await spool.open()
    await spool.push_waiting(
        [WaitingEnvelope(time.time(), KEY, b"{}", f"envelope {n}".encode()) for n in range(3)]
    )
    await spool.close()
    with sqlite3.connect(path) as conn:  # bit rot in the middle row
        conn.execute("UPDATE waiting SET body = X'00ff00ff' WHERE id = 2")
    spool = Spool(path, max_bytes=1 << 20)
    await spool.open()
    assert spool.waiting == 3 and await spool.waiting_keys() == {KEY: 3}
    entries = await spool.take_waiting(KEY)
    assert [e.body for e in entries] == [b"envelope 0", b"envelope 2"]
    assert spool.quarantined == 1 and spool.waiting == 0
    assert await spool.quarantine_count() == 1
    await spool.close()


async def test_corrupt_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not a database" * 100)
    spool = Spool(path, max_bytes=1 << 20)
    await spool.open()  # no exception, no crash loop
    assert spool.quarantined == 1
    assert await asyncio.to_thread(lambda: list(tmp_path.glob("spool.db.corrupt-*")))
    await spool.push(1, KEY, {}, b"fresh")
    assert [e.body for e in await spool.peek(1)] == [b"fresh"]
    await spool.close()
    info = await inspect_spool(path)
    assert info["envelopes"] == 1 and info["waiting_for_project_config"] == 0


# --- a POP relay with a flaky upstream -------------------------------------------------------


class FakeUpstream:
    """Answers envelopes with 503 while ``down``; records the event ids it accepted."""

    def __init__(self) -> None:
        self.down = True
        self.received: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{project}/envelope/", self._envelope)
        self._runner = web.AppRunner(app, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _envelope(self, request: web.Request) -> web.Response:
        if self.down:
            return web.json_response({"detail": "down"}, status=503)
        body = zstd_decompress(await request.read(), 1 << 24)
        event_id = parse_envelope(body).event_id
        assert event_id is not None
        self.received.append(event_id)
        return web.json_response({})


@pytest_asyncio.fixture(loop_scope="session")
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


def _pop(upstream: FakeUpstream, spool_path: Path, **more: Any) -> RelayApp:
    """A proxy POP spooling to ``spool_path``; ``more``: other config sections."""
    return RelayApp(config_from_dict({
        "relay": {"mode": "proxy", "port": 0, "upstream": f"http://127.0.0.1:{upstream.port}/"},
        "http": {"retry_delay": 0.05, "max_retry_interval": 0.2},
        "spool": {"envelopes": {"path": str(spool_path), **more.pop("spool", {})}},
        "limits": {"shutdown_timeout": 3},
        **more,
    }), None)  # fmt: skip


async def _send(port: int, event_id: str, padding: str = "") -> int:
    body = json.dumps({"event_id": event_id}).encode() + b"\n"
    payload = json.dumps({"message": f"spool {event_id}{padding}"}).encode()
    body += json.dumps({"type": "event", "length": len(payload)}).encode() + b"\n" + payload
    url = f"http://127.0.0.1:{port}/api/42/envelope/"
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=AUTH) as resp:
        await resp.read()
        return resp.status


async def test_pop_spools_survives_restart_and_replays_in_order(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The in-memory retry budget before spooling is 10 s in production; short here.
    monkeypatch.setattr(forwarder_module, "SPOOL_AFTER_SECS", 0.3)
    path = tmp_path / "spool.db"
    pop = _pop(upstream, path)
    await pop.start()
    ids = [uuid.uuid4().hex for _ in range(6)]
    try:
        for event_id in ids[:3]:
            assert await _send(pop.ports[0], event_id) == 200
        spool = pop.spool
        assert spool is not None
        await until(lambda: len(spool.spool) == 3 and spool.upstream_down)
        # While the upstream is known down, new envelopes go straight to disk.
        for event_id in ids[3:]:
            assert await _send(pop.ports[0], event_id) == 200
        await until(lambda: len(spool.spool) == 6)
    finally:
        await pop.stop()
    assert upstream.received == []

    # A new process finds the spool and replays it, oldest first, once the upstream is up.
    upstream.down = False
    pop = _pop(upstream, path)
    await pop.start()
    try:
        await until(lambda: len(upstream.received) == 6)
        assert upstream.received == ids
        assert pop.spool is not None and len(pop.spool.spool) == 0
        # New traffic flows directly again.
        fresh = uuid.uuid4().hex
        assert await _send(pop.ports[0], fresh) == 200
        await until(lambda: fresh in upstream.received)
    finally:
        await pop.stop()


async def test_spool_drain_command_sends_everything(upstream: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, max_bytes=1 << 20)
    await spool.open()
    ids = [uuid.uuid4().hex for _ in range(3)]
    for event_id in ids:
        body = json.dumps({"event_id": event_id}).encode() + b"\n"
        await spool.push(42, KEY, {"X-Sentry-Auth": AUTH["X-Sentry-Auth"]}, body)
    await spool.close()
    config_dir = tmp_path / "relay"
    config_dir.mkdir()
    (config_dir / "config.yml").write_text(
        json.dumps(
            {
                "relay": {"mode": "proxy", "upstream": f"http://127.0.0.1:{upstream.port}/"},
                "spool": {"envelopes": {"path": str(path)}},
            }
        )
    )
    upstream.down = False
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay.cli", "-c", str(config_dir), "spool", "drain",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err
    assert b"sent 3 spooled envelopes, 0 left" in out
    assert upstream.received == ids


async def _readiness_becomes(port: int, status: int, timeout: float, failure: str) -> None:
    """Poll the readiness check until it answers ``status``."""
    url = f"http://127.0.0.1:{port}/api/relay/healthcheck/ready/"
    deadline = time.monotonic() + timeout
    while True:
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            await resp.read()
            if resp.status == status:
                return
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.05)


async def test_full_spool_fails_readiness_until_replayed(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full spool turns new envelopes into outcomes: the relay says it is not ready (as
    # Relay does when its buffer's disk is full), and ready again once the spool drained.
    monkeypatch.setattr(forwarder_module, "SPOOL_AFTER_SECS", 0.3)
    upstream.down = True
    # One page over a fresh file: the first page split fills it.
    cap = await _fresh_usage(tmp_path) + 4096
    pop = _pop(
        upstream, tmp_path / "spool.db",
        spool={"max_disk_size": cap}, health={"refresh_interval_ms": 100},
    )  # fmt: skip
    await pop.start()
    try:
        port = pop.ports[0]
        spool = pop.spool
        assert spool is not None
        await _readiness_becomes(port, 200, 10, "never ready")
        sent = [uuid.uuid4().hex for _ in range(16)]
        for event_id in sent:
            assert await _send(port, event_id, os.urandom(300).hex()) == 200
        await until(lambda: spool.upstream_down and spool.spool.full)
        await _readiness_becomes(port, 503, 5, "still ready with a full spool")

        upstream.down = False
        await until(lambda: len(spool.spool) == 0)
        await _readiness_becomes(port, 200, 5, "not ready after the spool drained")
    finally:
        await pop.stop()
        upstream.down = True
        upstream.received.clear()
