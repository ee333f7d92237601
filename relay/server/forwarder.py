"""POP relays: hand each accepted envelope to the upstream, in the background.

The client gets its answer as soon as the envelope is accepted. Memory is bounded by a
byte budget: when the upstream is slow and the budget is spent, new envelopes are refused
with 503 + Retry-After instead of piling up.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from relay.config import Config
from relay.errors import ServiceUnavailable
from relay.kafka.outcomes import OutcomeCode
from relay.metrics.usage import span_usage_buckets
from relay.normalize.clock_drift import sent_at_now
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.protocol.project_config import ProjectState
from relay.server.admission import is_heavy
from relay.server.crash_expansion import expand_crash_envelope
from relay.server.dynamic_sampling import (
    StateLookup,
    filters_supported,
    indexed_quantities,
    mark_profiles_unsampled,
    may_sample,
    sampled_out_reason,
    span_count,
)
from relay.server.eap_items import process_eap_items
from relay.server.event_normalization import (
    NORMALIZED_ITEM_TYPES,
    EventRejected,
    GlobalConfigLookup,
    event_bound_items,
    mark_fully_normalized,
    no_global_config,
    normalize_event_payload,
    scrub_attachments,
    scrub_minidumps,
)
from relay.server.geoip import open_geoip
from relay.server.log_integrations import expand_log_integrations
from relay.server.metrics_pipeline import MetricsPipeline
from relay.server.outcomes import OutcomeSink
from relay.server.outgoing import Outgoing
from relay.server.rate_limiting import RateLimiting
from relay.server.request_meta import RequestMeta
from relay.server.spool import SpooledEnvelope, SpoolError, SpoolFull, SpoolService
from relay.server.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)

#: How long a forwarded envelope may be retried before it is dropped as an outcome.
FORWARD_DEADLINE_SECS = 300.0
#: With a spool (``spool.envelopes.path``): how long an envelope is retried in memory
#: before it goes to the spool (relay.server.spool), instead of being dropped.
SPOOL_AFTER_SECS = 10.0
#: How long one replayed envelope may take (the replay loop retries it later).
REPLAY_DEADLINE_SECS = 5.0


def stamp_meta(envelope: Envelope, meta: RequestMeta, upstream: str | None = None) -> None:
    """Record the original request in the envelope header, as Relay does for the next hop.

    The ``dsn`` names the key and project this relay accepted the data for, on the
    upstream's host (Relay's partial DSN), so the next hop authenticates the same way.
    """
    headers = envelope.headers
    if upstream is not None:
        parts = urlsplit(upstream)
        headers["dsn"] = f"{parts.scheme}://{meta.public_key}@{parts.netloc}/{meta.project_id}"
    if meta.client:
        headers["client"] = meta.client
    headers["version"] = meta.version
    if meta.origin:
        headers["origin"] = meta.origin
    client_ip = meta.client_ip
    if client_ip:
        headers["remote_addr"] = client_ip
    if meta.forwarded_for:
        headers["forwarded_for"] = meta.forwarded_for
    if meta.user_agent:
        headers["user_agent"] = meta.user_agent


def forward_headers(meta: RequestMeta) -> dict[str, str]:
    """The request headers an envelope is forwarded (or spooled) with."""
    headers = {"X-Sentry-Auth": meta.auth_header(), "X-Forwarded-For": meta.forwarded_for}
    if meta.user_agent:
        headers["User-Agent"] = meta.user_agent
    if meta.origin:
        headers["Origin"] = meta.origin
    return headers


class _SampledOut(Exception):
    """Raised from the sampling step: the transaction is dropped with ``reason``."""

    def __init__(self, reason: str, event: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event = event


class Forwarder:
    """Sends envelopes upstream with bounded memory and concurrency."""

    def __init__(
        self,
        config: Config,
        upstream: UpstreamClient,
        outcomes: OutcomeSink,
        budget_bytes: int,
        *,
        rate_limits: RateLimiting | None = None,
        metrics: MetricsPipeline | None = None,
        global_config: GlobalConfigLookup | None = None,
        sampling_states: StateLookup | None = None,
    ) -> None:
        self.config = config
        #: Cached states of other projects: the trace root's sampling rules (DSC).
        self.sampling_states = sampling_states
        #: The upstream's global config (global inbound filters, measurements), if known.
        self.global_config: GlobalConfigLookup = global_config or no_global_config
        #: ``user.geo`` lookups during normalization (``geoip.path``).
        self.geoip = open_geoip(config)
        self.upstream = upstream
        self.outcomes = outcomes
        self.rate_limits = rate_limits
        self.metrics = metrics
        self.budget_bytes = budget_bytes
        self.bytes_in_flight = 0
        #: What each in-flight send holds: the envelope as it goes on the wire (to spool
        #: it if shutdown cuts the send short, and for ``relay_queue_oldest_seconds``).
        self._inflight: dict[asyncio.Task[bool], Outgoing] = {}
        self._slots = asyncio.Semaphore(config.limits.max_concurrent_requests)
        #: Heavy envelopes (relay.server.admission.is_heavy) have slots of their own, so
        #: slow uploads of big payloads never hold the slots of cheap envelopes.
        self._heavy_slots = asyncio.Semaphore(config.limits.max_concurrent_heavy)
        #: The disk spool, when ``spool.envelopes.path`` is set (set by the app).
        self.spool: SpoolService | None = None
        #: Set on shutdown with a permanent spool: new envelopes get 503 (as in Relay).
        self.closing = False

    async def accept(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> asyncio.Task[bool] | None:
        """Accept an envelope for forwarding, or raise ServiceUnavailable when over budget.

        Returns the background send, done once the envelope is upstream, spooled or an
        outcome (None: nothing left to send); its result is False for an outcome.
        """
        if self.closing:
            raise ServiceUnavailable("relay is shutting down", retry_after=1)
        if self.config.relay.mode != "proxy":
            # Client reports are outcomes: tracked here (and sent on as this relay's outcomes
            # config says), not forwarded as items.
            reports = [i for i in envelope.items if i.type == ItemType.CLIENT_REPORT]
            if reports:
                envelope.items = [i for i in envelope.items if i.type != ItemType.CLIENT_REPORT]
                self.outcomes.client_reports(reports, meta, state)
                if not envelope.items:
                    return None
        if self.config.relay.mode != "proxy":
            # NEL reports become logs at the first managed relay (relay.server.log_integrations).
            expand_log_integrations(envelope, meta, state, self.outcomes, self.config)
            # Crash uploads: form data and msgpack event parts become the event item.
            expand_crash_envelope(envelope, meta, state, self.outcomes, self.config)
        self._normalize(envelope, meta, state)
        if self.config.relay.mode != "proxy":
            scrub_attachments(envelope, state)
            scrub_minidumps(envelope, state)
            # Logs and V2 spans leave this relay normalized and scrubbed, as in Relay.
            process_eap_items(envelope, meta, state)
        if self.metrics is not None and self.config.relay.mode != "proxy":
            # Projects with sessionMetrics get their sessions aggregated here, at the edge.
            self.metrics.take_sessions(envelope, meta, state)
            # Received metric buckets are aggregated on every managed hop, not forwarded.
            self.metrics.take_metric_buckets(envelope, meta)
        if not envelope.items:
            return None
        stamp_meta(envelope, meta, self.config.relay.upstream)
        if self.config.relay.mode != "proxy":
            # Timestamps are drift-corrected now: the next hop must not correct them again.
            envelope.headers["sent_at"] = sent_at_now()
        body = envelope.serialize()
        # Compressed now, once: while it waits for the upstream, only the wire bytes are held.
        heavy = is_heavy(envelope, len(body), self.config.limits.heavy_envelope_size)
        held = Outgoing.encode(envelope, meta, body, self.config.http.encoding, heavy=heavy)
        size = len(held.wire)
        if self.bytes_in_flight + size > self.budget_bytes and self.bytes_in_flight > 0:
            raise ServiceUnavailable("the service is overloaded", retry_after=5)
        self.bytes_in_flight += size
        task = asyncio.create_task(self._send(held, state))
        self._inflight[task] = held
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[bool]) -> None:
        """A send ended: it is no longer in flight."""
        held = self._inflight.pop(task, None)
        if held is not None:
            self.bytes_in_flight -= len(held.wire)

    def _normalize(self, envelope: Envelope, meta: RequestMeta, state: ProjectState) -> None:
        """Relay's POP-side (light) normalization of the event item, before forwarding."""
        if self.config.relay.mode == "proxy":
            return  # proxies pass data through untouched
        for item in list(envelope.items):
            if item.type not in NORMALIZED_ITEM_TYPES:
                continue
            # ``normalization.level: full`` makes this hop normalize like the last one.
            full = self.config.normalization.level == "full"
            sample = None
            if item.type == ItemType.TRANSACTION and self._may_sample(envelope, meta, state):
                sample = functools.partial(self._sample, envelope, meta, state)
            try:
                normalize_event_payload(
                    item, envelope, meta, state, processing=full,
                    global_config=self.global_config(), geoip=self.geoip, before_scrub=sample,
                )  # fmt: skip
                mark_fully_normalized(item, meta, full)
            except _SampledOut as sampled:
                self._drop_sampled(item, envelope, meta, state, sampled)
            except EventRejected as rejected:
                # The event's attachments, profile, ... go with it, with the same outcome.
                for dropped in (item, *event_bound_items(envelope, item)):
                    envelope.items.remove(dropped)
                    self.outcomes.item_dropped(
                        dropped, envelope, meta, state, rejected.reason, rejected.code
                    )
            break

    def _may_sample(self, envelope: Envelope, meta: RequestMeta, state: ProjectState) -> bool:
        """Whether this relay runs dynamic sampling on the envelope's transaction."""
        if not may_sample(envelope, meta.public_key, state, self.sampling_states):
            return False
        # The relay that can run every inbound filter decides, then samples.
        return filters_supported(state, self.global_config())

    def _sample(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState, event: dict[str, Any]
    ) -> None:
        """Dynamic sampling at the edge, on the filtered event before scrubbing (as Relay);
        raises _SampledOut when the transaction is dropped."""
        reason = sampled_out_reason(
            event, envelope, meta.public_key, state, self.sampling_states,
            processing=False, client_ip=meta.client_ip,
        )  # fmt: skip
        if reason is not None:
            raise _SampledOut(reason, event)

    def _drop_sampled(
        self,
        item: Item,
        envelope: Envelope,
        meta: RequestMeta,
        state: ProjectState,
        sampled: _SampledOut,
    ) -> None:
        """Drop a sampled-out transaction with its attachments; its usage metrics stay for
        billing and its profile goes on, marked unsampled."""
        reason, event = sampled.reason, sampled.event
        spans = span_count(event)
        self.outcomes.item_dropped(
            item, envelope, meta, state, reason, OutcomeCode.FILTERED, indexed_quantities(spans)
        )
        envelope.items.remove(item)
        for dropped in [i for i in envelope.items if i.type == ItemType.ATTACHMENT]:
            envelope.items.remove(dropped)
            self.outcomes.item_dropped(dropped, envelope, meta, state, reason, OutcomeCode.FILTERED)
        mark_profiles_unsampled(envelope)
        if self.metrics is not None:
            usage = span_usage_buckets(event, int(meta.received_at))
            self.metrics.service.merge(meta.public_key, usage)

    async def _send(self, held: Outgoing, state: ProjectState) -> bool:
        """Forward (or spool) the envelope; False if it ended as an outcome instead."""
        meta = held.meta
        headers = forward_headers(meta)
        spool = self.spool
        try:
            if spool is not None and spool.upstream_down:
                # The replay loop probes the upstream; meanwhile new data goes to disk.
                return await self._to_spool(held, headers)
            spool_after = self.config.spool.envelopes.spool_after or SPOOL_AFTER_SECS
            budget = FORWARD_DEADLINE_SECS if spool is None else spool_after
            async with self._heavy_slots if held.heavy else self._slots:
                await self.upstream.send_encoded(
                    meta.project_id, held.wire, held.encoding, headers,
                    time.monotonic() + budget,
                )  # fmt: skip
            if spool is not None:
                spool.mark_up()
            return True
        except UpstreamError as exc:
            if exc.is_received:
                # The upstream decided (e.g. 403 for a disabled project) and owns the outcome.
                log.debug("upstream rejected envelope %s: %s", held.event_id, exc)
                if exc.status == 429 and self.rate_limits is not None:
                    retry_after = None if exc.retry_after is None else str(exc.retry_after)
                    self.rate_limits.learn_from_upstream(meta, state, exc.rate_limits, retry_after)
                return True
            if spool is not None:
                spool.mark_down()
                return await self._to_spool(held, headers)
            log.error("dropping envelope %s after retries: %s", held.event_id, exc)
            self.outcomes.envelope_dropped(held.envelope(), meta, None, "internal")
            return False
        except Exception:
            log.exception("failed to forward envelope %s", held.event_id)
            self.outcomes.envelope_dropped(held.envelope(), meta, None, "internal")
            return False

    async def _to_spool(self, held: Outgoing, headers: dict[str, str]) -> bool:
        """Write to the spool; over its cap (or on a disk error) the envelope is an outcome
        (False)."""
        assert self.spool is not None
        held.spooled = True  # from here on, shutdown must not spool it again
        meta = held.meta
        body = held.body()
        try:
            # Shielded: a shutdown cancelling this task must not lose a half-written row.
            await asyncio.shield(
                self.spool.put(meta.project_id, meta.public_key, headers, body, meta.received_at)
            )
        except (SpoolFull, SpoolError) as exc:
            log.error("dropping envelope %s: cannot spool it: %s", held.event_id, exc)
            self.outcomes.envelope_dropped(held.envelope(), meta, None, "internal")
            return False
        return True

    async def replay(self, entry: SpooledEnvelope) -> bool:
        """Send a spooled envelope (the spool's replay loop); False: upstream unavailable."""
        try:
            await self.upstream.send_envelope(
                entry.project_id, entry.body, entry.headers,
                time.monotonic() + REPLAY_DEADLINE_SECS,
            )  # fmt: skip
        except UpstreamError as exc:
            if not exc.is_received:
                log.debug("replay of spooled envelope %d failed: %s", entry.id, exc)
                return False
            # The upstream decided (403, 429, ...) and owns the outcome.
            log.debug("upstream refused spooled envelope %d: %s", entry.id, exc)
        return True

    def begin_shutdown(self) -> None:
        """Called first on shutdown: with a permanent spool, refuse new envelopes (503)."""
        if self.spool is not None and not self.config.spool.envelopes.ephemeral:
            self.closing = True
            self.spool.pause()

    def oldest_queued_at(self) -> float | None:
        """Monotonic time the oldest envelope still in flight was accepted (None: none)."""
        return min((held.accepted_at for held in self._inflight.values()), default=None)

    async def drain(self, timeout: float) -> None:
        """Wait for in-flight envelopes (shutdown); what is left after ``timeout`` is logged."""
        if not self._inflight:
            return
        if self.spool is not None and not self.config.spool.envelopes.ephemeral:
            # Give in-flight sends half the time, then put what is left on disk.
            _, pending = await asyncio.wait(set(self._inflight), timeout=timeout / 2)
            left = [self._inflight[task] for task in pending if not self._inflight[task].spooled]
            for task in pending:
                task.cancel()
            for held in left:
                await self._to_spool(held, forward_headers(held.meta))
            if left:
                log.info("shutdown: spooled %d in-flight envelopes", len(left))
            if pending:
                await asyncio.wait(pending, timeout=1.0)
            return
        _, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
        if pending:
            log.error("shutdown: %d envelopes still in flight were not forwarded", len(pending))
            for task in pending:
                task.cancel()
