"""Per-project queues for envelopes whose project config is not known yet.

The request that brought an envelope is answered at once (as Relay does: 200 and queue);
the envelope waits here, in its project's own queue, until the config arrives. Envelopes of
projects whose config is cached never pass through here, so a project whose config fetch
hangs delays only its own envelopes.

Bounded: all queues together hold at most ``budget_bytes`` and one project at most
``project_budget_bytes`` (then the client gets 503 + Retry-After). An envelope that waited
``cache.envelope_expiry`` is dropped with an outcome (``timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from relay.config import Config
from relay.errors import ServiceUnavailable
from relay.protocol.envelope import Envelope
from relay.protocol.project_config import ProjectState
from relay.server.request_meta import RequestMeta

log = logging.getLogger(__name__)

#: Handles an envelope once its project's state is known.
Release = Callable[[Envelope, RequestMeta, ProjectState], Awaitable[None]]
#: Records the outcome of an envelope that waited too long.
Expire = Callable[[Envelope, RequestMeta], None]

DEFAULT_BUDGET_BYTES = 128 * 1024 * 1024
_EXPIRY_CHECK_INTERVAL = 1.0
#: Fixed per-envelope overhead counted against the budget (headers, bookkeeping).
_OVERHEAD = 512


def envelope_size(envelope: Envelope) -> int:
    """Bytes an envelope holds in memory, roughly: its payloads plus a fixed overhead."""
    return _OVERHEAD + sum(len(item.payload) for item in envelope.items)


class _Waiting:
    __slots__ = ("envelope", "meta", "queued_at", "size")

    def __init__(self, envelope: Envelope, meta: RequestMeta, size: int) -> None:
        self.envelope = envelope
        self.meta = meta
        self.size = size
        self.queued_at = time.monotonic()


class PendingQueues:
    """Envelopes waiting for their project config, one FIFO per public key."""

    def __init__(
        self,
        config: Config,
        release: Release,
        expire: Expire,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        project_budget_bytes: int | None = None,
    ) -> None:
        self.config = config
        self._release = release
        self._expire = expire
        self.budget_bytes = budget_bytes
        # One project may take a quarter of the budget: others keep room to queue.
        self.project_budget_bytes = project_budget_bytes or max(1, budget_bytes // 4)
        self.bytes_queued = 0
        self._queues: dict[str, deque[_Waiting]] = {}
        self._project_bytes: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry_task: asyncio.Task[None] | None = None
        #: Set while no envelope waits (shutdown waits for it).
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def waiting_keys(self) -> list[str]:
        """The public keys that have envelopes waiting."""
        return list(self._queues)

    def oldest_queued_at(self) -> float | None:
        """Monotonic time the oldest waiting envelope was queued (None: nothing waits)."""
        return min((q[0].queued_at for q in self._queues.values() if q), default=None)

    async def start(self) -> None:
        """Start dropping envelopes that waited too long."""
        self._expiry_task = asyncio.create_task(self._expiry_loop(), name="pending-expiry")

    def push(self, envelope: Envelope, meta: RequestMeta, key: str | None = None) -> None:
        """Queue an envelope for its project; raise ServiceUnavailable when over budget.

        ``key``: the project to wait for, when not the envelope's own (a trace's root project).
        """
        key = key or meta.public_key
        size = envelope_size(envelope)
        project_bytes = self._project_bytes.get(key, 0)
        if self.bytes_queued + size > self.budget_bytes or (
            project_bytes + size > self.project_budget_bytes and project_bytes > 0
        ):
            raise ServiceUnavailable("the service is overloaded", retry_after=5)
        self._queues.setdefault(key, deque()).append(_Waiting(envelope, meta, size))
        self._empty.clear()
        self._project_bytes[key] = project_bytes + size
        self.bytes_queued += size

    def on_project_ready(self, public_key: str, state: ProjectState) -> None:
        """Project cache listener: release the key's queue (in the background, in order)."""
        queue = self._queues.pop(public_key, None)
        if not self._queues:
            self._empty.set()
        if not queue:
            return
        self.bytes_queued -= self._project_bytes.pop(public_key, 0)
        task = asyncio.create_task(self._drain(queue, state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, queue: deque[_Waiting], state: ProjectState) -> None:
        for waiting in queue:
            try:
                await self._release(waiting.envelope, waiting.meta, state)
            except Exception:
                log.exception("failed to release a queued envelope")

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(_EXPIRY_CHECK_INTERVAL)
            self.expire_older_than(self.config.cache.envelope_expiry)

    def expire_older_than(self, max_age: float) -> int:
        """Drop (with an outcome) every envelope that waited longer than ``max_age``."""
        cutoff = time.monotonic() - max_age
        dropped = 0
        for key in list(self._queues):
            queue = self._queues[key]
            while queue and queue[0].queued_at <= cutoff:
                waiting = queue.popleft()
                self._project_bytes[key] -= waiting.size
                self.bytes_queued -= waiting.size
                dropped += 1
                self._expire(waiting.envelope, waiting.meta)
            if not queue:
                del self._queues[key]
                self._project_bytes.pop(key, None)
        if not self._queues:
            self._empty.set()
        return dropped

    async def stop(self, timeout: float) -> None:
        """Stop expiring; within ``timeout``, let waiting envelopes get their project config
        and releases in progress finish. What is still waiting then is dropped (``timeout``)."""
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_task
        deadline = time.monotonic() + timeout
        # As Relay's envelope buffer on shutdown: envelopes still waiting for their project
        # config get the shutdown budget for it (the project cache keeps fetching meanwhile).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        left = len(self)
        if left:
            log.warning("shutdown: %d envelopes still waited for their project config", left)
            self.expire_older_than(-1.0)
