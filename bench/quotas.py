"""Quota checks per second: the Redis script pipelined vs one call at a time, and the fast path.

Starts a throw-away local redis-server, then checks error envelopes with one attachment against
two quotas (errors per project, attachment bytes per org), so every envelope runs two counted
steps in one script call. Modes:

- ``sequential``: one envelope at a time (latency-bound: one round trip each);
- ``unbatched``: ``--concurrency`` envelopes in flight, one EVALSHA per envelope, 32 connections;
- ``pipelined``: the same load, concurrent calls sent together in pipelines (the default);
- ``cached``: the POP fast path (cached limits + reject-all quotas, no Redis).

Usage: ``python bench/quotas.py [--envelopes N] [--concurrency C]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from relay.dev.services import start_redis
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.quotas import (
    CachedRateLimits,
    Quota,
    Scoping,
    check_envelope_cached,
)
from relay.quotas.redis_limiter import RedisRateLimiter

SCOPING = Scoping(organization_id=1, project_id=2, project_key="a" * 32, key_id=3)


def quotas() -> list[Quota]:
    tag = uuid.uuid4().hex[:8]
    raw = [
        {
            "id": f"e{tag}",
            "categories": ["error"],
            "scope": "project",
            "limit": 10**12,
            "window": 60,
            "reasonCode": "e",
        },
        {"id": f"a{tag}", "categories": ["attachment"], "limit": 10**15, "window": 60},
    ]
    return [msgspec.convert(q, Quota) for q in raw]


def envelope() -> Envelope:
    return Envelope(
        {"event_id": uuid.uuid4().hex},
        [Item.new(ItemType.EVENT, b"{}"), Item.new(ItemType.ATTACHMENT, b"x" * 100)],
    )


async def run_redis(url: str, mode: str, n: int, concurrency: int) -> float:
    client = Redis.from_url(url, max_connections=64)
    if mode == "pipelined":
        limiter = RedisRateLimiter(client, max_batch=256, max_inflight=4)
    else:
        limiter = RedisRateLimiter(client, max_batch=1, max_inflight=32)
    qs = quotas()
    envelopes = [envelope() for _ in range(n)]
    await limiter.load_script()
    start = time.perf_counter()
    if mode == "sequential":
        for env in envelopes:
            await limiter.check_envelope(env, SCOPING, qs, fail_open=False)
    else:
        queue = iter(envelopes)

        async def worker() -> None:
            for env in queue:
                await limiter.check_envelope(env, SCOPING, qs, fail_open=False)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await limiter.close()
    await client.aclose()
    return n / elapsed


def run_cached(n: int) -> float:
    cache = CachedRateLimits()
    zero = msgspec.convert({"limit": 0, "categories": ["transaction"]}, Quota)
    qs = [*quotas(), zero]
    envelopes = [envelope() for _ in range(n)]
    start = time.perf_counter()
    for env in envelopes:
        check_envelope_cached(env, SCOPING, cache, qs).apply(env)
    return n / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    redis = start_redis()
    try:
        url = f"redis://{redis.address}/0"
        results = {
            "sequential": await run_redis(url, "sequential", args.envelopes // 4, 1),
            "unbatched": await run_redis(url, "unbatched", args.envelopes, args.concurrency),
            "pipelined": await run_redis(url, "pipelined", args.envelopes, args.concurrency),
        }
    finally:
        redis.stop()
    results["cached (no Redis)"] = run_cached(args.envelopes)
    for name, rate in results.items():
        print(f"{name:>18}: {rate:10,.0f} envelopes/s")
    ratio = results["pipelined"] / results["unbatched"]
    print(f"pipelined / unbatched: {ratio:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
