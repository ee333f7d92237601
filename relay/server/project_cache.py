"""Project configs: memory first, then the shared Redis cache, then the upstream API.

Lookups never block each other: a miss registers a future and the key joins the next
batch, fetched by one background task (one Redis ``MGET``, one ``projectconfigs`` call
for what Redis lacks). Waiting requests of other projects are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec
from redis.asyncio import Redis

from relay.config import Config
from relay.protocol.encoding import zstd_decompress
from relay.protocol.project_config import (
    DISABLED,
    ProjectConfigsResponse,
    ProjectState,
    decode_project_state,
)
from relay.server.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MAX_CONFIG_BYTES = 50 * 1024 * 1024
_response_decoder = msgspec.json.Decoder(ProjectConfigsResponse)


def decode_cached_state(raw: bytes) -> ProjectState:
    """Decode a Redis value: zstd-compressed or plain JSON, as Relay accepts both."""
    if raw.startswith(_ZSTD_MAGIC):
        raw = zstd_decompress(raw, _MAX_CONFIG_BYTES)
    return decode_project_state(raw)


class _Entry:
    __slots__ = ("expires_at", "state")

    def __init__(self, state: ProjectState, expires_at: float) -> None:
        self.state = state
        self.expires_at = expires_at


class ProjectCache:
    """Caches project states by public key and fetches missing ones in batches."""

    def __init__(
        self, config: Config, upstream: UpstreamClient | None, redis: Redis | None
    ) -> None:
        self.config = config
        self.upstream = upstream
        self.redis = redis
        self._entries: dict[str, _Entry] = {}
        self._waiters: dict[str, list[asyncio.Future[ProjectState]]] = {}
        self._queue: set[str] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.global_config: dict[str, Any] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._fetch_loop(), name="project-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for waiters in self._waiters.values():
            for fut in waiters:
                fut.cancel()

    def cached(self, public_key: str) -> ProjectState | None:
        """The cached state if fresh or within the grace period; schedules a refresh when stale."""
        entry = self._entries.get(public_key)
        if entry is None:
            return None
        now = time.monotonic()
        if now >= entry.expires_at:
            self._request(public_key)
            if now >= entry.expires_at + self.config.cache.project_grace_period:
                return None
        return entry.state

    def put(self, public_key: str, state: ProjectState, ttl: float | None = None) -> None:
        """Store a state (and wake anyone waiting for it)."""
        if ttl is None:
            ttl = (
                self.config.cache.miss_expiry
                if state.disabled
                else self.config.cache.project_expiry
            )
        self._entries[public_key] = _Entry(state, time.monotonic() + ttl)
        for fut in self._waiters.pop(public_key, ()):
            if not fut.done():
                fut.set_result(state)

    async def get(self, public_key: str, timeout: float) -> ProjectState:
        """The project state for a key, waiting up to ``timeout`` for a fetch.

        Raises TimeoutError if no source answered in time.
        """
        state = self.cached(public_key)
        if state is not None:
            return state
        fut: asyncio.Future[ProjectState] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(public_key, []).append(fut)
        self._request(public_key)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            waiters = self._waiters.get(public_key)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[public_key]

    def cached_or_request(self, public_key: str) -> ProjectState | None:
        """The cached state, or None after scheduling a fetch (answers ``pending``)."""
        state = self.cached(public_key)
        if state is None:
            self._request(public_key)
        return state

    def _request(self, public_key: str) -> None:
        self._queue.add(public_key)
        self._wakeup.set()

    async def _fetch_loop(self) -> None:
        interval = self.config.cache.batch_interval / 1000.0
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if interval > 0:
                await asyncio.sleep(interval)
            keys = list(self._queue)[: self.config.cache.batch_size]
            self._queue.difference_update(keys)
            if self._queue:
                self._wakeup.set()
            try:
                await self._fetch(keys)
            except Exception:
                log.exception("project config fetch failed")
                await asyncio.sleep(self.config.http.retry_delay)
                self._requeue(keys)

    def _requeue(self, keys: list[str]) -> None:
        # Only keys someone still waits for, or that have a stale entry, are worth a retry.
        for key in keys:
            if key in self._waiters or key in self._entries:
                self._request(key)

    async def _fetch(self, keys: list[str]) -> None:
        missing = keys
        if self.redis is not None and keys:
            missing = await self._fetch_redis(keys)
        if missing and self.upstream is not None:
            await self._fetch_upstream(missing)
        elif missing and self.upstream is None:
            for key in missing:
                self.put(key, DISABLED)

    async def _fetch_redis(self, keys: list[str]) -> list[str]:
        assert self.redis is not None
        prefix = self.config.processing.projectconfig_cache_prefix
        try:
            values = await self.redis.mget([f"{prefix}:{key}" for key in keys])
        except Exception as exc:
            log.warning("redis project config lookup failed: %s", exc)
            return keys
        missing = []
        for key, raw in zip(keys, values, strict=True):
            if raw is None:
                missing.append(key)
                continue
            try:
                self.put(key, decode_cached_state(raw if isinstance(raw, bytes) else raw.encode()))
            except Exception as exc:
                log.warning("invalid project config in redis for %s: %s", key, exc)
                missing.append(key)
        return missing

    async def _fetch_upstream(self, keys: list[str]) -> None:
        assert self.upstream is not None
        await asyncio.wait_for(self.upstream.authenticated.wait(), self.config.http.timeout)
        revisions = []
        for key in keys:
            entry = self._entries.get(key)
            revisions.append(entry.state.rev if entry else None)
        payload = {
            "publicKeys": keys,
            "revisions": revisions,
            "fullConfig": self.config.processing.enabled
            or self.config.cache.project_request_full_config,
            "noCache": False,
            "global": self.global_config is None,
        }
        try:
            raw = await self.upstream.request_json(
                "/api/0/relays/projectconfigs/?version=3", payload
            )
        except UpstreamError as exc:
            log.warning("projectconfigs request failed: %s", exc)
            await asyncio.sleep(self.config.http.retry_delay)
            self._requeue(keys)
            return
        response = msgspec.convert(raw or {}, ProjectConfigsResponse)
        if response.global_ is not None:
            self.global_config = response.global_
        for key, state in response.configs.items():
            self.put(key, state if state is not None else DISABLED)
        for key in response.unchanged:
            entry = self._entries.get(key)
            if entry is not None:
                self.put(key, entry.state)
        pending = set(response.pending)
        if pending:
            # The upstream is still fetching these; ask again soon, without blocking others.
            loop = asyncio.get_running_loop()
            loop.call_later(self.config.http.retry_delay / 4, self._requeue, list(pending))
        answered = set(response.configs) | set(response.unchanged) | pending
        for key in keys:
            if key not in answered:
                self.put(key, DISABLED)
