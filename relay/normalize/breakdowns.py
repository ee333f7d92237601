"""Span operation breakdowns, computed from a transaction's spans (project ``breakdownsV2``).

For each configured breakdown, the time covered by spans whose ``op`` starts with one of
the ``matches`` prefixes is summed per prefix (overlapping spans counted once), plus a
``total.time`` over all spans. With a config, whatever breakdowns the SDK sent are dropped.
"""

from __future__ import annotations

from typing import Any, Final

from relay.normalize.durations import micros, millis
from relay.normalize.measurements import is_valid_name
from relay.normalize.meta import Meta

#: The config ``type`` names of the span operations breakdown (the variant and its alias).
_SPAN_OPERATIONS: Final = frozenset({"spanOperations", "span_operations"})


def _covered(intervals: list[tuple[int, int]]) -> int:
    """Microseconds covered by the union of ``(start, end)`` intervals."""
    intervals.sort(key=lambda interval: interval[0])
    total = 0
    last_end: int | None = None
    for start, end in intervals:
        if last_end is not None:
            start, end = max(start, last_end), max(end, last_end)
        total += end - start
        last_end = end
    return total


def _span_operations(matches: list[str], spans: list[Any]) -> dict[str, Any] | None:
    groups: dict[tuple[bool, str], list[tuple[int, int]]] = {}
    for span in spans:
        if type(span) is not dict:
            continue
        op, start, end = span.get("op"), span.get("start_timestamp"), span.get("timestamp")
        if type(op) is not str or start is None or end is None:
            continue
        start_us, end_us = micros(start), micros(end)
        interval = (start_us, end_us) if start_us <= end_us else (end_us, start_us)
        prefix = next((m for m in matches if op.startswith(m)), None)
        key = (True, prefix) if prefix is not None else (False, op)
        groups.setdefault(key, []).append(interval)
    if not groups:
        return None
    breakdown: dict[str, Any] = {}
    total = 0
    for (emit, name), intervals in groups.items():
        covered = _covered(intervals)
        total += covered
        if emit:
            breakdown[f"ops.{name}"] = {"value": millis(covered), "unit": "millisecond"}
    breakdown["total.time"] = {"value": millis(total), "unit": "millisecond"}
    return breakdown


def _emit(config: Any, spans: Any) -> dict[str, Any] | None:
    if type(config) is not dict or config.get("type") not in _SPAN_OPERATIONS:
        return None  # unknown breakdown types are ignored, for forward compatibility
    matches = config.get("matches")
    if type(matches) is not list or not matches or type(spans) is not list:
        return None
    return _span_operations([m for m in matches if type(m) is str], spans)


def normalize_breakdowns(event: dict[str, Any], meta: Meta, config: dict[str, Any]) -> None:
    """Replace the event's ``breakdowns`` with those ``config`` (``breakdownsV2``) yields."""
    spans = event.get("spans")
    breakdowns = {}
    for name, breakdown_config in config.items():
        if not is_valid_name(name):
            continue
        measurements = _emit(breakdown_config, spans)
        if measurements:
            breakdowns[name] = measurements
    # Never the SDK's: re-normalizing on every hop must give the same result.
    meta.pop("breakdowns", None)
    event["breakdowns"] = breakdowns or None
