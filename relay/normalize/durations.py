"""Exact time arithmetic on event timestamps, the way Relay's chrono durations work.

Event timestamps are floats (Unix seconds) that stand for whole microseconds. Subtracting
two such floats directly carries float error into the result (``600.002003 - 500.001`` is
not ``100.001003``), so durations are taken in integer microseconds and converted to
milliseconds once, with Relay's ``duration_to_millis`` rounding.
"""

from __future__ import annotations

import math


def micros(ts: float) -> int:
    """The whole microsecond a timestamp stands for."""
    return round(ts * 1_000_000)


def millis(duration_us: int) -> float:
    """Relay's ``duration_to_millis`` of a non-negative duration given in microseconds.

    Relay goes through ``as_secs_f64`` and rounds the nanoseconds half away from zero;
    this repeats those float steps so the result is bit-for-bit the same.
    """
    secs, rest_us = divmod(duration_us, 1_000_000)
    as_secs = secs + (rest_us * 1000) / 1_000_000_000
    nanos = as_secs * 1_000_000_000
    whole = math.floor(nanos)
    if nanos - whole >= 0.5:
        whole += 1
    return whole / 1_000_000


def positive_millis(start: float, end: float) -> float:
    """``end - start`` in milliseconds, ``0.0`` when negative (``chrono_to_positive_millis``)."""
    return millis(max(0, micros(end) - micros(start)))
