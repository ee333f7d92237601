"""The upstream client's auth monitor and outage handling (relay.server.upstream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.config import config_from_dict
from relay.protocol.keys import generate_credentials
from relay.server.upstream import UpstreamClient, UpstreamError


class _Upstream:
    """A fake upstream: registration answers, envelope answers and the liveness endpoint."""

    def __init__(self) -> None:
        self.challenges = 0
        self.responses = 0
        self.live = 0
        self.envelopes = 0
        self.reject: dict[str, Any] | None = None
        self.drop_envelopes = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/0/relays/register/challenge/", self.challenge)
        app.router.add_post("/api/0/relays/register/response/", self.response)
        app.router.add_get("/api/0/relays/live/", self.is_live)
        app.router.add_post("/api/{project}/envelope/", self.envelope)
        return app

    async def challenge(self, request: web.Request) -> web.Response:
        self.challenges += 1
        return web.json_response({"relay_id": "x", "token": "t"})

    async def response(self, request: web.Request) -> web.Response:
        self.responses += 1
        if self.reject is not None:
            return web.json_response(self.reject, status=403)
        return web.json_response({"relay_id": "x"})

    async def is_live(self, request: web.Request) -> web.Response:
        self.live += 1
        return web.json_response({"is_healthy": True})

    async def envelope(self, request: web.Request) -> web.Response:
        self.envelopes += 1
        if self.drop_envelopes > 0:
            self.drop_envelopes -= 1
            return web.Response(status=502)
        return web.json_response({})


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[_Upstream, str]]:
    fake = _Upstream()
    server = TestServer(fake.app(), port=0)
    # Envelopes come zstd-compressed; the fake never reads them.
    await server.start_server(auto_decompress=False)
    try:
        yield fake, str(server.make_url("/"))
    finally:
        await server.close()


def _client(url: str, **sections: Any) -> UpstreamClient:
    config = config_from_dict({"relay": {"upstream": url}, **sections})
    return UpstreamClient(config, generate_credentials())


def test_error_classification() -> None:
    assert UpstreamError("no answer").is_network_error
    assert UpstreamError("gateway", 502).is_network_error
    assert not UpstreamError("bug", 500).is_network_error
    assert UpstreamError("stop", 403, relay_action="stop").is_permanent_rejection
    assert not UpstreamError("forbidden", 403).is_permanent_rejection
    assert not UpstreamError("denied", denied=True).is_network_error


async def test_processing_relays_register_once(upstream: tuple[_Upstream, str]) -> None:
    fake, url = upstream
    client = _client(url, http={"auth_interval": 0.05}, processing={"enabled": True})
    await client.start()
    try:
        await asyncio.wait_for(client.authenticated.wait(), 5)
        await asyncio.sleep(0.3)
    finally:
        await client.stop()
    assert fake.responses == 1


async def test_other_relays_renew_registration(upstream: tuple[_Upstream, str]) -> None:
    fake, url = upstream
    client = _client(url, http={"auth_interval": 0.05})
    await client.start()
    try:
        await asyncio.sleep(0.3)
    finally:
        await client.stop()
    assert fake.responses > 1


async def test_permanent_rejection_stops_all_requests(upstream: tuple[_Upstream, str]) -> None:
    fake, url = upstream
    fake.reject = {"detail": "bad dog", "relay": "stop"}
    client = _client(url, http={"auth_interval": 0.05, "max_retry_interval": 0.05})
    await client.start()
    try:
        await asyncio.sleep(0.3)
        assert client.denied
        assert not client.authenticated.is_set()
        with pytest.raises(UpstreamError) as exc:
            await client.send_envelope(42, b"{}\n", {}, deadline=float("inf"))
        assert exc.value.denied
    finally:
        await client.stop()
    # One attempt, never retried.
    assert fake.responses == 1
    assert fake.envelopes == 0


async def test_a_plain_403_is_retried(upstream: tuple[_Upstream, str]) -> None:
    fake, url = upstream
    fake.reject = {"detail": "not yet"}
    client = _client(url, http={"max_retry_interval": 0.05})
    await client.start()
    try:
        await asyncio.sleep(0.3)
        assert not client.denied
    finally:
        await client.stop()
    assert fake.responses > 1


async def test_network_errors_past_the_grace_period_probe_liveness(
    upstream: tuple[_Upstream, str],
) -> None:
    fake, url = upstream
    fake.drop_envelopes = 3
    client = _client(
        url, relay={"mode": "proxy", "upstream": url},
        http={"outage_grace_period": 0, "retry_delay": 0, "max_retry_interval": 0.05},
    )  # fmt: skip
    await client.start()
    try:
        await client.send_envelope(42, b"{}\n", {}, deadline=float("inf"))
    finally:
        await client.stop()
    # The 502s put the connection in outage; the liveness probe ended it, then it went out.
    assert fake.live >= 1
    assert fake.envelopes == 4
    assert not client.connection.is_outage
