"""Converters for the schema's leaf types: JSON value in, typed value (or ``None``) out.

Every converter has the signature ``(value, parent_meta, key) -> value``. On bad input it
returns ``None`` and records an ``invalid_data`` error plus the original value under
``parent_meta[key]``, the way Relay's typed deserialization keeps what it could not use.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
import uuid
from collections.abc import Callable
from typing import Any, Final

from relay.normalize import serde_json
from relay.normalize.chrono import MIN_TIMESTAMP, ChronoError, parse_datetime, utc_timestamp
from relay.normalize.meta import Meta, add_remark, child, expected, invalid, set_error

Converter = Callable[[Any, Meta, str], Any]

_U64_MAX: Final = 2**64
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63


def _fail(meta: Meta, key: str, what: str, value: Any) -> None:
    set_error(meta, key, expected(what), value)


def to_str(value: Any, meta: Meta, key: str) -> Any:
    if value is None or type(value) is str:
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
    if type(value) is int:
        return value if low <= value < high else None
    if type(value) is float:
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
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    if value is None:
        return None
    _fail(meta, key, "a floating point number", value)
    return None


def to_finite_f64(value: Any, meta: Meta, key: str) -> Any:
    """Relay's ``FiniteF64``: any JSON number that is finite (one error for every miss)."""
    if type(value) is float:
        if math.isfinite(value):
            return value
    elif type(value) is int:
        return float(value)
    elif value is None:
        return None
    _fail(meta, key, "a finite floating point number", value)
    return None


