"""Transaction measurements: default units and the derived rates Relay computes."""

from __future__ import annotations

from typing import Any

_MS = "millisecond"
_DEFAULT_UNITS = {
    "fcp": _MS,
    "lcp": _MS,
    "fid": _MS,
    "fp": _MS,
    "inp": _MS,
    "ttfb": _MS,
    "ttfb.requesttime": _MS,
    "cls": "none",
    "app_start_cold": _MS,
    "app_start_warm": _MS,
    "frames_total": "none",
    "frames_slow": "none",
    "frames_slow_rate": "ratio",
    "frames_frozen": "none",
    "frames_frozen_rate": "ratio",
    "time_to_initial_display": _MS,
    "time_to_full_display": _MS,
    "stall_count": "none",
    "stall_total_time": _MS,
    "stall_longest_time": _MS,
    "stall_percentage": "ratio",
}


def _value(measurements: dict[str, Any], name: str) -> float | None:
    entry = measurements.get(name)
    if entry.__class__ is dict:
        return entry.get("value")
    return None


def normalize_measurements(event: dict[str, Any]) -> None:
    """Only transactions keep measurements; units default by name; rates are derived."""
    if event.get("type") != "transaction":
        event["measurements"] = None
        return
    measurements = event.get("measurements")
    if measurements.__class__ is not dict:
        return
    for name, entry in measurements.items():
        if entry.__class__ is dict and entry.get("unit") is None:
            entry["unit"] = _DEFAULT_UNITS.get(name, "none")
    total = _value(measurements, "frames_total")
    if total is not None and total > 0:
        for part, rate in (
            ("frames_frozen", "frames_frozen_rate"),
            ("frames_slow", "frames_slow_rate"),
        ):
            value = _value(measurements, part)
            if value is not None:
                measurements[rate] = {"value": value / total, "unit": "ratio"}
    start, end = event.get("start_timestamp"), event.get("timestamp")
    stall = measurements.get("stall_total_time")
    if start is not None and end is not None and stall.__class__ is dict:
        duration_ms = max(0.0, (end - start) * 1000)
        if (
            duration_ms > 0
            and stall.get("unit") in (None, _MS, "none")
            and stall.get("value") is not None
        ):
            measurements["stall_percentage"] = {
                "value": stall["value"] / duration_ms,
                "unit": "ratio",
            }
