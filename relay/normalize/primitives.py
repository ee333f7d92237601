"""Converters for the schema's leaf types: JSON value in, typed value (or ``None``) out.

Every converter has the signature ``(value, parent_meta, key) -> value``. On bad input it
returns ``None`` and records an ``invalid_data`` error plus the original value under
``parent_meta[key]``, the way Relay's typed deserialization keeps what it could not use.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from relay.normalize.meta import Meta, expected, invalid, set_error

Converter = Callable[[Any, Meta, str], Any]

_U64_MAX = 2**64
_I64_MIN = -(2**63)
_I64_MAX = 2**63


def _fail(meta: Meta, key: str, what: str, value: Any) -> None:
    set_error(meta, key, expected(what), value)


def to_str(value: Any, meta: Meta, key: str) -> Any:
    if value is None or value.__class__ is str:
        return value
    _fail(meta, key, "a string", value)
    return None


def to_bool(value: Any, meta: Meta, key: str) -> Any:
    if value is None or value is True or value is False:
        return value
    _fail(meta, key, "a boolean", value)
    return None


def _number(value: Any, low: float, high: float) -> Any:
    """Relay casts any JSON number that fits (floats truncate toward zero)."""
    cls = value.__class__
    if cls is int:
        return value if low <= value < high else None
    if cls is float:
        if math.isnan(value) or not (low - 1 < value < high):
            return None
        return int(value)
    return None


def to_u64(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    number = _number(value, 0, _U64_MAX)
    if number is None:
        _fail(meta, key, "an unsigned integer", value)
    return number


def to_i64(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    number = _number(value, _I64_MIN, _I64_MAX)
    if number is None:
        _fail(meta, key, "a signed integer", value)
    return number


def to_f64(value: Any, meta: Meta, key: str) -> Any:
    cls = value.__class__
    if cls is float:
        return value
    if cls is int:
        return float(value)
    if value is None:
        return None
    _fail(meta, key, "a floating point number", value)
    return None


def to_finite_f64(value: Any, meta: Meta, key: str) -> Any:
    """Relay's ``FiniteF64``: any JSON number that is finite (one error for every miss)."""
    cls = value.__class__
    if cls is float:
        if math.isfinite(value):
            return value
    elif cls is int:
        return float(value)
    elif value is None:
        return None
    _fail(meta, key, "a finite floating point number", value)
    return None


#: ``MetricUnit`` spellings and the canonical name each one is written back as.
_METRIC_UNITS = {
    "nanosecond": "nanosecond",
    "ns": "nanosecond",
    "microsecond": "microsecond",
    "millisecond": "millisecond",
    "ms": "millisecond",
    "second": "second",
    "s": "second",
    "minute": "minute",
    "hour": "hour",
    "day": "day",
    "week": "week",
    **{
        unit: unit
        for unit in (
            *("bit", "byte", "kilobyte", "kibibyte", "megabyte", "mebibyte", "gigabyte"),
            *("gibibyte", "terabyte", "tebibyte", "petabyte", "pebibyte", "exabyte"),
            *("exbibyte", "ratio", "percent", "none"),
        )
    },
    "": "none",
}
#: A custom unit: 1 to 15 ASCII word characters (kept lowercased).
_CUSTOM_UNIT = re.compile(r"[0-9A-Za-z_]{1,15}")


def canonical_unit(unit: str) -> str | None:
    """A metric unit's canonical spelling (``ms`` -> ``millisecond``); ``None`` if invalid."""
    known = _METRIC_UNITS.get(unit)
    if known is not None:
        return known
    if _CUSTOM_UNIT.fullmatch(unit):
        return unit.lower()
    return None


def to_metric_unit(value: Any, meta: Meta, key: str) -> Any:
    """Relay's ``MetricUnit``: a string naming a known or a custom unit."""
    if value is None:
        return None
    if value.__class__ is not str:
        _fail(meta, key, "a string", value)
        return None
    unit = canonical_unit(value)
    if unit is None:
        set_error(meta, key, "invalid_data", value)
    return unit


