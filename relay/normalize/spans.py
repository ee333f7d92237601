"""Span normalization of transactions: exclusive times and legacy app start operations.

A span's exclusive time is the part of its duration not covered by any of its direct
children; the transaction's own (trace context) exclusive time is computed the same way
from its top-level spans. Times are in milliseconds, as Relay writes them.
"""

from __future__ import annotations

from typing import Any, Final

from relay.normalize.durations import micros, millis

Interval = tuple[int, int]

#: React Native SDK versions that named app start spans in snake case.
_SNAKE_APP_START_VERSIONS: Final = ("4.4", "4.3", "4.2", "4.1", "4.0", "3")
_APP_START_OPS: Final = {"app_start_cold": "app.start.cold", "app_start_warm": "app.start.warm"}


def _interval(start: Any, end: Any) -> Interval | None:
    if start is None or end is None:
        return None
    start_us, end_us = micros(start), micros(end)
    return (start_us, end_us) if start_us <= end_us else (end_us, start_us)


def _exclusive(parent: Interval, children: list[Interval]) -> int:
    """Microseconds of ``parent`` outside ``children`` (sorted by start)."""
    start, end = parent
    exclusive = 0
    for child_start, child_end in children:
        if child_start >= end:
            break
        if child_start > start:
            exclusive += child_start - start
        start = min(max(child_end, start), end)
    return exclusive + (end - start)


def compute_exclusive_times(event: dict[str, Any], trace: dict[str, Any] | None) -> None:
    """Set ``exclusive_time`` on every span, and on ``trace`` unless the SDK set it."""
    if type(event.get("contexts")) is not dict:
        return
    event_interval = _interval(event.get("start_timestamp"), event.get("timestamp"))
    if event_interval is None:
        return
    spans = event.get("spans")
    if type(spans) is not list:
        spans = event["spans"] = []
    children: dict[str, list[Interval]] = {}
    for span in spans:
        if type(span) is not dict:
            continue
        parent = span.get("parent_span_id")
        interval = _interval(span.get("start_timestamp"), span.get("timestamp"))
        if parent is not None and interval is not None:
            children.setdefault(parent, []).append(interval)
    for intervals in children.values():
        intervals.sort(key=lambda interval: interval[0])
    if trace is not None and trace.get("exclusive_time") is None:
        span_id = trace.get("span_id")
        if span_id is not None:
            exclusive = _exclusive(event_interval, children.get(span_id, []))
            trace["exclusive_time"] = millis(exclusive)
    for span in spans:
        if type(span) is not dict or span.get("span_id") is None:
            continue
        interval = _interval(span.get("start_timestamp"), span.get("timestamp"))
        if interval is not None:
            own = children.get(span["span_id"], [])
            span["exclusive_time"] = millis(_exclusive(interval, own))


def normalize_app_start_spans(event: dict[str, Any]) -> None:
    """Old React Native SDKs wrote ``app_start_cold``; Relay renames the first such op."""
    sdk = event.get("sdk")
    if type(sdk) is not dict or sdk.get("name") != "sentry.javascript.react-native":
        return
    version = sdk.get("version")
    if type(version) is not str or not version.startswith(_SNAKE_APP_START_VERSIONS):
        return
    spans = event.get("spans")
    for span in spans if type(spans) is list else ():
        if type(span) is dict:
            renamed = _APP_START_OPS.get(span.get("op"))  # type: ignore[arg-type]
            if renamed is not None:
                span["op"] = renamed
                return
