"""Rate limits on every hop: cached limits at the edge, the Redis check when processing.

Every relay keeps, per project key, the limits it has learned (from its upstream's
``429``/``X-Sentry-Rate-Limits``, from the Redis check, and from ``limit: 0`` quotas) and
rejects matching items before they cost anything downstream. Processing relays also count
every envelope against the project's quotas in Redis, atomically.
"""

from __future__ import annotations

import functools
import logging

import msgspec

from relay.errors import RateLimited
from relay.kafka.outcomes import OutcomeCode
from relay.protocol.envelope import Envelope
from relay.protocol.items import DataCategory, ItemType
from relay.protocol.project_config import ProjectState
from relay.quotas import (
    ANY_NAMESPACE,
    CachedRateLimits,
    Enforcement,
    Quota,
    RateLimits,
    Scoping,
    check_envelope_cached,
    format_rate_limits,
    parse_quotas,
    upstream_rate_limits,
)
from relay.quotas.payload_hints import ensure_profile_platforms, ensure_span_count
from relay.quotas.redis_limiter import RedisRateLimiter
from relay.server.outcomes import OutcomeSink, scoping_for
from relay.server.redis_breaker import RedisBreaker
from relay.server.request_meta import RequestMeta

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


@functools.lru_cache(maxsize=1024)
def _parse(raw: bytes) -> tuple[Quota, ...]:
    return tuple(parse_quotas(msgspec.json.decode(raw)))


def project_quotas(state: ProjectState) -> tuple[Quota, ...]:
    """The project's valid quotas, parsed once per distinct ``quotas`` list."""
    raw = state.config.get("quotas")
    if not raw:
        return ()
    return _parse(_encoder.encode(raw))


def quota_scoping(meta: RequestMeta, state: ProjectState) -> Scoping:
    """Who an envelope counts against: org, project, key and the key's numeric id."""
    key = state.key_config(meta.public_key)
    return Scoping(
        state.organization_id or 0,
        state.project_id or meta.project_id,
        meta.public_key,
        key.numeric_id if key else None,
    )


