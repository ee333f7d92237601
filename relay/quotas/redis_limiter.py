"""Consistent quota enforcement in Redis: one atomic script call per envelope.

Every quota that applies to a check step of a :class:`~relay.quotas.envelope_limiter.LimitPlan`
becomes a counter ``quota:{id}{{org}}{subscope}{namespace}:{slot}`` (the key layout Sentry's
own quota code uses, so both can share one Redis) plus a refund counter ``r:<counter>``. The
script walks the steps in order: a step whose guard did not pass is skipped; otherwise it reads
all its counters and, only if no quota would go over its limit, increments all of them. All
steps of one envelope run in one script call, so concurrent relays can never interleave between
the read and the increment: no number of relays admits more than the limit.

- Window slots are ``(now - org_id % window) // window``: windows of different organizations
  start at different seconds, so their counters do not all expire at once.
- Counters expire at their window's end plus :data:`GRACE` seconds (clock skew between relays and
  Redis).
- Every key carries the organization id as a hash tag, and an envelope belongs to a single
  organization, so all keys of a call live in one Redis Cluster slot.
- The script is loaded once and invoked by SHA; on ``NOSCRIPT`` (a restarted or new node) it is
  loaded again and the call retried.
- Calls from concurrent envelopes are sent together in one pipeline (micro-batching), which
  divides the per-call client and network cost by the batch size.

The only module of ``relay.quotas`` that does I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisError, ResponseError

from relay.protocol.envelope import Envelope
from relay.protocol.items import DataCategory
from relay.quotas.envelope_limiter import (
    Enforcement,
    LimitPlan,
    StepResult,
    enforce,
    plan_envelope,
)
from relay.quotas.quota import ItemScoping, Quota, QuotaScope, Scoping
from relay.quotas.rate_limit import CachedRateLimits, RateLimit, RateLimits

__all__ = [
    "GRACE",
    "RATE_LIMIT_SCRIPT",
    "RateLimitingError",
    "RedisQuotaKey",
    "RedisRateLimiter",
    "quota_key",
]

log = logging.getLogger(__name__)

#: Seconds a counter outlives its window, for clock drift between relays and Redis.
GRACE: Final = 60

# ARGV layout: [n_steps, (guard, forced, n_quotas) * n_steps, (limit, expire_at, qty) * quotas]
# KEYS layout: (counter, refund) per quota, in step order.
# Returns [status per step (1 passed, 0 rejected, 2 skipped), (rejected, consumed) per quota].
RATE_LIMIT_SCRIPT: Final = """
local n = tonumber(ARGV[1])
local qargs = 2 + 3 * n
local values = {}
if #KEYS > 0 then
  local got = redis.call('MGET', unpack(KEYS))
  for i = 1, #KEYS do values[KEYS[i]] = tonumber(got[i] or '0') or 0 end
end
local status = {}
local per_quota = {}
local q = 0
for c = 1, n do
  local h = 2 + 3 * (c - 1)
  local guard = tonumber(ARGV[h])
  local forced = ARGV[h + 1] == '1'
  local nq = tonumber(ARGV[h + 2])
  local st = 1
  if guard > 0 and status[guard] ~= 1 then
    st = 2
  elseif forced then
    st = 0
  else
    for i = q, q + nq - 1 do
      local a = qargs + 3 * i
      local limit = tonumber(ARGV[a])
      local qty = tonumber(ARGV[a + 2])
      local used = values[KEYS[2 * i + 1]] - values[KEYS[2 * i + 2]]
      local rejected = 0
      if limit >= 0 then
        if (qty == 0 and used >= limit) or (qty > 0 and used + qty > limit) then
          rejected = 1
          st = 0
        end
      end
      per_quota[2 * i + 1] = rejected
      per_quota[2 * i + 2] = used
    end
    if st == 1 then
      for i = q, q + nq - 1 do
        local a = qargs + 3 * i
        local qty = tonumber(ARGV[a + 2])
        if qty > 0 then
          local key = KEYS[2 * i + 1]
          local now = redis.call('INCRBY', key, qty)
          if now == qty then
            redis.call('EXPIREAT', key, ARGV[a + 1])
          end
          values[key] = values[key] + qty
          per_quota[2 * i + 2] = per_quota[2 * i + 2] + qty
        end
      end
    end
  end
  status[c] = st
  q = q + nq