def lenient_str(value: Any, meta: Meta, key: str) -> Any:
    """Strings, plus numbers and booleans rendered the way Sentry's Python code did."""
    cls = value.__class__
    if cls is str or value is None:
        return value
    if value is True:
        return "True"
    if value is False:
        return "False"
    if cls is int:
        return str(value)
    if cls is float:
        if math.isfinite(value) and abs(value) < 2**53:
            text = str(int(value))
            # Relay prints the truncated float: -0.5 and -0.0 are "-0".
            if text == "0" and math.copysign(1.0, value) < 0:
                return "-0"
            return text
        _fail(meta, key, "a number with JSON precision", value)
        return None
    _fail(meta, key, "a primitive value", value)
    return None


def json_dumps_compact(value: Any) -> str:
    """JSON the way serde_json writes it: compact, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_lenient_str(value: Any, meta: Meta, key: str) -> Any:
    """Strings as they are; anything else becomes its JSON text."""
    if value is None or value.__class__ is str:
        return value
    return json_dumps_compact(value)


def any_value(value: Any, meta: Meta, key: str) -> Any:
    return value


# -- timestamps -------------------------------------------------------------------------

_TS_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(Z|z|[+-]\d{2}:?\d{2})?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: chrono's representable range, roughly year -262143..262142; Python's datetime is 1..9999.
_MAX_TS = 253402300800.0


def micros_timestamp(secs: int, micros: int) -> float:
    """The float Relay serializes for a datetime (seconds, microseconds rounded)."""
    return secs + micros / 1_000_000


def float_timestamp(ts: float) -> float:
    """Round a float timestamp to whole microseconds exactly like Relay."""
    secs = math.floor(ts)
    micros = round((ts - secs) * 1_000_000)
    if micros == 1_000_000:
        return float(secs + 1)
    return micros_timestamp(secs, micros)


def parse_timestamp_str(text: str) -> float | str:
    """Seconds since the epoch, or the error reason when ``text`` is not a datetime."""
    match = _TS_RE.fullmatch(text)
    if match is None:
        return "input contains invalid characters"
    year, month, day, hour, minute, second, frac, tz = match.groups()
    try:
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return "input is out of range"
    nanos = int((frac or "0")[:9].ljust(9, "0"))
    secs = int((dt.replace(tzinfo=UTC) - _EPOCH).total_seconds())
    if tz and tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        secs -= sign * int(offset.total_seconds())
    micros = round(nanos / 1000)
    if micros == 1_000_000:
        return float(secs + 1)
    return micros_timestamp(secs, micros)


def to_timestamp(value: Any, meta: Meta, key: str) -> Any:
    """Accept RFC 3339 strings and numeric Unix timestamps; return float seconds."""
    cls = value.__class__
    if cls is float:
        if not math.isfinite(value) or value >= _MAX_TS:
            set_error(meta, key, invalid("timestamp out of range"), value)
            return None
        return float_timestamp(value)
    if cls is int:
        if value >= _MAX_TS:
            set_error(meta, key, invalid("timestamp out of range"), value)
            return None
        return float(value)
    if cls is str:
        parsed = parse_timestamp_str(value)
        if parsed.__class__ is str:
            set_error(meta, key, invalid(parsed), value)
            return None
        return parsed
    if value is None:
        return None
    _fail(meta, key, "a timestamp", value)
    return None


# -- identifiers ------------------------------------------------------------------------

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")


def parse_uuid(text: str) -> str | None:
    """A UUID in any of the spellings the Rust ``uuid`` crate accepts, as 32 lowercase hex."""
    if _HEX32.fullmatch(text):
        return text
    try:
        return uuid.UUID(text).hex
    except ValueError:
        return None


_UUID_CHARS = frozenset("0123456789abcdefABCDEF-")


def uuid_error(text: str) -> str:
    """The Rust ``uuid`` crate's wording for the common ways a UUID string is wrong."""
    for i, c in enumerate(text):
        if c not in _UUID_CHARS:
            return f"invalid character: found `{c}` at {i}"
    return f"invalid length: found {len(text)}"


