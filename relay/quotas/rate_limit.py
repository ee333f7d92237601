"""Active rate limits: what a relay has learned it must reject, and until when.

Limits come from three places: a quota that rejected data in Redis, an upstream's ``429`` with
``X-Sentry-Rate-Limits`` (or only ``Retry-After``), and ``limit: 0`` quotas. Each relay keeps
them per project in a :class:`CachedRateLimits` and rejects matching items itself until the limit
expires, so a project over its quota costs the next hop nothing.

Deadlines are ``time.monotonic()`` values: wall-clock jumps must not shorten or extend a limit.
Every function that looks at the clock takes an optional ``now`` so tests can pin it.

Reference: ``relay-quotas/src/rate_limit.rs`` and the header code of
``relay-server/src/utils/rate_limits.rs`` (semantics only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Final

from relay.protocol.items import DataCategory
from relay.quotas.quota import ItemScoping, Quota, QuotaScope, Scoping

__all__ = [
    "RATE_LIMITS_HEADER",
    "REJECT_ALL_SECS",
    "CachedRateLimits",
    "RateLimit",
    "RateLimitScope",
    "RateLimits",
    "format_rate_limits",
    "parse_rate_limits",
    "parse_retry_after",
    "upstream_rate_limits",
]

RATE_LIMITS_HEADER: Final = "X-Sentry-Rate-Limits"
#: How long a ``limit: 0`` quota is reported to clients as blocking (it never expires by itself).
REJECT_ALL_SECS: Final = 60


@dataclass(frozen=True, slots=True)
class RateLimitScope:
    """The concrete scope a limit applies to: ``("organization", 42)``, ``("key", "abc...")``."""

    kind: QuotaScope
    value: int | str

    @classmethod
    def for_quota(cls, scoping: Scoping, scope: QuotaScope) -> RateLimitScope:
        """The scope of ``scoping`` at the quota's level; unknown levels use the key (narrowest)."""
        if scope is QuotaScope.ORGANIZATION:
            return cls(QuotaScope.ORGANIZATION, scoping.organization_id)
        if scope is QuotaScope.PROJECT:
            return cls(QuotaScope.PROJECT, scoping.project_id)
        return cls(QuotaScope.KEY, scoping.project_key)

    @property
    def name(self) -> str:
        """The scope name used in ``X-Sentry-Rate-Limits``."""
        return self.kind.value

    def matches(self, scoping: Scoping) -> bool:
        """Whether data of ``scoping`` falls into this scope."""
        if self.kind is QuotaScope.ORGANIZATION:
            return scoping.organization_id == self.value
        if self.kind is QuotaScope.PROJECT:
            return scoping.project_id == self.value
        return scoping.project_key == self.value


def _category_order(category: DataCategory) -> int:
    # Relay lists categories in numeric order with unknown ones last.
    return 1 << 30 if category == DataCategory.UNKNOWN else int(category)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One active limit: categories (empty means all) in a scope, until a monotonic deadline."""

    categories: frozenset[DataCategory]
    scope: RateLimitScope
    reason_code: str | None
    #: ``time.monotonic()`` value at which the limit ends.
    expires_at: float
    namespaces: tuple[str, ...] = ()
    #: Made by a quota with ``groupBy``: true for one dimension value only, so never cached or
    #: reported to clients.
    dimensional: bool = False

    @classmethod
    def from_quota(
        cls, quota: Quota, scoping: Scoping, retry_after: float, now: float | None = None
    ) -> RateLimit:
        """The limit a rejecting ``quota`` imposes on ``scoping`` for ``retry_after`` seconds."""
        start = time.monotonic() if now is None else now
        ns = quota.namespace_name
        return cls(
            categories=quota.category_set,
            scope=RateLimitScope.for_quota(scoping, quota.scope_kind),
            reason_code=quota.reason_code,
            expires_at=start + max(retry_after, 0.0),
            namespaces=(ns,) if ns is not None else (),
            dimensional=quota.group_by is not None,
        )

    @property
    def sorted_categories(self) -> list[DataCategory]:
        """The categories in Relay's header order."""
        return sorted(self.categories, key=_category_order)

    def remaining_seconds(self, now: float | None = None) -> int:
        """Whole seconds until expiry, rounded up so that clients never retry too early."""
        left = self.expires_at - (time.monotonic() if now is None else now)
        return math.ceil(left) if left > 0 else 0

    def is_active(self, now: float | None = None) -> bool:
        """Whether the limit has not expired yet."""
        return self.expires_at > (time.monotonic() if now is None else now)

    def matches(self, item: ItemScoping) -> bool:
        """Whether the limit applies to ``item`` (scope, category and namespace)."""
        return (
            self.scope.matches(item.scoping)
            and item.matches_categories(self.categories)
            and item.matches_namespaces(self.namespaces)
        )

    def _identity(self) -> tuple[object, ...]:
        return (self.categories, self.scope, self.namespaces, self.dimensional)