class RateLimiting:
    """Per-key cached limits, plus the Redis limiter on processing relays."""

    def __init__(self, outcomes: OutcomeSink, redis: RedisRateLimiter | None = None) -> None:
        self.outcomes = outcomes
        self.redis = redis
        #: Redis down or slow: envelopes go on without its counters (relay.server.redis_breaker).
        self.redis_breaker = RedisBreaker("rate limits")
        self._caches: dict[str, CachedRateLimits] = {}

    def cache_for(self, public_key: str) -> CachedRateLimits:
        cache = self._caches.get(public_key)
        if cache is None:
            cache = self._caches[public_key] = CachedRateLimits()
        return cache

    def category_limits(
        self, meta: RequestMeta, state: ProjectState, category: DataCategory
    ) -> RateLimits:
        """The known limits (cached, or ``limit: 0`` quotas) on one category of the key.

        For endpoints that decide before reading a body whether it would be dropped.
        """
        item = quota_scoping(meta, state).item(category)
        return self.cache_for(meta.public_key).current().check(item, project_quotas(state))

    def enforce_cached(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> RateLimited | None:
        """Drop items under a known limit (outcome ``rate_limited``).

        Returns the 429 to answer when a limit applied: Relay answers 429 with
        ``X-Sentry-Rate-Limits`` even when some items of the envelope went on.
        """
        quotas = project_quotas(state)
        if self._nothing_limited(meta.public_key, quotas):
            # The common case: no limit is known and no quota rejects everything, so every
            # check would come back empty, keep all items and emit no outcome.
            return None
        scoping = quota_scoping(meta, state)
        cache = self.cache_for(meta.public_key)
        # A dropped transaction reports its spans too: count them, but only when a
        # transaction limit is active (parsing costs), as Relay does.
        has_transaction = any(item.type == ItemType.TRANSACTION for item in envelope.items)
        transactions = scoping.item(DataCategory.TRANSACTION)
        if has_transaction and cache.current().check(transactions, quotas).is_limited():
            ensure_span_count(envelope)
        enforcement = check_envelope_cached(envelope, scoping, cache, quotas)
        self._apply(enforcement, envelope, meta, state)
        if any(item.type == ItemType.METRIC_BUCKETS for item in envelope.items):
            # As Relay: item-level checks cannot see inside metric items, so the active
            # metric_bucket limits of every namespace are reported for senders to back off.
            metrics = quota_scoping(meta, state).item(DataCategory.METRIC_BUCKET, ANY_NAMESPACE)
            current = self.cache_for(meta.public_key).current()
            limits = current.check(metrics, project_quotas(state))
            # Outcomes sent as buckets by a downstream relay are accounting, not metrics:
            # metric quotas never limit them.
            if limits.is_limited() and not only_outcome_buckets(envelope):
                enforcement.rate_limits.merge(limits)
        return too_many(enforcement) if enforcement.rate_limits.is_limited() else None

    def _nothing_limited(self, public_key: str, quotas: tuple[Quota, ...]) -> bool:
        """Whether no cached check of the key can hit: no active limit, no ``limit: 0``."""
        cache = self._caches.get(public_key)
        if cache is not None and cache.current():
            return False
        return not any(quota.limit == 0 for quota in quotas)

    async def enforce_redis(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> None:
        """Count the envelope against its quotas in Redis and drop what is over them."""
        # Processing reads each profile's platform (as Relay's profile expansion does), so
        # that a profile_ui/profile_backend quota applies even without the item header.
        ensure_profile_platforms(envelope)
        quotas = project_quotas(state)
        redis = self.redis
        if redis is None or not quotas:
            return
        scoping = quota_scoping(meta, state)
        cache = self.cache_for(meta.public_key)
        # Fails open, as Relay: without Redis nothing is counted, and nothing is dropped
        # either (cached limits and `limit: 0` quotas applied at admission still hold).
        enforcement = await self.redis_breaker.call(
            lambda: redis.check_envelope(envelope, scoping, quotas, cache, fail_open=False)
        )
        if enforcement is None:
            return
        self._apply(enforcement, envelope, meta, state)
        if enforcement.event_indexed.active and not enforcement.event.active:
            # Within its quota but over the indexed one: the transaction counts, but it is
            # not stored (its `transaction_indexed` outcome was tracked above).
            envelope.items = [i for i in envelope.items if i.type != ItemType.TRANSACTION]

    def learn_from_upstream(
        self,
        meta: RequestMeta,
        state: ProjectState,
        rate_limits: str | None,
        retry_after: str | None,
    ) -> None:
        """Remember the limits of an upstream ``429``, so the next envelopes stop here.

        ``rate_limits`` is every ``X-Sentry-Rate-Limits`` value joined by ``", "``.
        """
        limits = upstream_rate_limits(quota_scoping(meta, state), rate_limits, retry_after)
        self.cache_for(meta.public_key).merge(limits)

    def _apply(
        self, enforcement: Enforcement, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> None:
        scoping = scoping_for(meta, state)
        for outcome in enforcement.apply(envelope):
            self.outcomes.track(
                scoping, int(OutcomeCode.RATE_LIMITED), outcome.reason, int(outcome.category),
                outcome.quantity,
            )  # fmt: skip


def only_outcome_buckets(envelope: Envelope) -> bool:
    """Whether every metric bucket of the envelope is an outcome (``c:outcomes/...``)."""
    for item in envelope.items:
        if item.type != ItemType.METRIC_BUCKETS:
            continue
        try:
            buckets = _decoder.decode(item.payload)
        except msgspec.DecodeError:
            return False
        if not isinstance(buckets, list) or not all(
            isinstance(bucket, dict) and str(bucket.get("name", "")).startswith("c:outcomes/")
            for bucket in buckets
        ):
            return False
    return True


def too_many(enforcement: Enforcement) -> RateLimited:
    """The 429 answer for limits that applied: ``Retry-After`` and ``X-Sentry-Rate-Limits``."""
    limits = enforcement.rate_limits
    longest = limits.longest()
    retry_after = float(longest.remaining_seconds()) if longest is not None else 60.0
    return RateLimited(
        "event submission rejected with_reason: RateLimited",
        retry_after,
        format_rate_limits(limits),
    )
