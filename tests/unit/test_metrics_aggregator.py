"""The aggregator: merging, flush timing and spreading, budgets, and the async service."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from relay.metrics import (
    Aggregator,
    AggregatorConfig,
    Bucket,
    BucketMetadata,
    CounterBucket,
    DistributionBucket,
    GaugeBucket,
    GaugeValue,
    MergeOutcome,
    SessionContext,
    SetBucket,
    decode_buckets,
    process_sessions,
)
from relay.metrics.bucket import bucket_value_len
from relay.server.aggregator_service import AggregatorService, metric_buckets_payloads

T0 = 1_700_000_000  # divisible by 10
KEY = "a94ae32be2584e0bbd7a4cbb95971fee"


def _counter(
    name: str = "c:sessions/s@none", ts: int = T0, value: float = 1.0, **tags: str
) -> Bucket:
    return CounterBucket(timestamp=ts, width=0, name=name, value=value, tags=dict(tags))


def _agg(**options: object) -> Aggregator:
    return Aggregator(AggregatorConfig.from_options(options), now=T0)


def test_counters_merge_into_one_bucket() -> None:
    agg = _agg()
    for i in range(100):
        assert agg.merge(KEY, _counter(ts=T0 + i % 10, value=2.0), now=T0) is MergeOutcome.ACCEPTED
    assert len(agg) == 1
    assert agg.flush(now=T0 + 10) == {}  # the 30 s initial delay has not passed
    out = agg.flush(now=T0 + 10 + 30 + 1)
    (bucket,) = out[KEY]
    assert isinstance(bucket, CounterBucket)
    assert (bucket.timestamp, bucket.width, bucket.value) == (T0, 10, 200.0)
    assert bucket.merges == 100
    assert agg.is_empty
    assert agg.cost == 0
    assert agg.stats.merged == 99 and agg.stats.created == 1 and agg.stats.flushed == 1


def test_tags_and_names_separate_buckets() -> None:
    agg = _agg()
    agg.merge(KEY, _counter(release="1"), now=T0)
    agg.merge(KEY, _counter(release="2"), now=T0)
    agg.merge(KEY, _counter("c:sessions/other@none", release="1"), now=T0)
    agg.merge("b" * 32, _counter(release="1"), now=T0)
    agg.merge(KEY, _counter(ts=T0 + 10, release="1"), now=T0)
    assert len(agg) == 5
    out = agg.flush_all()
    assert sorted(len(v) for v in out.values()) == [1, 4]


def test_values_merge_per_type() -> None:
    agg = _agg()
    for value in (1.0, 2.0):
        agg.merge(
            KEY,
            DistributionBucket(timestamp=T0, width=0, name="d:spans/d@none", value=[value, 3.0]),
            now=T0,
        )
        agg.merge(
            KEY,
            SetBucket(timestamp=T0, width=0, name="s:spans/s@none", value=[int(value), 7]),
            now=T0,
        )
    agg.merge(
        KEY,
        GaugeBucket(timestamp=T0, width=0, name="g:spans/g@none", value=GaugeValue.single(42.0)),
        now=T0,
    )
    agg.merge(
        KEY,
        GaugeBucket(timestamp=T0, width=0, name="g:spans/g@none", value=GaugeValue.single(43.0)),
        now=T0,
    )
    got = {b.name: b.value for b in agg.flush_all()[KEY]}
    assert got == {
        "d:spans/d@none": [1.0, 3.0, 2.0, 3.0],
        "s:spans/s@none": [1, 2, 7],
        # bucket.rs test_bucket_value_merge_gauge
        "g:spans/g@none": GaugeValue(last=43.0, min=42.0, max=43.0, sum=85.0, count=2),
    }


def test_type_conflict_is_rejected() -> None:
    agg = _agg()
    agg.merge(KEY, _counter("c:spans/x@none"), now=T0)
    bad = DistributionBucket(timestamp=T0, width=0, name="c:spans/x@none", value=[1.0])
    assert agg.merge(KEY, bad, now=T0) is MergeOutcome.INVALID_TYPE
    assert agg.stats.rejected == {"invalid_type": 1}


def test_metadata_merges_and_received_at() -> None:
    agg = _agg()
    for merges, received in [(1, 50), (3, 20), (1, None)]:
        bucket = _counter()
        bucket.metadata = BucketMetadata(merges=merges, received_at=received)
        agg.merge(KEY, bucket, now=T0)
    (bucket,) = agg.flush_all()[KEY]
    assert bucket.metadata == BucketMetadata(merges=5, received_at=20)


def test_timestamp_range() -> None:
    agg = _agg()
    assert agg.merge(KEY, _counter(ts=T0 - 5 * 86400), now=T0) is MergeOutcome.ACCEPTED
    assert agg.merge(KEY, _counter(ts=T0 - 5 * 86400 - 11), now=T0) is (
        MergeOutcome.INVALID_TIMESTAMP
    )
    assert agg.merge(KEY, _counter(ts=T0 + 60), now=T0) is MergeOutcome.ACCEPTED
    assert agg.merge(KEY, _counter(ts=T0 + 71), now=T0) is MergeOutcome.INVALID_TIMESTAMP


def test_backdated_bucket_flushes_within_an_interval() -> None:
    agg = _agg(bucket_interval=10, initial_delay=0)
    agg.flush(now=T0 + 100)
    agg.merge(KEY, _counter(ts=T0 - 86400), now=T0 + 100)
    at = agg.next_flush_at()
    assert at is not None and T0 + 100 < at <= T0 + 110
    assert agg.flush(now=T0 + 110)[KEY][0].timestamp == T0 - 86400


def test_projects_are_spread_over_the_interval() -> None:
    agg = _agg(bucket_interval=10, initial_delay=30)
    keys = [f"{i:032x}" for i in range(200)]
    for key in keys:
        agg.merge(key, _counter(), now=T0)
        agg.merge(key, _counter("c:sessions/t@none"), now=T0)
    flushed_at: dict[str, float] = {}
    now = float(T0)
    while not agg.is_empty:
        now += 0.05
        for key, buckets in agg.flush(now).items():
            # A project's buckets of one window flush together.
            assert len(buckets) == 2 and key not in flushed_at
            flushed_at[key] = now
    times = sorted(flushed_at.values())
    assert times[0] >= T0 + 30 and times[-1] <= T0 + 40 + 0.05
    # 200 projects over 640 partitions: no single instant carries more than a few.
    per_instant: dict[float, int] = defaultdict(int)
    for t in times:
        per_instant[round(t, 2)] += 1
    assert max(per_instant.values()) <= 5
    assert times[-1] - times[0] > 8


def test_flush_batching_none_flushes_window_at_once() -> None:
    agg = _agg(shift_key="none", bucket_interval=1, initial_delay=0)
    for i in range(20):
        agg.merge(f"{i:032x}", _counter(), now=T0)
    assert agg.flush(now=T0 + 0.5) == {}
    assert len(agg.flush(now=T0 + 1)) == 20


def test_total_budget_rejects_new_buckets_but_counters_keep_merging() -> None:
    agg = _agg(max_total_bucket_bytes=1000)
    accepted = 0
    for i in range(50):
        if agg.merge(KEY, _counter(release=str(i)), now=T0) is MergeOutcome.ACCEPTED:
            accepted += 1
    assert 0 < accepted < 50
    assert agg.stats.rejected["total_limit"] == 50 - accepted
    assert not agg.can_accept() or agg.cost <= 1000
    # Existing counters still aggregate, so their sums stay exact.
    for _ in range(10):
        assert agg.merge(KEY, _counter(release="0"), now=T0) is MergeOutcome.ACCEPTED
    buckets = {b.tags["release"]: b.value for b in agg.flush_all()[KEY]}
    assert buckets["0"] == 11.0
    assert agg.cost == 0


def test_project_budget() -> None:
    agg = _agg(max_project_key_bucket_bytes=500)
    outcomes = {agg.merge(KEY, _counter(release=str(i)), now=T0) for i in range(20)}
    assert MergeOutcome.PROJECT_LIMIT in outcomes
    assert agg.merge("c" * 32, _counter(), now=T0) is MergeOutcome.ACCEPTED


def test_set_growth_counts_against_budget() -> None:
    agg = _agg(max_total_bucket_bytes=400)
    set_bucket = SetBucket(timestamp=T0, width=0, name="s:sessions/u@none", value=[1])
    assert agg.merge(KEY, set_bucket, now=T0) is MergeOutcome.ACCEPTED
    big = SetBucket(timestamp=T0, width=0, name="s:sessions/u@none", value=list(range(200)))
    assert agg.merge(KEY, big, now=T0) is MergeOutcome.TOTAL_LIMIT


def test_config_from_relay_options() -> None:
    config = AggregatorConfig.from_options(
        {
            "bucket_interval": 1,
            "initial_delay": 0,
            "shift_key": "none",
            "aggregator_size": 2,
            "max_flush_bytes": 200,
            "flush_partitions": None,
        }
    )
    assert (config.flush_batching, config.num_partitions, config.max_flush_bytes) == (
        "none",
        1,
        200,
    )
    assert AggregatorConfig().num_partitions == 640
    assert AggregatorConfig(flush_partitions=0).num_partitions == 1
    with pytest.raises(msgspec.ValidationError):
        AggregatorConfig.from_options({"bucket_intervall": 1})


# --- the aggregation test: many session items shrink to few buckets ---------------------


def test_session_updates_shrink_to_few_buckets() -> None:
    rng = random.Random(7)
    now = datetime.fromtimestamp(T0 + 3600, UTC)
    releases = [f"app@{i}.0" for i in range(50)]
    statuses = ["ok", "exited", "errored", "crashed"]
    n = 20_000
    agg = Aggregator(AggregatorConfig(), now=now.timestamp())
    expected_init: dict[str, int] = defaultdict(int)
    expected_crashed: dict[str, int] = defaultdict(int)
    users: dict[str, set[str]] = defaultdict(set)
    extracted = 0
    ctx = SessionContext(received_at=now, client="sentry.python/2.0")
    for i in range(n):
        release = rng.choice(releases)
        status = rng.choice(statuses)
        init = rng.random() < 0.5
        did = f"user-{rng.randrange(500)}"
        started = now - timedelta(seconds=rng.randrange(60))
        payload = {
            "sid": f"{i:032x}",
            "did": did,
            "init": init,
            "status": status,
            "started": started.isoformat(),
            "attrs": {"release": release, "environment": "production"},
        }
        buckets, _ = process_sessions([json.dumps(payload).encode()], [], ctx)
        extracted += len(buckets)
        agg.merge_all(KEY, buckets, now=now.timestamp())
        expected_init[release] += init
        expected_crashed[release] += status == "crashed"
        users[release].add(did)
    out = agg.flush_all()[KEY]
    # names x tag combinations x intervals: session (init, crashed), user (none, errored,
    # crashed), error (one per release) -> at most 6 per release and interval.
    intervals = 60 // 10 + 1
    assert len(out) <= 50 * 6 * intervals
    assert len(out) < n / 8 < extracted / 16
    init_sums: dict[str, float] = defaultdict(float)
    crashed_sums: dict[str, float] = defaultdict(float)
    user_sets: dict[str, set[int]] = defaultdict(set)
    for b in out:
        release = b.tags["release"]
        if isinstance(b, CounterBucket) and b.tags["session.status"] == "init":
            init_sums[release] += b.value
        elif isinstance(b, CounterBucket) and b.tags["session.status"] == "crashed":
            crashed_sums[release] += b.value
        elif isinstance(b, SetBucket) and b.name == "s:sessions/user@none":
            user_sets[release].update(b.value)
    assert init_sums == {k: float(v) for k, v in expected_init.items() if v}
    assert crashed_sums == {k: float(v) for k, v in expected_crashed.items() if v}
    assert {k: len(v) for k, v in user_sets.items()} == {k: len(v) for k, v in users.items()}


# --- the service -------------------------------------------------------------------------


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_service_flushes_due_buckets_and_everything_on_stop() -> None:
    delivered: dict[str, list[Bucket]] = defaultdict(list)

    async def deliver(partition: int, by_project: dict[str, list[Bucket]]) -> None:
        assert partition == 0  # flush_batching: none
        for project_key, buckets in by_project.items():
            delivered[project_key].extend(buckets)

    clock = _Clock(float(T0))
    config = AggregatorConfig(bucket_interval=1, initial_delay=0, flush_batching="none")
    service = AggregatorService(config, deliver, clock=clock)
    await service.start()
    assert service.merge(KEY, [_counter(ts=T0), _counter(ts=T0)]) == 2
    assert service.merge(KEY, [_counter(ts=T0 + 30)]) == 1  # future: only on shutdown
    clock.now = T0 + 1.0
    assert await service.flush_now() == 1
    assert [b.value for b in delivered[KEY]] == [2.0]
    await service.stop(timeout=1)
    assert [b.timestamp for b in delivered[KEY]] == [T0, T0 + 30]
    assert not service.can_accept()


async def test_service_survives_failing_delivery() -> None:
    calls = 0

    async def deliver(partition: int, by_project: dict[str, list[Bucket]]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("upstream down")

    service = AggregatorService(AggregatorConfig(), deliver)
    await service.start()
    service.merge(KEY, [_counter(ts=int(datetime.now(UTC).timestamp()))])
    await service.stop(timeout=1)
    assert calls == 1 and service.failed_deliveries == 1


def test_metric_buckets_payloads_split() -> None:
    bucket = DistributionBucket(
        timestamp=T0, width=1, name="d:sessions/foo@none", value=[float(i) for i in range(17)]
    )
    payloads = list(metric_buckets_payloads([bucket], 200))
    assert [bucket_value_len(decode_buckets(p)[0]) for p in payloads] == [16, 1]
