"""The envelope limiter: which items a limit drops, the outcomes, and the limits reported."""

from __future__ import annotations

import msgspec

from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory, ItemType
from relay.quotas import (
    CachedRateLimits,
    Quota,
    QuotaScope,
    RateLimit,
    RateLimitOutcome,
    RateLimits,
    RateLimitScope,
    Scoping,
    check_envelope_cached,
    enforce,
    format_rate_limits,
    plan_envelope,
)

SCOPING = Scoping(organization_id=42, project_id=21, project_key="a" * 32, key_id=17)
NOW = 1000.0


def deny(*categories: DataCategory, reason: str = "r") -> RateLimits:
    """Cached limits that deny the given categories at the org scope."""
    return RateLimits(
        RateLimit(frozenset({c}), RateLimitScope(QuotaScope.ORGANIZATION, 42), reason, NOW + 60)
        for c in categories
    )


def envelope(*items: Item) -> Envelope:
    return Envelope({"event_id": "0" * 32}, list(items))


def event() -> Item:
    return Item.new(ItemType.EVENT, b"{}")


def attachment(size: int = 10, **headers: object) -> Item:
    return Item.new(ItemType.ATTACHMENT, b"x" * size, **headers)


def types(env: Envelope) -> list[str]:
    return [item.type for item in env.items]


def run(
    env: Envelope, limits: RateLimits, quotas: list[Quota] | None = None
) -> list[RateLimitOutcome]:
    enforcement = check_envelope_cached(env, SCOPING, limits, quotas or [], now=NOW)
    return enforcement.apply(env)


def test_no_limits_keeps_everything() -> None:
    env = envelope(event(), attachment(), Item.new(ItemType.SESSION, b"{}"))
    enforcement = check_envelope_cached(env, SCOPING, RateLimits(), now=NOW)
    assert not enforcement.is_limited
    assert enforcement.apply(env) == []
    assert types(env) == ["event", "attachment", "session"]


def test_dropped_event_takes_its_attachments_with_the_event_reason() -> None:
    env = envelope(event(), attachment(10), attachment(5), Item.new(ItemType.SESSION, b"{}"))
    enforcement = check_envelope_cached(env, SCOPING, deny(DataCategory.ERROR, reason="e"), now=NOW)
    outcomes = enforcement.apply(env)
    assert types(env) == ["session"]
    assert outcomes == [
        RateLimitOutcome(DataCategory.ERROR, 1, "e"),
        RateLimitOutcome(DataCategory.ATTACHMENT, 15, "e"),
        RateLimitOutcome(DataCategory.ATTACHMENT_ITEM, 2, "e"),
    ]
    # Only the event limit is reported: attachments were not checked.
    assert format_rate_limits(enforcement.rate_limits, now=NOW) == "60:error:organization:e"


def test_attachment_limit_keeps_the_event() -> None:
    env = envelope(event(), attachment(7))
    outcomes = run(env, deny(DataCategory.ATTACHMENT, reason="a"))
    assert types(env) == ["event"]
    assert outcomes == [
        RateLimitOutcome(DataCategory.ATTACHMENT, 7, "a"),
        RateLimitOutcome(DataCategory.ATTACHMENT_ITEM, 1, "a"),
    ]


def test_both_limited_reports_event_reason() -> None:
    env = envelope(event(), attachment(3))
    limits = deny(DataCategory.ERROR, reason="e")
    limits.merge(deny(DataCategory.ATTACHMENT, reason="a"))
    outcomes = run(env, limits)
    assert env.items == []
    assert {o.reason for o in outcomes} == {"e"}


def test_required_attachment_stays_marked_and_is_not_reported() -> None:
    minidump = attachment(20, attachment_type="event.minidump")
    env = envelope(minidump)
    enforcement = check_envelope_cached(
        env, SCOPING, deny(DataCategory.ATTACHMENT, reason="a"), now=NOW
    )
    outcomes = enforcement.apply(env)
    assert types(env) == ["attachment"]
    assert env.items[0].headers["rate_limited"] is True
    assert outcomes == [
        RateLimitOutcome(DataCategory.ATTACHMENT, 20, "a"),
        RateLimitOutcome(DataCategory.ATTACHMENT_ITEM, 1, "a"),
    ]
    # Clients may keep sending crash reports: no limit to report.
    assert not enforcement.rate_limits
    # Already rate-limited items are not counted again.
    enforcement = check_envelope_cached(env, SCOPING, deny(DataCategory.ATTACHMENT), now=NOW)
    assert enforcement.apply(env) == []
    assert types(env) == ["attachment"]


def test_minidump_with_error_limit_is_dropped_as_event() -> None:
    env = envelope(attachment(20, attachment_type="event.minidump"))
    outcomes = run(env, deny(DataCategory.ERROR, reason="e"))
    assert env.items == []
    assert outcomes[0] == RateLimitOutcome(DataCategory.ERROR, 1, "e")


def test_sessions_dropped_silently() -> None:
    env = envelope(event(), Item.new(ItemType.SESSION, b"{}"), Item.new(ItemType.SESSIONS, b"{}"))
    enforcement = check_envelope_cached(env, SCOPING, deny(DataCategory.SESSION), now=NOW)
    assert enforcement.apply(env) == []
    # Session aggregates are kept, as Relay keeps them (they become metrics).
    assert types(env) == ["event", "sessions"]
    assert enforcement.rate_limits.is_limited(NOW)


def test_transaction_limit_covers_its_spans() -> None:
    tx = Item.new(ItemType.TRANSACTION, b"{}", span_count=3)
    env = envelope(tx)
    outcomes = run(env, deny(DataCategory.TRANSACTION, reason="t"))
    assert env.items == []
    assert outcomes == [
        RateLimitOutcome(DataCategory.TRANSACTION, 1, "t"),
        RateLimitOutcome(DataCategory.TRANSACTION_INDEXED, 1, "t"),
        RateLimitOutcome(DataCategory.SPAN, 4, "t"),
        RateLimitOutcome(DataCategory.SPAN_INDEXED, 4, "t"),
    ]


