"""Telemetry: the relay's metrics registry (pure, stdlib only) and its metric definitions."""

from relay.telemetry.registry import (
    CONTENT_TYPE,
    Counter,
    Gauge,
    Histogram,
    Registry,
    Snapshot,
    merge_snapshots,
    render,
)

__all__ = [
    "CONTENT_TYPE",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
    "Snapshot",
    "merge_snapshots",
    "render",
]
