"""The Redis quota script against a real Redis: counting, atomicity, keys, refunds, concurrency."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis

from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory, ItemType
from relay.quotas import CachedRateLimits, LimitPlan, Quota, Scoping, plan_envelope
from relay.quotas.redis_limiter import GRACE, RateLimitingError, RedisRateLimiter, quota_key

SCOPING = Scoping(organization_id=42, project_id=43, project_key="a" * 32, key_id=44)


def quota(**fields: object) -> Quota:
    base: dict[str, object] = {"id": f"t{uuid.uuid4().hex[:12]}", "window": 60}
    return msgspec.convert(base | fields, Quota)


def error_envelope(attachment_size: int = 0) -> Envelope:
    items = [Item.new(ItemType.EVENT, b"{}")]
    if attachment_size:
        items.append(Item.new(ItemType.ATTACHMENT, b"x" * attachment_size))
    return Envelope({"event_id": uuid.uuid4().hex}, items)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


async def test_simple_quota_counts_then_limits(client: Redis) -> None:
    q = quota(categories=["error"], limit=5, reasonCode="get_lost")
    limiter = RedisRateLimiter(client)
    cache = CachedRateLimits()
    verdicts = []
    for _ in range(7):
        enforcement = await limiter.check_envelope(error_envelope(), SCOPING, [q])
        verdicts.append(enforcement.event.active)
    assert verdicts == [False] * 5 + [True] * 2
    enforcement = await limiter.check_envelope(error_envelope(), SCOPING, [q], cache)
    (limit,) = list(enforcement.rate_limits)
    assert limit.reason_code == "get_lost"
    assert 0 < limit.remaining_seconds() <= 60
    assert [o.reason for o in enforcement.outcomes()] == ["get_lost"]
    # The limit is now cached: the fast path rejects without Redis.
    assert cache.is_limited()


async def test_step_is_all_or_nothing(client: Redis) -> None:
    project = quota(categories=["error"], scope="project", limit=10)
    key = quota(categories=["error"], scope="key", limit=3, reasonCode="key")
    limiter = RedisRateLimiter(client)
    ts = int(time.time())
    for _ in range(5):
        await limiter.check_plan(_plan(), SCOPING, [project, key], timestamp=ts)
    item = SCOPING.item(DataCategory.ERROR)
    project_key = quota_key(project, item, ts)
    key_key = quota_key(key, item, ts)
    assert project_key is not None and key_key is not None
    # The key quota rejected twice; neither counter moved on those calls.
    assert int(await client.get(project_key.counter) or 0) == 3
    assert int(await client.get(key_key.counter) or 0) == 3


def _plan() -> LimitPlan:
    return plan_envelope(error_envelope())


async def test_rejected_event_does_not_count_its_attachments(client: Redis) -> None:
    errors = quota(categories=["error"], limit=1, reasonCode="e")
    attachments = quota(categories=["attachment"], limit=1000, reasonCode="a")
    limiter = RedisRateLimiter(client)
    first = await limiter.check_envelope(error_envelope(100), SCOPING, [errors, attachments])
    assert not first.is_limited
    second = await limiter.check_envelope(error_envelope(100), SCOPING, [errors, attachments])
    assert second.event.active
    assert second.attachment_bytes[0].reason_code == "e"
    key = quota_key(attachments, SCOPING.item(DataCategory.ATTACHMENT), int(time.time()))
    assert key is not None
    assert int(await client.get(key.counter) or 0) == 100


async def test_attachment_limit_keeps_event_counted(client: Redis) -> None:
    errors = quota(categories=["error"], limit=10)
    attachments = quota(categories=["attachment"], limit=50, reasonCode="a")
    limiter = RedisRateLimiter(client)
    env = error_envelope(100)
    enforcement = await limiter.check_envelope(env, SCOPING, [errors, attachments])
    outcomes = enforcement.apply(env)
    assert [item.type for item in env.items] == ["event"]
    assert {o.reason for o in outcomes} == {"a"}


async def test_keys_hash_tag_slot_offset_and_expiry(client: Redis) -> None:
    q = quota(categories=["error"], scope="project", limit=100, window=3600)
    item = SCOPING.item(DataCategory.ERROR)
    ts = 1_700_000_000
    key = quota_key(q, item, ts)
    assert key is not None
    shift = 42 % 3600
    slot = (ts - shift) // 3600
    assert key.counter == f"quota:{q.id}{{42}}43:{slot}"
    assert key.refund == "r:" + key.counter
    assert key.window_end == (slot + 1) * 3600 + shift
    assert key.expire_at == key.window_end + GRACE
    org_quota = quota(categories=["error"], limit=1)
    org_key = quota_key(org_quota, item, ts)
    assert org_key is not None and "{42}:" in org_key.counter
    assert quota_key(quota(categories=["error"], limit=1, window=None), item, ts) is None

    limiter = RedisRateLimiter(client)
    now = int(time.time())
    await limiter.is_rate_limited([q], item, 1)
    live = quota_key(q, item, now)
    assert live is not None
    # Redis 6.2 (the bundled server) has no EXPIRETIME: compare the TTL instead.
    ttl = await client.ttl(live.counter)
    assert abs((now + ttl) - live.expire_at) <= 2


async def test_refund_gives_quota_back(client: Redis) -> None:
    q = quota(categories=["error"], limit=2, reasonCode="r")
    item = SCOPING.item(DataCategory.ERROR)
    limiter = RedisRateLimiter(client)
    assert not await limiter.is_rate_limited([q], item, 2)
    assert await limiter.is_rate_limited([q], item, 1)
    await limiter.refund([q], item, 1)
    assert not await limiter.is_rate_limited([q], item, 1)
    assert await limiter.is_rate_limited([q], item, 1)


async def test_quantity_zero_checks_without_counting(client: Redis) -> None:
    q = quota(categories=["transaction"], limit=1, reasonCode="t")
    item = SCOPING.item(DataCategory.TRANSACTION)
    limiter = RedisRateLimiter(client)
    assert not await limiter.is_rate_limited([q], item, 0)
    assert not await limiter.is_rate_limited([q], item, 1)
    assert await limiter.is_rate_limited([q], item, 0)


async def test_count_only_and_reject_all(client: Redis) -> None:
    counted = quota(categories=["error"])  # no limit: counts only
    limiter = RedisRateLimiter(client)
    for _ in range(3):
        assert not (await limiter.check_envelope(error_envelope(), SCOPING, [counted])).is_limited
    key = quota_key(counted, SCOPING.item(DataCategory.ERROR), int(time.time()))
    assert key is not None
    assert int(await client.get(key.counter) or 0) == 3
    # A reject-all quota decides locally and nothing is counted.
    zero = msgspec.convert({"limit": 0, "categories": ["error"], "reasonCode": "no"}, Quota)
    enforcement = await limiter.check_envelope(error_envelope(), SCOPING, [zero, counted])
    assert enforcement.event.reason_code == "no"
    assert int(await client.get(key.counter) or 0) == 3


async def test_noscript_fallback(client: Redis) -> None:
    q = quota(categories=["error"], limit=10)
    limiter = RedisRateLimiter(client)
    item = SCOPING.item(DataCategory.ERROR)
    assert not await limiter.is_rate_limited([q], item, 1)
    await client.script_flush()
    assert not await limiter.is_rate_limited([q], item, 1)
    # Pipelined calls reload too.
    await client.script_flush()
    results = await asyncio.gather(*(limiter.is_rate_limited([q], item, 1) for _ in range(5)))
    assert not any(results)
    assert await limiter.is_rate_limited([q], item, 4)


async def test_redis_down_fails_open_or_raises() -> None:
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    limiter = RedisRateLimiter(dead)
    q = quota(categories=["error"], limit=1)
    enforcement = await limiter.check_envelope(error_envelope(), SCOPING, [q])
    assert not enforcement.is_limited
    with pytest.raises(RateLimitingError):
        await limiter.is_rate_limited([q], SCOPING.item(DataCategory.ERROR), 1, fail_open=False)
    await dead.aclose()


@pytest.mark.parametrize("max_batch", [1, 256])
async def test_concurrent_relays_never_admit_more_than_the_limit(
    redis_url: str, max_batch: int
) -> None:
    """4 "relays" (own client, own limiter) fire 2,000 envelopes concurrently at a quota of 100.

    Day-long windows: with 60 s windows a slow, loaded run could straddle a window boundary,
    where a fresh window rightly admits another 100.
    """
    q = quota(categories=["error"], scope="project", limit=100, reasonCode="full", window=86400)
    attachments = quota(categories=["attachment"], limit=10**9, window=86400)
    clients = [Redis.from_url(redis_url) for _ in range(4)]
    limiters = [RedisRateLimiter(c, max_batch=max_batch) for c in clients]
    try:

        async def send(index: int) -> bool:
            limiter = limiters[index % len(limiters)]
            enforcement = await limiter.check_envelope(
                error_envelope(10), SCOPING, [q, attachments], fail_open=False
            )
            return not enforcement.event.active

        admitted = await asyncio.gather(*(send(i) for i in range(2000)))
        assert sum(admitted) == 100
        ts = int(time.time())
        key = quota_key(q, SCOPING.item(DataCategory.ERROR), ts)
        assert key is not None
        assert int(await clients[0].get(key.counter) or 0) == 100
        att_key = quota_key(attachments, SCOPING.item(DataCategory.ATTACHMENT), ts)
        assert att_key is not None
        # Only the admitted events counted their attachments.
        assert int(await clients[0].get(att_key.counter) or 0) == 100 * 10
    finally:
        for limiter in limiters:
            await limiter.close()
        for c in clients:
            await c.aclose()
