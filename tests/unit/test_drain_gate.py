"""The drain gate: health and metrics answer while draining, everything else gets 503."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from relay.server.drain import DrainGate, served_while_draining
from relay.server.health import health_routes


@pytest.mark.parametrize(
    ("path", "served"),
    [
        ("/api/relay/healthcheck/live/", True),
        ("/api/relay/healthcheck/ready/", True),
        ("//api//relay/healthcheck/live", True),
        ("/api/0/relays/live/", True),
        ("/metrics", True),
        ("/api/42/envelope/", False),
        ("/api/42/store/", False),
        ("/api/0/relays/projectconfigs/", False),
        ("/", False),
        ("/api/relay/healthcheckx", False),
    ],
)
def test_what_is_served_while_draining(path: str, served: bool) -> None:
    assert served_while_draining(path) is served


@pytest.fixture
async def client() -> AsyncIterator[tuple[DrainGate, TestClient[web.Request, web.Application]]]:
    gate = DrainGate()
    ready = {"value": True}
    app = web.Application(middlewares=[gate.middleware])
    app.add_routes(health_routes(lambda: ready["value"]))

    async def envelope(_: web.Request) -> web.Response:
        return web.json_response({"id": "ok"})

    app.add_routes([web.post("/api/{project}/envelope/", envelope)])
    async with TestClient(TestServer(app)) as test_client:
        yield gate, test_client


async def test_open_gate_serves_everything(
    client: tuple[DrainGate, TestClient[web.Request, web.Application]],
) -> None:
    gate, http = client
    resp = await http.post("/api/42/envelope/", data=b"{}")
    assert resp.status == 200
    assert gate.refused == 0


async def test_closed_gate_refuses_work_but_stays_live(
    client: tuple[DrainGate, TestClient[web.Request, web.Application]],
) -> None:
    gate, http = client
    gate.close()
    gate.close()  # idempotent
    resp = await http.post("/api/42/envelope/", data=b"{}")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert resp.headers["Connection"] == "close"
    assert (await resp.json())["detail"] == "relay is shutting down"
    live = await http.get("/api/relay/healthcheck/live/")
    assert live.status == 200
    assert await live.json() == {"is_healthy": True}
    assert (await http.get("/api/0/relays/live/")).status == 200
    assert gate.refused == 1