#: ``MetricUnit`` spellings and the canonical name each one is written back as.
_METRIC_UNITS: Final = {
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
_CUSTOM_UNIT: Final = re.compile(r"[0-9A-Za-z_]{1,15}")


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
    if type(value) is not str:
        _fail(meta, key, "a string", value)
        return None
    unit = canonical_unit(value)
    if unit is None:
        set_error(meta, key, "invalid_data", value)
    return unit


def lenient_str(value: Any, meta: Meta, key: str) -> Any:
    """Strings, plus numbers and booleans rendered the way Sentry's Python code did."""
    if type(value) is str or value is None:
        return value
    if value is True:
        return "True"
    if value is False:
        return "False"
    if type(value) is int:
        return str(value)
    if type(value) is float:
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
    """JSON the way serde_json writes it: compact, keys sorted, non-ASCII kept."""
    return serde_json.dumps(value)


def json_lenient_str(value: Any, meta: Meta, key: str) -> Any:
    """Strings as they are; anything else becomes its JSON text."""
    if value is None or type(value) is str:
        return value
    return json_dumps_compact(value)


def any_value(value: Any, meta: Meta, key: str) -> Any:
    return value


# -- timestamps -------------------------------------------------------------------------

#: Relay rejects timestamps from the year 10000 on (Python's datetime cannot hold them).
_MAX_TS: Final = 253402300800.0


def micros_timestamp(secs: int, micros: int) -> float:
    """The float Relay serializes for a datetime (seconds, microseconds rounded)."""
    return secs + micros / 1_000_000


def round_half_away(value: float) -> int:
    """Round a non-negative float to the nearest integer, halves up (Rust's ``f64::round``)."""
    whole = math.floor(value)
    return whole + 1 if value - whole >= 0.5 else whole


def float_timestamp(ts: float) -> float:
    """Round a float timestamp to whole microseconds exactly like Relay."""
    secs = math.floor(ts)
    micros = round_half_away((ts - secs) * 1_000_000)
    if micros == 1_000_000:
        return float(secs + 1)
    return micros_timestamp(secs, micros)


def parse_timestamp_str(text: str) -> float | str:
    """Seconds since the epoch, or chrono's error reason when ``text`` is not a datetime."""
    try:
        secs, nanos = parse_datetime(text)
    except ChronoError as error:
        return error.reason
    # Relay rounds to whole microseconds, halves away from zero.
    return micros_timestamp(secs, (nanos + 500) // 1000)


def to_timestamp(value: Any, meta: Meta, key: str) -> Any:
    """Accept RFC 3339 strings and numeric Unix timestamps; return float seconds."""
    if type(value) is float:
        if not math.isfinite(value) or not MIN_TIMESTAMP <= math.floor(value) < _MAX_TS:
            set_error(meta, key, invalid("timestamp out of range"), value)
            return None
        return float_timestamp(value)
    if type(value) is int:
        if not MIN_TIMESTAMP <= value < _MAX_TS:
            set_error(meta, key, invalid("timestamp out of range"), value)
            return None
        return float(value)
    if type(value) is str:
        fast = utc_timestamp(value)
        if fast is not None:
            return fast
        try:
            secs, nanos = parse_datetime(value)
        except ChronoError as error:
            set_error(meta, key, invalid(error.reason), value)
            return None
        parsed = micros_timestamp(secs, (nanos + 500) // 1000)
        if secs >= _MAX_TS:
            # Relay keeps the parsed timestamp (not the string) as the original value.
            set_error(meta, key, invalid("timestamp out of range"), parsed)
            return None
        return parsed
    if value is None:
        return None
    _fail(meta, key, "a timestamp", value)
    return None


# -- identifiers ------------------------------------------------------------------------

_HEX32: Final = re.compile(r"[0-9a-f]{32}")
_HEX16: Final = re.compile(r"[0-9a-fA-F]{16}")


_HEX: Final = frozenset("0123456789abcdefABCDEF")
_UUID_HYPHENS: Final = (8, 13, 18, 23)
_UUID_GROUP_STARTS: Final = (0, 9, 14, 19, 24)
_URN: Final = "urn:uuid:"


def _parse_hyphenated(text: str) -> str | None:
    if len(text) != 36 or any(text[i] != "-" for i in _UUID_HYPHENS):
        return None
    digits = text.replace("-", "")
    if len(digits) != 32 or not _HEX.issuperset(digits):
        return None
    return digits.lower()


def parse_uuid(text: str) -> str | None:
    """A UUID in a spelling the Rust ``uuid`` crate accepts, as 32 lowercase hex digits.

    Accepted: 32 hex digits, the hyphenated form, and that form in braces or after
    ``urn:uuid:`` (Python's ``uuid.UUID`` is more lenient, hence no use of it here).
    """
    if _HEX32.fullmatch(text):
        return text
    size = len(text)
    if size == 32:
        return text.lower() if _HEX.issuperset(text) else None
    if size == 36:
        return _parse_hyphenated(text)
    if size == 38 and text[0] == "{" and text[-1] == "}":
        return _parse_hyphenated(text[1:-1])
    if size == 45 and text.startswith(_URN):
        return _parse_hyphenated(text[9:])
    return None


def uuid_error(text: str) -> str:
    """The error message of the Rust ``uuid`` crate (as built into Relay) for a bad UUID.

    Inputs longer than the longest spelling fail on their length. Inputs with the length
    of a hyphenated spelling are diagnosed as hyphenated (without their braces or URN
    prefix); others by their look (braces or URN prefix mean hyphenated). Indices are
    byte offsets into the input.
    """
    size = len(text.encode())
    if size > 45:
        return f"invalid length: found {size}"
    if size == 36:
        body, offset, simple = text, 0, False
    elif size == 38 and text[0] == "{" and text[-1] == "}":
        body, offset, simple = text[1:-1], 0, False
    elif size == 45 and text.startswith(_URN):
        body, offset, simple = text[9:], 0, False
    elif len(text) >= 2 and text[0] == "{" and text[-1] == "}":
        body, offset, simple = text[1:-1], 1, False
    elif text.startswith(_URN):
        body, offset, simple = text[9:], 9, False
    else:
        body, offset, simple = text, 0, True
    hyphens: list[int] = []
    index = 0  # a byte offset
    for char in body:
        # The crate classifies a character by its lowest byte only (so ``\u0830`` passes
        # for a ``0``) and counts positions in bytes.
        low = chr(ord(char) & 0xFF)
        if low == "-":
            hyphens.append(index)
        elif low not in _HEX:
            return f"invalid character: found `{char}` at {index + offset}"
        index += 1 if char.isascii() else len(char.encode())
    if not hyphens and simple:
        return f"invalid length: found {size}"
    if len(hyphens) != 4:
        return f"invalid group count: expected 5, found {len(hyphens) + 1}"
    expected = (8, 4, 4, 4, 12)
    for group in range(4):
        if hyphens[group] != _UUID_GROUP_STARTS[group + 1] - 1:
            found = hyphens[group] - _UUID_GROUP_STARTS[group]
            return (
                f"invalid group length in group {group}: expected {expected[group]}, found {found}"
            )
    # The last group is measured against the whole input, braces included.
    found = len((text if offset else body).encode()) - _UUID_GROUP_STARTS[4]
    return f"invalid group length in group 4: expected 12, found {found}"


def to_event_id(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if type(value) is str:
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
    if type(value) is str:
        parsed = parse_uuid(value)
        if parsed is not None:
            return str(uuid.UUID(parsed))
    _fail(meta, key, "a uuid", value)
    return None


_NIL_TRACE_ID: Final = "0" * 32


def to_trace_id(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if type(value) is str:
        parsed = parse_uuid(value)
        if parsed is None:
            set_error(meta, key, invalid("not a valid trace id"), value)
            return None
        if parsed == _NIL_TRACE_ID:
            # Relay replaces the nil trace id with a random one and says so.
            add_remark(child(meta, key), ["nil_trace_id", "s"])
            return uuid.uuid4().hex
        return parsed
    _fail(meta, key, "trace id", value)
    return None


def to_span_id(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if type(value) is str:
        if _HEX16.fullmatch(value) and value != "0" * 16:
            return value.lower()
        set_error(meta, key, invalid("not a valid span id"), value)
        return None
    _fail(meta, key, "span id", value)
    return None


@functools.lru_cache(maxsize=4096)
def is_ip_address(text: str) -> bool:
    """Whether Rust's ``IpAddr`` parses ``text`` (which, unlike Python, takes no IPv6 scope).

    Cached: the same few client addresses come with every event, and ``ip_address`` costs
    1.5-3 us where a cache hit costs 0.05.
    """
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def to_ip(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if type(value) is str:
        if value == "{{auto}}" or is_ip_address(value):
            return value
        set_error(meta, key, expected("an ip address"), value)
        return None
    _fail(meta, key, "an ip address", value)
    return None


# -- enums ------------------------------------------------------------------------------

_LEVELS: Final = {
    "debug": "debug",
    "info": "info",
    "log": "info",
    "warning": "warning",
    "error": "error",
    "fatal": "fatal",
    "critical": "fatal",
}
#: Python's logging levels, which old SDKs sent as numbers.
_NUMERIC_LEVELS: Final = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "fatal"}


def to_level(value: Any, meta: Meta, key: str) -> Any:
    if value is None:
        return None
    if type(value) is str:
        level = _LEVELS.get(value)
        if level is not None:
            return level
        set_error(meta, key, invalid("invalid level"), value)
        return None
    if type(value) is int:
        level = _NUMERIC_LEVELS.get(value)
        if level is not None:
            return level
        set_error(meta, key, "invalid_data", value)
        return None
    _fail(meta, key, "a level", value)
    return None


EVENT_TYPES: Final = frozenset(
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
    if type(value) is str:
        if value in EVENT_TYPES:
            return value
        set_error(meta, key, invalid("invalid event type"), value)
        return None
    _fail(meta, key, "an event type", value)
    return None


SPAN_STATUSES: Final = {
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
    if type(value) is str:
        status = SPAN_STATUSES.get(value)
        if status is not None:
            return status
        set_error(meta, key, invalid("invalid span status"), value)
        return None
    _fail(meta, key, "a trace status", value)
    return None


def to_thread_id(value: Any, meta: Meta, key: str) -> Any:
    """Thread ids are either unsigned integers or strings."""
    if value is None or type(value) is str:
        return value
    if type(value) is int and value >= 0:
        return value
    _fail(meta, key, "a thread id", value)
    return None


_ADDR_RE: Final = re.compile(r"0[xX][0-9a-fA-F]+")


def to_addr(value: Any, meta: Meta, key: str) -> Any:
    """Addresses are serialized as ``0x``-prefixed lowercase hex."""
    if value is None:
        return None
    if type(value) is int and value >= 0:
        return f"0x{value:016x}"
    if type(value) is str:
        if _ADDR_RE.fullmatch(value):
            return f"0x{int(value, 16):016x}"
        if value.isdigit():
            return f"0x{int(value):016x}"
    _fail(meta, key, "an address", value)
    return None
