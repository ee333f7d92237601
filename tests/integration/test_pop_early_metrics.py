"""Tier 2: a POP aggregates received metric buckets before their project config is known.

As Relay's ``queue_envelope``: ``metric_buckets`` items go to the aggregator at once instead of
waiting with the envelope. A flush that finds the config still being fetched keeps them; the
final flush at shutdown waits for it. The upstream is an in-process stand-in whose
``projectconfigs`` answer is held back until the test releases it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from relay.config import config_from_dict
from relay.protocol.encoding import zstd_decompress
from relay.protocol.envelope import parse_envelope
from relay.protocol.keys import generate_credentials
from relay.server.app import RelayApp
from tests.fake_upstream import FakeUpstream

KEY = "e" * 32
PROJECT_ID = 42


class SlowConfigUpstream(FakeUpstream):
    """Answers ``projectconfigs`` once ``release`` is set; records metric buckets received."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.buckets: list[dict[str, Any]] = []
        self.arrival = asyncio.Event()

    async def projectconfigs(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.release.wait()
        configs = {
            key: {
                "projectId": PROJECT_ID, "rev": "1", "disabled": False,
                "publicKeys": [{"publicKey": key, "numericId": 1}],
                "config": {"allowedDomains": ["*"]},
            }
            for key in body.get("publicKeys", []) if key == KEY
        }  # fmt: skip
        answer: dict[str, Any] = {"configs": configs}
        if body.get("global"):
            answer.update({"global": {}, "globalStatus": "ready"})
        return web.json_response(answer)

    async def envelope(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.headers.get("Content-Encoding") == "zstd":
            raw = zstd_decompress(raw, 10 << 20)
        for item in parse_envelope(raw).items:
            if item.type == "metric_buckets":
                self.buckets.extend(json.loads(item.payload))
                self.arrival.set()
        return web.json_response({})


async def _start_pop(upstream_url: str, initial_delay: int) -> RelayApp:
    config = config_from_dict({
        "relay": {"mode": "managed", "port": 0, "upstream": upstream_url},
        "aggregator": {"bucket_interval": 1, "initial_delay": initial_delay},
        "limits": {"shutdown_timeout": 4},
    })  # fmt: skip
    app = RelayApp(config, generate_credentials())
    await app.start()
    return app


@pytest_asyncio.fixture(loop_scope="session")
async def pop() -> AsyncIterator[tuple[RelayApp, SlowConfigUpstream]]:
    upstream = SlowConfigUpstream()
    async with upstream.serving() as url:
        app = await _start_pop(url, initial_delay=0)
        try:
            yield app, upstream
        finally:
            upstream.release.set()
            await app.stop()


async def _send_buckets(port: int, name: str, value: float) -> None:
    buckets = [{"timestamp": int(time.time()), "width": 0, "name": name, "type": "c",
                "value": value}]  # fmt: skip
    payload = json.dumps(buckets).encode()
    body = b"{}\n" + json.dumps({"type": "metric_buckets", "length": len(payload)}).encode()
    body += b"\n" + payload
    headers = {"X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_version=7"}
    url = f"http://127.0.0.1:{port}/api/{PROJECT_ID}/envelope/"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()


@pytest.mark.asyncio(loop_scope="session")
async def test_buckets_wait_in_the_aggregator_until_the_config_arrives(
    pop: tuple[RelayApp, SlowConfigUpstream],
) -> None:
    app, upstream = pop
    assert app.ingestor is not None and app.metrics is not None
    await _send_buckets(app.ports[0], "c:sessions/early@none", 3)
    # Not parked with an envelope: in the aggregator, flushed and kept while the fetch hangs.
    assert len(app.ingestor.pending) == 0
    assert len(app.metrics.service.aggregator) == 1
    await asyncio.sleep(2.5)  # two flushes of a 1 s bucket interval
    assert upstream.buckets == []
    assert len(app.metrics.service.aggregator) == 1
    upstream.release.set()
    await asyncio.wait_for(upstream.arrival.wait(), 10)
    assert [(b["name"], b["value"]) for b in upstream.buckets] == [("c:sessions/early@none", 3.0)]


@pytest.mark.asyncio(loop_scope="session")
async def test_shutdown_waits_for_the_config_of_aggregated_buckets() -> None:
    upstream = SlowConfigUpstream()
    async with upstream.serving() as url:
        # Nothing is due before shutdown: only the final flush can deliver the bucket.
        app = await _start_pop(url, initial_delay=100)
        await _send_buckets(app.ports[0], "c:sessions/at_shutdown@none", 5)
        asyncio.get_running_loop().call_later(0.5, upstream.release.set)
        await app.stop()
    assert [(b["name"], b["value"]) for b in upstream.buckets] == [
        ("c:sessions/at_shutdown@none", 5.0)
    ]
