"""The metrics aggregator: pure state that merges buckets and hands back the ones due.

Buckets merge when they share project key, rounded timestamp, name and tags. Each merged
bucket lives in a *flush slot*: the time axis is cut into ``bucket_interval`` windows, and
each window into ``P`` partitions; a project's buckets always use the same partition
(``flush_batching: project``), so one flush yields whole projects and the projects of a
window are spread over the window instead of all flushing at once. Slot ``s`` is due at
``(s + 1) * bucket_interval / P + initial_delay``.

Time is an argument (``now``, Unix seconds), never read implicitly by :meth:`flush`, so
the aggregator is deterministic under test. Memory is bounded by a cost estimate (the
same model as Relay's: key overhead + name + tags + values); past the budget new buckets
are rejected and counted while existing counters and gauges keep aggregating.
"""

from __future__ import annotations

import enum
import heapq
import math
import time
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final, Literal, NamedTuple

import msgspec

from relay.metrics.bucket import (
    Bucket,
    BucketMetadata,
    CounterBucket,
    DistributionBucket,
    GaugeBucket,
    GaugeValue,
    SetBucket,
    clamp_float,
    validate_bucket,
)
from relay.metrics.partition import partition_key

__all__ = [
    "Aggregator",
    "AggregatorConfig",
    "AggregatorStats",
    "FlushedPartition",
    "MergeOutcome",
]

FlushBatching = Literal["project", "bucket", "partition", "none"]

# Relay flushes 64 partitions per second of bucket interval unless configured otherwise.
_PARTITIONS_PER_SECOND: Final = 64
# Cost model (bytes), close to Relay's `BucketKey::cost` and `BucketValue::cost`.
_KEY_COST: Final = 96
_VALUE_COST: Final = 48
_DIST_VALUE_COST: Final = 8
_SET_VALUE_COST: Final = 4

_Key = tuple[str, int, str, tuple[tuple[str, str], ...]]
_Positive = Annotated[int, msgspec.Meta(ge=1)]
_NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class AggregatorConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``aggregator.*`` options, with Relay's names and defaults."""

    #: Width of a bucket in seconds; timestamps are rounded down to it.
    bucket_interval: _Positive = 10
    #: Seconds a bucket waits after its window before it is flushed.
    initial_delay: _NonNegative = 30
    max_secs_in_past: _NonNegative = 5 * 24 * 3600
    max_secs_in_future: _NonNegative = 60
    #: Budget for all buckets (estimated bytes); ``None`` is unlimited.
    max_total_bucket_bytes: _NonNegative | None = None
    #: Budget per project key.
    max_project_key_bucket_bytes: _NonNegative | None = None
    #: Partitions per window; ``None`` means 64 per second of ``bucket_interval``.
    flush_partitions: _NonNegative | None = None
    flush_batching: FlushBatching = "project"
    max_name_length: _NonNegative = 200
    max_tag_key_length: _NonNegative = 200
    max_tag_value_length: _NonNegative = 200
    #: Size limit of one upstream batch (estimated bytes, see ``split_by_size``).
    max_flush_bytes: _Positive = 5_000_000
    #: Upper bound (seconds) on how long the service sleeps between flush checks.
    flush_interval: float = 0.1

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> AggregatorConfig:
        """Build from a config section; Relay's alias ``shift_key`` and its ignored
        ``aggregator_size`` are understood, unknown keys raise ``msgspec.ValidationError``."""
        data = dict(options)
        data.pop("aggregator_size", None)
        if "shift_key" in data:
            data.setdefault("flush_batching", data.pop("shift_key"))
        return msgspec.convert(data, cls)

    @property
    def num_partitions(self) -> int:
        """Flush slots per bucket interval."""
        if self.flush_batching == "none":
            return 1
        if self.flush_partitions is None:
            return _PARTITIONS_PER_SECOND * self.bucket_interval
        return max(1, self.flush_partitions)


class FlushedPartition(NamedTuple):
    """The buckets of one flushed slot: its partition key, and buckets by project key."""

    partition_key: int
    buckets: dict[str, list[Bucket]]


class MergeOutcome(enum.Enum):
    """What happened to a bucket offered to :meth:`Aggregator.merge`."""

    ACCEPTED = "accepted"
    #: Name too long (``max_name_length``).
    INVALID = "invalid"
    #: Outside ``max_secs_in_past`` / ``max_secs_in_future``.
    INVALID_TIMESTAMP = "invalid_timestamp"
    #: Same name as an aggregated bucket but another type.
    INVALID_TYPE = "invalid_type"
    TOTAL_LIMIT = "total_limit"
    PROJECT_LIMIT = "project_limit"


