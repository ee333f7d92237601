"""Outcome aggregation: outcomes are summed per time slot before they leave the relay.

Relay turns every tracked outcome into a counter bucket (``c:outcomes/<id>@none``) and lets
its metrics aggregator merge them: outcomes with the same scoping, outcome id, reason,
category and source in one ``aggregator.bucket_interval`` slot become one message whose
quantity is the sum. A slot is flushed ``initial_delay`` seconds after it closes; on
shutdown everything pending is flushed at once.

Where flushed outcomes go depends on the relay (see :mod:`relay.server.outcomes`): Kafka
for processing relays, the upstream as metric buckets or client reports otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

log = logging.getLogger(__name__)

#: How often due slots are looked for; bounds the extra latency of a flush.
FLUSH_TICK_SECS = 0.1


class Scoping(NamedTuple):
    """Whom an outcome is accounted to (Relay's ``Scoping``)."""

    public_key: str
    project_id: int
    org_id: int | None = None
    key_id: int | None = None


class OutcomeKey(NamedTuple):
    """What identifies one aggregated outcome; the quantity is summed over equal keys."""

    #: Start of the time slot, in whole seconds since the epoch.
    timestamp: int
    scoping: Scoping
    outcome: int
    reason: str | None
    category: int
    source: str | None


#: One flushed outcome: its key and summed quantity.
AggregatedOutcome = tuple[OutcomeKey, int]
FlushTarget = Callable[[list[AggregatedOutcome]], Awaitable[None]]


class OutcomeAggregator:
    """Sums outcomes per slot and hands due slots to ``flush`` in the background.

    ``add`` never blocks and never raises; the flush task starts with the first outcome, so
    relays that never drop anything run no timer.
    """

    def __init__(
        self,
        flush: FlushTarget,
        *,
        bucket_interval: int = 10,
        initial_delay: int = 30,
        max_secs_in_past: int = 5 * 24 * 3600,
        max_secs_in_future: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._flush = flush
        self.bucket_interval = max(int(bucket_interval), 1)
        self.initial_delay = max(int(initial_delay), 0)
        self.max_secs_in_past = max_secs_in_past
        self.max_secs_in_future = max_secs_in_future
        self._clock = clock
        self._buckets: dict[OutcomeKey, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Outcomes refused because their timestamp was out of range (as Relay's aggregator).
        self.rejected = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def add(
        self,
        scoping: Scoping,
        outcome: int,
        reason: str | None,
        category: int,
        quantity: int,
        *,
        timestamp: float | None = None,
        source: str | None = None,
    ) -> bool:
        """Add one outcome; returns ``False`` if its timestamp is outside the accepted range."""
        if quantity <= 0:
            return True
        now = self._clock()
        when = now if timestamp is None else timestamp
        if when < now - self.max_secs_in_past or when > now + self.max_secs_in_future:
            self.rejected += 1
            return False
        slot = int(when) // self.bucket_interval * self.bucket_interval
        key = OutcomeKey(slot, scoping, outcome, reason, category, source)
        self._buckets[key] = self._buckets.get(key, 0) + quantity
        if self._closed:
            # Shutting down: nothing will tick anymore, so hand it over right away.
            self._spawn_flush(self._take(lambda _: True))
        else:
            self._ensure_task()
        return True

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(
                    self._run(), name="outcome-aggregator"
                )
            except RuntimeError:
                # No loop (a synchronous unit test): the caller flushes explicitly.
                self._task = None

    def _take(self, due: Callable[[OutcomeKey], bool]) -> list[AggregatedOutcome]:
        ready = [(key, qty) for key, qty in self._buckets.items() if due(key)]
        for key, _ in ready:
            del self._buckets[key]
        return ready

    def take_due(self, now: float | None = None) -> list[AggregatedOutcome]:
        """Remove and return the outcomes whose slot is due at ``now``."""
        moment = self._clock() if now is None else now
        horizon = moment - self.bucket_interval - self.initial_delay
        return self._take(lambda key: key.timestamp <= horizon)

    def _spawn_flush(self, batch: list[AggregatedOutcome]) -> None:
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._safe_flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _safe_flush(self, batch: list[AggregatedOutcome]) -> None:
        try:
            await self._flush(batch)
        except Exception:
            # Losing outcomes must not take the relay down; the target logs and counts.
            log.exception("flushing %d outcomes failed", len(batch))

    async def _run(self) -> None:
        while self._buckets:
            await asyncio.sleep(FLUSH_TICK_SECS)
            # Flushes run concurrently so a slow upstream does not delay later slots.
            self._spawn_flush(self.take_due())

    async def flush_all(self, timeout: float) -> None:
        """Flush every pending outcome now and wait (at most ``timeout``) for delivery."""
        self._spawn_flush(self._take(lambda _: True))
        if self._flushing:
            _, pending = await asyncio.wait(set(self._flushing), timeout=timeout)
            if pending:
                log.error("shutdown: %d outcome flushes did not finish", len(pending))

    async def stop(self, timeout: float) -> None:
        """Flush everything and stop the timer; later outcomes are flushed immediately."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush_all(timeout)
