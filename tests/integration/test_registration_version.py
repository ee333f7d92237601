"""A relay reports the Relay protocol version it speaks when it registers upstream."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from relay import RELAY_PROTOCOL_VERSION
from relay.config import config_from_dict
from relay.protocol.keys import generate_credentials
from relay.server.upstream import UpstreamClient


async def registered_version(version: str | None) -> Any:
    seen: asyncio.Queue[Any] = asyncio.Queue()

    async def challenge(request: web.Request) -> web.Response:
        body = await request.json()
        await seen.put(body.get("version"))
        return web.json_response({"relay_id": body["relay_id"], "token": "t"})

    async def response(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"relay_id": body["relay_id"]})

    app = web.Application()
    app.router.add_post("/api/0/relays/register/challenge/", challenge)
    app.router.add_post("/api/0/relays/register/response/", response)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    relay: dict[str, Any] = {"upstream": f"http://127.0.0.1:{port}/"}
    if version is not None:
        relay["protocol_version"] = version
    client = UpstreamClient(config_from_dict({"relay": relay}), generate_credentials())
    await client.start()
    try:
        return await asyncio.wait_for(seen.get(), 10)
    finally:
        await client.stop()
        await runner.cleanup()


@pytest.mark.asyncio(loop_scope="session")
async def test_default_is_the_targeted_relay_version() -> None:
    assert await registered_version(None) == RELAY_PROTOCOL_VERSION == "26.9.0"


@pytest.mark.asyncio(loop_scope="session")
async def test_configured_version_is_reported() -> None:
    assert await registered_version("25.1.0") == "25.1.0"