def to_event_id(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if value.__class__ is str:
        parsed = parse_uuid(value)
        if parsed is not None:
            return parsed
        set_error(meta, key, invalid(uuid_error(value)), value)
        return None
    _fail(meta, key, "event id", value)
    return None


def to_uuid(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if value.__class__ is str:
        parsed = parse_uuid(value)
        if parsed is not None:
            return str(uuid.UUID(parsed))
    _fail(meta, key, "a uuid", value)
    return None


def to_trace_id(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if value.__class__ is str:
        parsed = parse_uuid(value)
        if parsed is not None and parsed != "0" * 32:
            return parsed
        set_error(meta, key, invalid("invalid trace id"), value)
        return None
    _fail(meta, key, "a trace identifier", value)
    return None


def to_span_id(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if value.__class__ is str:
        if _HEX16.fullmatch(value) and value != "0" * 16:
            return value.lower()
        set_error(meta, key, invalid("invalid span id"), value)
        return None
    _fail(meta, key, "a span identifier", value)
    return None


def to_ip(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if value.__class__ is str:
        if value == "{{auto}}" or value == "":
            return value
        try:
            ipaddress.ip_address(value)
        except ValueError:
            pass
        else:
            return value
        set_error(meta, key, expected("an ip address"), value)
        return None
    _fail(meta, key, "an ip address", value)
    return None


# -- enums ------------------------------------------------------------------------------

_LEVELS = {
    "debug": "debug",
    "info": "info",
    "log": "info",
    "warning": "warning",
    "error": "error",
    "fatal": "fatal",
    "critical": "fatal",
}
#: Python's logging levels, which old SDKs sent as numbers.
_NUMERIC_LEVELS = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "fatal"}


def to_level(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    cls = value.__class__
    if cls is str:
        level = _LEVELS.get(value)
        if level is not None:
            return level
        set_error(meta, key, invalid("invalid level"), value)
        return None
    if cls is int:
        level = _NUMERIC_LEVELS.get(value)
        if level is not None:
            return level
        set_error(meta, key, "invalid_data", value)
        return None
    _fail(meta, key, "a level", value)
    return None


EVENT_TYPES = frozenset(
    {
        "error",
        "csp",
        "hpkp",
        "expectct",
        "expectstaple",
        "nel",
        "transaction",
        "feedback",
        "generic",
        "default",
    }
)


def to_event_type(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if value.__class__ is str:
        if value in EVENT_TYPES:
            return value
        set_error(meta, key, invalid("invalid event type"), value)
        return None
    _fail(meta, key, "an event type", value)
    return None


SPAN_STATUSES = {
    "ok": "ok",
    "success": "ok",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "unknown": "unknown",
    "unknown_error": "unknown",
    "invalid_argument": "invalid_argument",
    "deadline_exceeded": "deadline_exceeded",
    "not_found": "not_found",
    "already_exists": "already_exists",
    "permission_denied": "permission_denied",
    "resource_exhausted": "resource_exhausted",
    "failed_precondition": "failed_precondition",
    "aborted": "aborted",
    "out_of_range": "out_of_range",
    "unimplemented": "unimplemented",
    "internal_error": "internal_error",
    "failure": "internal_error",
    "unavailable": "unavailable",
    "data_loss": "data_loss",
    "unauthenticated": "unauthenticated",
}


def to_span_status(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if value.__class__ is str:
        status = SPAN_STATUSES.get(value)
        if status is not None:
            return status
        set_error(meta, key, invalid("invalid span status"), value)
        return None
    _fail(meta, key, "a trace status", value)
    return None


def to_thread_id(value: Any, meta: Meta, key: str) -> Any:
    """Thread ids are either unsigned integers or strings."""
    if value is None or value.__class__ is str:
        return value
    if value.__class__ is int and value >= 0:
        return value
    _fail(meta, key, "a thread id", value)
    return None


_ADDR_RE = re.compile(r"0[xX][0-9a-fA-F]+")


def to_addr(value: Any, meta: Meta, key: str) -> Any:
    """Addresses are serialized as ``0x``-prefixed lowercase hex."""
    if value is None:
        return None
    cls = value.__class__
    if cls is int and value >= 0:
        return f"0x{value:016x}"
    if cls is str:
        if _ADDR_RE.fullmatch(value):
            return f"0x{int(value, 16):016x}"
        if value.isdigit():
            return f"0x{int(value):016x}"
    _fail(meta, key, "an address", value)
    return None
