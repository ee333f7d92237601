"""Admission control by bytes: what a relay holds in memory is bounded, and never waited for.

Every envelope handed to the sink (forwarder or processor) first takes a :class:`Ticket` for
its in-memory size. The ticket is returned when the sink is done with the envelope: for a POP
when the background send finished (or the envelope went to the spool or became an outcome),
for a processing relay when Kafka acknowledged its messages.

Budgets, checked in this order without ever blocking the request:

- per project (``limits.max_project_memory_bytes``): one noisy project cannot take the
  memory of the others. Exhausted: 429 + ``Retry-After`` (503 to a downstream relay, which
  would otherwise drop a 429'd envelope as "received": it retries or spools a 503);
- heavy envelopes (attachments, minidumps, replays, or larger than
  ``limits.heavy_envelope_size``) have their own byte budget
  (``limits.max_heavy_memory_bytes``, by default 3/4 of the global one), so big payloads
  always leave room for cheap ones (errors, sessions); those larger than
  ``limits.heavy_envelope_size`` are also counted (at most ``limits.max_concurrent_heavy``
  held at once). Exhausted: 503 + ``Retry-After``. A small attachment counts by its bytes
  only: sixteen screenshots being forwarded must not turn the seventeenth away (Relay has
  no such count at all); it waits for one of the forwarder's heavy send slots instead;
- global (``limits.max_memory_bytes``): 503 + ``Retry-After``.

An envelope larger than a whole budget is still admitted when nothing else holds that budget,
so that no envelope within the size limits is refused forever.

``bytes_in_use`` and :meth:`Admission.oldest_admitted_at` feed ``relay_queue_bytes`` and
``relay_queue_oldest_seconds`` (queue ``admission``; heavy envelopes also as
``admission_heavy``).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from relay.config import Config
from relay.errors import RateLimited, ServiceUnavailable
from relay.protocol.envelope import Envelope
from relay.protocol.items import ItemType

#: Fixed per-envelope overhead counted against the budgets (headers, bookkeeping).
OVERHEAD_BYTES = 512
#: Item types that make an envelope heavy, whatever its size.
HEAVY_ITEM_TYPES = frozenset(
    {
        ItemType.ATTACHMENT,
        ItemType.UNREAL_REPORT,
        ItemType.REPLAY_RECORDING,
        ItemType.REPLAY_VIDEO,
    }
)
#: ``Retry-After`` of a refusal, in seconds: long enough for the budgets to drain a little,
#: short enough that clients come back soon after an overload.
PROJECT_RETRY_AFTER = 2.0
GLOBAL_RETRY_AFTER = 2.0


def envelope_memory(envelope: Envelope) -> int:
    """Bytes an envelope holds in memory, roughly: its payloads plus a fixed overhead."""
    return OVERHEAD_BYTES + sum(len(item.payload) for item in envelope.items)


def is_heavy(envelope: Envelope, size: int, threshold: int) -> bool:
    """Whether an envelope of ``size`` bytes belongs to the heavy class."""
    return size > threshold or any(item.type in HEAVY_ITEM_TYPES for item in envelope.items)


@dataclass(eq=False)
class Ticket:
    """Bytes one admitted envelope holds; :meth:`release` returns them (idempotent)."""

    admission: Admission
    project: int | str
    size: int
    heavy: bool
    admitted_at: float = field(default_factory=time.monotonic)
    released: bool = False
    serial: int = 0

    def release(self) -> None:
        """Give the bytes back; later calls do nothing."""
        if not self.released:
            self.released = True
            self.admission._release(self)


class Admission:
    """The relay's in-memory byte budgets (global, per project, heavy) and heavy concurrency."""

    def __init__(
        self,
        max_bytes: int,
        max_project_bytes: int,
        *,
        max_heavy_bytes: int | None = None,
        heavy_threshold: int = 1024**2,
        max_concurrent_heavy: int = 16,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_project_bytes = max_project_bytes
        self.max_heavy_bytes = (
            max_heavy_bytes if max_heavy_bytes is not None else max_bytes * 3 // 4
        )
        self.heavy_threshold = heavy_threshold
        self.max_concurrent_heavy = max_concurrent_heavy
        self.bytes_in_use = 0
        self.heavy_bytes = 0
        #: Envelopes held that are larger than ``heavy_threshold`` (the counted ones).
        self.large_count = 0
        self._project_bytes: dict[int | str, int] = {}
        # Insertion-ordered: the first entry is the oldest envelope still held.
        self._held: dict[int, Ticket] = {}
        self._heavy_held: dict[int, Ticket] = {}
        self._serials = itertools.count()
        #: Refusals so far, by budget: ``project``, ``heavy``, ``global``.
        self.refused: dict[str, int] = {"project": 0, "heavy": 0, "global": 0}

    @classmethod
    def from_config(cls, config: Config) -> Admission:
        """The budgets of ``limits.*``."""
        limits = config.limits
        return cls(
            int(limits.max_memory_bytes),
            int(limits.max_project_memory_bytes),
            max_heavy_bytes=(
                None
                if limits.max_heavy_memory_bytes is None
                else int(limits.max_heavy_memory_bytes)
            ),
            heavy_threshold=int(limits.heavy_envelope_size),
            max_concurrent_heavy=limits.max_concurrent_heavy,
        )

    def __len__(self) -> int:
        return len(self._held)

    def project_bytes(self, project: int | str) -> int:
        """Bytes the project holds right now."""
        return self._project_bytes.get(project, 0)

    def acquire(
        self, envelope: Envelope, project: int | str, *, from_relay: bool = False
    ) -> Ticket:
        """Admit the envelope or raise: 429 (project budget) or 503 (heavy or global budget).

        ``from_relay``: the request came from a downstream relay, which gets 503 instead of
        429 (a relay treats a 429 as a final answer and would drop the envelope).
        """
        size = envelope_memory(envelope)
        return self.acquire_bytes(
            size, project, heavy=is_heavy(envelope, size, self.heavy_threshold),
            from_relay=from_relay,
        )  # fmt: skip

    def acquire_bytes(
        self, size: int, project: int | str, *, heavy: bool, from_relay: bool = False
    ) -> Ticket:
        """:meth:`acquire` for a known size and class."""
        self.check(size, project, heavy=heavy, from_relay=from_relay)
        return self.force_acquire(size, project, heavy=heavy)

    def check(
        self, size: int, project: int | str, *, heavy: bool, from_relay: bool = False
    ) -> None:
        """Raise what :meth:`acquire_bytes` would raise, without taking anything."""
        held = self._project_bytes.get(project, 0)
        if held > 0 and held + size > self.max_project_bytes:
            self.refused["project"] += 1
            detail = "the project exceeds its share of the relay's memory"
            if from_relay:
                raise ServiceUnavailable(detail, retry_after=PROJECT_RETRY_AFTER)
            raise RateLimited(detail, retry_after=PROJECT_RETRY_AFTER)
        if heavy and (
            (self.heavy_bytes > 0 and self.heavy_bytes + size > self.max_heavy_bytes)
            or (size > self.heavy_threshold and self.large_count >= self.max_concurrent_heavy)
        ):
            self.refused["heavy"] += 1
            raise ServiceUnavailable(
                "the relay holds too many large envelopes", retry_after=GLOBAL_RETRY_AFTER
            )
        if self.bytes_in_use > 0 and self.bytes_in_use + size > self.max_bytes:
            self.refused["global"] += 1
            raise ServiceUnavailable("the service is overloaded", retry_after=GLOBAL_RETRY_AFTER)

    def force_acquire(self, size: int, project: int | str, *, heavy: bool) -> Ticket:
        """Count bytes without checking the budgets (data that was already answered 200)."""
        ticket = Ticket(self, project, size, heavy, serial=next(self._serials))
        self.bytes_in_use += size
        self._project_bytes[project] = self._project_bytes.get(project, 0) + size
        self._held[ticket.serial] = ticket
        if heavy:
            self.heavy_bytes += size
            self.large_count += size > self.heavy_threshold
            self._heavy_held[ticket.serial] = ticket
        return ticket

    def _release(self, ticket: Ticket) -> None:
        self.bytes_in_use -= ticket.size
        left = self._project_bytes.get(ticket.project, 0) - ticket.size
        if left > 0:
            self._project_bytes[ticket.project] = left
        else:
            self._project_bytes.pop(ticket.project, None)
        self._held.pop(ticket.serial, None)
        if ticket.heavy:
            self.heavy_bytes -= ticket.size
            self.large_count -= ticket.size > self.heavy_threshold
            self._heavy_held.pop(ticket.serial, None)

    def oldest_admitted_at(self) -> float | None:
        """Monotonic time the oldest envelope still held was admitted (None: none held)."""
        return next(iter(self._held.values())).admitted_at if self._held else None

    def oldest_heavy_admitted_at(self) -> float | None:
        """Like :meth:`oldest_admitted_at`, for heavy envelopes only."""
        return next(iter(self._heavy_held.values())).admitted_at if self._heavy_held else None


def admission_middleware(admission: Admission) -> Middleware:
    """Refuse an upload before reading its body when it cannot be admitted anyway.

    Applies to requests whose route names a ``project_id`` and that announce a
    ``Content-Length``: the wire size stands for the envelope's size (heavy when above the
    threshold). Nothing is taken here; the envelope is admitted for real at submit time.
    Without this, a flood of big uploads would be read into memory only to be refused.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        project = request.match_info.get("project_id")
        if request.method == "POST" and length and project is not None and project.isdigit():
            admission.check(
                length, int(project), heavy=length > admission.heavy_threshold,
                from_relay="X-Sentry-Relay-Id" in request.headers,
            )  # fmt: skip
        return await handler(request)

    return middleware
