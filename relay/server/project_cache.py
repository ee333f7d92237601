"""Project configs: memory first, then the shared Redis cache, then the upstream API.

Lookups never wait. :meth:`ProjectCache.get_state` answers from memory at once, with a
state or ``None`` ("pending"), and schedules a fetch when the cached state is missing or
stale. Whoever needs the state when it arrives subscribes (:meth:`ProjectCache.subscribe`);
the ingest path parks envelopes in per-project queues (relay.server.pending) instead of
holding a request open, so a project whose config is slow delays only itself.

Lifetimes, as in Relay: a state is fresh for ``cache.project_expiry`` (``cache.miss_expiry``
for a disabled/unknown key); then it is still used for ``cache.project_grace_period`` while a
refresh runs; then it is evicted and the project is pending again. A fetch that stays pending
is retried with exponential backoff (up to ``http.max_retry_interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from redis.asyncio import Redis, RedisCluster

from relay.config import Config
from relay.protocol.project_config import ProjectState
from relay.server.backoff import RetryBackoff
from relay.server.project_source import (
    ABSENT,
    NOT_MODIFIED,
    Absent,
    FetchResult,
    RedisBatcher,
    RedisSource,
    UpstreamSource,
    decode_cached_state,
)
from relay.server.redis_breaker import RedisBreaker
from relay.server.upstream import UpstreamClient, UpstreamError
from relay.telemetry.metrics import PROJECT_CACHE

__all__ = ["DUMMY", "ProjectCache", "decode_cached_state"]

log = logging.getLogger(__name__)

#: The state of every project in proxy mode: no config, nothing is checked.
DUMMY = ProjectState()

#: Called with the key and its new state when a fetch completes.
Listener = Callable[[str, ProjectState], None]
#: Called once the global config is first ready.
GlobalListener = Callable[[], None]

_SWEEP_INTERVAL = 5.0


class _Project:
    __slots__ = ("backoff", "evict_at", "fetched_at", "fetching", "fresh_until", "state")

    def __init__(self, max_backoff: float) -> None:
        self.state: ProjectState | None = None
        self.fetched_at = 0.0
        self.fresh_until = 0.0
        self.evict_at = 0.0
        self.fetching = False
        self.backoff = RetryBackoff(max_backoff)


class ProjectCache:
    """Caches project states by public key and fetches missing or stale ones in batches."""

    def __init__(
        self,
        config: Config,
        upstream: UpstreamClient | None,
        redis: Redis | RedisCluster | None,
    ) -> None:
        self.config = config
        self.upstream = upstream
        self.redis_source = (
            RedisBatcher(config, RedisSource(config, redis)) if redis is not None else None
        )
        #: A Redis that is down or frozen is skipped for the upstream, not waited for.
        self.redis_breaker = RedisBreaker("project configs")
        managed = config.relay.mode == "managed"
        self.upstream_source = (
            UpstreamSource(config, upstream) if upstream is not None and managed else None
        )
        #: Proxy/static relays have no configs (Relay's ``Dummy`` state) unless Redis has one.
        self.proxy = not managed
        self._projects: dict[str, _Project] = {}
        self._listeners: list[Listener] = []
        self._global_listeners: list[GlobalListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._global_task: asyncio.Task[None] | None = None
        #: The upstream's global config; None until fetched.
        self.global_config: dict[str, Any] | None = None

    async def start(self) -> None:
        """Start the sources, the eviction sweep and the global config fetch."""
        if self.upstream_source is not None:
            await self.upstream_source.start()
            self._global_task = asyncio.create_task(self._global_loop(), name="global-config")
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="project-cache-sweep")

    async def stop(self) -> None:
        """Stop fetching."""
        for task in (self._sweeper, self._global_task, *self._tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.upstream_source is not None:
            await self.upstream_source.stop()

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(key, state)`` whenever a fetch for a key completes."""
        self._listeners.append(listener)

    def subscribe_global(self, listener: GlobalListener) -> None:
        """Call ``listener()`` when the global config becomes ready (once)."""
        self._global_listeners.append(listener)

    @property
    def global_ready(self) -> bool:
        """Whether envelopes may be processed: the upstream's global config has arrived.

        Only relays that fetch configs from an upstream wait for it (as Relay's envelope
        buffer does); proxy and static relays use the defaults.
        """
        return self.upstream_source is None or self.global_config is not None

    @property
    def served_global_config(self) -> dict[str, Any] | None:
        """The global config to hand to downstream relays (None: not fetched yet).

        A relay that fetches none (proxy, static, or configs from Redis only) is
        authoritative for its downstreams: it serves the defaults as ready, so they do
        not wait for a global config that will never come.
        """
        if self.global_config is None and self.upstream_source is None:
            return {}
        return self.global_config

    def _set_global(self, data: dict[str, Any]) -> None:
        first = self.global_config is None
        self.global_config = data
        if not first:
            return
        log.info("received global config from upstream")
        for listener in list(self._global_listeners):
            try:
                listener()
            except Exception:
                log.exception("global config listener failed")

    # -- lookups ---------------------------------------------------------------------

    def get_state(self, public_key: str) -> ProjectState | None:
        """The usable state now (fresh or in its grace period), or None while pending.

        Schedules a fetch when the state is missing or no longer fresh.
        """
        if self.proxy and self.redis_source is None:
            return DUMMY
        project = self._projects.get(public_key)
        if project is None:
            project = self._projects[public_key] = _Project(self.config.http.max_retry_interval)
        now = time.monotonic()
        if now >= project.fresh_until and not project.fetching:
            self._begin_fetch(public_key, project, 0.0)
        if project.state is not None and now < project.evict_at:
            PROJECT_CACHE.inc(1, "hit" if now < project.fresh_until else "stale")
            return project.state
        PROJECT_CACHE.inc(1, "miss")
        return None

    def cached(self, public_key: str) -> ProjectState | None:
        """The usable state without scheduling anything (for tests and introspection)."""
        project = self._projects.get(public_key)
        if project is None or project.state is None or time.monotonic() >= project.evict_at:
            return None
        return project.state

    async def get(self, public_key: str, timeout: float) -> ProjectState:
        """The project state, waiting up to ``timeout`` for a fetch. Raises TimeoutError."""
        state = self.get_state(public_key)
        if state is not None:
            return state
        deadline = time.monotonic() + timeout
        fut: asyncio.Future[ProjectState] = asyncio.get_running_loop().create_future()

        def on_ready(key: str, new: ProjectState) -> None:
            if key == public_key and not fut.done():
                fut.set_result(new)

        self._listeners.append(on_ready)
        try:
            return await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
        finally:
            self._listeners.remove(on_ready)

    def put(self, public_key: str, state: ProjectState) -> None:
        """Store a state as if just fetched (used by tests and the configserver)."""
        project = self._projects.get(public_key)
        if project is None:
            project = self._projects[public_key] = _Project(self.config.http.max_retry_interval)
        self._complete(public_key, project, state)

    def __len__(self) -> int:
        return len(self._projects)

    # -- fetching --------------------------------------------------------------------

    def _begin_fetch(self, key: str, project: _Project, delay: float) -> None:
        project.fetching = True
        revision = project.state.rev if project.state is not None else None
        task = asyncio.create_task(self._fetch(key, revision, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, key: str, revision: str | None, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        result: FetchResult = None
        try:
            result = await self._fetch_sources(key, revision)
        except Exception:
            log.exception("failed to fetch project %s", key)
        project = self._projects.get(key)
        if project is None:
            return
        if result is None:
            # Still pending: try again after a backoff; the old state (if any) stays usable
            # until its eviction time.
            project.fetching = False
            self._begin_fetch(key, project, project.backoff.next_backoff())
            return
        state = project.state if result is NOT_MODIFIED else result
        if state is None:
            # NOT_MODIFIED for a state we no longer hold: ask for the full config.
            project.fetching = False
            self._begin_fetch(key, project, 0.0)
            return
        assert isinstance(state, ProjectState)
        self._complete(key, project, state)

    async def _fetch_sources(self, key: str, revision: str | None) -> FetchResult:
        redis_source = self.redis_source
        if redis_source is not None:
            try:
                fetched = await self.redis_breaker.call(lambda: redis_source.fetch(key, revision))
            except Exception as exc:
                log.error("failed to fetch project from Redis: %s", exc)
                fetched = None
            found = ABSENT if fetched is None else fetched
            if not isinstance(found, Absent):
                return found
        if self.upstream_source is None:
            return DUMMY if self.proxy else None
        return await self.upstream_source.fetch(key, revision)

    def _complete(self, key: str, project: _Project, state: ProjectState) -> None:
        now = time.monotonic()
        ttl = self.config.cache.miss_expiry if state.disabled else self.config.cache.project_expiry
        project.state = state
        project.fetched_at = now
        project.fresh_until = now + ttl
        project.evict_at = now + ttl + self.config.cache.project_grace_period
        project.fetching = False
        project.backoff.reset()
        for listener in list(self._listeners):
            try:
                listener(key, state)
            except Exception:
                log.exception("project listener failed for %s", key)

    async def _sweep_loop(self) -> None:
        # Evicted projects without a running fetch are dropped, so memory follows traffic.
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL)
            now = time.monotonic()
            stale = [
                k
                for k, p in self._projects.items()
                if not p.fetching and p.state is not None and now >= p.evict_at
            ]
            for key in stale:
                del self._projects[key]

    async def _global_loop(self) -> None:
        assert self.upstream is not None
        backoff = RetryBackoff(self.config.http.max_retry_interval)
        while True:
            try:
                await self.upstream.authenticated.wait()
                answer = await self.upstream.request_json(
                    "/api/0/relays/projectconfigs/?version=3",
                    {"publicKeys": [], "revisions": [], "global": True},
                )
                data = answer.get("global") if isinstance(answer, dict) else None
                # An upstream without a global status is an older one: its config is ready.
                status = answer.get("globalStatus") if isinstance(answer, dict) else None
                if not isinstance(data, dict):
                    # Reported (sentry.dsn): an upstream that ignores the request is broken.
                    log.error("global config missing in upstream response")
                elif status not in (None, "ready"):
                    log.info("global config from upstream is not yet ready")
                else:
                    self._set_global(data)
                backoff.reset()
                await asyncio.sleep(self.config.cache.global_config_fetch_interval)
            except (UpstreamError, msgspec.DecodeError) as exc:
                log.warning("failed to fetch global config: %s", exc)
                await asyncio.sleep(backoff.next_backoff() or 1.0)
