"""Metric buckets, the aggregator and session extraction (pure: no I/O, no clocks read
except as defaults for ``now``).

- :mod:`relay.metrics.mri`: metric resource identifiers, units, tag cleaning.
- :mod:`relay.metrics.bucket`: the bucket wire model, validation, size-bounded batching.
- :mod:`relay.metrics.aggregator`: :class:`Aggregator` and its config.
- :mod:`relay.metrics.partition`: Relay's flush partition (shard) of a bucket.
- :mod:`relay.metrics.sessions`: session items to ``sessions`` metrics.
"""

from relay.metrics.aggregator import (
    Aggregator,
    AggregatorConfig,
    AggregatorStats,
    FlushedPartition,
    MergeOutcome,
)
from relay.metrics.bucket import (
    Bucket,
    BucketMetadata,
    CounterBucket,
    DistributionBucket,
    GaugeBucket,
    GaugeValue,
    SetBucket,
    decode_buckets,
    encode_buckets,
    hash_set_value,
    is_valid_namespace,
    normalize_bucket,
    prepare_buckets,
    split_by_size,
    validate_bucket,
)
from relay.metrics.mri import MetricResourceIdentifier, ParseMetricError, parse_mri
from relay.metrics.sessions import (
    InvalidSession,
    ParsedSessions,
    SessionContext,
    extract_sessions_metrics,
    normalize_sessions,
    parse_sessions,
    process_sessions,
    session_metrics_enabled,
    should_extract_sessions,
)

__all__ = [
    "Aggregator",
    "AggregatorConfig",
    "AggregatorStats",
    "Bucket",
    "BucketMetadata",
    "CounterBucket",
    "DistributionBucket",
    "FlushedPartition",
    "GaugeBucket",
    "GaugeValue",
    "InvalidSession",
    "MergeOutcome",
    "MetricResourceIdentifier",
    "ParseMetricError",
    "ParsedSessions",
    "SessionContext",
    "SetBucket",
    "decode_buckets",
    "encode_buckets",
    "extract_sessions_metrics",
    "hash_set_value",
    "is_valid_namespace",
    "normalize_bucket",
    "normalize_sessions",
    "parse_mri",
    "parse_sessions",
    "prepare_buckets",
    "process_sessions",
    "session_metrics_enabled",
    "should_extract_sessions",
    "split_by_size",
    "validate_bucket",
]
