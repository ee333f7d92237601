"""Indexed event categories in the envelope limiter (``transaction_indexed``), as Relay's
processing relays check them (relay.quotas.envelope_limiter)."""

from __future__ import annotations

from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory, ItemType
from relay.quotas import (
    QuotaScope,
    RateLimit,
    RateLimits,
    RateLimitScope,
    Scoping,
    enforce,
    plan_envelope,
)

SCOPING = Scoping(organization_id=42, project_id=21, project_key="a" * 32, key_id=17)
NOW = 1000.0


def deny(*categories: DataCategory, reason: str = "r") -> RateLimits:
    return RateLimits(
        RateLimit(frozenset({c}), RateLimitScope(QuotaScope.ORGANIZATION, 42), reason, NOW + 60)
        for c in categories
    )


def transaction() -> Envelope:
    return Envelope({"event_id": "0" * 32}, [Item.new(ItemType.TRANSACTION, b"{}")])


def test_fast_path_does_not_check_indexed_categories() -> None:
    plan = plan_envelope(transaction())
    categories = [step.category for step in plan.steps]
    assert DataCategory.TRANSACTION in categories
    assert DataCategory.TRANSACTION_INDEXED not in categories


def test_processing_checks_the_indexed_category_after_the_event() -> None:
    plan = plan_envelope(transaction(), indexed=True)
    event, indexed = plan.index["event"], plan.index["event_indexed"]
    assert plan.steps[event].category == DataCategory.TRANSACTION
    assert plan.steps[indexed].category == DataCategory.TRANSACTION_INDEXED
    # Only counted while the transaction itself passes.
    assert plan.steps[indexed].guard == event
    # Errors have no indexed category.
    error = Envelope({}, [Item.new(ItemType.EVENT, b"{}")])
    assert "event_indexed" not in plan_envelope(error, indexed=True).index


def test_indexed_limit_drops_only_the_indexed_category() -> None:
    plan = plan_envelope(transaction(), indexed=True)
    results = plan.evaluate_cached(SCOPING, deny(DataCategory.TRANSACTION_INDEXED), now=NOW)
    enforcement = enforce(plan, results)
    assert not enforcement.event.active
    assert enforcement.event_indexed.active
    outcomes = {(o.category, o.quantity) for o in enforcement.outcomes()}
    assert (DataCategory.TRANSACTION_INDEXED, 1) in outcomes
    assert all(category != DataCategory.TRANSACTION for category, _ in outcomes)


def test_event_limit_covers_the_indexed_category() -> None:
    plan = plan_envelope(transaction(), indexed=True)
    results = plan.evaluate_cached(SCOPING, deny(DataCategory.TRANSACTION), now=NOW)
    # The indexed step is skipped: the transaction is dropped anyway.
    assert results[plan.index["event_indexed"]] is None
    enforcement = enforce(plan, results)
    categories = {o.category for o in enforcement.outcomes()}
    assert {DataCategory.TRANSACTION, DataCategory.TRANSACTION_INDEXED} <= categories
