"""The quota model, rate limits, the cached-limit store and the X-Sentry-Rate-Limits header."""

from __future__ import annotations

import msgspec
import pytest

from relay.protocol.items import DataCategory
from relay.quotas import (
    ANY_NAMESPACE,
    CachedRateLimits,
    Quota,
    QuotaScope,
    RateLimit,
    RateLimits,
    RateLimitScope,
    Scoping,
    format_rate_limits,
    parse_quotas,
    parse_rate_limits,
    parse_retry_after,
    upstream_rate_limits,
)

SCOPING = Scoping(organization_id=42, project_id=21, project_key="a" * 32, key_id=17)
NOW = 1000.0


def quota(**fields: object) -> Quota:
    return msgspec.convert(fields, Quota)


def test_parse_wire_names_and_defaults() -> None:
    (q,) = parse_quotas(
        [
            {
                "id": "p",
                "categories": ["error"],
                "scope": "project",
                "scopeId": "21",
                "limit": 4294967296,
                "window": 42,
                "reasonCode": "not_so_fast",
            }
        ]
    )
    assert q.scope_kind is QuotaScope.PROJECT
    assert q.category_set == {DataCategory.ERROR}
    assert q.limit == 4294967296
    assert msgspec.json.decode(msgspec.json.encode(q))["reasonCode"] == "not_so_fast"
    assert quota().scope_kind is QuotaScope.ORGANIZATION
    assert quota(scope="future").scope_kind is QuotaScope.UNKNOWN


@pytest.mark.parametrize(
    ("fields", "valid"),
    [
        ({"limit": 0}, True),  # reject-all without categories
        ({"limit": 0, "categories": ["error", "attachment"]}, True),  # mixed units ok for 0
        ({"limit": 0, "categories": ["future"]}, False),  # only unknown categories
        ({"limit": 10, "window": 60, "id": "a"}, False),  # counted over all units
        ({"window": 60, "id": "a"}, False),  # count-only over all units
        ({"limit": 10, "categories": ["error", "attachment"]}, False),  # mixed units
        ({"limit": 10, "categories": ["error", "future"], "id": "a"}, True),
        ({"limit": 10, "categories": ["error", "transaction"], "id": "a"}, True),
        ({"limit": 0, "namespace": "nonsense"}, False),
        ({"limit": 0, "namespace": "spans"}, True),
        ({"limit": 0, "groupBy": {"maxCardinality": 2, "dimensions": []}}, False),
        ({"limit": 0, "groupBy": {"maxCardinality": 2, "dimensions": ["other"]}}, False),
        ({"limit": 0, "groupBy": {"maxCardinality": 2, "dimensions": ["checkInSlug"]}}, True),
        ({"limit": -1, "categories": ["error"]}, False),
    ],
)
def test_validity(fields: dict[str, object], valid: bool) -> None:
    assert quota(**fields).is_valid() is valid


def test_parse_quotas_skips_bad_entries_individually() -> None:
    raw = [
        {"limit": 0, "reasonCode": "a"},
        {"limit": "many"},  # malformed
        {"limit": 10, "window": 1, "id": "x"},  # invalid (all categories)
        "not a quota",
        {"limit": 0, "categories": ["error"]},
    ]
    assert [q.reason_code for q in parse_quotas(raw)] == ["a", None]
    assert len(parse_quotas(msgspec.json.encode(raw))) == 2
    assert parse_quotas(None) == []
    assert parse_quotas(b"{") == []


