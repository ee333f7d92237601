"""What happens to an accepted envelope: project checks, then forward or process.

As in Relay, the client is never held while a project config is fetched. With the config in
memory, the envelope is checked at once and a rejection is the HTTP answer (403 ...). Without
it, the envelope is accepted (200) and parked in its project's pending queue
(relay.server.pending); when the config arrives the same checks run, and a rejection becomes
an outcome instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from relay.config import Config
from relay.errors import Forbidden, RateLimited, RelayError, ServiceUnavailable
from relay.filters.origins import SchemeDomainPort, compile_origins, matches_any_origin
from relay.protocol.envelope import Envelope
from relay.protocol.keys import KeyParseError, PublicKey
from relay.protocol.project_config import ProjectState
from relay.protocol.unknown_items import split_unknown_items
from relay.server import durable
from relay.server.admission import Admission, Ticket, envelope_memory, is_heavy
from relay.server.outcomes import OutcomeSink
from relay.server.pending import PendingQueues

if TYPE_CHECKING:
    from relay.server.health_check import MemoryChecker
    from relay.server.killswitch_service import KillSwitchService
from relay.server.project_cache import DUMMY, ProjectCache
from relay.server.rate_limiting import RateLimiting
from relay.server.relays import RelayCache
from relay.server.request_meta import RequestMeta
from relay.server.sampling_context import sampling_key, validate_dsc
from relay.server.spool import Spool
from relay.server.upstream import UpstreamClient
from relay.telemetry.metrics import ENVELOPES_ACCEPTED

log = logging.getLogger(__name__)


class Rejected(Forbidden):
    """The project config rejects the envelope; ``reason`` is the outcome reason."""

    def __init__(self, reason: str, name: str) -> None:
        super().__init__(f"event submission rejected with_reason: {name}")
        self.reason = reason


@functools.lru_cache(maxsize=4096)
def _origins(patterns: tuple[str, ...]) -> list[SchemeDomainPort]:
    # Keyed by the patterns themselves: compiled once per distinct allowedDomains list.
    return compile_origins(patterns)


@functools.lru_cache(maxsize=4096)
def _trusted_keys(keys: tuple[str, ...]) -> list[PublicKey]:
    parsed = []
    for key in keys:
        try:
            parsed.append(PublicKey.parse(key))
        except KeyParseError:
            continue
    return parsed


class EnvelopeSink(Protocol):
    """Where accepted envelopes go: the upstream (POP) or Kafka (processing)."""

    async def accept(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> asyncio.Future[Any] | None:
        """Take the envelope or raise a RelayError (503 when over budget).

        Returns None when the sink is done with the envelope, or a future that completes
        when it is (a background send): the envelope's admission ticket is held until then.
        A result of ``False`` means the send ended as an outcome instead of delivered.
        """


def check_envelope(
    config: Config,
    state: ProjectState,
    envelope: Envelope,
    meta: RequestMeta,
    trusted: bool = False,
) -> None:
    """Relay's project checks, in Relay's order; raise :class:`Rejected` with the reason.

    ``trusted``: the request came from an internal relay (no signature needed).
    """
    del envelope  # the checks read only the request meta (features are not modelled yet)
    if state is DUMMY:
        return
    if state.disabled:
        raise Rejected("project_id", "ProjectId")
    if (
        state.project_id is not None
        and state.project_id != meta.project_id
        and not config.relay.override_project_ids
    ):
        raise Rejected("project_id", "ProjectId")
    if meta.origin is not None and not matches_any_origin(
        meta.origin, _origins(tuple(state.allowed_domains))
    ):
        raise Rejected("cors", "Cors")
    if not state.allows_key(meta.public_key):
        raise Rejected("project_id", "ProjectId")
    # Envelopes from internal relays are trusted; all others must be signed by a relay the
    # project trusts, when the project asks for it. The signature covers no payload: it
    # proves who sent the request, and when (within auth.signature_max_age).
    if trusted or meta.from_relay or not state.verify_signature:
        return
    signature = meta.relay_signature
    if signature is None:
        raise Rejected("missing_signature", "MissingSignature")
    max_age = timedelta(seconds=config.auth.signature_max_age)
    for key in _trusted_keys(tuple(state.trusted_relays)):
        if key.verify(b"", signature, max_age=max_age):
            return
    raise Rejected("invalid_signature", "InvalidSignature")


class Ingestor:
    """Checks an envelope against its project and hands it to the sink."""

    def __init__(
        self,
        config: Config,
        projects: ProjectCache,
        registry: RelayCache,
        sink: EnvelopeSink,
        upstream: UpstreamClient,
        outcomes: OutcomeSink | None = None,
        rate_limits: RateLimiting | None = None,
        killswitches: KillSwitchService | None = None,
        admission: Admission | None = None,
        memory: MemoryChecker | None = None,
        early_metrics: Callable[[Envelope, RequestMeta], int] | None = None,
        disk: Spool | None = None,
    ) -> None:
        self.config = config
        #: Takes ``metric_buckets`` items into the aggregator before the envelope waits for
        #: its project config (Relay's ``queue_envelope``); None: they wait with it.
        self.early_metrics = early_metrics
        #: The ``health`` memory watermarks; over them every envelope is refused (503).
        self.memory = memory
        #: In-memory byte budgets (relay.server.admission); None: unbounded here.
        self.admission = admission
        self.rate_limits = rate_limits
        #: Applied to every envelope once its project is known, before anything else.
        self.killswitches = killswitches
        #: For endpoints that proxy requests to the next hop.
        self.upstream = upstream
        self.projects = projects
        self.registry = registry
        self.sink = sink
        self.outcomes = outcomes or OutcomeSink(config)
        self.pending = PendingQueues(config, self._release, self._expired, disk=disk)
        #: Set by SIGUSR1 (RelayApp.toggle_hold): every envelope waits in the pending queues
        #: and none is released, as Relay's buffer with dequeuing disabled. Not in durable
        #: mode (relay.server.durable), which parks nothing: its answers wait instead.
        self.held = False
        projects.subscribe(self._on_project_ready)
        projects.subscribe_global(self._on_global_ready)

    async def start(self) -> None:
        """Start the pending queues; ask for the configs of what a previous run left
        waiting on disk."""
        await self.pending.start()
        for public_key in self.pending.waiting_keys():
            self.projects.get_state(public_key)

    async def stop(self, timeout: float) -> None:
        """Release or drop (with outcomes) what still waits for a project config."""
        await self.pending.stop(timeout)

    def is_trusted_relay(self, request: web.Request, body: bytes) -> bool:
        """Whether the request comes from an internal relay (its headers are trusted).

        Relay's rule: ``X-Sentry-Relay-Id`` names a relay of ``auth.static_relays`` marked
        ``internal``. Such relays are operated by us; their data skips signature checks.
        """
        del body
        return self.registry.is_internal(request.headers.get("X-Sentry-Relay-Id"))

    async def submit(self, envelope: Envelope, meta: RequestMeta) -> None:
        """Accept the envelope or raise the error that tells the client why not."""
        self._check_memory(envelope, meta)
        # Durable mode (relay.server.durable): nothing is parked; the answer waits instead.
        deadline = durable.Deadline() if self.config.relay.ack == "durable" else None
        state = self.projects.get_state(meta.public_key)
        if state is None or (self.held and deadline is None):
            if deadline is None:
                self._park(envelope, meta)
                return
            state = await durable.project_state(self.projects, meta.public_key, deadline)
        try:
            check_envelope(self.config, state, envelope, meta, self.trusted(meta))
        except Rejected as exc:
            self.outcomes.envelope_dropped(envelope, meta, state, exc.reason)
            raise
        if deadline is not None:
            await durable.global_config(self.projects, deadline)
            root = sampling_key(envelope, meta.public_key) if state is not DUMMY else None
            if root is not None:
                await durable.project_state(self.projects, root, deadline)
        elif not self.projects.global_ready:
            # As Relay's envelope buffer: nothing is processed before the global config is
            # in; the envelope waits in its project's queue (bounded, with expiry).
            self._park(envelope, meta)
            return
        if self._wait_for_sampling_project(envelope, meta, state):
            return
        if state.project_id is not None:
            meta.project_id = state.project_id
        if self.killswitches is not None:
            self.killswitches.apply(envelope, meta, state)
        limited = self._enforce_rate_limits(envelope, meta, state)
        if envelope.items:
            ticket = None
            if self.admission is not None:
                ticket = self.admission.acquire(
                    envelope, meta.project_id or meta.public_key,
                    from_relay=meta.from_relay or meta.relay_id is not None,
                )  # fmt: skip
            sends = await self._to_sink(envelope, meta, state, ticket)
            if deadline is not None:
                await durable.stored(sends, deadline)
            ENVELOPES_ACCEPTED.inc()
        if limited is not None:
            raise limited

    def _park(self, envelope: Envelope, meta: RequestMeta) -> None:
        """Queue the envelope until its project config is known; its metric buckets go to
        the aggregator now (a flush waits for the config in their stead)."""
        if self.early_metrics is not None:
            self.early_metrics(envelope, meta)
            if not envelope.items:
                return
        self.pending.push(envelope, meta)

    async def _to_sink(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState, ticket: Ticket | None
    ) -> list[asyncio.Future[Any]]:
        """Hand the envelope to the sink; the ticket is released when the sink is done.

        Items of unknown types go in an envelope of their own, as Relay forwards them.
        Returns the sink's background sends (for durable answers).
        """
        if state is not DUMMY:
            trace = envelope.trace
            root = trace.get("public_key") if trace is not None else None
            sampling = self.projects.cached(root) if isinstance(root, str) else None
            validate_dsc(envelope, meta.public_key, state, sampling)
        parts = [envelope]
        if self.config.relay.mode != "proxy":
            unknown = split_unknown_items(envelope)
            if unknown is not None:
                parts.append(unknown)
        running: list[asyncio.Future[Any]] = []
        sends: list[asyncio.Future[Any]] = []
        try:
            for part in parts:
                done = await self.sink.accept(part, meta, state)
                if done is not None:
                    sends.append(done)
                if done is not None and not done.done():
                    running.append(done)
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        if ticket is None:
            return sends
        if not running:
            ticket.release()
        elif len(running) == 1:
            running[0].add_done_callback(lambda _: ticket.release())
        else:
            together = asyncio.gather(*running, return_exceptions=True)
            together.add_done_callback(lambda _: ticket.release())
        return sends

    def _check_memory(self, envelope: Envelope, meta: RequestMeta) -> None:
        # As Relay, before anything else: a relay over its memory watermarks takes nothing
        # more (503, the client may retry later); the data is dropped as `internal`.
        if self.memory is None or self.memory.check().ok:
            return
        self.outcomes.envelope_dropped(envelope, meta, None, "internal")
        raise ServiceUnavailable("failed to queue envelope: relay is running out of memory")

    def _enforce_rate_limits(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> RateLimited | None:
        # The first line of defence: limits this relay already knows stop items here.
        if self.rate_limits is None:
            return None
        return self.rate_limits.enforce_cached(envelope, meta, state)

    async def _release(self, envelope: Envelope, meta: RequestMeta, released: ProjectState) -> None:
        # The queue may have been the one of the trace's root project (see
        # _wait_for_sampling_project): the envelope's own project is looked up again.
        del released
        state = self.projects.get_state(meta.public_key)
        if state is None:
            try:
                self.pending.push(envelope, meta)
            except RelayError as exc:
                self.outcomes.envelope_dropped(envelope, meta, None, exc.reason)
            return
        try:
            check_envelope(self.config, state, envelope, meta, self.trusted(meta))
            if self._wait_for_sampling_project(envelope, meta, state):
                return
            if state.project_id is not None:
                meta.project_id = state.project_id
            if self.killswitches is not None:
                self.killswitches.apply(envelope, meta, state)
            self._enforce_rate_limits(envelope, meta, state)
            if envelope.items:
                ticket = None
                if self.admission is not None:
                    # Already answered 200: counted, never refused (the pending queues
                    # bounded it while it waited).
                    size = envelope_memory(envelope)
                    heavy = is_heavy(envelope, size, self.admission.heavy_threshold)
                    project = meta.project_id or meta.public_key
                    ticket = self.admission.force_acquire(size, project, heavy=heavy)
                await self._to_sink(envelope, meta, state, ticket)
                ENVELOPES_ACCEPTED.inc()
        except RelayError as exc:
            log.debug("queued envelope %s dropped: %s", envelope.event_id, exc.detail)
            self.outcomes.envelope_dropped(envelope, meta, state, exc.reason)

    def _wait_for_sampling_project(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> bool:
        """Park a transaction until its trace root's config is known; True when parked."""
        if state is DUMMY:
            return False
        key = sampling_key(envelope, meta.public_key)
        if key is None or self.projects.get_state(key) is not None:
            return False
        self.pending.push(envelope, meta, key)
        return True

    def hold(self, held: bool) -> None:
        """Stop processing (every envelope waits in the pending queues), or resume it."""
        self.held = held
        if not held and self.projects.global_ready:
            self._on_global_ready()

    def _on_project_ready(self, public_key: str, state: ProjectState) -> None:
        # Without the global config, queued envelopes keep waiting (see _on_global_ready).
        if self.projects.global_ready and not self.held:
            self.pending.on_project_ready(public_key, state)

    def _on_global_ready(self) -> None:
        # Release every queue whose project config is known; the others are fetched (again)
        # and released by _on_project_ready.
        if self.held:
            return
        for public_key in self.pending.waiting_keys():
            state = self.projects.get_state(public_key)
            if state is not None:
                self.pending.on_project_ready(public_key, state)

    def trusted(self, meta: RequestMeta) -> bool:
        """Whether the request came from an internal relay (no project signature needed)."""
        return self.registry.is_internal(meta.relay_id)

    def _expired(self, envelope: Envelope, meta: RequestMeta) -> None:
        log.debug("envelope %s waited too long for its project config", envelope.event_id)
        self.outcomes.envelope_dropped(envelope, meta, None, "timeout")
