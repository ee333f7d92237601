"""A circuit breaker for Redis calls on the request path: fail open, fast, and quietly.

Redis holds counters and caches, never data: when it is unreachable the relay carries on
without it (rate limits fail open, as in Relay). What must not happen is that every envelope
waits for Redis first. A frozen or black-holed Redis accepts connections and never answers,
so each call would hold its envelope for the client's whole response timeout (30 s by
default), longer than the sender waits: the sender retries, and the retry waits too.

So every guarded call gets a small time budget. A call that fails or runs out of it opens
the breaker: for a backoff period (doubling up to a cap) calls are skipped at once and the
caller proceeds as if Redis had nothing to say. After the backoff, one call probes Redis
while the others keep skipping; its success closes the breaker. Only the transitions are
logged, so an outage costs one error line, not one traceback per envelope.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from relay.quotas.redis_limiter import RateLimitingError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a guarded call may take. Redis answers in about a millisecond; well below the
#: seconds a sender waits for the whole envelope.
DEFAULT_BUDGET_SECS = 1.0
#: Between probes while Redis is down. A probe costs one envelope at most the budget, so
#: probing often is cheap, and it bounds how long counting stays off after Redis is back.
MIN_BACKOFF_SECS = 0.5
MAX_BACKOFF_SECS = 2.0

#: What a failing Redis raises: connection and protocol errors, the limiter's wrapper of
#: them, and the budget running out.
FAILURES: tuple[type[BaseException], ...] = (RedisError, RateLimitingError, TimeoutError, OSError)


class RedisBreaker:
    """Guards calls to one Redis; see the module docstring."""

    def __init__(
        self,
        name: str,
        budget: float = DEFAULT_BUDGET_SECS,
        min_backoff: float = MIN_BACKOFF_SECS,
        max_backoff: float = MAX_BACKOFF_SECS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.budget = budget
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self._open_until = 0.0
        self._backoff = 0.0
        self._down_since: float | None = None
        self._probing = False
        #: Calls skipped because the breaker was open (for tests and debugging).
        self.skipped = 0
        self._skipped_at_trip = 0

    @property
    def is_open(self) -> bool:
        """Whether Redis is considered down (calls are being skipped or probed)."""
        return self._down_since is not None

    def _available(self) -> bool:
        if self._down_since is None:
            return True
        # Half-open: a single probe at a time once the backoff has passed.
        return not self._probing and self._clock() >= self._open_until

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T | None:
        """``fn()``'s result, or None when Redis is down or the call fails or is too slow."""
        if not self._available():
            self.skipped += 1
            return None
        probing = self._down_since is not None
        self._probing = probing
        try:
            async with asyncio.timeout(self.budget):
                result = await fn()
        except FAILURES as exc:
            self._trip(exc)
            return None
        finally:
            if probing:
                self._probing = False
        self._close()
        return result

    def _trip(self, exc: BaseException) -> None:
        now = self._clock()
        first = self._down_since is None
        self._backoff = self.min_backoff if first else min(self._backoff * 2, self.max_backoff)
        self._open_until = now + self._backoff
        if first:
            self._down_since = now
            self._skipped_at_trip = self.skipped
            detail = str(exc) or type(exc).__name__
            log.error(
                "%s: Redis unavailable (%s); going on without it, retrying in %.1f s",
                self.name, detail, self._backoff,
            )  # fmt: skip
        else:
            log.debug("%s: Redis still unavailable: %r", self.name, exc)

    def _close(self) -> None:
        if self._down_since is None:
            return
        log.warning(
            "%s: Redis is back after %.1f s (%d calls went without it)",
            self.name, self._clock() - self._down_since, self.skipped - self._skipped_at_trip,
        )  # fmt: skip
        self._down_since = None
        self._backoff = 0.0
        self._open_until = 0.0
