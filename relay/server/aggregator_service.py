"""The metrics aggregator service: an :class:`~relay.metrics.Aggregator` plus a flush task.

Producers (the session extractor, the ``metric_buckets`` item handler, the batch
endpoint) call :meth:`AggregatorService.merge`, which is synchronous and cheap. A
background task flushes the buckets that are due and hands them, one flush partition at a
time, to the ``deliver`` callback with the partition key (Relay's ``X-Sentry-Relay-Shard``)
and the partition's buckets by project key:

- POP relays: ``deliver`` sends the buckets upstream as ``metric_buckets`` envelope items
  (or global batches), split with :func:`metric_buckets_payloads` by
  ``aggregator.max_flush_bytes``;
- processing relays: ``deliver`` writes one ``ingest-metrics`` message per bucket
  (:func:`to_kafka_bucket` adapts a bucket to ``relay.kafka.metrics``).

Deliveries run as tasks, at most ``max_deliveries`` at a time; when they lag the flush
loop waits, while merging goes on. On :meth:`stop` everything left is flushed and
delivered within the timeout (Relay flushes its aggregator on shutdown too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator

from relay.kafka.metrics import MetricBucket
from relay.metrics import (
    Aggregator,
    AggregatorConfig,
    Bucket,
    FlushedPartition,
    encode_buckets,
    split_by_size,
)
from relay.metrics.aggregator import AggregatorStats, MergeOutcome

__all__ = [
    "AggregatorService",
    "Deliver",
    "metric_buckets_payloads",
    "to_kafka_bucket",
]

log = logging.getLogger(__name__)

#: Receives one flushed partition: its key and its buckets by project key.
Deliver = Callable[[int, dict[str, list[Bucket]]], Awaitable[None]]

# Never spin faster than this, whatever the partition count says.
_MIN_SLEEP = 0.005


def metric_buckets_payloads(buckets: list[Bucket], max_flush_bytes: int) -> Iterator[bytes]:
    """``metric_buckets`` item payloads of at most ``max_flush_bytes`` (estimated) each.

    Large distributions and sets are split across payloads; a bucket too large for any
    payload ends the sequence, as in Relay.
    """
    for batch in split_by_size(buckets, max_flush_bytes):
        yield encode_buckets(batch)


def to_kafka_bucket(bucket: Bucket) -> MetricBucket:
    """The same bucket as the ``ingest-metrics`` encoder's model."""
    value: object
    if isinstance(bucket.value, list | float):
        value = bucket.value
    else:
        gauge = bucket.value
        value = {
            "last": gauge.last,
            "min": gauge.min,
            "max": gauge.max,
            "sum": gauge.sum,
            "count": gauge.count,
        }
    metadata = bucket.metadata
    return MetricBucket(
        timestamp=bucket.timestamp,
        name=bucket.name,
        type=bucket.TYPE,
        value=value,
        width=bucket.width,
        tags=bucket.tags,
        metadata=None
        if metadata is None
        else {"merges": metadata.merges, "received_at": metadata.received_at},
    )