def test_matches_scope_category_namespace() -> None:
    error = SCOPING.item(DataCategory.ERROR)
    assert quota(limit=0).matches(error)
    assert quota(limit=0, categories=["error"]).matches(error)
    assert not quota(limit=0, categories=["transaction"]).matches(error)
    assert not quota(limit=0, categories=["future"]).matches(error)
    assert quota(limit=0, categories=["future", "error"]).matches(error)
    assert quota(limit=0, scope="project", scopeId="21").matches(error)
    assert not quota(limit=0, scope="project", scopeId="22").matches(error)
    assert quota(limit=0, scope="key", scopeId="17").matches(error)
    assert not quota(limit=0, scope="key", scopeId="not_a_number").matches(error)
    # A constrained quota of an unknown scope can never be satisfied.
    assert not quota(limit=0, scope="future", scopeId="17").matches(error)
    nokey = Scoping(42, 21, "a" * 32, None).item(DataCategory.ERROR)
    assert not quota(limit=0, scope="key", scopeId="17").matches(nokey)
    # Namespaced quotas need a namespaced item.
    spans_q = quota(limit=0, namespace="spans")
    assert not spans_q.matches(error)
    assert spans_q.matches(SCOPING.item(DataCategory.METRIC_BUCKET, "spans"))
    assert not spans_q.matches(SCOPING.item(DataCategory.METRIC_BUCKET, "sessions"))
    assert spans_q.matches(SCOPING.item(DataCategory.METRIC_BUCKET, ANY_NAMESPACE))
    # Dimensioned quotas never match dimensionless items.
    grouped = quota(limit=0, groupBy={"maxCardinality": 1, "dimensions": ["checkInSlug"]})
    assert not grouped.matches(SCOPING.item(DataCategory.MONITOR))


def limit(
    categories: tuple[DataCategory, ...] = (),
    scope: RateLimitScope | None = None,
    reason: str | None = None,
    seconds: float = 60,
    namespaces: tuple[str, ...] = (),
) -> RateLimit:
    return RateLimit(
        frozenset(categories),
        scope or RateLimitScope(QuotaScope.ORGANIZATION, 42),
        reason,
        NOW + seconds,
        namespaces,
    )


def test_rate_limits_add_keeps_longest_per_identity() -> None:
    limits = RateLimits()
    limits.add(limit((DataCategory.ERROR,), reason="a", seconds=10))
    limits.add(limit((DataCategory.ERROR,), reason="b", seconds=20))
    limits.add(limit((DataCategory.ERROR,), reason="c", seconds=5))
    limits.add(limit((DataCategory.TRANSACTION,), seconds=5))
    assert [(lim.reason_code, lim.expires_at) for lim in limits] == [
        ("b", NOW + 20),
        (None, NOW + 5),
    ]
    assert limits.longest() is not None and limits.longest().reason_code == "b"  # type: ignore[union-attr]
    assert limits.is_limited(NOW)
    assert not limits.is_limited(NOW + 20)


def test_check_matches_scope_and_adds_reject_all_quotas() -> None:
    limits = RateLimits(
        [
            limit((DataCategory.ERROR,), RateLimitScope(QuotaScope.PROJECT, 21), "p"),
            limit((DataCategory.ERROR,), RateLimitScope(QuotaScope.PROJECT, 99), "other"),
            limit((DataCategory.ERROR,), RateLimitScope(QuotaScope.KEY, "b" * 32), "otherkey"),
            limit((DataCategory.SESSION,), reason="s"),
            limit((DataCategory.ERROR,), reason="expired", seconds=-1),
        ]
    )
    found = limits.check(SCOPING.item(DataCategory.ERROR), now=NOW)
    assert [lim.reason_code for lim in found] == ["p"]
    q = quota(limit=0, categories=["error"], reasonCode="nope")
    found = limits.check(SCOPING.item(DataCategory.ERROR), [q], now=NOW)
    assert sorted(str(lim.reason_code) for lim in found) == ["nope", "p"]
    reject = next(lim for lim in found if lim.reason_code == "nope")
    assert reject.remaining_seconds(NOW) == 60
    assert reject.scope == RateLimitScope(QuotaScope.ORGANIZATION, 42)


def test_cached_limits_inherit_transaction_span_and_expire() -> None:
    cache = CachedRateLimits()
    cache.merge([limit((DataCategory.TRANSACTION,), reason="tx", seconds=10)])
    snapshot = cache.current(NOW)
    (only,) = list(snapshot)
    assert only.categories == {DataCategory.TRANSACTION, DataCategory.SPAN}
    assert format_rate_limits(snapshot, now=NOW) == "10:transaction;span:organization:tx"
    # Snapshots do not change under later merges.
    cache.merge([limit((DataCategory.ERROR,), seconds=30)])
    assert len(snapshot) == 1
    assert len(cache.current(NOW)) == 2
    assert len(cache.current(NOW + 15)) == 1
    assert not cache.is_limited(NOW + 31)
    # Dimensional limits are never cached.
    dim = RateLimit(frozenset(), RateLimitScope(QuotaScope.KEY, "a"), None, NOW + 5, (), True)
    cache.merge([dim])
    assert not cache.is_limited(NOW + 31)