class RateLimits:
    """A set of limits; a second limit with the same categories and scope keeps the later expiry."""

    __slots__ = ("_limits",)

    def __init__(self, limits: Iterable[RateLimit] = ()) -> None:
        self._limits: list[RateLimit] = []
        for limit in limits:
            self.add(limit)

    def add(self, limit: RateLimit) -> None:
        """Add ``limit``, or extend an existing limit of the same identity if it ends later."""
        identity = limit._identity()
        for index, existing in enumerate(self._limits):
            if existing._identity() == identity:
                if existing.expires_at < limit.expires_at:
                    self._limits[index] = limit
                return
        self._limits.append(limit)

    def merge(self, other: Iterable[RateLimit]) -> None:
        """Add every limit of ``other``."""
        for limit in other:
            self.add(limit)

    def __iter__(self) -> Iterator[RateLimit]:
        return iter(self._limits)

    def __len__(self) -> int:
        return len(self._limits)

    def __bool__(self) -> bool:
        return bool(self._limits)

    def __repr__(self) -> str:
        return f"RateLimits({self._limits!r})"

    def is_limited(self, now: float | None = None) -> bool:
        """Whether any limit is still active."""
        at = time.monotonic() if now is None else now
        return any(limit.expires_at > at for limit in self._limits)

    def longest(self) -> RateLimit | None:
        """The limit that ends last, or None if empty."""
        return max(self._limits, key=lambda limit: limit.expires_at, default=None)

    def cacheable(self) -> RateLimits:
        """A copy without dimensional limits, which must not be cached or sent to clients."""
        return RateLimits(limit for limit in self._limits if not limit.dimensional)

    def clean_expired(self, now: float | None = None) -> None:
        """Drop limits that have expired."""
        at = time.monotonic() if now is None else now
        self._limits = [limit for limit in self._limits if limit.expires_at > at]

    def check(
        self, item: ItemScoping, quotas: Iterable[Quota] = (), now: float | None = None
    ) -> RateLimits:
        """The active limits and ``limit: 0`` quotas that apply to ``item``.

        Reject-all quotas are reported with a :data:`REJECT_ALL_SECS` retry so clients back off
        and try again later (the quota may have been lifted by then).
        """
        at = time.monotonic() if now is None else now
        out = RateLimits()
        for quota in quotas:
            if quota.limit == 0 and quota.matches(item):
                out.add(RateLimit.from_quota(quota, item.scoping, REJECT_ALL_SECS, now=at))
        for limit in self._limits:
            if limit.expires_at > at and limit.matches(item):
                out.add(limit)
        return out


# A transaction limit is also a span limit and vice versa: transactions are containers of spans.
_INHERITED: Final[dict[DataCategory, DataCategory]] = {
    DataCategory.TRANSACTION: DataCategory.SPAN,
    DataCategory.SPAN: DataCategory.TRANSACTION,
}


