"""Event timestamp validation: receipt time, missing timestamps, clock drift, stale spans.

Mirrors Relay's ``validate_event``: a timestamp too far in the future or past is treated as
a drifted client clock, and every timestamp of the event is shifted by the same amount.
"""

from __future__ import annotations

import math
from typing import Any

from relay.normalize.chrono import format_utc
from relay.normalize.meta import Meta, add_error, child, invalid
from relay.normalize.primitives import round_half_away


class InvalidTransaction(ValueError):
    """The event is a transaction Relay would reject (``ProcessingAction::InvalidTransaction``)."""


def _us(ts: float) -> int:
    return round(ts * 1_000_000)


def _shift(ts: float, drift_ns: int) -> float:
    """``ts + drift`` with Relay's rounding to whole microseconds."""
    total_ns = _us(ts) * 1000 + drift_ns
    secs, nanos = divmod(total_ns, 1_000_000_000)
    micros = (nanos + 500) // 1000
    return secs + micros / 1_000_000


def rfc3339_ns(total_ns: int) -> str:
    """chrono's ``to_rfc3339`` (automatic 0/3/6/9 fractional digits, ``+00:00``)."""
    secs, nanos = divmod(total_ns, 1_000_000_000)
    base = format_utc(secs).replace(" ", "T")
    if nanos == 0:
        frac = ""
    elif nanos % 1_000_000 == 0:
        frac = f".{nanos // 1_000_000:03d}"
    elif nanos % 1000 == 0:
        frac = f".{nanos // 1000:06d}"
    else:
        frac = f".{nanos:09d}"
    return f"{base}{frac}+00:00"


def shift_event_timestamps(event: dict[str, Any], drift_ns: int) -> None:
    """Add ``drift_ns`` to every timestamp of the event (clock drift correction)."""
    for key in ("timestamp", "start_timestamp", "received"):
        value = event.get(key)
        if type(value) is float:
            event[key] = _shift(value, drift_ns)
    crumbs = event.get("breadcrumbs")
    if type(crumbs) is dict and type(crumbs.get("values")) is list:
        for crumb in crumbs["values"]:
            if type(crumb) is dict and type(crumb.get("timestamp")) is float:
                crumb["timestamp"] = _shift(crumb["timestamp"], drift_ns)
    spans = event.get("spans")
    if type(spans) is list:
        for span in spans:
            if type(span) is not dict:
                continue
            for key in ("timestamp", "start_timestamp", "received"):
                if type(span.get(key)) is float:
                    span[key] = _shift(span[key], drift_ns)


