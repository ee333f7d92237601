"""Usage metrics of sampled-out transactions (relay.metrics.usage)."""

from __future__ import annotations

from relay.metrics.usage import SPAN_USAGE_METRIC, span_usage_buckets, usage_bucket_counts


def test_one_counter_per_span_and_one_for_the_segment() -> None:
    event = {
        "timestamp": 1700000000.5,
        "spans": [{"timestamp": 1700000001.0}, {"timestamp": "2023-11-14T22:13:22Z"}, {}, "x"],
    }
    buckets = span_usage_buckets(event, received_at=1700000100)
    assert [b.name for b in buckets] == [SPAN_USAGE_METRIC] * 3
    segment, *children = buckets
    assert segment.tags == {"is_segment": "true", "was_transaction": "true"}
    assert segment.timestamp == 1700000000 and segment.value == 1.0
    assert all(b.tags == {"is_segment": "false"} for b in children)
    assert children[1].timestamp == 1700000002


def test_no_timestamp_no_usage() -> None:
    assert span_usage_buckets({"timestamp": None, "spans": None}, received_at=0) == []
    assert span_usage_buckets({"timestamp": True}, received_at=0) == []


def test_received_counts() -> None:
    assert usage_bucket_counts(SPAN_USAGE_METRIC, 3.0, {"is_segment": "true"}) == (3, 3)
    assert usage_bucket_counts(SPAN_USAGE_METRIC, 2, {"is_segment": "false"}) == (2, 0)
    assert usage_bucket_counts("c:sessions/session@none", 2, {}) == (0, 0)
    for bad in (float("nan"), float("inf"), -1, True, "3", [1]):
        assert usage_bucket_counts(SPAN_USAGE_METRIC, bad, {}) == (0, 0)