class AggregatorStats(msgspec.Struct):
    """Counters since creation (for self-monitoring and benchmarks)."""

    #: Buckets merged into an existing bucket.
    merged: int = 0
    #: Buckets that created a new aggregated bucket.
    created: int = 0
    rejected: dict[str, int] = msgspec.field(default_factory=dict)
    flushed: int = 0

    @property
    def accepted(self) -> int:
        """Buckets taken in (merged or created)."""
        return self.merged + self.created

    @property
    def rejected_total(self) -> int:
        """Buckets refused for any reason."""
        return sum(self.rejected.values())


# --- aggregated values ----------------------------------------------------------------


class _Entry:
    """One aggregated bucket's value and metadata."""

    __slots__ = ("cost", "merges", "received_at")

    TYPE = ""

    def __init__(self, metadata: BucketMetadata | None, cost: int) -> None:
        self.merges = 1 if metadata is None else metadata.merges
        self.received_at = None if metadata is None else metadata.received_at
        self.cost = cost

    def merge_metadata(self, metadata: BucketMetadata | None) -> None:
        if metadata is None:
            self.merges += 1
            return
        self.merges += metadata.merges
        other = metadata.received_at
        if other is not None and (self.received_at is None or other < self.received_at):
            self.received_at = other

    def metadata(self) -> BucketMetadata | None:
        if self.merges == 1 and self.received_at is None:
            return None
        return BucketMetadata(merges=min(self.merges, 0xFFFFFFFF), received_at=self.received_at)

    def fields(self, key: _Key, width: int) -> dict[str, Any]:
        """The bucket fields every type shares: where, what and how merged."""
        return {
            "timestamp": key[1],
            "width": width,
            "name": key[2],
            "tags": dict(key[3]),
            "metadata": self.metadata(),
        }

    def reserve(self, bucket: Bucket) -> int:
        """Upper bound of the cost increase if ``bucket`` is merged."""
        return 0

    def merge(self, bucket: Bucket) -> int:
        """Merge the value; return the actual cost increase."""
        raise NotImplementedError

    def to_bucket(self, key: _Key, width: int) -> Bucket:
        raise NotImplementedError


class _Counter(_Entry):
    __slots__ = ("value",)
    TYPE = "c"

    def __init__(self, bucket: CounterBucket) -> None:
        super().__init__(bucket.metadata, _VALUE_COST)
        self.value = bucket.value

    def merge(self, bucket: Bucket) -> int:
        assert isinstance(bucket, CounterBucket)
        self.value = clamp_float(self.value + bucket.value)
        return 0

    def to_bucket(self, key: _Key, width: int) -> Bucket:
        return CounterBucket(**self.fields(key, width), value=self.value)


class _Distribution(_Entry):
    __slots__ = ("value",)
    TYPE = "d"

    def __init__(self, bucket: DistributionBucket) -> None:
        self.value = list(bucket.value)
        super().__init__(bucket.metadata, _VALUE_COST + _DIST_VALUE_COST * len(self.value))

    def reserve(self, bucket: Bucket) -> int:
        assert isinstance(bucket, DistributionBucket)
        return _DIST_VALUE_COST * len(bucket.value)

    def merge(self, bucket: Bucket) -> int:
        assert isinstance(bucket, DistributionBucket)
        self.value.extend(bucket.value)
        return _DIST_VALUE_COST * len(bucket.value)

    def to_bucket(self, key: _Key, width: int) -> Bucket:
        return DistributionBucket(**self.fields(key, width), value=self.value)


class _Set(_Entry):
    __slots__ = ("value",)
    TYPE = "s"

    def __init__(self, bucket: SetBucket) -> None:
        self.value = set(bucket.value)
        super().__init__(bucket.metadata, _VALUE_COST + _SET_VALUE_COST * len(self.value))

    def reserve(self, bucket: Bucket) -> int:
        assert isinstance(bucket, SetBucket)
        return _SET_VALUE_COST * len(bucket.value)

    def merge(self, bucket: Bucket) -> int:
        assert isinstance(bucket, SetBucket)
        before = len(self.value)
        self.value.update(bucket.value)
        return _SET_VALUE_COST * (len(self.value) - before)

    def to_bucket(self, key: _Key, width: int) -> Bucket:
        return SetBucket(**self.fields(key, width), value=sorted(self.value))


