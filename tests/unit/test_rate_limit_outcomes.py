"""Outcome quantities of rate-limited items that depend on their payloads.

A limited transaction reports its spans (``span_count``, parsed when the transaction limit is
active); a profile without a platform header is counted as UI or backend profile in processing,
from its metadata. And store requests with Relay's serde name of the feedback type become
feedback items (``user_report_v2``).
"""

from __future__ import annotations

import json

import msgspec

from relay.config import config_from_dict
from relay.kafka.outcomes import OutcomeCode
from relay.protocol.envelope import Envelope, Item, envelope_from_event
from relay.protocol.items import DataCategory, ItemType
from relay.protocol.project_config import ProjectState
from relay.quotas.redis_limiter import RedisRateLimiter
from relay.server.outcomes import OutcomeSink
from relay.server.rate_limiting import RateLimiting, only_outcome_buckets
from relay.server.request_meta import RequestMeta

KEY = "a" * 32
META = RequestMeta(public_key=KEY, project_id=42)


def state(quota_category: str) -> ProjectState:
    return msgspec.convert(
        {
            "projectId": 42,
            "organizationId": 1,
            "publicKeys": [{"publicKey": KEY, "numericId": 7}],
            "config": {
                "quotas": [
                    {"id": "q", "categories": [quota_category], "limit": 0, "reasonCode": "r"}
                ]
            },
        },
        ProjectState,
    )


def sink() -> OutcomeSink:
    return OutcomeSink(config_from_dict({"outcomes": {"emit_outcomes": True}}))


def limited(outcomes: OutcomeSink) -> dict[DataCategory, int]:
    return {
        DataCategory(category): quantity
        for (outcome, category), quantity in outcomes.totals.items()
        if outcome == OutcomeCode.RATE_LIMITED
    }


def test_limited_transaction_reports_its_spans() -> None:
    outcomes = sink()
    payload = json.dumps({"type": "transaction", "spans": [{"op": "db"}, {"op": "http"}]})
    envelope = Envelope({}, [Item.new(ItemType.TRANSACTION, payload.encode())])
    answer = RateLimiting(outcomes).enforce_cached(envelope, META, state("transaction"))
    assert answer is not None and answer.status == 429
    assert envelope.items == []
    found = limited(outcomes)
    # Two spans plus the transaction itself.
    assert found[DataCategory.SPAN] == 3
    assert found[DataCategory.SPAN_INDEXED] == 3
    assert found[DataCategory.TRANSACTION] == 1


def test_unlimited_transaction_is_not_parsed() -> None:
    item = Item.new(ItemType.TRANSACTION, b'{"spans": [{}]}')
    RateLimiting(sink()).enforce_cached(Envelope({}, [item]), META, state("error"))
    assert "span_count" not in item.headers


class _NeverCalled(RedisRateLimiter):
    """A limiter whose Redis is never asked: the ``limit: 0`` quota decides first."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]

    async def _call(self, keys: list[str], args: list[int | str]) -> list[int]:
        raise AssertionError("Redis must not be asked for a reject-all quota")


async def test_processing_counts_a_profile_by_its_platform() -> None:
    outcomes = sink()
    profile = json.dumps({"version": "1", "platform": "cocoa", "profile": {}}).encode()
    envelope = Envelope({}, [Item.new(ItemType.PROFILE, profile)])
    rate_limits = RateLimiting(outcomes, _NeverCalled())
    await rate_limits.enforce_redis(envelope, META, state("profile_ui"))
    assert envelope.items == []
    assert limited(outcomes) == {
        DataCategory.PROFILE: 1,
        DataCategory.PROFILE_INDEXED: 1,
        DataCategory.PROFILE_UI: 1,
    }


def test_store_userreportv2_is_feedback() -> None:
    envelope = envelope_from_event({"type": "userreportv2"}, "a" * 32)
    (item,) = envelope.items
    assert item.type == ItemType.FEEDBACK
    assert item.quantities() == [(DataCategory.USER_REPORT_V2, 1)]


def test_outcome_buckets_are_not_metric_limited() -> None:
    """Outcomes sent as ``c:outcomes/...`` buckets are never held back by metric quotas."""

    def envelope(*names: str) -> Envelope:
        buckets = [{"name": n, "type": "c", "value": 1.0, "timestamp": 0, "width": 1}
                   for n in names]  # fmt: skip
        return Envelope({}, [Item.new("metric_buckets", msgspec.json.encode(buckets))])

    assert only_outcome_buckets(envelope("c:outcomes/accepted@none"))
    assert not only_outcome_buckets(envelope("c:outcomes/accepted@none", "c:sessions/session@none"))
    assert not only_outcome_buckets(Envelope({}, [Item.new("metric_buckets", b"not json")]))
