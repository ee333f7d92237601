"""Where project configs come from: the shared Redis cache, then the upstream's
``projectconfigs?version=3`` API.

The upstream source keeps one *channel* per requested key. Every round (after
``cache.batch_interval`` plus a backoff while the upstream fails) it sends up to
``limits.max_concurrent_queries`` requests of up to ``cache.batch_size`` keys each, in
parallel. Keys the upstream reports ``pending`` stay for the next round; failed requests are
retried with exponential backoff; a key still unresolved after ``limits.query_timeout`` gives
up (the project cache then schedules a new fetch with its own backoff). A slow or hanging
request delays only the keys in its own batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Final

import msgspec
from redis.asyncio import Redis, RedisCluster

from relay.config import Config
from relay.protocol.encoding import zstd_decompress
from relay.protocol.project_config import (
    DISABLED,
    ProjectConfigsResponse,
    ProjectState,
    decode_project_state,
    describe_state_error,
)
from relay.server.backoff import RetryBackoff
from relay.server.upstream import UpstreamClient, UpstreamError, response_error

log = logging.getLogger(__name__)

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MAX_CONFIG_BYTES = 50 * 1024 * 1024
#: Pending keys are asked for again after at least this long, even with a zero batch interval.
_MIN_PENDING_INTERVAL = 0.01
_response_decoder = msgspec.json.Decoder(ProjectConfigsResponse)


class _NotModified:
    """The source has nothing newer than the revision we hold."""

    def __repr__(self) -> str:
        return "NOT_MODIFIED"


NOT_MODIFIED: Final = _NotModified()

#: A fetch result: a new state, NOT_MODIFIED, or None (still pending: try again later).
FetchResult = ProjectState | _NotModified | None


def decode_cached_state(raw: bytes) -> ProjectState:
    """Decode a Redis value: zstd-compressed or plain JSON, as Relay accepts both."""
    if raw.startswith(_ZSTD_MAGIC):
        raw = zstd_decompress(raw, _MAX_CONFIG_BYTES)
    return decode_project_state(raw)


class RedisSource:
    """``{prefix}:{public_key}`` (zstd or plain JSON) and ``{prefix}:{public_key}.rev``."""

    def __init__(self, config: Config, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self.prefix = config.processing.projectconfig_cache_prefix

    async def _mget(self, keys: list[str]) -> list[bytes | str | None]:
        if isinstance(self.redis, RedisCluster):
            # The keys of different projects live in different cluster slots: one MGET per
            # node, results in key order.
            return list(await self.redis.mget_nonatomic(keys))
        return list(await self.redis.mget(keys))

    async def fetch(self, keys: list[tuple[str, str | None]]) -> dict[str, FetchResult]:
        """Results for the keys Redis knows; keys it lacks are left out.

        The ``.rev`` keys are read first (one ``MGET``), so that an unchanged project costs
        no config transfer; then one ``MGET`` for the configs that changed.
        """
        out: dict[str, FetchResult] = {}
        with_rev = [(k, r) for k, r in keys if r is not None]
        if with_rev:
            revs = await self._mget([f"{self.prefix}:{k}.rev" for k, _ in with_rev])
            for (key, known), current in zip(with_rev, revs, strict=True):
                if current is not None and _text(current) == known:
                    out[key] = NOT_MODIFIED
        todo = [(k, r) for k, r in keys if k not in out]
        if not todo:
            return out
        values = await self._mget([f"{self.prefix}:{k}" for k, _ in todo])
        for (key, rev), raw in zip(todo, values, strict=True):
            if raw is None:
                continue
            data = raw if isinstance(raw, bytes) else str(raw).encode()
            try:
                state = decode_cached_state(data)
            except (msgspec.MsgspecError, ValueError) as exc:
                log.warning("failed to parse projectconfig from redis for %s: %s", key, exc)
                continue
            out[key] = NOT_MODIFIED if rev is not None and state.rev == rev else state
        return out


class Absent:
    """Redis does not hold the key: ask the next source."""


ABSENT: Final = Absent()


class RedisBatcher:
    """Coalesces per-key Redis lookups into ``MGET``s of up to ``cache.batch_size`` keys.

    Lookups made in the same event-loop turn share one round trip, so a burst of 1,000 new
    keys costs a few pipelined ``MGET``s and one connection each, not 1,000 ``GET``s.
    """

    def __init__(self, config: Config, source: RedisSource) -> None:
        self.source = source
        self.batch_size = max(1, config.cache.batch_size)
        self._queued: dict[str, tuple[str | None, list[asyncio.Future[FetchResult | Absent]]]] = {}
        self._scheduled = False
        self._slots = asyncio.Semaphore(4)
        self._tasks: set[asyncio.Task[None]] = set()

    def fetch(self, key: str, revision: str | None) -> asyncio.Future[FetchResult | Absent]:
        """A future for the key's Redis result (ABSENT if Redis lacks it)."""
        fut: asyncio.Future[FetchResult | Absent] = asyncio.get_running_loop().create_future()
        entry = self._queued.get(key)
        if entry is None:
            self._queued[key] = (revision, [fut])
        else:
            entry[1].append(fut)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        queued, self._queued = self._queued, {}
        items = list(queued.items())
        for i in range(0, len(items), self.batch_size):
            task = asyncio.create_task(self._run(dict(items[i : i + self.batch_size])))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(
        self, batch: dict[str, tuple[str | None, list[asyncio.Future[FetchResult | Absent]]]]
    ) -> None:
        try:
            async with self._slots:
                found = await self.source.fetch([(k, rev) for k, (rev, _) in batch.items()])
        except Exception as exc:
            for _, futures in batch.values():
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(exc)
            return
        for key, (_, futures) in batch.items():
            result: FetchResult | Absent = found.get(key, ABSENT)
            for fut in futures:
                if not fut.done():
                    fut.set_result(result)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class _Channel:
    __slots__ = ("attempts", "deadline", "errors", "futures", "pending", "revision")

    def __init__(self, revision: str | None, deadline: float) -> None:
        self.futures: list[asyncio.Future[FetchResult]] = []
        self.revision = revision
        self.deadline = deadline
        self.attempts = 0
        self.errors = 0
        self.pending = 0

    def resolve(self, result: FetchResult) -> None:
        for fut in self.futures:
            if not fut.done():
                fut.set_result(result)


