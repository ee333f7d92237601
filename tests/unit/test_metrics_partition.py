"""Flush partitions (``X-Sentry-Relay-Shard``) as Relay computes them, and keyed batching."""

from __future__ import annotations

import pytest

from relay.metrics import AggregatorConfig, CounterBucket, DistributionBucket
from relay.metrics.aggregator import Aggregator
from relay.metrics.bucket import split_keyed
from relay.metrics.partition import RelayHasher, partition_hash, partition_key

# The key and bucket of Relay's own test_metrics_partition_key, whose expected shards
# (15 of 64 partitions, 79 of 128) were produced by a Rust relay.
KEY = "31a5a894b4524f74a9a8d0e27e21ba91"
NAME = "c:sessions/foo@none"
T0 = 1_700_000_000


def test_partition_matches_rust_relay() -> None:
    assert partition_key("partition", 64, KEY, 999994711, NAME, ()) == 15
    assert partition_key("partition", 128, KEY, 999994711, NAME, ()) == 79


def test_partition_ignores_timestamp_unless_bucket_batching() -> None:
    a = partition_hash("partition", KEY, 10, NAME, ())
    assert a == partition_hash("partition", KEY, 20, NAME, ())
    assert partition_hash("bucket", KEY, 10, NAME, ()) != partition_hash(
        "bucket", KEY, 20, NAME, ()
    )


def test_partition_depends_on_tags_not_their_order() -> None:
    tags = [("release", "1.0"), ("environment", "prod")]
    a = partition_hash("partition", KEY, 0, NAME, tags)
    assert a == partition_hash("partition", KEY, 0, NAME, list(reversed(tags)))
    assert a != partition_hash("partition", KEY, 0, NAME, ())


def test_project_batching_depends_only_on_the_key() -> None:
    assert partition_hash("project", KEY, 0, NAME, ()) == partition_hash(
        "project", KEY, 99, "d:spans/x@none", [("a", "b")]
    )


@pytest.mark.parametrize("batching", ["none", "partition"])
def test_single_partition_is_zero(batching: str) -> None:
    assert partition_key(batching, 1, KEY, 0, NAME, ()) == 0
    assert partition_key("none", 64, KEY, 0, NAME, ()) == 0


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 7, 8, 9, 16, 17, 31, 32, 33, 100])
def test_hasher_distinguishes_lengths(size: int) -> None:
    # Every size class of `write_bytes` is exercised; appending a byte changes the hash.
    one, two = RelayHasher(), RelayHasher()
    one.write_bytes(b"x" * size)
    two.write_bytes(b"x" * (size + 1))
    assert one.finish() != two.finish()
    assert 0 <= one.finish() < 2**64


def test_aggregator_flushes_with_partition_keys() -> None:
    config = AggregatorConfig(
        bucket_interval=1, initial_delay=0, flush_batching="partition", flush_partitions=128
    )
    agg = Aggregator(config, now=T0)
    agg.merge(KEY, CounterBucket(timestamp=T0, width=0, name=NAME, value=1.0), now=T0)
    flushed = agg.flush_all_partitions()
    assert [(p.partition_key, list(p.buckets)) for p in flushed] == [(79, [KEY])]
    assert agg.is_empty


def test_aggregator_flush_by_project_still_groups_partitions() -> None:
    config = AggregatorConfig(bucket_interval=1, initial_delay=0, flush_batching="partition")
    agg = Aggregator(config, now=T0)
    for name in ("c:sessions/a@none", "c:sessions/b@none", "c:sessions/c@none"):
        agg.merge(KEY, CounterBucket(timestamp=T0, width=0, name=name, value=1.0), now=T0)
    assert sorted(b.name for b in agg.flush(T0 + 5)[KEY]) == [
        "c:sessions/a@none",
        "c:sessions/b@none",
        "c:sessions/c@none",
    ]


def test_split_keyed_shares_batches_and_splits_values() -> None:
    dist = DistributionBucket(
        timestamp=T0, width=1, name="d:spans/foo@none", value=[float(i) for i in range(17)]
    )
    counter = CounterBucket(timestamp=T0, width=1, name="c:spans/foo@none", value=1.0)
    batches = list(split_keyed([("a", counter), ("b", dist)], 200))
    # 66 bytes for the counter's base + 8; the distribution fills the rest, then continues.
    assert [[key for key, _ in batch] for batch in batches] == [["a", "b"], ["b"]]
    values = [
        len(b.value) for batch in batches for _, b in batch if isinstance(b, DistributionBucket)
    ]
    assert sum(values) == 17
    first, second = (b for batch in batches for _, b in batch if isinstance(b, DistributionBucket))
    assert first.merges == 1 and second.merges == 0
