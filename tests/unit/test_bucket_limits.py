"""Quotas on metric buckets by namespace (relay.server.bucket_limits)."""

from __future__ import annotations

from relay.config import config_from_dict
from relay.kafka.metrics import MetricBucket
from relay.kafka.outcomes import OutcomeCode
from relay.protocol.items import DataCategory
from relay.quotas import Scoping, parse_quotas
from relay.server.bucket_limits import limit_buckets
from relay.server.outcomes import OutcomeSink
from relay.server.rate_limiting import RateLimiting

SCOPING = Scoping(organization_id=1, project_id=42, project_key="a" * 32, key_id=7)


def bucket(name: str) -> MetricBucket:
    return MetricBucket(timestamp=1_700_000_000, name=name, type="c", value=1.0, width=1)


def sink() -> OutcomeSink:
    return OutcomeSink(config_from_dict({"outcomes": {"emit_outcomes": True}}))


async def test_zero_quota_of_a_namespace_drops_its_buckets() -> None:
    outcomes = sink()
    quotas = parse_quotas(
        [{"scope": "organization", "namespace": "transactions", "limit": 0, "reasonCode": "r"}]
    )
    buckets = [
        bucket("c:spans/foo@none"),
        bucket("c:transactions/bar@none"),
        bucket("c:transactions/baz@none"),
    ]
    kept = await limit_buckets(RateLimiting(outcomes), outcomes, SCOPING, quotas, buckets)
    assert [b.name for b in kept] == ["c:spans/foo@none"]
    # One outcome for the namespace, counting its buckets.
    assert outcomes.totals == {(int(OutcomeCode.RATE_LIMITED), int(DataCategory.METRIC_BUCKET)): 2}


async def test_outcome_buckets_are_never_limited() -> None:
    outcomes = sink()
    quotas = parse_quotas([{"scope": "organization", "limit": 0}])
    buckets = [bucket("c:outcomes/accepted@none"), bucket("c:custom/x@none")]
    kept = await limit_buckets(RateLimiting(outcomes), outcomes, SCOPING, quotas, buckets)
    assert [b.name for b in kept] == ["c:outcomes/accepted@none"]


async def test_no_quotas_keep_everything() -> None:
    outcomes = sink()
    buckets = [bucket("c:spans/foo@none")]
    assert await limit_buckets(RateLimiting(outcomes), outcomes, SCOPING, [], buckets) == buckets
    assert not outcomes.totals
