"""Per-project queues for envelopes whose project config is not known yet.

The request that brought an envelope is answered at once (as Relay does: 200 and queue);
the envelope waits here, in its project's own queue, until the config arrives. Envelopes of
projects whose config is cached never pass through here, so a project whose config fetch
hangs delays only its own envelopes.

Bounded: all queues together hold at most ``budget_bytes`` of memory and one project at
most ``project_budget_bytes`` (then the client gets 503 + Retry-After). An envelope that
waited ``cache.envelope_expiry`` is dropped with an outcome (``timeout``).

With a disk spool (``spool.envelopes.path``), as Relay's envelope buffer: once a project's
queue holds more than ``spool.envelopes.batch_size_bytes``, the queue moves to disk (its
memory is freed), and a shutdown moves what still waits there too, so waiting envelopes
survive a restart and wait for their config again. Released, the envelopes on disk go
first (they are older), then those in memory. When the spool is full they stay in memory
and the spool probe fails readiness (relay.server.health_check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import msgspec

from relay.config import Config
from relay.errors import ServiceUnavailable
from relay.protocol.envelope import Envelope, parse_envelope
from relay.protocol.project_config import ProjectState
from relay.server.request_meta import RequestMeta
from relay.server.spool import Spool, SpoolError, SpoolFull, WaitingEnvelope

log = logging.getLogger(__name__)

#: Handles an envelope once its project's state is known.
Release = Callable[[Envelope, RequestMeta, ProjectState], Awaitable[None]]
#: Records the outcome of an envelope that waited too long.
Expire = Callable[[Envelope, RequestMeta], None]

DEFAULT_BUDGET_BYTES = 128 * 1024 * 1024
_EXPIRY_CHECK_INTERVAL = 1.0
#: Expiry on disk reads the whole waiting table (it has no index by age): less often.
_DISK_EXPIRY_CHECK_INTERVAL = 10.0
#: Fixed per-envelope overhead counted against the budget (headers, bookkeeping).
_OVERHEAD = 512

_meta_decoder = msgspec.json.Decoder(RequestMeta)


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


#: An unfinished move of a queue to disk: done with the envelopes it could not write.
_Spill = asyncio.Future[list[_Waiting]]


class PendingQueues:
    """Envelopes waiting for their project config, one FIFO per public key."""

    def __init__(
        self,
        config: Config,
        release: Release,
        expire: Expire,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        project_budget_bytes: int | None = None,
        disk: Spool | None = None,
    ) -> None:
        self.config = config
        self._release = release
        self._expire = expire
        self.budget_bytes = budget_bytes
        # One project may take a quarter of the budget: others keep room to queue.
        self.project_budget_bytes = project_budget_bytes or max(1, budget_bytes // 4)
        #: Bytes of the envelopes waiting in memory.
        self.bytes_queued = 0
        self._queues: dict[str, deque[_Waiting]] = {}
        self._project_bytes: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry_task: asyncio.Task[None] | None = None
        #: Set while no envelope waits in memory (shutdown waits for it).
        self._empty = asyncio.Event()
        self._empty.set()
        self.disk = disk
        #: A project's queue moves to disk above this many bytes.
        self.spill_bytes = int(config.spool.envelopes.batch_size_bytes)
        #: Keys that may have envelopes on disk.
        self._on_disk: set[str] = set()
        #: Moves to disk under way, by key, and how many envelopes they carry.
        self._spills: dict[str, _Spill] = {}
        self._spill_tasks: set[asyncio.Task[None]] = set()
        self._spilling = 0

    def __len__(self) -> int:
        on_disk = self.disk.waiting if self.disk is not None else 0
        return sum(len(q) for q in self._queues.values()) + self._spilling + on_disk

    def waiting_keys(self) -> list[str]:
        """The public keys that have envelopes waiting (in memory or on disk)."""
        return list(self._queues.keys() | self._on_disk | self._spills.keys())

    def oldest_queued_at(self) -> float | None:
        """Monotonic time the oldest envelope waiting in memory was queued (None: none)."""
        return min((q[0].queued_at for q in self._queues.values() if q), default=None)

    async def start(self) -> None:
        """Take up the envelopes a previous run left on disk; start dropping envelopes
        that waited too long."""
        if self.disk is not None:
            waiting = await self.disk.waiting_keys()
            self._on_disk.update(waiting)
            if waiting:
                log.info(
                    "%d envelopes of %d projects wait on disk for their project config",
                    sum(waiting.values()), len(waiting),
                )  # fmt: skip
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
        if (
            self.disk is not None
            and project_bytes + size > self.spill_bytes
            and key not in self._spills
            # A full spool refused the last write: no use serializing the queue again.
            and not self.disk.full
        ):
            self._start_spill(key)

    def on_project_ready(self, public_key: str, state: ProjectState) -> None:
        """Project cache listener: release the key's queue (in the background, in order)."""
        queue = self._take_memory(public_key)
        spill = self._spills.pop(public_key, None)
        on_disk = public_key in self._on_disk or spill is not None
        self._on_disk.discard(public_key)
        if not queue and not on_disk:
            return
        task = asyncio.create_task(self._drain(queue, state, public_key, spill, on_disk))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take_memory(self, key: str) -> deque[_Waiting]:
        """Remove a key's queue from memory (and from the budget)."""
        queue = self._queues.pop(key, None)
        self.bytes_queued -= self._project_bytes.pop(key, 0)
        if not self._queues:
            self._empty.set()
        return queue or deque()

    async def _drain(
        self,
        queue: deque[_Waiting],
        state: ProjectState,
        key: str,
        spill: _Spill | None,
        on_disk: bool,
    ) -> None:
        # Oldest first: what went to disk, what a move to disk could not write, memory.
        unwritten = await spill if spill is not None else []
        stored = await self._take_disk(key) if on_disk else []
        for waiting in (*stored, *unwritten, *queue):
            try:
                await self._release(waiting.envelope, waiting.meta, state)
            except Exception:
                log.exception("failed to release a queued envelope")

    # --- the disk tier -------------------------------------------------------------------

    def _start_spill(self, key: str) -> None:
        """Move a key's queue to disk, in the background. A release meanwhile waits for the
        move (its future) before it reads the disk; the next move of the key starts after."""
        queue = self._take_memory(key)
        spill: _Spill = asyncio.get_running_loop().create_future()
        self._spills[key] = spill
        self._spilling += len(queue)
        task = asyncio.create_task(self._spill(key, list(queue), spill))
        self._spill_tasks.add(task)
        task.add_done_callback(self._spill_tasks.discard)

    async def _spill(self, key: str, entries: list[_Waiting], spill: _Spill) -> None:
        assert self.disk is not None
        wall_offset = time.time() - time.monotonic()
        rows = [
            WaitingEnvelope(
                w.queued_at + wall_offset, key, msgspec.json.encode(w.meta), w.envelope.serialize()
            )
            for w in entries
        ]
        unwritten: list[_Waiting] = []
        try:
            await self.disk.push_waiting(rows)
        except (SpoolFull, SpoolError) as exc:
            log.warning("envelopes waiting for project %s stay in memory: %s", key, exc)
            unwritten = entries
        finally:
            self._spilling -= len(entries)
        # Released meanwhile: the release reads the disk and takes what is unwritten.
        if self._spills.get(key) is spill:
            del self._spills[key]
            if not unwritten:
                self._on_disk.add(key)
            # Not released meanwhile: what could not be written waits in memory again...
            for waiting in reversed(unwritten):
                self._requeue_head(key, waiting)
            unwritten = []
            # ...and what arrived during the write moves on if it is over the threshold.
            if self._project_bytes.get(key, 0) > self.spill_bytes and not self.disk.full:
                self._start_spill(key)
        spill.set_result(unwritten)

    def _requeue_head(self, key: str, waiting: _Waiting) -> None:
        self._queues.setdefault(key, deque()).appendleft(waiting)
        self._empty.clear()
        self._project_bytes[key] = self._project_bytes.get(key, 0) + waiting.size
        self.bytes_queued += waiting.size

    async def _take_disk(self, key: str) -> list[_Waiting]:
        assert self.disk is not None
        try:
            return self._decode(await self.disk.take_waiting(key))
        except SpoolError as exc:
            log.error("envelopes waiting on disk for project %s are lost: %s", key, exc)
            return []

    def _decode(self, rows: list[WaitingEnvelope]) -> list[_Waiting]:
        decoded: list[_Waiting] = []
        for row in rows:
            try:
                envelope = parse_envelope(row.body)
                meta = _meta_decoder.decode(row.meta)
            except Exception as exc:  # written by us and checksummed: a bug, not input
                log.error("undecodable envelope waiting on disk for %s: %s", row.key, exc)
                continue
            waiting = _Waiting(envelope, meta, envelope_size(envelope))
            waiting.queued_at = row.queued_at - (time.time() - time.monotonic())
            decoded.append(waiting)
        return decoded

    # --- expiry and shutdown -------------------------------------------------------------

    async def _expiry_loop(self) -> None:
        next_disk_check = 0.0
        while True:
            await asyncio.sleep(_EXPIRY_CHECK_INTERVAL)
            self.expire_older_than(self.config.cache.envelope_expiry)
            if self._on_disk and time.monotonic() >= next_disk_check:
                next_disk_check = time.monotonic() + _DISK_EXPIRY_CHECK_INTERVAL
                await self._expire_disk(self.config.cache.envelope_expiry)

    def expire_older_than(self, max_age: float) -> int:
        """Drop (with an outcome) every envelope in memory that waited longer than
        ``max_age``."""
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

    async def _expire_disk(self, max_age: float) -> None:
        assert self.disk is not None
        try:
            rows = await self.disk.expire_waiting(time.time() - max_age)
        except SpoolError as exc:
            log.error("could not expire envelopes waiting on disk: %s", exc)
            return
        for waiting in self._decode(rows):
            self._expire(waiting.envelope, waiting.meta)
        if not self.disk.waiting and not self._spills:
            self._on_disk.clear()

    def _movable(self) -> list[str]:
        """Keys with envelopes in memory and no move to disk under way."""
        if self.disk is None or self.disk.full:
            return []
        return [key for key, queue in self._queues.items() if queue and key not in self._spills]

    async def stop(self, timeout: float) -> None:
        """Stop expiring; within ``timeout``, let waiting envelopes get their project config
        and releases in progress finish. What is still waiting in memory then moves to
        disk, or without one (or room on it) is dropped (``timeout``)."""
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
        # Moves to disk are finished whatever the budget (a local write, bounded by the
        # memory budget): an envelope is on disk or gets its outcome, never neither.
        while self._spill_tasks or (self.disk is not None and self._movable()):
            for key in self._movable():
                self._start_spill(key)
            await asyncio.wait(set(self._spill_tasks))
        left = sum(len(q) for q in self._queues.values())
        if left:
            log.warning("shutdown: %d envelopes still waited for their project config", left)
            self.expire_older_than(-1.0)
        if self.disk is not None and self.disk.waiting:
            log.info("shutdown: %d envelopes wait on disk for the next start", self.disk.waiting)
