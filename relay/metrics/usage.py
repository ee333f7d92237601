"""Usage metrics of a transaction: the ``c:spans/usage@none`` counters Relay extracts.

One counter per span, the transaction itself counting as its segment span. They carry
the billing counts (spans, and transactions through ``is_segment``/``was_transaction``) of
a transaction whose payload is not stored, e.g. one dynamic sampling dropped: the relay
that stores metrics turns them into ``accepted`` outcomes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from relay.metrics.bucket import BucketMetadata, CounterBucket

__all__ = ["SPAN_USAGE_METRIC", "span_usage_buckets", "usage_bucket_counts"]

SPAN_USAGE_METRIC: Final = "c:spans/usage@none"


def _end_timestamp(value: Any) -> int | None:
    """A span's end as whole Unix seconds; None when it has no valid one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        seconds = moment.timestamp()
    else:
        return None
    if not 0 <= seconds < 2**63:
        return None
    return int(seconds)


def _usage(timestamp: int, received_at: int, *, segment: bool) -> CounterBucket:
    tags = {"is_segment": "true" if segment else "false"}
    if segment:
        # The segment span of a transaction event was a transaction.
        tags["was_transaction"] = "true"
    return CounterBucket(
        timestamp=timestamp,
        width=0,
        name=SPAN_USAGE_METRIC,
        tags=tags,
        value=1.0,
        metadata=BucketMetadata(merges=1, received_at=received_at),
    )


def span_usage_buckets(event: Mapping[str, Any], received_at: int) -> list[CounterBucket]:
    """The usage counters of a (normalized) transaction event and its child spans.

    Spans without a valid end timestamp count nothing, as in Relay.
    """
    buckets: list[CounterBucket] = []
    end = _end_timestamp(event.get("timestamp"))
    if end is not None:
        buckets.append(_usage(end, received_at, segment=True))
    spans = event.get("spans")
    if isinstance(spans, list):
        for span in spans:
            if not isinstance(span, Mapping):
                continue
            span_end = _end_timestamp(span.get("timestamp"))
            if span_end is not None:
                buckets.append(_usage(span_end, received_at, segment=False))
    return buckets


def usage_bucket_counts(name: str, value: Any, tags: Mapping[str, str]) -> tuple[int, int]:
    """``(spans, transactions)`` a received bucket accounts for (0, 0: not a usage counter).

    A segment's count is also a transaction's, as the relay storing metrics bills it.
    """
    if name != SPAN_USAGE_METRIC or isinstance(value, bool):
        return 0, 0
    if not isinstance(value, int | float) or not 0 < value < 2**63:
        return 0, 0
    count = int(value)
    return count, count if tags.get("is_segment") == "true" else 0
