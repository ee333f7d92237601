"""Metric buckets in Relay's JSON format, their validation and size-bounded batching.

A bucket is one of four msgspec Structs tagged by ``type``::

    {"timestamp": 1615889440, "width": 10, "name": "c:sessions/session@none",
     "type": "c", "value": 4.0, "tags": {...}, "metadata": {"merges": 1, ...}}

Counters hold a float, distributions a list of floats, sets a list of u32 hashes and
gauges ``{last, min, max, sum, count}``. Decoding a ``metric_buckets`` payload fails as a
whole when one bucket is malformed, as in Relay.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated, ClassVar, Final, TypeVar

import msgspec

from relay.metrics.mri import (
    UNSUPPORTED,
    ParseMetricError,
    is_valid_tag_key,
    metric_namespace,
    normalize_tag_value,
    parse_mri,
)
from relay.normalize.meta import utf8_len

__all__ = [
    "Bucket",
    "BucketMetadata",
    "CounterBucket",
    "DistributionBucket",
    "GaugeBucket",
    "GaugeValue",
    "SetBucket",
    "apply_clock_drift",
    "bucket_value_len",
    "decode_buckets",
    "encode_buckets",
    "estimated_size",
    "hash_set_value",
    "is_valid_namespace",
    "normalize_bucket",
    "prepare_buckets",
    "split_by_size",
    "split_keyed",
    "validate_bucket",
]

U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]

_FLOAT_MAX: Final = sys.float_info.max
_K = TypeVar("_K")


class GaugeValue(msgspec.Struct):
    """Summary of gauge observations: the last one plus min, max, sum and count."""

    last: float
    min: float
    max: float
    sum: float
    count: NonNegative

    @classmethod
    def single(cls, value: float) -> GaugeValue:
        """A gauge with one observation."""
        return cls(value, value, value, value, 1)


class BucketMetadata(msgspec.Struct, frozen=True):
    """Relay-internal bucket metadata: how often it was merged, and when first received."""

    merges: Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
    received_at: NonNegative | None = None


class _BucketBase(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type"):
    timestamp: NonNegative
    width: NonNegative
    name: str
    tags: dict[str, str] = {}
    #: ``None`` stands for Relay's default metadata (one merge, no receive time).
    metadata: BucketMetadata | None = None

    TYPE: ClassVar[str]

    @property
    def namespace(self) -> str:
        """The MRI namespace (``sessions``...), or ``unsupported``."""
        return metric_namespace(self.name)

    @property
    def merges(self) -> int:
        """How many buckets were merged into this one (1 when never merged)."""
        return 1 if self.metadata is None else self.metadata.merges

    @property
    def received_at(self) -> int | None:
        """When the oldest merged input was received by the outermost internal relay."""
        return None if self.metadata is None else self.metadata.received_at


class CounterBucket(_BucketBase, tag="c"):
    """A counter: the sum of all values."""

    value: float
    TYPE: ClassVar[str] = "c"


class DistributionBucket(_BucketBase, tag="d"):
    """A distribution: every observed value."""

    value: list[float]
    TYPE: ClassVar[str] = "d"


class SetBucket(_BucketBase, tag="s"):
    """A set of 32-bit hashes of unique values."""

    value: list[U32]
    TYPE: ClassVar[str] = "s"

    def __post_init__(self) -> None:
        # Relay keeps set members in a BTreeSet: unique and ascending on the wire.
        value = self.value
        if len(value) > 1:
            self.value = sorted(set(value))


class GaugeBucket(_BucketBase, tag="g"):
    """A gauge summary."""

    value: GaugeValue
    TYPE: ClassVar[str] = "g"


Bucket = CounterBucket | DistributionBucket | SetBucket | GaugeBucket

_decoder = msgspec.json.Decoder(list[Bucket])
_encoder = msgspec.json.Encoder()


def decode_buckets(payload: bytes) -> list[Bucket]:
    """Decode a ``metric_buckets`` payload; raises ``msgspec.DecodeError`` on any bad bucket."""
    return _decoder.decode(payload)


def encode_buckets(buckets: Sequence[Bucket]) -> bytes:
    """Encode buckets as a ``metric_buckets`` payload (a JSON list)."""
    return _encoder.encode(buckets)


def hash_set_value(value: str) -> int:
    """32-bit FNV-1a of the UTF-8 bytes: how Relay turns set members into integers."""
    h = 0x811C9DC5
    for byte in value.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def clamp_float(value: float) -> float:
    """Saturate an overflowing sum like Relay's ``FiniteF64::saturating_add``."""
    if math.isfinite(value):
        return value
    return _FLOAT_MAX if value > 0 else -_FLOAT_MAX


# --- validation -----------------------------------------------------------------------


def normalize_bucket(bucket: Bucket) -> bool:
    """Relay's ``normalize_bucket``: canonical MRI name and clean tags, in place.

    Returns ``False`` when the name is not an MRI or its namespace is unsupported; the
    bucket must then be dropped.
    """
    try:
        mri = parse_mri(bucket.name)
    except ParseMetricError:
        return False
    if mri.namespace == UNSUPPORTED:
        return False
    bucket.name = str(mri)
    tags = bucket.tags
    if tags:
        clean: dict[str, str] = {}
        for key, value in tags.items():
            if is_valid_tag_key(key):
                clean[key] = normalize_tag_value(value)
        bucket.tags = clean
    return True


def is_valid_namespace(bucket: Bucket, *, internal: bool) -> bool:
    """Session buckets are accepted from anyone; spans, transactions and outcomes only
    from internal sources (this relay's own extraction, or a static internal relay)."""
    namespace = bucket.namespace
    if namespace == "sessions":
        return True
    if namespace in ("spans", "transactions", "outcomes"):
        return internal
    return False


