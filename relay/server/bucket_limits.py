"""Quotas on metric buckets: each namespace counts its buckets in the ``metric_bucket`` category.

As Relay's processing relays do with the buckets they receive, the buckets of every
namespace (but ``outcomes``, which are never limited) are checked against the project's
quotas as a quantity of ``metric_bucket`` in that namespace: against the limits cached for
the key and ``limit: 0`` quotas, then, on processing relays, counted in Redis. The buckets of
a limited namespace are dropped with one ``rate_limited`` outcome of category
``metric_bucket`` whose quantity is the number of buckets.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence

from relay.kafka.metrics import MetricBucket
from relay.kafka.outcomes import OutcomeCode
from relay.protocol.items import DataCategory
from relay.quotas import Quota, RateLimits, Scoping
from relay.server.outcome_aggregator import Scoping as OutcomeScoping
from relay.server.outcomes import OutcomeSink
from relay.server.rate_limiting import RateLimiting

#: Namespaces never rate limited: outcomes must always reach their destination.
UNLIMITED_NAMESPACES = frozenset({"outcomes"})


async def limit_buckets(
    rate_limits: RateLimiting,
    outcomes: OutcomeSink,
    scoping: Scoping,
    quotas: Sequence[Quota],
    buckets: Sequence[MetricBucket],
) -> list[MetricBucket]:
    """The buckets within the quotas; the others become ``rate_limited`` outcomes."""
    by_namespace: dict[str, list[MetricBucket]] = defaultdict(list)
    for bucket in buckets:
        by_namespace[bucket.namespace].append(bucket)
    cache = rate_limits.cache_for(scoping.project_key)
    kept: list[MetricBucket] = []
    for namespace, group in by_namespace.items():
        if namespace in UNLIMITED_NAMESPACES or not namespace:
            kept.extend(group)
            continue
        item = scoping.item(DataCategory.METRIC_BUCKET, namespace)
        limits = cache.current().check(item, quotas)
        redis = rate_limits.redis
        if not limits.is_limited() and redis is not None and quotas:
            # Fails open, fast (relay.server.redis_breaker): without Redis the buckets pass.
            counted = await rate_limits.redis_breaker.call(
                functools.partial(
                    redis.is_rate_limited, quotas, item, len(group), cache, fail_open=False
                )
            )
            limits = limits if counted is None else counted
        if limits.is_limited():
            _track(outcomes, scoping, limits, len(group))
        else:
            kept.extend(group)
    return kept


def _track(outcomes: OutcomeSink, scoping: Scoping, limits: RateLimits, quantity: int) -> None:
    longest = limits.longest()
    outcomes.track(
        OutcomeScoping(
            scoping.project_key, scoping.project_id, scoping.organization_id, scoping.key_id
        ),
        int(OutcomeCode.RATE_LIMITED),
        longest.reason_code if longest is not None else None,
        int(DataCategory.METRIC_BUCKET),
        quantity,
    )
