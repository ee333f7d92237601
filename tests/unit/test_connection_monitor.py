"""Network outage detection (relay.server.connection_monitor): grace period, probing, recovery."""

from __future__ import annotations

import asyncio

from relay.server.connection_monitor import ConnectionMonitor


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Probe:
    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.answers.pop(0) if self.answers else True


async def test_errors_within_the_grace_period_are_no_outage() -> None:
    clock = _Clock()
    monitor = ConnectionMonitor(10.0, 1.0, _Probe([]), clock=clock)
    monitor.notify_error()
    clock.now += 9.0
    monitor.notify_error()
    assert not monitor.is_outage
    # A request that got through ends the interruption: the grace period starts over.
    monitor.reset_error()
    clock.now += 5.0
    monitor.notify_error()
    assert not monitor.is_outage


async def test_outage_probes_until_the_upstream_answers() -> None:
    clock = _Clock()
    probe = _Probe([False])
    monitor = ConnectionMonitor(1.0, 0.01, probe, clock=clock)
    monitor.notify_error()
    clock.now += 1.0
    monitor.notify_error()
    assert monitor.is_outage
    # Requests wait for the end of the outage, bounded by their timeout.
    assert await monitor.wait_connected(5.0)
    assert not monitor.is_outage
    # The first probe is immediate and failed; the second (after a backoff) got through.
    assert probe.calls == 2


async def test_wait_connected_times_out_while_the_upstream_is_down() -> None:
    clock = _Clock()
    probe = _Probe([False] * 1000)
    monitor = ConnectionMonitor(0.0, 60.0, probe, clock=clock)
    monitor.notify_error()
    assert monitor.is_outage
    assert not await monitor.wait_connected(0.05)
    # Further errors during the outage do not start another probe loop.
    monitor.notify_error()
    assert monitor.is_outage
    await monitor.stop()
    assert not monitor.is_outage
    assert await monitor.wait_connected(0.0)


async def test_a_request_that_gets_through_ends_the_outage() -> None:
    monitor = ConnectionMonitor(0.0, 60.0, _Probe([False] * 1000), clock=_Clock())
    monitor.notify_error()
    assert monitor.is_outage
    waiter = asyncio.create_task(monitor.wait_connected(5.0))
    await asyncio.sleep(0)
    monitor.reset_error()
    assert await waiter
    assert not monitor.is_outage
