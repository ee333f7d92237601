"""Health endpoints: ``live`` answers while the process runs; ``ready`` once it can work."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

ReadyCheck = Callable[[], bool]


def health_routes(is_ready: ReadyCheck) -> list[web.RouteDef]:
    """Routes for Kubernetes-style probes and the downstream ``relays/live`` check."""

    async def check(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind == "live":
            return web.json_response({"is_healthy": True})
        if kind == "ready":
            healthy = is_ready()
            return web.json_response({"is_healthy": healthy}, status=200 if healthy else 503)
        return web.json_response({"detail": "not found"}, status=404)

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"is_healthy": True})

    return [
        web.get("/api/relay/healthcheck/{kind}/", check),
        web.get("/api/relay/healthcheck/{kind}", check),
        web.get("/api/0/relays/live/", live),
    ]