def validate_timestamps(
    event: dict[str, Any],
    meta: Meta,
    received_ns: int,
    max_secs_in_past: int | None,
    max_secs_in_future: int | None,
) -> None:
    """Set ``received`` and a missing ``timestamp``; correct out-of-range timestamps."""
    timestamp = event.get("timestamp")
    if timestamp is not None:
        ts_ns = _us(timestamp) * 1000
        kind = None
        if max_secs_in_future is not None and ts_ns > received_ns + max_secs_in_future * 10**9:
            kind = "future_timestamp"
        elif max_secs_in_past is not None and ts_ns < received_ns - max_secs_in_past * 10**9:
            kind = "past_timestamp"
        if kind is not None:
            shift_event_timestamps(event, received_ns - ts_ns)
            add_error(
                child(meta, "timestamp"),
                [kind, {"sdk_time": rfc3339_ns(ts_ns), "server_time": rfc3339_ns(received_ns)}],
            )
    secs, nanos = divmod(received_ns, 1_000_000_000)
    received = secs + ((nanos + 500) // 1000) / 1_000_000
    event["received"] = received
    if event.get("timestamp") is None:
        event["timestamp"] = received


def check_stale(event: dict[str, Any], meta: Meta) -> None:
    """Timestamps before 1970 invalidate transactions and drop spans and breadcrumbs."""
    for key in ("timestamp", "start_timestamp"):
        value = event.get(key)
        if value is not None and value < 0:
            raise InvalidTransaction("timestamp is too stale")
    crumbs = event.get("breadcrumbs")
    if type(crumbs) is dict and type(crumbs.get("values")) is list:
        items = crumbs["values"]
        for i, crumb in enumerate(items):
            if type(crumb) is dict:
                ts = crumb.get("timestamp")
                if ts is not None and ts < 0:
                    sub = child(child(child(meta, "breadcrumbs"), "values"), str(i))
                    add_error(sub, invalid(f"timestamp is too stale: {_display(ts)}"))
                    items[i] = None


def _display(ts: float) -> str:
    """chrono's ``Display`` of a UTC datetime (``2020-01-01 00:00:00.500 UTC``)."""
    # Split before scaling: far timestamps do not survive ``ts * 1e6`` exactly.
    secs = math.floor(ts)
    micros = round_half_away((ts - secs) * 1_000_000)
    if micros == 1_000_000:
        secs, micros = secs + 1, 0
    text = format_utc(secs)
    if micros % 1000 == 0 and micros:
        text += f".{micros // 1000:03d}"
    elif micros:
        text += f".{micros:06d}"
    return f"{text} UTC"


def validate_transaction(
    event: dict[str, Any], meta: Meta, timestamp_range: tuple[int, int] | None = None
) -> None:
    """The hard requirements Relay enforces on transactions, and ending open spans.

    ``timestamp_range`` (Unix seconds, end exclusive) is the window metrics are accepted
    in: a transaction outside it is invalid, span timestamps outside it are replaced by
    the transaction's own (with an ``invalid_data`` error keeping the original).
    """
    start = event.get("start_timestamp")
    end = event.get("timestamp")
    if end is None:
        raise InvalidTransaction("timestamp hard-required for transaction events")
    if start is None:
        raise InvalidTransaction("start_timestamp hard-required for transaction events")
    if end < start:
        raise InvalidTransaction("end timestamp is smaller than start timestamp")
    if timestamp_range is not None:
        if _unix_secs(start) < timestamp_range[0]:
            raise InvalidTransaction("start timestamp is out of the valid range for metrics")
        if timestamp_range[1] <= _unix_secs(end):
            raise InvalidTransaction("end timestamp is out of the valid range for metrics")
    contexts = event.get("contexts")
    trace = contexts.get("trace") if type(contexts) is dict else None
    if type(trace) is not dict:
        raise InvalidTransaction("missing valid trace context")
    if trace.get("trace_id") is None:
        raise InvalidTransaction("trace context is missing trace_id")
    if trace.get("span_id") is None:
        raise InvalidTransaction("trace context is missing span_id")
    spans = event.get("spans")
    if spans is None:
        spans = event["spans"] = []
    for index, span in enumerate(spans):
        if type(span) is not dict:
            raise InvalidTransaction("spans must be valid in transaction event")
        if span.get("timestamp") is None:
            # Relay's schema check runs after this, so the filled-in span is not "missing".
            span_meta = meta.get("spans", {}).get(str(index), {})
            ts_meta = span_meta.get("timestamp", {}).get("", {})
            if ts_meta.get("err") == ["missing_attribute"]:
                del span_meta["timestamp"]
            span["timestamp"] = end
            span["status"] = "deadline_exceeded"
        if span.get("start_timestamp") is None:
            raise InvalidTransaction("span is missing timestamp")
        if timestamp_range is not None:
            _enforce_range(span, meta, index, "start_timestamp", start, timestamp_range)
            _enforce_range(span, meta, index, "timestamp", end, timestamp_range)
        if span["timestamp"] < span["start_timestamp"]:
            raise InvalidTransaction("end timestamp is smaller than start timestamp")
        if span.get("span_id") is None:
            raise InvalidTransaction("span is missing span_id")
        if span.get("trace_id") is None:
            raise InvalidTransaction("span is missing trace_id")


def _unix_secs(ts: float) -> int:
    """Whole Unix seconds; timestamps before 1970 are not valid Unix timestamps."""
    secs = _us(ts) // 1_000_000
    if secs < 0:
        raise InvalidTransaction("invalid unix timestamp")
    return secs


def _enforce_range(
    span: dict[str, Any],
    meta: Meta,
    index: int,
    key: str,
    fallback: float,
    timestamp_range: tuple[int, int],
) -> None:
    """Replace a span timestamp outside the valid range with the transaction's."""
    value = span[key]
    secs = _unix_secs(value)
    if timestamp_range[0] <= secs < timestamp_range[1]:
        return
    span_meta = child(child(child(meta, "spans"), str(index)), key)
    add_error(span_meta, "invalid_data", _display(value))
    span[key] = fallback