def validate_bucket(
    bucket: Bucket,
    *,
    max_name_length: int = 200,
    max_tag_key_length: int = 200,
    max_tag_value_length: int = 200,
) -> bool:
    """The aggregator's admission check: too long names drop the bucket, too long tags
    drop the tag. Key and name lengths are in bytes, values in characters (as Relay)."""
    if utf8_len(bucket.name) > max_name_length:
        return False
    tags = bucket.tags
    if tags and any(
        utf8_len(k) > max_tag_key_length or len(v) > max_tag_value_length for k, v in tags.items()
    ):
        bucket.tags = {
            k: v
            for k, v in tags.items()
            if utf8_len(k) <= max_tag_key_length and len(v) <= max_tag_value_length
        }
    return True


def apply_clock_drift(bucket: Bucket, drift_secs: int) -> None:
    """Shift a bucket's timestamp by a client's clock drift (whole seconds, floored at 0)."""
    if drift_secs:
        bucket.timestamp = max(0, bucket.timestamp + drift_secs)


def prepare_buckets(
    buckets: Iterable[Bucket],
    *,
    internal: bool,
    received_at: int,
    drift_secs: int = 0,
) -> list[Bucket]:
    """What a relay does to received buckets before aggregating them.

    Normalizes names and tags, drops unsupported or (for untrusted senders) internal-only
    namespaces, corrects clock drift and, unless the sender is internal, restarts the
    metadata at this relay (one merge, received now). ``drift_secs`` is
    ``received_at - sent_at`` when that exceeds Relay's minimum drift (55 minutes), else 0.
    """
    out: list[Bucket] = []
    for bucket in buckets:
        if not normalize_bucket(bucket):
            continue
        if not is_valid_namespace(bucket, internal=internal):
            continue
        apply_clock_drift(bucket, drift_secs)
        if not internal:
            bucket.metadata = BucketMetadata(merges=1, received_at=received_at)
        out.append(bucket)
    return out


# --- size-bounded batching ------------------------------------------------------------

# Relay's estimate of a serialized bucket: fixed overhead + name + tags + 8 bytes a value.
_BUCKET_SIZE: Final = 50
_AVG_VALUE_SIZE: Final = 8
# Buckets smaller than this fraction of the batch size are not worth splitting.
_SPLIT_FACTOR: Final = 32


def bucket_value_len(bucket: Bucket) -> int:
    """Number of values: 1 for counters, 5 for gauges, the member count otherwise."""
    if isinstance(bucket, CounterBucket):
        return 1
    if isinstance(bucket, GaugeBucket):
        return 5
    return len(bucket.value)


def _base_size(bucket: Bucket) -> int:
    tags = bucket.tags
    tag_cost = sum(utf8_len(k) + utf8_len(v) for k, v in tags.items()) if tags else 0
    return _BUCKET_SIZE + utf8_len(bucket.name) + tag_cost


def estimated_size(bucket: Bucket) -> int:
    """Relay's size estimate for batching (not the exact JSON length)."""
    return _base_size(bucket) + bucket_value_len(bucket) * _AVG_VALUE_SIZE


def _part(bucket: DistributionBucket | SetBucket, start: int, end: int) -> Bucket:
    """A slice of a bucket's values; only the first slice carries the merge count."""
    if start == 0 and end == len(bucket.value):
        return bucket
    metadata = bucket.metadata
    if start > 0:
        received = None if metadata is None else metadata.received_at
        metadata = BucketMetadata(merges=0, received_at=received)
    return msgspec.structs.replace(bucket, value=bucket.value[start:end], metadata=metadata)


def split_by_size(buckets: Sequence[Bucket], max_bytes: int) -> Iterator[list[Bucket]]:
    """Batches of at most ``max_bytes`` (estimated), splitting large distributions and sets.

    Counters and gauges are never split. As in Relay, batching stops at the first bucket
    that cannot fit even into an empty batch; the remaining buckets are not yielded.
    """
    for batch in split_keyed([(None, bucket) for bucket in buckets], max_bytes):
        yield [bucket for _, bucket in batch]


def split_keyed(
    items: Sequence[tuple[_K, Bucket]], max_bytes: int
) -> Iterator[list[tuple[_K, Bucket]]]:
    """:func:`split_by_size` for buckets that carry a key (their project key, say).

    Buckets of different keys share batches, in order; a split bucket keeps its key.
    """
    index = 0
    offset = 0  # values of items[index] already emitted
    min_split = max_bytes // _SPLIT_FACTOR
    while index < len(items):
        batch: list[tuple[_K, Bucket]] = []
        remaining = max_bytes
        while index < len(items):
            key, bucket = items[index]
            total = bucket_value_len(bucket)
            base = _base_size(bucket)
            size = base + (total - offset) * _AVG_VALUE_SIZE
            if size <= remaining:
                if isinstance(bucket, DistributionBucket | SetBucket):
                    batch.append((key, _part(bucket, offset, total)))
                else:
                    batch.append((key, bucket))
                remaining -= size
                index += 1
                offset = 0
                continue
            if not isinstance(bucket, DistributionBucket | SetBucket):
                break
            if remaining < base + _AVG_VALUE_SIZE or size < min_split:
                break
            take = (remaining - base) // _AVG_VALUE_SIZE
            batch.append((key, _part(bucket, offset, offset + take)))
            offset += take
            break
        if not batch:
            return
        yield batch
