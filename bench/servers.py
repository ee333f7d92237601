"""Servers the benchmark runs in subprocesses: the bare baseline and a fake upstream.

``python bench/servers.py baseline PORT`` answers every POST after reading its body, the
least any HTTP relay must do. ``python bench/servers.py upstream PORT KEY`` plays Sentry
for a POP relay: registration, ``projectconfigs`` for one key, and 200 for envelopes.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from relay.server.runner import install_event_loop, wait_for_signal


async def _read_and_ok(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"id": None})


def baseline_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/{tail:.*}", _read_and_ok)
    return app


def upstream_app(public_key: str) -> web.Application:
    async def challenge(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"relay_id": body["relay_id"], "token": "t"})

    async def response(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"relay_id": body["relay_id"]})

    async def configs(request: web.Request) -> web.Response:
        body = await request.json()
        state = {
            "projectId": 42, "organizationId": 1, "rev": "1",
            "publicKeys": [{"publicKey": public_key, "isEnabled": True}],
            "config": {"allowedDomains": ["*"]},
        }  # fmt: skip
        found = {k: state for k in body["publicKeys"] if k == public_key}
        answer: dict[str, object] = {"configs": found}
        if body.get("global"):
            # As Sentry: relays hold envelopes back until they have the global config.
            answer.update({"global": {"measurements": {}}, "globalStatus": "ready"})
        return web.json_response(answer)

    app = web.Application(client_max_size=2**30)
    app.router.add_post("/api/0/relays/register/challenge/", challenge)
    app.router.add_post("/api/0/relays/register/response/", response)
    app.router.add_post("/api/0/relays/projectconfigs/", configs)
    app.router.add_post("/api/{project}/envelope/", _read_and_ok)
    return app


async def _serve(app: web.Application, port: int, auto_decompress: bool) -> None:
    runner = web.AppRunner(app, access_log=None, auto_decompress=auto_decompress)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await wait_for_signal()
    await runner.cleanup()


if __name__ == "__main__":
    install_event_loop()
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "baseline":
        # The baseline reads (and, as aiohttp does by default, gunzips) each body.
        asyncio.run(_serve(baseline_app(), port, auto_decompress=True))
    else:
        # A sink for the POP: zstd bodies are read as they are (aiohttp would answer 400 to
        # zstd without backports.zstd, and close the connection each time).
        asyncio.run(_serve(upstream_app(sys.argv[3]), port, auto_decompress=False))
