"""Outcome aggregation per time slot, as Relay's outcome buckets behave."""

from __future__ import annotations

import asyncio
import time

import pytest

from relay.config import config_from_dict
from relay.server.outcome_aggregator import AggregatedOutcome, OutcomeAggregator, Scoping
from relay.server.outcomes import OutcomeSink

SCOPE = Scoping("k" * 32, 42, 1, 123)


async def _noop(_: list[AggregatedOutcome]) -> None:
    return None


def test_same_slot_sums_and_other_keys_stay_apart() -> None:
    now = 1_000_005.0
    agg = OutcomeAggregator(_noop, bucket_interval=10, initial_delay=5, clock=lambda: now)
    agg.add(SCOPE, 1, "release-version", 1, 2, timestamp=now)
    agg.add(SCOPE, 1, "release-version", 1, 3, timestamp=now + 4)
    agg.add(SCOPE, 1, "error-message", 1, 1, timestamp=now)
    agg.add(SCOPE, 1, "release-version", 1, 7, timestamp=now + 10)
    # Slot 1_000_000 closes at +10 and is due initial_delay later.
    assert agg.take_due(1_000_014.0) == []
    due = dict(agg.take_due(1_000_015.0))
    assert {(k.timestamp, k.reason): q for k, q in due.items()} == {
        (1_000_000, "release-version"): 5,
        (1_000_000, "error-message"): 1,
    }
    assert [q for _, q in agg.take_due(1_000_030.0)] == [7]


def test_out_of_range_timestamps_are_refused() -> None:
    agg = OutcomeAggregator(_noop, max_secs_in_future=60, clock=lambda: 1_000_000.0)
    assert not agg.add(SCOPE, 5, "x", 1, 1, timestamp=1_000_000.0 + 3600)
    assert not agg.add(SCOPE, 5, "x", 1, 1, timestamp=1.0)
    assert agg.rejected == 2 and len(agg) == 0


@pytest.mark.asyncio
async def test_flushes_in_background_and_on_stop() -> None:
    flushed: list[AggregatedOutcome] = []

    async def flush(batch: list[AggregatedOutcome]) -> None:
        flushed.extend(batch)

    agg = OutcomeAggregator(flush, bucket_interval=1, initial_delay=0)
    agg.add(SCOPE, 3, "invalid_json", 1, 1, timestamp=time.time() - 5)
    await asyncio.sleep(0.3)
    assert [q for _, q in flushed] == [1]
    agg.add(SCOPE, 3, "invalid_json", 1, 4)
    await agg.stop(1.0)
    assert [q for _, q in flushed] == [1, 4]


def test_sink_modes_follow_emit_outcomes() -> None:
    def mode(data: dict[str, object]) -> str:
        return OutcomeSink(config_from_dict(data)).mode

    assert mode({}) == "client_reports"
    assert mode({"outcomes": {"emit_outcomes": True}}) == "metrics"
    assert mode({"outcomes": {"emit_outcomes": False}}) == "none"
    assert mode({"processing": {"enabled": True}}) == "kafka"