class UpstreamSource:
    """Batched, retried ``projectconfigs?version=3`` requests to the upstream."""

    def __init__(self, config: Config, upstream: UpstreamClient) -> None:
        self.config = config
        self.upstream = upstream
        self._channels: dict[str, _Channel] = {}
        self._wakeup = asyncio.Event()
        self._backoff = RetryBackoff(config.http.max_retry_interval)
        self._task: asyncio.Task[None] | None = None
        self._first_failure: float | None = None
        self._saw_pending = False
        self._retry_delay = 0.0
        self._slots = asyncio.Semaphore(max(1, config.limits.max_concurrent_queries))
        self._inflight: set[asyncio.Task[None]] = set()
        #: Number of ``projectconfigs`` requests sent (for tests and benchmarks).
        self.requests = 0

    async def start(self) -> None:
        """Start the batching loop."""
        self._task = asyncio.create_task(self._loop(), name="project-source-upstream")

    async def stop(self) -> None:
        """Stop; open requests resolve as pending."""
        for task in (self._task, *self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for channel in self._channels.values():
            channel.resolve(None)
        self._channels.clear()

    def fetch(self, key: str, revision: str | None) -> asyncio.Future[FetchResult]:
        """A future for the key's state; several callers for one key share one request."""
        fut: asyncio.Future[FetchResult] = asyncio.get_running_loop().create_future()
        channel = self._channels.get(key)
        if channel is None:
            channel = _Channel(revision, time.monotonic() + self.config.limits.query_timeout)
            self._channels[key] = channel
        elif channel.revision != revision:
            # Callers disagree on what they hold: only a full config answers both.
            channel.revision = None
        channel.futures.append(fut)
        self._wakeup.set()
        return fut

    async def _loop(self) -> None:
        interval = self.config.cache.batch_interval / 1000.0
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # The backoff grows only while requests fail (see _handle).
            delay = interval + self._retry_delay
            if self._saw_pending:
                delay = max(delay, _MIN_PENDING_INTERVAL)
                self._saw_pending = False
            if delay > 0:
                await asyncio.sleep(delay)
            # Each batch runs on its own: a request that hangs holds only its own keys and one
            # of the max_concurrent_queries slots, never the keys asked for after it.
            for batch in self._take_batches():
                task = asyncio.create_task(self._run(batch))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if not self._channels and not self._inflight:
                self._backoff.reset()
                self._retry_delay = 0.0

    async def _run(self, batch: dict[str, _Channel]) -> None:
        async with self._slots:
            result = await self._send(batch)
        self._handle(batch, result)
        if self._channels:
            self._wakeup.set()

    def _take_batches(self) -> list[dict[str, _Channel]]:
        size = max(1, self.config.cache.batch_size)
        free = max(1, self.config.limits.max_concurrent_queries - len(self._inflight))
        limit = size * free
        now = time.monotonic()
        taken: list[tuple[str, _Channel]] = []
        for key in list(self._channels)[:limit]:
            channel = self._channels.pop(key)
            if now > channel.deadline:
                log.warning(
                    "error fetching project state %s: deadline exceeded (errors=%d, pending=%d)",
                    key, channel.errors, channel.pending,
                )  # fmt: skip
                channel.resolve(None)
                continue
            if all(f.done() for f in channel.futures):
                continue  # every caller gave up
            taken.append((key, channel))
        return [dict(taken[i : i + size]) for i in range(0, len(taken), size)]

    async def _send(self, batch: dict[str, _Channel]) -> ProjectConfigsResponse | UpstreamError:
        for channel in batch.values():
            channel.attempts += 1
        payload = {
            "publicKeys": list(batch),
            "revisions": [c.revision for c in batch.values()],
            "fullConfig": self.config.processing.enabled
            or self.config.cache.project_request_full_config,
            "noCache": False,
        }
        deadline = max(c.deadline for c in batch.values())
        try:
            # Requests wait for registration, as in Relay, but never past their deadline.
            await asyncio.wait_for(
                self.upstream.authenticated.wait(), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            return UpstreamError("not authenticated with the upstream")
        self.requests += 1
        try:
            status, _, data = await self.upstream.request(
                "POST",
                "/api/0/relays/projectconfigs/?version=3",
                body=msgspec.json.encode(payload),
                headers={"Content-Type": "application/json"},
            )
        except UpstreamError as exc:
            return exc
        if status >= 300:
            return UpstreamError(response_error(status, data), status)
        try:
            return _response_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            return UpstreamError(f"invalid projectconfigs response: {exc}")

    def _handle(
        self, batch: dict[str, _Channel], result: ProjectConfigsResponse | UpstreamError
    ) -> None:
        if isinstance(result, UpstreamError):
            now = time.monotonic()
            if self._first_failure is None:
                self._first_failure = now
            elif now - self._first_failure >= self.config.http.project_failure_interval:
                log.error("can't fetch project states")
            # A single failure is what retries are for; report from the second on.
            if max((c.attempts for c in batch.values()), default=0) >= 2:
                log.error("error fetching project states: %s", result)
            else:
                log.warning("error fetching project states: %s", result)
            for key, channel in batch.items():
                channel.errors += 1
                self._merge(key, channel)
            if not self._backoff.started:
                self._backoff.next_backoff()  # the first step of Relay's backoff is immediate
            self._retry_delay = self._backoff.next_backoff()
            return
        # One good answer resets the backoff: a reproducible error for one project must
        # not hold back all others.
        self._backoff.reset()
        self._retry_delay = 0.0
        self._first_failure = None
        pending = set(result.pending)
        unchanged = set(result.unchanged)
        for key, channel in batch.items():
            if key in pending:
                channel.pending += 1
                self._merge(key, channel)
                continue
            if key in unchanged:
                channel.resolve(NOT_MODIFIED)
                continue
            raw = result.configs.get(key)
            if raw is None or bytes(raw).strip() == b"null":
                channel.resolve(DISABLED)
                continue
            try:
                state = decode_project_state(raw)
            except msgspec.MsgspecError as exc:
                log.error(
                    "error fetching project state %s: %s", key, describe_state_error(exc, raw)
                )
                channel.resolve(None)
                continue
            channel.resolve(state)
        if pending:
            # Give the upstream a moment before asking again for what it is still resolving.
            self._saw_pending = True

    def _merge(self, key: str, channel: _Channel) -> None:
        existing = self._channels.get(key)
        if existing is None:
            self._channels[key] = channel
            return
        existing.futures.extend(channel.futures)
        if existing.revision != channel.revision:
            existing.revision = None
        existing.deadline = max(existing.deadline, channel.deadline)
        existing.attempts += channel.attempts
        existing.errors += channel.errors
        existing.pending += channel.pending

    def pending_keys(self) -> Iterable[str]:
        """Keys with an open request (for tests)."""
        return list(self._channels)
