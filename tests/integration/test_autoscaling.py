"""Tier 2: Relay's autoscaling endpoint, and SIGUSR1's pause of processing, on a real POP.

Held envelopes are what ``relay_spool_item_count`` counts; with a disk spool they are on
disk and ``relay_spool_total_size`` grows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from relay.config import config_from_dict
from relay.protocol.keys import generate_credentials
from relay.server.app import RelayApp
from tests.integration.test_pending_disk import WithholdingUpstream, pop_config, send
from tests.polling import until

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def upstream() -> AsyncIterator[tuple[WithholdingUpstream, str]]:
    fake = WithholdingUpstream()
    fake.serve_configs = True
    async with fake.serving() as url:
        yield fake, url


async def scrape(port: int) -> tuple[int, dict[str, str]]:
    url = f"http://127.0.0.1:{port}/api/relay/autoscaling/"
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        text = await resp.text()
    if resp.status != 200:
        return resp.status, {}
    return resp.status, dict(line.rsplit(" ", 1) for line in text.splitlines())


async def test_held_envelopes_are_counted_and_released_on_resume(
    upstream: tuple[WithholdingUpstream, str], tmp_path: Path
) -> None:
    fake, url = upstream
    app = RelayApp(pop_config(url, tmp_path / "spool.db", 1), generate_credentials())
    await app.start()
    try:
        port = app.ports[0]
        status, first = await scrape(port)
        assert status == 200
        assert first["relay_up"] == "1" and first["relay_spool_item_count"] == "0"
        fresh = int(first["relay_spool_total_size"])
        assert fresh > 0  # the spool file's schema
        assert 0.0 < float(first["relay_memory_usage"]) <= 1.0
        for name in (
            'relay_service_utilization{relay_service="AggregatorService", instance_id="0"}',
            "relay_worker_pool_utilization",
            "relay_runtime_utilization",
        ):
            assert 0 <= int(first[name]) <= 100, name

        ingestor, disk = app.ingestor, app.disk
        assert ingestor is not None and disk is not None
        app.toggle_hold()  # what SIGUSR1 does
        # Enough to fill the table's first page: the file grows.
        sent = [uuid.uuid4().hex for _ in range(40)]
        for event_id in sent:
            assert await send(port, event_id) == 200
        await until(lambda: disk.waiting == len(sent))
        _, held = await scrape(port)
        assert held["relay_spool_item_count"] == str(len(sent))
        assert int(held["relay_spool_total_size"]) > fresh
        assert not set(sent) & set(fake.received)

        app.toggle_hold()
        await until(lambda: set(sent) <= set(fake.received))
        await until(lambda: disk.waiting == 0)
        _, resumed = await scrape(port)
        assert resumed["relay_spool_item_count"] == "0"

        app.drain_gate.close()  # shutting down: still served, and says so
        _, draining = await scrape(port)
        assert draining["relay_up"] == "0"
    finally:
        await app.stop()


async def test_a_proxy_relay_has_no_autoscaling_data(
    upstream: tuple[WithholdingUpstream, str],
) -> None:
    _, url = upstream
    app = RelayApp(config_from_dict({"relay": {"mode": "proxy", "port": 0, "upstream": url}}), None)
    await app.start()
    try:
        status, _ = await scrape(app.ports[0])
        assert status == 404
    finally:
        await app.stop()


async def test_a_pause_before_the_start_holds_from_the_start(
    upstream: tuple[WithholdingUpstream, str], tmp_path: Path
) -> None:
    # SIGUSR1 is handled from before the relay starts; one received then is kept.
    fake, url = upstream
    app = RelayApp(pop_config(url, tmp_path / "spool.db", 1 << 20), generate_credentials())
    app.toggle_hold()
    await app.start()
    try:
        assert app.ingestor is not None and app.ingestor.held
        event_id = uuid.uuid4().hex
        assert await send(app.ports[0], event_id) == 200
        await until(lambda: len(app.ingestor.pending) == 1 if app.ingestor else False)
        assert event_id not in fake.received
        app.toggle_hold()
        await until(lambda: event_id in fake.received)
    finally:
        await app.stop()