def test_format_header() -> None:
    limits = RateLimits(
        [
            limit(reason="my_limit", seconds=42),
            limit(
                (DataCategory.SECURITY, DataCategory.TRANSACTION),
                RateLimitScope(QuotaScope.PROJECT, 21),
                seconds=4711,
            ),
        ]
    )
    expected = "42::organization:my_limit, 4711:transaction;security:project"
    assert format_rate_limits(limits, now=NOW) == expected
    ns = RateLimits(
        [
            limit(
                (DataCategory.METRIC_BUCKET,),
                reason="r",
                seconds=42,
                namespaces=("transactions", "spans"),
            ),
            limit((DataCategory.METRIC_BUCKET,), seconds=42, namespaces=("spans",)),
        ]
    )
    expected = (
        "42:metric_bucket:organization:r:transactions;spans, 42:metric_bucket:organization::spans"
    )
    assert format_rate_limits(ns, now=NOW) == expected
    # Fractions round up so that clients never come back early.
    assert format_rate_limits([limit(seconds=0.2)], now=NOW) == "1::organization"


def test_parse_header() -> None:
    header = "42::organization:my_limit, 4711:foobar;transaction;security:project, ,bad:error:key"
    limits = list(parse_rate_limits(SCOPING, header, now=NOW))
    assert len(limits) == 2
    assert limits[0].categories == frozenset()
    assert limits[0].scope == RateLimitScope(QuotaScope.ORGANIZATION, 42)
    assert limits[0].reason_code == "my_limit"
    assert limits[1].categories == {
        DataCategory.UNKNOWN,
        DataCategory.TRANSACTION,
        DataCategory.SECURITY,
    }
    assert limits[1].scope == RateLimitScope(QuotaScope.PROJECT, 21)
    assert limits[1].remaining_seconds(NOW) == 4711
    (ns,) = parse_rate_limits(SCOPING, "1:metric_bucket:future::spans;sessions", now=NOW)
    assert ns.scope == RateLimitScope(QuotaScope.KEY, "a" * 32)
    assert ns.reason_code is None and ns.namespaces == ("spans", "sessions")
    for junk in ("", "invalid", ",,,"):
        assert not parse_rate_limits(SCOPING, junk, now=NOW)
    # An unknown category matches nothing rather than everything.
    unknown = parse_rate_limits(SCOPING, "60:future:project", now=NOW)
    assert not unknown.check(SCOPING.item(DataCategory.ERROR), now=NOW)


def test_roundtrip_format_parse() -> None:
    limits = RateLimits(
        [limit((DataCategory.ERROR, DataCategory.ATTACHMENT), reason="x", seconds=9)]
    )
    text = format_rate_limits(limits, now=NOW)
    (back,) = parse_rate_limits(SCOPING, text, now=NOW)
    assert back.categories == {DataCategory.ERROR, DataCategory.ATTACHMENT}
    assert format_rate_limits([back], now=NOW) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("17.1", 18), ("17.7", 18), ("17", 17), ("-2", 0), ("-inf", 0), ("inf", 0), ("NaN", 0)],
)
def test_retry_after(text: str, seconds: int) -> None:
    assert parse_retry_after(text) == seconds


def test_retry_after_invalid() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_upstream_429_without_header_is_generic_key_limit() -> None:
    limits = upstream_rate_limits(SCOPING, None, "2", now=NOW)
    (only,) = list(limits)
    assert only.reason_code == "generic"
    assert only.categories == frozenset()
    assert only.scope == RateLimitScope(QuotaScope.KEY, "a" * 32)
    assert only.remaining_seconds(NOW) == 2
    # A header with limits wins over Retry-After.
    limits = upstream_rate_limits(SCOPING, "30:error:project:q", "2", now=NOW)
    assert [lim.reason_code for lim in limits] == ["q"]
