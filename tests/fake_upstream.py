"""A minimal Sentry-like upstream for relay integration tests (aiohttp, in the test loop).

Subclasses answer ``projectconfigs`` and envelopes; registration always succeeds.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


class FakeUpstream:
    """Registration handlers, and routes for configs and envelopes that subclasses define."""

    def app(self) -> web.Application:
        """The upstream's routes."""
        app = web.Application()
        app.router.add_post("/api/0/relays/register/challenge/", self.challenge)
        app.router.add_post("/api/0/relays/register/response/", self.response)
        app.router.add_post("/api/0/relays/projectconfigs/", self.projectconfigs)
        app.router.add_post("/api/{project}/envelope/", self.envelope)
        return app

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Listen on a free loopback port while in the block; yields the base URL."""
        runner = web.AppRunner(self.app(), auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            await runner.cleanup()

    async def challenge(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"relay_id": body["relay_id"], "token": "t"})

    async def response(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"relay_id": body["relay_id"]})

    async def projectconfigs(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def envelope(self, request: web.Request) -> web.Response:
        raise NotImplementedError
