"""Relay's autoscaling endpoint: ``GET /api/relay/autoscaling/``, in Prometheus' text format.

What an autoscaler (a KEDA or HPA external metric) reads of a Relay, under the same names,
so that a deployment scaled on Relay's numbers scales on ours:

- ``relay_memory_usage``: the fraction of memory in use, as the memory probes read it;
- ``relay_up``: 1, 0 once shutdown has begun;
- ``relay_spool_item_count``: envelopes held back (waiting for their project config, in
  memory or on disk, and on a POP those spooled for an unavailable upstream);
- ``relay_spool_total_size``: bytes of the disk spool in use (0 without one);
- ``relay_service_utilization{relay_service, instance_id}``: per service, the percentage
  of the time since the previous read that it spent working (here: the metrics
  aggregators, ``AggregatorService``);
- ``relay_worker_pool_utilization`` and ``relay_runtime_utilization``: Relay's processing
  pool and async runtime. Here one event loop per process does both, so both are its
  busy percentage since the previous read: the process's CPU time over the wall time.

As in Relay it is an internal route (served with the health checks, on
``relay.internal_port`` when set), and a proxy relay answers 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True, slots=True)
class AutoscalingData:
    """One reading."""

    memory_usage: float
    up: int
    item_count: int
    total_size: int
    #: (service name, instance id, utilization percent).
    services: list[tuple[str, int, int]] = field(default_factory=list)
    worker_pool_utilization: int = 0
    runtime_utilization: int = 0


class BusyMeter:
    """The busy percentage of something between two reads, from a running total of its
    busy seconds (0-100; the first read covers the time since the meter was made)."""

    def __init__(
        self, busy_seconds: Callable[[], float], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._busy_seconds = busy_seconds
        self._clock = clock
        self._last = (clock(), busy_seconds())

    def read(self) -> int:
        now, busy = self._clock(), self._busy_seconds()
        (then, busy_then), self._last = self._last, (now, busy)
        elapsed = now - then
        # Two reads in quick succession say nothing (Relay answers 0 too).
        if elapsed < 0.001:
            return 0
        return int(min(100.0, max(0.0, (busy - busy_then) / elapsed * 100.0)))


def render(data: AutoscalingData) -> str:
    """The Prometheus text Relay writes for a reading."""
    lines = [
        f"relay_memory_usage {data.memory_usage}",
        f"relay_up {data.up}",
        f"relay_spool_item_count {data.item_count}",
        f"relay_spool_total_size {data.total_size}",
    ]
    for name, instance, utilization in data.services:
        lines.append(
            f'relay_service_utilization{{relay_service="{name}", instance_id="{instance}"}} '
            f"{utilization}"
        )
    lines.append(f"relay_worker_pool_utilization {data.worker_pool_utilization}")
    lines.append(f"relay_runtime_utilization {data.runtime_utilization}")
    return "\n".join(lines) + "\n"


def autoscaling_routes(read: Callable[[], AutoscalingData | None]) -> list[web.RouteDef]:
    """``GET /api/relay/autoscaling/``; ``read`` returns None where it is not enabled."""

    async def autoscaling(_: web.Request) -> web.Response:
        data = read()
        if data is None:
            return web.Response(status=404, text="Autoscaling metrics not enabled")
        return web.Response(text=render(data), content_type="text/plain")

    return [web.get("/api/relay/autoscaling/", autoscaling)]