class _Gauge(_Entry):
    __slots__ = ("value",)
    TYPE = "g"

    def __init__(self, bucket: GaugeBucket) -> None:
        super().__init__(bucket.metadata, _VALUE_COST)
        v = bucket.value
        self.value = GaugeValue(v.last, v.min, v.max, v.sum, v.count)

    def merge(self, bucket: Bucket) -> int:
        assert isinstance(bucket, GaugeBucket)
        mine, other = self.value, bucket.value
        mine.last = other.last
        mine.min = min(mine.min, other.min)
        mine.max = max(mine.max, other.max)
        mine.sum = clamp_float(mine.sum + other.sum)
        mine.count += other.count
        return 0

    def to_bucket(self, key: _Key, width: int) -> Bucket:
        return GaugeBucket(**self.fields(key, width), value=self.value)


def _new_entry(bucket: Bucket) -> _Entry:
    if isinstance(bucket, CounterBucket):
        return _Counter(bucket)
    if isinstance(bucket, DistributionBucket):
        return _Distribution(bucket)
    if isinstance(bucket, SetBucket):
        return _Set(bucket)
    return _Gauge(bucket)


def _tags_cost(tags: tuple[tuple[str, str], ...]) -> int:
    return sum(len(k) + len(v) for k, v in tags)


# --- the aggregator -------------------------------------------------------------------


