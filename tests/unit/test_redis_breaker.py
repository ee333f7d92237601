"""The Redis circuit breaker: fail open fast, probe one call at a time, close on success."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from relay.quotas.redis_limiter import RateLimitingError
from relay.server.redis_breaker import RedisBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def ok() -> str:
    return "ok"


async def refused() -> str:
    raise RedisConnectionError("Error 111 connecting. Connection refused.")


async def test_passes_results_through_while_closed() -> None:
    breaker = RedisBreaker("test")
    assert await breaker.call(ok) == "ok"
    assert not breaker.is_open


@pytest.mark.parametrize(
    "error", [RedisConnectionError("refused"), RateLimitingError("gone"), OSError("reset")]
)
async def test_a_failure_opens_and_skips_calls_until_the_backoff_passed(
    error: Exception,
) -> None:
    clock = Clock()
    breaker = RedisBreaker("test", min_backoff=1.0, max_backoff=4.0, clock=clock)

    async def failing() -> str:
        raise error

    assert await breaker.call(failing) is None
    assert breaker.is_open
    calls = 0

    async def counted() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    # Within the backoff: skipped without calling Redis at all.
    assert await breaker.call(counted) is None
    assert calls == 0 and breaker.skipped == 1
    clock.now += 1.0
    assert await breaker.call(counted) == "ok"
    assert calls == 1 and not breaker.is_open


async def test_backoff_doubles_up_to_the_cap() -> None:
    clock = Clock()
    breaker = RedisBreaker("test", min_backoff=1.0, max_backoff=3.0, clock=clock)
    attempts: list[float] = []

    async def failing() -> str:
        attempts.append(clock.now)
        raise RedisConnectionError("refused")

    # A call every half second for 12 s: Redis is tried only once the backoff has passed
    # (at 0, 1, 3, 6 and 9 s).
    for _ in range(24):
        await breaker.call(failing)
        clock.now += 0.5
    waits = [b - a for a, b in itertools.pairwise(attempts)]
    assert waits == [1.0, 2.0, 3.0, 3.0]


async def test_a_slow_call_counts_as_a_failure() -> None:
    breaker = RedisBreaker("test", budget=0.05)

    async def frozen() -> str:
        await asyncio.sleep(10)
        return "late"

    assert await breaker.call(frozen) is None
    assert breaker.is_open


async def test_one_probe_at_a_time_while_half_open() -> None:
    clock = Clock()
    breaker = RedisBreaker("test", budget=5.0, min_backoff=1.0, clock=clock)
    await breaker.call(refused)
    clock.now += 1.0
    release = asyncio.Event()

    async def probe() -> str:
        await release.wait()
        return "probed"

    first = asyncio.create_task(breaker.call(probe))
    await asyncio.sleep(0)
    # While the probe is out, the others go on without Redis.
    assert await breaker.call(ok) is None
    release.set()
    assert await first == "probed"
    assert await breaker.call(ok) == "ok"


async def test_logs_only_the_transitions(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    breaker = RedisBreaker("limits", min_backoff=1.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="relay.server.redis_breaker"):
        await breaker.call(refused)
        for _ in range(50):
            await breaker.call(ok)
        clock.now += 1.0
        await breaker.call(ok)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 2
    assert "Redis unavailable" in messages[0] and "Connection refused" in messages[0]
    assert "Redis is back" in messages[1] and "50 calls" in messages[1]


async def test_other_errors_propagate_and_leave_it_closed() -> None:
    breaker = RedisBreaker("test")

    async def buggy() -> str:
        raise ValueError("not a Redis problem")

    with pytest.raises(ValueError, match="not a Redis problem"):
        await breaker.call(buggy)
    assert not breaker.is_open
