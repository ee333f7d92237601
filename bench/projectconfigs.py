"""``make bench``: a relay answering ``projectconfigs?version=3`` for 1,000 keys.

Two phases, each timed by a signed client exactly as a downstream relay asks:

- *redis*: a cold cache; the first request answers ``pending`` and the relay fetches all
  keys from Redis (``.rev``-less ``MGET``s through the project cache); the client polls until
  every config is there. Reported: keys/s over the whole cold fetch.
- *memory*: the same request repeated against the warm cache. Reported: keys/s and p99 of
  the request latency.

The baseline, measured in the same run, is a bare aiohttp handler returning a pre-encoded
answer of the same size to the same request: the HTTP and JSON floor. Results are printed
as ratios to it, since absolute numbers on a shared machine are noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relay.config import config_from_dict  # noqa: E402
from relay.dev.services import start_redis  # noqa: E402
from relay.protocol.encoding import zstd_compress  # noqa: E402
from relay.protocol.keys import Credentials, generate_credentials  # noqa: E402
from relay.server.http_errors import error_middleware  # noqa: E402
from relay.server.project_cache import ProjectCache  # noqa: E402
from relay.server.relay_api import relay_api_routes  # noqa: E402
from relay.server.relays import RelayCache  # noqa: E402

PATH = "/api/0/relays/projectconfigs/?version=3"


def project(n: int) -> tuple[str, dict[str, Any]]:
    key = f"{n:032x}"
    return key, {
        "projectId": n + 1, "organizationId": 1, "rev": f"rev{n}", "slug": f"p{n}",
        "publicKeys": [{"publicKey": key, "numericId": n + 1}],
        "config": {"allowedDomains": ["*"], "trustedRelays": [], "eventRetention": 90,
                   "piiConfig": None, "filterSettings": {"browserExtensions": {"isEnabled": True}},
                   "quotas": [{"id": "q", "categories": ["error"], "limit": 1000, "window": 60}]},
    }  # fmt: skip


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def signed(creds: Credentials, payload: Any) -> tuple[bytes, dict[str, str]]:
    body = msgspec.json.encode(payload)
    return body, {
        "Content-Type": "application/json",
        "X-Sentry-Relay-Id": creds.id,
        "X-Sentry-Relay-Signature": creds.get_secret_key().sign(body),
    }


async def ask(session: aiohttp.ClientSession, url: str, creds: Credentials,
              keys: list[str]) -> dict[str, Any]:  # fmt: skip
    body, headers = signed(creds, {"publicKeys": keys, "revisions": [None] * len(keys),
                                   "fullConfig": True})  # fmt: skip
    async with session.post(url + PATH, data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = msgspec.json.decode(await resp.read())
        return answer


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def run(keys_n: int, rounds: int, requests: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-projectconfigs-"))
    redis_service = start_redis(workdir=workdir / "redis")
    try:
        return await _run(redis_service.address, keys_n, rounds, requests)
    finally:
        redis_service.stop()


async def _run(redis_addr: str, keys_n: int, rounds: int, requests: int) -> dict[str, Any]:
    creds = generate_credentials()
    config = config_from_dict({
        "relay": {"mode": "proxy"},
        "cache": {"batch_interval": 0},
        "auth": {"static_relays": {creds.id: {"public_key": creds.public_key, "internal": True}}},
    })  # fmt: skip
    redis = Redis.from_url(f"redis://{redis_addr}/0")
    projects = dict(project(n) for n in range(keys_n))
    keys = list(projects)
    async with redis.pipeline(transaction=False) as pipe:
        for key, state in projects.items():
            pipe.set(f"relayconfig:{key}", zstd_compress(json.dumps(state).encode()))
        await pipe.execute()

    results: dict[str, Any] = {"keys": keys_n}
    async with aiohttp.ClientSession() as session:
        cold: list[float] = []
        warm: list[float] = []
        answer_bytes = b""
        for _ in range(rounds):
            cache = ProjectCache(config, None, redis)
            await cache.start()
            relays = RelayCache(config, None)
            app = web.Application(middlewares=[error_middleware], client_max_size=2**30)
            app.add_routes(relay_api_routes(config, relays, cache.get_state, lambda: {}, None))
            runner, port = await serve(app)
            url = f"http://127.0.0.1:{port}"
            start = time.perf_counter()
            while True:
                answer = await ask(session, url, creds, keys)
                if len(answer["configs"]) == keys_n:
                    break
                await asyncio.sleep(0.001)
            cold.append(time.perf_counter() - start)
            for _ in range(requests):
                t = time.perf_counter()
                answer = await ask(session, url, creds, keys)
                warm.append(time.perf_counter() - t)
                assert len(answer["configs"]) == keys_n
            answer_bytes = msgspec.json.encode(answer)
            await runner.cleanup()
            await cache.stop()

        # Baseline: the same request against a handler that only returns the same bytes.
        async def canned(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=answer_bytes, content_type="application/json")

        base_app = web.Application(client_max_size=2**30)
        base_app.router.add_post("/api/0/relays/projectconfigs/", canned)
        runner, port = await serve(base_app)
        base: list[float] = []
        for _ in range(requests * rounds):
            t = time.perf_counter()
            await ask(session, f"http://127.0.0.1:{port}", creds, keys)
            base.append(time.perf_counter() - t)
        await runner.cleanup()
    await redis.aclose()

    base_kps = keys_n * len(base) / sum(base)
    redis_kps = keys_n * len(cold) / sum(cold)
    memory_kps = keys_n * len(warm) / sum(warm)
    results.update({
        "baseline": {"keys_per_s": round(base_kps), "p99_ms": round(p99(base) * 1000, 2)},
        "redis": {"keys_per_s": round(redis_kps), "median_s": round(statistics.median(cold), 4),
                  "ratio_to_baseline": round(redis_kps / base_kps, 3)},
        "memory": {"keys_per_s": round(memory_kps), "p99_ms": round(p99(warm) * 1000, 2),
                   "ratio_to_baseline": round(memory_kps / base_kps, 3),
                   "p99_ratio_to_baseline": round(p99(warm) / p99(base), 3)},
        "answer_bytes": len(answer_bytes),
    })  # fmt: skip
    return results


def main() -> int:
    """Run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    results = asyncio.run(run(args.keys, args.rounds, args.requests))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
