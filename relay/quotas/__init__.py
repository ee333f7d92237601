"""Quotas and rate limits: the quota model, cached limits, ``X-Sentry-Rate-Limits`` and the
envelope limiter. Pure: no I/O. The Redis adapter lives in :mod:`relay.quotas.redis_limiter`
and is the only module here that imports ``redis``.
"""

from relay.quotas.envelope_limiter import (
    OUTCOME_RATE_LIMITED,
    CategoryLimit,
    CheckStep,
    Enforcement,
    EnvelopeSummary,
    LimitPlan,
    RateLimitOutcome,
    check_envelope_cached,
    enforce,
    plan_envelope,
)
from relay.quotas.quota import (
    ANY_NAMESPACE,
    GroupBy,
    ItemScoping,
    Quota,
    QuotaScope,
    Scoping,
    parse_quotas,
)
from relay.quotas.rate_limit import (
    RATE_LIMITS_HEADER,
    REJECT_ALL_SECS,
    CachedRateLimits,
    RateLimit,
    RateLimits,
    RateLimitScope,
    format_rate_limits,
    parse_rate_limits,
    parse_retry_after,
    upstream_rate_limits,
)

__all__ = [
    "ANY_NAMESPACE",
    "OUTCOME_RATE_LIMITED",
    "RATE_LIMITS_HEADER",
    "REJECT_ALL_SECS",
    "CachedRateLimits",
    "CategoryLimit",
    "CheckStep",
    "Enforcement",
    "EnvelopeSummary",
    "GroupBy",
    "ItemScoping",
    "LimitPlan",
    "Quota",
    "QuotaScope",
    "RateLimit",
    "RateLimitOutcome",
    "RateLimitScope",
    "RateLimits",
    "Scoping",
    "check_envelope_cached",
    "enforce",
    "format_rate_limits",
    "parse_quotas",
    "parse_rate_limits",
    "parse_retry_after",
    "plan_envelope",
    "upstream_rate_limits",
]