def test_span_limit_drops_standalone_spans() -> None:
    env = envelope(Item.new(ItemType.SPAN, b"{}"), Item.new(ItemType.SPAN, b"{}"))
    outcomes = run(env, deny(DataCategory.SPAN, reason="s"))
    assert env.items == []
    assert outcomes == [
        RateLimitOutcome(DataCategory.SPAN, 2, "s"),
        RateLimitOutcome(DataCategory.SPAN_INDEXED, 2, "s"),
    ]


def test_reject_all_quota_without_cached_limits() -> None:
    q = msgspec.convert({"limit": 0, "categories": ["error"], "reasonCode": "zero"}, Quota)
    env = envelope(event(), Item.new(ItemType.SESSION, b"{}"))
    enforcement = check_envelope_cached(env, SCOPING, RateLimits(), [q], now=NOW)
    outcomes = enforcement.apply(env)
    assert types(env) == ["session"]
    assert outcomes == [RateLimitOutcome(DataCategory.ERROR, 1, "zero")]
    assert format_rate_limits(enforcement.rate_limits, now=NOW) == "60:error:organization:zero"


def test_logs_limited_by_bytes_drop_items_and_report_both() -> None:
    log = Item.new(
        ItemType.LOG, b"x" * 50, item_count=3, content_type="application/vnd.sentry.items.log+json"
    )
    env = envelope(log)
    outcomes = run(env, deny(DataCategory.LOG_BYTE, reason="b"))
    assert env.items == []
    assert outcomes == [
        RateLimitOutcome(DataCategory.LOG_ITEM, 3, "b"),
        RateLimitOutcome(DataCategory.LOG_BYTE, 50, "b"),
    ]


def test_profiles_by_platform() -> None:
    backend = Item.new(ItemType.PROFILE, b"{}", platform="python")
    ui = Item.new(ItemType.PROFILE, b"{}", platform="cocoa")
    env = envelope(backend, ui)
    outcomes = run(env, deny(DataCategory.PROFILE_UI, reason="ui"))
    assert [item.platform for item in env.items] == ["python"]
    assert outcomes == [
        RateLimitOutcome(DataCategory.PROFILE_UI, 1, "ui"),
        RateLimitOutcome(DataCategory.PROFILE, 1, "ui"),
        RateLimitOutcome(DataCategory.PROFILE_INDEXED, 1, "ui"),
    ]


def test_profile_without_transaction_obeys_transaction_limits() -> None:
    env = envelope(Item.new(ItemType.PROFILE, b"{}", platform="python"))
    outcomes = run(env, deny(DataCategory.TRANSACTION, reason="t"))
    assert env.items == []
    assert RateLimitOutcome(DataCategory.PROFILE, 1, "t") in outcomes


def test_independent_categories() -> None:
    env = envelope(
        Item.new(ItemType.REPLAY_EVENT, b"{}"),
        Item.new(ItemType.REPLAY_RECORDING, b"{}"),
        Item.new(ItemType.CHECK_IN, b"{}"),
        Item.new(ItemType.USER_REPORT, b"{}"),
        Item.new(ItemType.CLIENT_REPORT, b"{}"),
        Item.new("something_new", b"{}"),
    )
    outcomes = run(
        env, deny(DataCategory.REPLAY, DataCategory.MONITOR, DataCategory.USER_REPORT_V2)
    )
    assert types(env) == ["client_report", "something_new"]
    assert {(o.category, o.quantity) for o in outcomes} == {
        (DataCategory.REPLAY, 2),
        (DataCategory.MONITOR, 1),
        (DataCategory.USER_REPORT_V2, 1),
    }


def test_trace_attachments_are_checked_independently_of_the_event() -> None:
    trace_att = attachment(9, content_type="application/vnd.sentry.trace-attachment", meta_length=0)
    env = envelope(event(), trace_att)
    plan = plan_envelope(env)
    assert [step.name for step in plan.steps] == [
        "event",
        "trace_attachment",
        "trace_attachment_item",
    ]
    assert plan.steps[1].guard == -1
    outcomes = run(envelope(event(), trace_att), deny(DataCategory.ATTACHMENT, reason="a"))
    assert RateLimitOutcome(DataCategory.ATTACHMENT, 9, "a") in outcomes
    # Every attachment requires an event: a dropped event takes trace attachments too.
    run(env, deny(DataCategory.ERROR))
    assert env.items == []


def test_plan_guards() -> None:
    env = envelope(event(), attachment(4), attachment(6))
    plan = plan_envelope(env)
    assert [(s.name, s.category, s.quantity, s.guard) for s in plan.steps] == [
        ("event", DataCategory.ERROR, 1, -1),
        ("attachment", DataCategory.ATTACHMENT, 10, 0),
        ("attachment_item", DataCategory.ATTACHMENT_ITEM, 2, 1),
    ]
    # The real event type replaces the item-type guess.
    assert plan_envelope(env, DataCategory.SECURITY).steps[0].category == DataCategory.SECURITY


def test_cached_rate_limits_object_and_scope_mismatch() -> None:
    cache = CachedRateLimits()
    cache.merge([RateLimit(frozenset(), RateLimitScope(QuotaScope.PROJECT, 99), "x", NOW + 60)])
    env = envelope(event())
    enforcement = check_envelope_cached(env, SCOPING, cache, now=NOW)
    assert enforcement.apply(env) == []
    assert types(env) == ["event"]


# --- indexed categories (transaction_indexed), as processing relays check them --------


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