class Aggregator:
    """Merges buckets per (project key, timestamp, name, tags) and flushes them when due."""

    def __init__(self, config: AggregatorConfig | None = None, *, now: float | None = None):
        self.config = config or AggregatorConfig()
        self._interval = max(1, self.config.bucket_interval)
        self._partitions = self.config.num_partitions
        self._delay = self.config.initial_delay
        self._past_slots = math.ceil(self.config.max_secs_in_past / self._interval)
        self._future_slots = math.ceil(self.config.max_secs_in_future / self._interval)
        self._max_total = self.config.max_total_bucket_bytes
        self._max_project = self.config.max_project_key_bucket_bytes
        self._slots: dict[int, dict[_Key, _Entry]] = {}
        self._heap: list[int] = []
        # Slots below `_head` were flushed; late buckets are retargeted at or after it.
        self._head = self._slot_at(time.time() if now is None else now)
        self._cost_total = 0
        self._cost_by_project: dict[str, int] = {}
        self._count = 0
        self.stats = AggregatorStats()

    # -- introspection

    def __len__(self) -> int:
        return self._count

    @property
    def is_empty(self) -> bool:
        """Whether no bucket is waiting."""
        return self._count == 0

    @property
    def cost(self) -> int:
        """Estimated bytes held (the quantity the budgets limit)."""
        return self._cost_total

    def project_cost(self, project_key: str) -> int:
        """Estimated bytes held for one project key."""
        return self._cost_by_project.get(project_key, 0)

    def can_accept(self) -> bool:
        """False once the total budget is used up (Relay answers 503 to new metrics then)."""
        return self._max_total is None or self._cost_total < self._max_total

    def next_flush_at(self) -> float | None:
        """Unix time at which the earliest waiting bucket is due, or ``None`` if empty."""
        if not self._heap:
            return None
        return self._deadline(self._heap[0])

    # -- merging

    def merge(self, project_key: str, bucket: Bucket, now: float | None = None) -> MergeOutcome:
        """Offer one bucket. The bucket's tags may be trimmed in place (too long tags)."""
        outcome = self._merge(project_key, bucket, time.time() if now is None else now)
        if outcome is not MergeOutcome.ACCEPTED:
            rejected = self.stats.rejected
            rejected[outcome.value] = rejected.get(outcome.value, 0) + 1
        return outcome

    def merge_all(
        self, project_key: str, buckets: Iterable[Bucket], now: float | None = None
    ) -> int:
        """Offer many buckets of one project; return how many were accepted.

        Unlike Relay, a budget rejection does not stop the loop: later buckets that merge
        into existing counters still count, which keeps sums exact under pressure.
        """
        at = time.time() if now is None else now
        accepted = 0
        for bucket in buckets:
            if self.merge(project_key, bucket, at) is MergeOutcome.ACCEPTED:
                accepted += 1
        return accepted

    def _merge(self, project_key: str, bucket: Bucket, now: float) -> MergeOutcome:
        config = self.config
        if not validate_bucket(
            bucket,
            max_name_length=config.max_name_length,
            max_tag_key_length=config.max_tag_key_length,
            max_tag_value_length=config.max_tag_value_length,
        ):
            return MergeOutcome.INVALID
        interval = self._interval
        window = bucket.timestamp // interval
        now_window = int(now) // interval
        if window < now_window - self._past_slots or window > now_window + self._future_slots:
            return MergeOutcome.INVALID_TIMESTAMP

        tags = bucket.tags
        tag_items = tuple(sorted(tags.items())) if tags else ()
        key: _Key = (project_key, window * interval, bucket.name, tag_items)
        slot = self._slot_for(key, window)
        entries = self._slots.get(slot)
        entry = entries.get(key) if entries is not None else None

        if entry is not None:
            if entry.TYPE != bucket.TYPE:
                return MergeOutcome.INVALID_TYPE
            limited = self._check_budget(project_key, entry.reserve(bucket))
            if limited is not None:
                return limited
            self._add_cost(project_key, entry.merge(bucket))
            entry.merge_metadata(bucket.metadata)
            self.stats.merged += 1
            return MergeOutcome.ACCEPTED

        entry = _new_entry(bucket)
        cost = entry.cost + _KEY_COST + len(key[2]) + _tags_cost(tag_items)
        limited = self._check_budget(project_key, cost)
        if limited is not None:
            return limited
        entry.cost = cost
        if entries is None:
            entries = self._slots[slot] = {}
            heapq.heappush(self._heap, slot)
        entries[key] = entry
        self._add_cost(project_key, cost)
        self._count += 1
        self.stats.created += 1
        return MergeOutcome.ACCEPTED

    def _check_budget(self, project_key: str, cost: int) -> MergeOutcome | None:
        if self._max_total is not None and self._cost_total + cost > self._max_total:
            return MergeOutcome.TOTAL_LIMIT
        if (
            self._max_project is not None
            and self._cost_by_project.get(project_key, 0) + cost > self._max_project
        ):
            return MergeOutcome.PROJECT_LIMIT
        return None

    def _add_cost(self, project_key: str, cost: int) -> None:
        if cost:
            self._cost_total += cost
            by_project = self._cost_by_project
            by_project[project_key] = by_project.get(project_key, 0) + cost

    # -- slots

    def _partition(self, key: _Key) -> int:
        # Relay's own hash: the shard numbers sent upstream match a Rust relay's.
        return partition_key(
            self.config.flush_batching, self._partitions, key[0], key[1], key[2], key[3]
        )

    def _slot_for(self, key: _Key, window: int) -> int:
        partitions = self._partitions
        partition = self._partition(key)
        slot = window * partitions + partition
        head = self._head
        if slot < head:
            # Its time has passed: the next slot of the same partition, so a project's
            # late buckets still flush together.
            slot = head + (partition - head) % partitions
        return slot

    def _slot_at(self, now: float) -> int:
        """The first slot whose deadline is after ``now``."""
        return math.floor((now - self._delay) * self._partitions / self._interval)

    def _deadline(self, slot: int) -> float:
        return (slot + 1) * self._interval / self._partitions + self._delay

    # -- flushing

    def flush(self, now: float | None = None) -> dict[str, list[Bucket]]:
        """Remove and return the buckets due at ``now``, grouped by project key."""
        return _by_project(self.flush_partitions(now))

    def flush_all(self) -> dict[str, list[Bucket]]:
        """Remove and return every bucket (shutdown)."""
        return _by_project(self.flush_all_partitions())

    def flush_partitions(self, now: float | None = None) -> list[FlushedPartition]:
        """Remove the buckets due at ``now``: one entry per due slot, oldest first.

        Each entry is the slot's partition key (``X-Sentry-Relay-Shard``) and its buckets
        grouped by project key; a partition may appear once per due time window.
        """
        target = self._slot_at(time.time() if now is None else now)
        out: list[FlushedPartition] = []
        heap = self._heap
        while heap and heap[0] < target:
            out.append(self._drain(heapq.heappop(heap)))
        if target > self._head:
            self._head = target
        return out

    def flush_all_partitions(self) -> list[FlushedPartition]:
        """Remove every bucket (shutdown), as :meth:`flush_partitions` groups them."""
        out: list[FlushedPartition] = []
        while self._heap:
            out.append(self._drain(heapq.heappop(self._heap)))
        return out

    def _drain(self, slot: int) -> FlushedPartition:
        out: dict[str, list[Bucket]] = {}
        entries = self._slots.pop(slot)
        width = self._interval
        by_project = self._cost_by_project
        for key, entry in entries.items():
            project_key = key[0]
            out.setdefault(project_key, []).append(entry.to_bucket(key, width))
            remaining = by_project[project_key] - entry.cost
            if remaining > 0:
                by_project[project_key] = remaining
            else:
                del by_project[project_key]
            self._cost_total -= entry.cost
        self._count -= len(entries)
        self.stats.flushed += len(entries)
        return FlushedPartition(slot % self._partitions, out)


def _by_project(partitions: Iterable[FlushedPartition]) -> dict[str, list[Bucket]]:
    out: dict[str, list[Bucket]] = {}
    for partition in partitions:
        for project_key, buckets in partition.buckets.items():
            out.setdefault(project_key, []).extend(buckets)
    return out