class CachedRateLimits:
    """The limits a relay remembers for one project; expired limits are dropped on read.

    Not locked: a relay runs one event loop, and every method completes without awaiting.
    :meth:`current` returns a snapshot that later merges do not change.
    """

    __slots__ = ("_limits",)

    def __init__(self) -> None:
        self._limits = RateLimits()

    def merge(self, limits: Iterable[RateLimit]) -> None:
        """Remember ``limits`` (dimensional ones are skipped).

        Transaction limits are widened to spans and span limits to transactions, so that SDKs
        and downstream relays that only see the header back off in both.
        """
        fresh = RateLimits(self._limits)
        changed = False
        for limit in limits:
            if limit.dimensional:
                continue
            extra = {_INHERITED[c] for c in limit.categories if c in _INHERITED}
            if not extra <= limit.categories:
                limit = replace(limit, categories=limit.categories | extra)
            fresh.add(limit)
            changed = True
        if changed:
            self._limits = fresh

    def current(self, now: float | None = None) -> RateLimits:
        """The active limits (a snapshot; do not mutate it)."""
        at = time.monotonic() if now is None else now
        if any(limit.expires_at <= at for limit in self._limits):
            cleaned = RateLimits(self._limits)
            cleaned.clean_expired(at)
            self._limits = cleaned
        return self._limits

    def is_limited(self, now: float | None = None) -> bool:
        """Whether any limit is active."""
        return self.current(now).is_limited(now)


def format_rate_limits(limits: Iterable[RateLimit], now: float | None = None) -> str:
    """The ``X-Sentry-Rate-Limits`` value: ``retry:cat;cat:scope[:reason[:ns;ns]]``, joined by
    ``", "``.

    An empty reason is still written as ``::`` when namespaces follow, so that the namespace
    stays in the fifth position.
    """
    at = time.monotonic() if now is None else now
    parts = []
    for limit in limits:
        text = f"{limit.remaining_seconds(at)}:"
        text += ";".join(category_name_of(c) for c in limit.sorted_categories)
        text += f":{limit.scope.name}"
        if limit.reason_code is not None:
            text += f":{limit.reason_code}"
        elif limit.namespaces:
            text += ":"
        if limit.namespaces:
            text += ":" + ";".join(limit.namespaces)
        parts.append(text)
    return ", ".join(parts)


def category_name_of(category: DataCategory) -> str:
    """A category's name in headers ("unknown" for categories this Relay does not know)."""
    return "unknown" if category == DataCategory.UNKNOWN else category.name_str


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` delay (fractions round up; negative, inf and NaN are 0).

    Returns None when the value is missing or not a number.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return 0.0
    return float(math.ceil(seconds))


def parse_rate_limits(scoping: Scoping, header: str, now: float | None = None) -> RateLimits:
    """Parse ``X-Sentry-Rate-Limits`` leniently: malformed entries are skipped.

    Each limit is bound to ``scoping`` at the scope level it names (unknown levels bind to the
    key). Unknown category names are kept as ``UNKNOWN`` so that such a limit matches nothing
    instead of everything.
    """
    at = time.monotonic() if now is None else now
    out = RateLimits()
    for entry in header.split(","):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(":")
        retry_after = parse_retry_after(parts[0])
        if retry_after is None:
            continue
        names = parts[1] if len(parts) > 1 else ""
        categories = frozenset(DataCategory.from_name(n) for n in names.split(";") if n)
        scope = QuotaScope.from_name(parts[2] if len(parts) > 2 else "")
        reason = parts[3] if len(parts) > 3 and parts[3] else None
        ns_text = parts[4] if len(parts) > 4 else ""
        namespaces = tuple(n for n in ns_text.split(";") if n)
        out.add(
            RateLimit(
                categories=categories,
                scope=RateLimitScope.for_quota(scoping, scope),
                reason_code=reason,
                expires_at=at + retry_after,
                namespaces=namespaces,
            )
        )
    return out


def upstream_rate_limits(
    scoping: Scoping,
    rate_limits_header: str | None,
    retry_after_header: str | None,
    now: float | None = None,
) -> RateLimits:
    """The limits an upstream ``429`` imposes on ``scoping``.

    Without a usable ``X-Sentry-Rate-Limits`` (e.g. an nginx anti-abuse layer answered), the
    ``Retry-After`` delay becomes a key-wide limit of every category with reason "generic".
    Pass all ``X-Sentry-Rate-Limits`` header values joined by ``", "``.
    """
    at = time.monotonic() if now is None else now
    limits = parse_rate_limits(scoping, rate_limits_header or "", now=at)
    if not limits.is_limited(at):
        seconds = parse_retry_after(retry_after_header) or 0.0
        limits.add(
            RateLimit(
                categories=frozenset(),
                scope=RateLimitScope.for_quota(scoping, QuotaScope.KEY),
                reason_code="generic",
                expires_at=at + seconds,
            )
        )
    return limits
