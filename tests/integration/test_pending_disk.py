"""Tier 2: envelopes waiting for their project config on a relay with a disk spool.

As Relay's envelope buffer: they move to disk (``spool.envelopes.batch_size_bytes``), a
graceful stop moves what still waits in memory, and the next start takes them up again and
forwards them once the config arrives. A real POP RelayApp; the upstream is an in-process
stand-in that withholds the project config (``pending``) until told otherwise.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
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
from relay.protocol.keys import generate_credentials
from relay.server.app import RelayApp
from tests.fake_upstream import FakeUpstream
from tests.polling import until

pytestmark = pytest.mark.asyncio(loop_scope="session")
KEY = uuid.uuid4().hex
PROJECT_ID = 42


class WithholdingUpstream(FakeUpstream):
    """Answers ``pending`` for every project config until ``serve_configs``; records the
    event ids and the client IPs of the envelopes it receives."""

    def __init__(self) -> None:
        self.serve_configs = False
        self.received: dict[str, str | None] = {}

    async def projectconfigs(self, request: web.Request) -> web.Response:
        body = await request.json()
        keys = body.get("publicKeys", [])
        answer: dict[str, Any] = {"configs": {}}
        if self.serve_configs:
            answer["configs"] = {
                key: {
                    "projectId": PROJECT_ID, "rev": "1", "disabled": False,
                    "publicKeys": [{"publicKey": key, "numericId": 1}],
                    "config": {"allowedDomains": ["*"]},
                }
                for key in keys
            }  # fmt: skip
        else:
            answer["pending"] = keys
        if body.get("global"):
            answer["global"] = {}
        return web.json_response(answer)

    async def envelope(self, request: web.Request) -> web.Response:
        raw = zstd_decompress(await request.read(), 10 << 20)
        header = json.loads(raw.split(b"\n", 1)[0])
        self.received[header["event_id"]] = request.headers.get("X-Forwarded-For")
        return web.json_response({})


@pytest_asyncio.fixture(loop_scope="session")
async def upstream() -> AsyncIterator[tuple[WithholdingUpstream, str]]:
    fake = WithholdingUpstream()
    async with fake.serving() as url:
        yield fake, url


def pop_config(url: str, path: Path, batch_size_bytes: int) -> Any:
    return config_from_dict({
        "relay": {"mode": "managed", "port": 0, "upstream": url},
        "cache": {"batch_interval": 10},
        "http": {"retry_delay": 0.05, "max_retry_interval": 0.2},
        "limits": {"shutdown_timeout": 3},
        "spool": {"envelopes": {"path": str(path), "batch_size_bytes": batch_size_bytes}},
    })  # fmt: skip


async def send(port: int, event_id: str) -> int:
    payload = json.dumps({"message": f"waiting {event_id}"}).encode()
    body = (
        json.dumps({"event_id": event_id}).encode() + b"\n"
        + json.dumps({"type": "event", "length": len(payload)}).encode() + b"\n" + payload
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/{PROJECT_ID}/envelope/"
    headers = {
        "X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_version=7",
        "X-Forwarded-For": "203.0.113.7",
    }
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


def rows_on_disk(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM waiting").fetchone()[0])


# batch_size_bytes=1: every envelope goes to disk as it arrives; 10 KiB (Relay's default):
# these small envelopes wait in memory, and the graceful stop moves them to disk.
@pytest.mark.parametrize("batch_size_bytes", [1, 10 * 1024])
async def test_waiting_envelopes_survive_a_restart(
    upstream: tuple[WithholdingUpstream, str], tmp_path: Path, batch_size_bytes: int
) -> None:
    fake, url = upstream
    fake.serve_configs = False
    path = tmp_path / "spool.db"
    config = pop_config(url, path, batch_size_bytes)
    sent = [uuid.uuid4().hex for _ in range(5)]

    first = RelayApp(config, generate_credentials())
    await first.start()
    try:
        for event_id in sent:
            assert await send(first.ports[0], event_id) == 200
        ingestor = first.ingestor
        disk = first.disk
        assert ingestor is not None and disk is not None
        await until(lambda: len(ingestor.pending) == len(sent))
        if batch_size_bytes == 1:
            await until(lambda: disk.waiting == len(sent))
            assert ingestor.pending.bytes_queued == 0
    finally:
        await first.stop()
    assert await asyncio.to_thread(rows_on_disk, path) == len(sent)
    assert not fake.received

    fake.serve_configs = True
    second = RelayApp(config, generate_credentials())
    await second.start()
    try:
        await until(lambda: set(sent) <= set(fake.received))
        taken_up = second.disk
        assert taken_up is not None
        await until(lambda: taken_up.waiting == 0)
        # What the request said of its client travelled through the disk too.
        assert {fake.received[e] for e in sent} == {"203.0.113.7, 127.0.0.1"}
    finally:
        await second.stop()
    assert await asyncio.to_thread(rows_on_disk, path) == 0


async def test_released_in_order_disk_first(
    upstream: tuple[WithholdingUpstream, str], tmp_path: Path
) -> None:
    # Envelopes that went to disk are older than those still in memory: they go first.
    fake, url = upstream
    fake.serve_configs = False
    fake.received.clear()
    app = RelayApp(pop_config(url, tmp_path / "spool.db", 300), generate_credentials())
    await app.start()
    try:
        sent = [uuid.uuid4().hex for _ in range(6)]
        for event_id in sent:
            assert await send(app.ports[0], event_id) == 200
        disk = app.disk
        assert disk is not None
        await until(lambda: disk.waiting > 0)
        fake.serve_configs = True
        await until(lambda: set(sent) <= set(fake.received))
        assert list(fake.received) == sent
    finally:
        await app.stop()