class AggregatorService:
    """Owns an aggregator and flushes it periodically into ``deliver``."""

    def __init__(
        self,
        config: AggregatorConfig,
        deliver: Deliver,
        *,
        name: str = "default",
        max_deliveries: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.config = config
        self._deliver = deliver
        self._clock = clock
        self.aggregator = Aggregator(config, now=clock())
        self._slots = asyncio.Semaphore(max_deliveries)
        self._deliveries: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Deliveries that raised (their buckets are lost; logged).
        self.failed_deliveries = 0
        #: Seconds spent merging and flushing (relay.server.autoscaling reads it).
        self.busy_seconds = 0.0
        #: When a bucket was last refused for the total budget (None: since the last flush
        #: that freed memory, none was). Relay's readiness probe fails meanwhile.
        self._over_budget_since: float | None = None
        partitions = config.num_partitions
        # Wake at least once per partition slot, and at most every `flush_interval`.
        self._tick = max(
            _MIN_SLEEP, min(config.flush_interval, config.bucket_interval / partitions, 1.0)
        )

    @property
    def stats(self) -> AggregatorStats:
        """The aggregator's counters."""
        return self.aggregator.stats

    def can_accept(self) -> bool:
        """False while the aggregator is over its byte budget or shutting down.

        As in Relay, a bucket refused for ``max_total_bucket_bytes`` makes the aggregator
        (and the relay's readiness) unhealthy until a flush frees memory.
        """
        return (
            not self._stopping and self._over_budget_since is None and self.aggregator.can_accept()
        )

    def merge(self, project_key: str, buckets: Iterable[Bucket]) -> int:
        """Aggregate buckets of one project; return how many were accepted.

        Callers should have run :func:`relay.metrics.prepare_buckets` (received buckets) or
        produced the buckets themselves (extraction). After :meth:`stop` began, buckets
        still merge and are picked up by the final flush.
        """
        started = time.perf_counter()
        now = self._clock()
        aggregator = self.aggregator
        accepted = 0
        total_limited = project_limited = False
        for bucket in buckets:
            outcome = aggregator.merge(project_key, bucket, now)
            if outcome is MergeOutcome.ACCEPTED:
                accepted += 1
            elif outcome is MergeOutcome.TOTAL_LIMIT:
                total_limited = True
            elif outcome is MergeOutcome.PROJECT_LIMIT:
                project_limited = True
        # One error per call, with Relay's messages (self-reporting turns them into events).
        if total_limited:
            self._over_budget_since = now
            log.error("aggregator limit exceeded", extra={"aggregator": self.name})
        if project_limited:
            log.error("project metrics limit exceeded for project %s", project_key)
        self.busy_seconds += time.perf_counter() - started
        return accepted

    async def start(self) -> None:
        """Start the flush task."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"aggregator-{self.name}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the flush task, flush everything and wait for deliveries (bounded)."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for partition in self.aggregator.flush_all_partitions():
            self._spawn(partition)
        pending = set(self._deliveries)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        if late:
            lost = len(late)
            log.error("aggregator %s: %d deliveries unfinished at shutdown", self.name, lost)
            for delivery in late:
                delivery.cancel()

    async def flush_now(self) -> int:
        """Flush what is due now and wait for its delivery (for tests); returns buckets."""
        due = self.aggregator.flush_partitions(self._clock())
        for partition in due:
            self._spawn(partition)
        if self._deliveries:
            await asyncio.wait(set(self._deliveries))
        return sum(len(b) for p in due for b in p.buckets.values())

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            now = self._clock()
            due = self.aggregator.flush_partitions(now)
            self._recover_budget(now, bool(due))
            self.busy_seconds += time.perf_counter() - started
            for index, partition in enumerate(due):
                # Backpressure: a slow next hop slows flushing, not merging.
                try:
                    await self._slots.acquire()
                except asyncio.CancelledError:
                    # Stopping: these buckets left the aggregator already; stop() waits
                    # for their deliveries like for the final flush.
                    for rest in due[index:]:
                        self._spawn(rest)
                    raise
                self._spawn(partition, acquired=True)
            next_at = self.aggregator.next_flush_at()
            sleep = self._tick
            if next_at is not None:
                sleep = min(sleep, max(next_at - self._clock(), 0.0))
            await asyncio.sleep(max(sleep, _MIN_SLEEP))

    def _recover_budget(self, now: float, flushed: bool) -> None:
        """Accept again once a flush freed memory, or (nothing left to free) once the
        refused buckets' window would have been flushed."""
        since = self._over_budget_since
        if since is None:
            return
        window = self.config.bucket_interval + self.config.initial_delay
        if flushed or (self.aggregator.is_empty and now >= since + window):
            self._over_budget_since = None

    def _spawn(self, partition: FlushedPartition, *, acquired: bool = False) -> None:
        task = asyncio.create_task(self._deliver_one(partition, acquired))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver_one(self, partition: FlushedPartition, acquired: bool) -> None:
        try:
            await self._deliver(partition.partition_key, partition.buckets)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failed_deliveries += 1
            log.exception(
                "aggregator %s: delivering partition %d (%d projects) failed",
                self.name,
                partition.partition_key,
                len(partition.buckets),
            )
        finally:
            if acquired:
                self._slots.release()