end
local out = {}
for c = 1, n do out[c] = status[c] end
for i = 1, 2 * q do out[n + i] = per_quota[i] or 0 end
return out
"""
_SCRIPT_SHA: Final = hashlib.sha1(RATE_LIMIT_SCRIPT.encode()).hexdigest()
_I64_MAX: Final = 2**63 - 1


class RateLimitingError(Exception):
    """Redis could not be asked; the caller decides whether to fail open."""


def _redis_limit(quota: Quota) -> int:
    # -1 means "count only"; limits beyond a signed 64-bit counter are as good as none.
    limit = quota.limit
    return -1 if limit is None or limit > _I64_MAX else limit


@dataclass(frozen=True, slots=True)
class RedisQuotaKey:
    """Where a quota counts for one item scoping at one moment, and until when."""

    counter: str
    refund: str
    #: Unix time at which the current window ends.
    window_end: int

    @property
    def expire_at(self) -> int:
        """Unix time at which Redis drops the counter."""
        return self.window_end + GRACE


def quota_key(quota: Quota, item: ItemScoping, timestamp: int) -> RedisQuotaKey | None:
    """The counter of ``quota`` for ``item`` at unix time ``timestamp``.

    None for quotas that cannot be counted: without ``id`` or a positive ``window``.
    """
    window = quota.window
    if quota.id is None or window is None or window <= 0:
        return None
    org = item.scoping.organization_id
    shift = org % window
    slot = (timestamp - shift) // window
    scope = quota.scope_kind
    subscope = None if scope is QuotaScope.ORGANIZATION else item.scope_id(scope)
    # The org id in braces is the Redis Cluster hash tag: every key of one envelope (one org)
    # maps to the same slot, which a multi-key script requires.
    counter = f"quota:{quota.id}{{{org}}}{'' if subscope is None else subscope}"
    counter += f"{quota.namespace_name or ''}:{slot}"
    return RedisQuotaKey(counter, "r:" + counter, (slot + 1) * window + shift)


@dataclass(slots=True)
class _Tracked:
    quota: Quota
    key: RedisQuotaKey


@dataclass(slots=True)
class _Call:
    keys: list[str]
    args: list[int | str]
    future: asyncio.Future[list[int]]


class RedisRateLimiter:
    """Checks and counts quotas in Redis (standalone or Cluster).

    ``max_limit`` caps the retry-after of limits found in Redis (Relay's
    ``processing.max_rate_limit``, default 300 s). ``max_batch`` bounds how many envelopes share
    one pipeline and ``max_inflight`` how many pipelines (connections) run at once; calls beyond
    that wait in a queue. ``max_batch=1`` sends every call on its own (for comparison in
    benchmarks).
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        max_limit: int | None = 300,
        max_batch: int = 256,
        max_inflight: int = 4,
    ) -> None:
        self._client = client
        self._max_limit = max_limit
        self._max_batch = max(1, max_batch)
        self._max_inflight = max(1, max_inflight)
        self._pending: list[_Call] = []
        self._inflight = 0
        self._loaded = False
        self._flushers: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> Redis | RedisCluster:
        """The Redis client in use."""
        return self._client

    async def load_script(self) -> None:
        """Load the script (on every primary of a cluster). Called lazily; call it at startup
        to catch a broken Redis early."""
        await self._client.script_load(RATE_LIMIT_SCRIPT)
        self._loaded = True

    async def close(self) -> None:
        """Wait for in-flight batches; the client is the caller's to close."""
        while self._flushers:
            await asyncio.gather(*list(self._flushers), return_exceptions=True)

    # -- public checks -------------------------------------------------------------------------

    async def check_envelope(
        self,
        envelope: Envelope,
        scoping: Scoping,
        quotas: Sequence[Quota],
        cache: CachedRateLimits | None = None,
        *,
        event_category: DataCategory | None = None,
        fail_open: bool = True,
    ) -> Enforcement:
        """Check and count ``envelope`` against ``quotas``; return the verdict.

        ``cache`` (the project's cached limits) is consulted first, as is every ``limit: 0``
        quota: a step they limit is not counted. Limits found in Redis are merged into
        ``cache``. Apply the result with :meth:`Enforcement.apply`. With ``fail_open`` a Redis
        failure is logged and nothing is limited by Redis (Relay's behaviour: an outage must
        not drop data).
        """
        # Processing relays decide what is stored: indexed categories count here.
        plan = plan_envelope(envelope, event_category, indexed=True)
        results = await self.check_plan(plan, scoping, quotas, cache, fail_open=fail_open)
        return enforce(plan, results)

    async def check_plan(
        self,
        plan: LimitPlan,
        scoping: Scoping,
        quotas: Sequence[Quota],
        cache: CachedRateLimits | None = None,
        *,
        fail_open: bool = True,
        timestamp: int | None = None,
    ) -> list[StepResult]:
        """Evaluate every step of ``plan`` in one script call; see :meth:`check_envelope`.

        ``timestamp`` (unix seconds) picks the window; tests pin it.
        """
        now_mono = time.monotonic()
        ts = int(time.time()) if timestamp is None else timestamp
        cached = cache.current(now_mono) if cache is not None else RateLimits()
        quota_list = list(quotas)
        # Cached limits and reject-all quotas decide first: a step they limit is not counted.
        local = [cached.check(step.item(scoping), quota_list, now=now_mono) for step in plan.steps]
        forced = [limits.is_limited(now_mono) for limits in local]
        tracked = [
            [] if forced[position] else self._tracked(quota_list, step.item(scoping), ts)
            for position, step in enumerate(plan.steps)
        ]
        if not any(tracked):
            return plan.evaluate(lambda position, _: local[position])

        keys: list[str] = []
        head: list[int | str] = [len(plan.steps)]
        tail: list[int | str] = []
        for position, step in enumerate(plan.steps):
            entries = tracked[position]
            head += [step.guard + 1, 1 if forced[position] else 0, len(entries)]
            for entry in entries:
                keys += [entry.key.counter, entry.key.refund]
                tail += [_redis_limit(entry.quota), entry.key.expire_at, step.quantity]

        try:
            reply = await self._call(keys, head + tail)
        except RateLimitingError:
            if not fail_open:
                raise
            log.exception("rate limiting failed; not enforcing Redis quotas")
            return plan.evaluate(lambda position, _: local[position])

        results: list[StepResult] = []
        found = RateLimits()
        offset = len(plan.steps)
        for position, entries in enumerate(tracked):
            if reply[position] == 2:
                results.append(None)
            else:
                limits = RateLimits(local[position])
                for index, entry in enumerate(entries):
                    if reply[offset + 2 * index] == 1:
                        retry_after = self._retry_after(entry.key.window_end - ts)
                        limit = RateLimit.from_quota(entry.quota, scoping, retry_after, now_mono)
                        limits.add(limit)
                        found.add(limit)
                results.append(limits)
            offset += 2 * len(entries)
        if cache is not None and found:
            cache.merge(found.cacheable())
        return results

    async def is_rate_limited(
        self,
        quotas: Sequence[Quota],
        item: ItemScoping,
        quantity: int,
        cache: CachedRateLimits | None = None,
        *,
        fail_open: bool = True,
        timestamp: int | None = None,
    ) -> RateLimits:
        """Check and count ``quantity`` of one category (metric buckets, single items).

        Returns the limits hit; empty means accepted and counted.
        """
        namespace = item.namespace if isinstance(item.namespace, str) else None
        plan = LimitPlan.single(item.category, quantity, namespace)
        results = await self.check_plan(
            plan, item.scoping, quotas, cache, fail_open=fail_open, timestamp=timestamp
        )
        return results[0] or RateLimits()

    async def refund(self, quotas: Sequence[Quota], item: ItemScoping, quantity: int) -> None:
        """Give back ``quantity`` of every counted quota that applies to ``item`` (e.g. data
        counted but later dropped). Refunds count toward the current window only."""
        if quantity <= 0:
            return
        ts = int(time.time())
        entries = self._tracked(list(quotas), item, ts)
        if not entries:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for entry in entries:
                    pipe.incrby(entry.key.refund, quantity)
                    pipe.expireat(entry.key.refund, entry.key.expire_at)
                await pipe.execute()
        except RedisError as exc:
            raise RateLimitingError(str(exc)) from exc

    # -- internals -----------------------------------------------------------------------------

    def _tracked(self, quotas: list[Quota], item: ItemScoping, ts: int) -> list[_Tracked]:
        out = []
        for quota in quotas:
            if quota.limit == 0 or not quota.matches(item):
                continue
            key = quota_key(quota, item, ts)
            if key is None:
                # Neither reject-all nor countable: a quota kind newer than this relay.
                log.debug("skipping quota that cannot be counted: %r", quota.id)
                continue
            out.append(_Tracked(quota, key))
        return out

    def _retry_after(self, seconds: int) -> float:
        if self._max_limit is not None:
            seconds = min(seconds, self._max_limit)
        return float(max(seconds, 0))

    async def _call(self, keys: list[str], args: list[int | str]) -> list[int]:
        """Run the script once, batched with concurrent calls when batching is on."""
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Call(keys, args, future))
        if self._inflight < self._max_inflight:
            self._inflight += 1
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await future

    async def _flush(self) -> None:
        try:
            # Let every task that is ready in this loop iteration add its call first.
            await asyncio.sleep(0)
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    replies = await self._run_batch([(c.keys, c.args) for c in batch])
                except BaseException as exc:
                    error = (
                        exc if isinstance(exc, RateLimitingError) else RateLimitingError(repr(exc))
                    )
                    for call in batch:
                        if not call.future.done():
                            call.future.set_exception(error)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for call, reply in zip(batch, replies, strict=True):
                    if not call.future.done():
                        call.future.set_result(reply)
        finally:
            self._inflight -= 1

    async def _run_batch(self, calls: list[tuple[list[str], list[int | str]]]) -> list[list[int]]:
        """EVALSHA every call (pipelined if more than one); reload the script on NOSCRIPT."""
        try:
            if not self._loaded:
                await self.load_script()
            replies = await self._evalsha_all(calls)
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:
                # A node restarted or failed over and lost its script cache.
                await self.load_script()
                retried = await self._evalsha_all([calls[i] for i in missing])
                for i, reply in zip(missing, retried, strict=True):
                    replies[i] = reply
        except RedisError as exc:
            raise RateLimitingError(str(exc)) from exc
        out: list[list[int]] = []
        for reply in replies:
            if isinstance(reply, Exception):
                raise RateLimitingError(str(reply)) from reply
            out.append([int(v) for v in reply])
        return out

    async def _evalsha_all(self, calls: list[tuple[list[str], list[int | str]]]) -> list[Any]:
        if len(calls) == 1:
            keys, args = calls[0]
            try:
                return [await self._client.evalsha(_SCRIPT_SHA, len(keys), *keys, *args)]
            except (NoScriptError, ResponseError) as exc:
                return [exc]
        async with self._client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                # ``execute_command`` rather than ``evalsha``: cluster pipelines block the
                # method but route the command by its keys like any other.
                pipe.execute_command("EVALSHA", _SCRIPT_SHA, len(keys), *keys, *args)
            result: list[Any] = await pipe.execute(raise_on_error=False)
            return result
