"""Relay's autoscaling text and the busy meter (relay.server.autoscaling)."""

from __future__ import annotations

from relay.server.autoscaling import AutoscalingData, BusyMeter, render


def test_render_is_relays_text() -> None:
    data = AutoscalingData(
        memory_usage=0.75, up=1, item_count=10, total_size=30,
        services=[("AggregatorService", 0, 10)], worker_pool_utilization=20,
        runtime_utilization=30,
    )  # fmt: skip
    assert render(data) == (
        "relay_memory_usage 0.75\n"
        "relay_up 1\n"
        "relay_spool_item_count 10\n"
        "relay_spool_total_size 30\n"
        'relay_service_utilization{relay_service="AggregatorService", instance_id="0"} 10\n'
        "relay_worker_pool_utilization 20\n"
        "relay_runtime_utilization 30\n"
    )


def test_busy_meter_reads_the_share_since_the_last_read() -> None:
    now, busy = [100.0], [5.0]
    meter = BusyMeter(lambda: busy[0], clock=lambda: now[0])
    now[0], busy[0] = 102.0, 5.5  # half a second busy in two
    assert meter.read() == 25
    now[0], busy[0] = 103.0, 7.0  # more busy than wall time (threads): capped
    assert meter.read() == 100
    assert meter.read() == 0  # no time has passed
    now[0] = 104.0
    assert meter.read() == 0
