"""Datetime strings the way Relay reads them (with the Rust ``chrono`` crate).

Relay first tries a naive ``YYYY-MM-DDTHH:MM:SS[.f]`` datetime (taken as UTC) and then
chrono's relaxed RFC 3339 (``T``, ``t`` or a space between date and time, an offset
``Z``/``UTC``/``+HH:MM``/``+HHMM`` required, whitespace allowed between the parts). When
both fail, the relaxed parser's error is reported, in chrono's words. This module accepts
exactly those inputs and gives the same error reasons (it is written from chrono's
documented behaviour, not translated from it).
"""

from __future__ import annotations

import re
from typing import Any, Final

#: Rust's ``char::is_whitespace`` (Unicode ``White_Space``), which ``str::trim`` strips;
#: Python's ``str.strip()`` also strips the ASCII separators U+001C..U+001F.
RUST_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

# chrono's ``ParseError`` display texts.
OUT_OF_RANGE: Final = "input is out of range"
IMPOSSIBLE: Final = "no possible date and time matching input"
INVALID: Final = "input contains invalid characters"
TOO_SHORT: Final = "premature end of input"
TOO_LONG: Final = "trailing input"

#: chrono's supported years.
_MIN_YEAR: Final = -262143
_MAX_YEAR: Final = 262142
_I64_MAX: Final = 2**63 - 1
_I32: Final = (-(2**31), 2**31 - 1)
_DIGITS: Final = "0123456789"


class ChronoError(Exception):
    """A parse failure, carrying chrono's reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Fields:
    """What the parser has read so far (chrono's ``Parsed``)."""

    __slots__ = ("day", "hour", "minute", "month", "nanos", "offset", "second", "year")

    def __init__(self) -> None:
        self.year = self.month = self.day = 0
        self.hour = self.minute = self.second = 0
        self.nanos = 0
        self.offset = 0


class _Scanner:
    """A cursor over the input with chrono's item parsers."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def rest(self) -> str:
        return self.text[self.pos :]

    def skip_space(self) -> None:
        text = self.text
        end = len(text)
        while self.pos < end and text[self.pos] in RUST_WHITESPACE:
            self.pos += 1

    def literal(self, char: str) -> None:
        if self.pos >= len(self.text):
            raise ChronoError(TOO_SHORT)
        if self.text[self.pos] != char:
            raise ChronoError(INVALID)
        self.pos += 1

    def number(self, max_digits: int) -> int:
        """At least one and at most ``max_digits`` ASCII digits."""
        text = self.text
        start = self.pos
        if start >= len(text):
            raise ChronoError(TOO_SHORT)
        end = start
        limit = min(len(text), start + max_digits)
        while end < limit and text[end] in _DIGITS:
            end += 1
        if end == start:
            raise ChronoError(INVALID)
        digits = text[start:end].lstrip("0")
        # Leading zeros never overflow; more than 19 significant digits always do.
        if len(digits) > 19 or (digits and int(digits) > _I64_MAX):
            raise ChronoError(OUT_OF_RANGE)
        value = int(digits) if digits else 0
        self.pos = end
        return value

    def field(self, max_digits: int, low: int, high: int) -> int:
        """A numeric item: leading whitespace, digits, then the range check of its setter."""
        self.skip_space()
        value = self.number(max_digits)
        if not low <= value <= high:
            raise ChronoError(OUT_OF_RANGE)
        return value

    def year(self) -> int:
        """Four digits, or any number of digits after an explicit sign."""
        self.skip_space()
        text = self.text
        sign = text[self.pos] if self.pos < len(text) else ""
        if sign in ("+", "-"):
            self.pos += 1
            value = self.number(len(text))
            value = -value if sign == "-" else value
        else:
            value = self.number(4)
        if not _I32[0] <= value <= _I32[1]:
            raise ChronoError(OUT_OF_RANGE)
        return value

    def fraction(self) -> int:
        """Optional ``.digits`` as nanoseconds (digits past the ninth are ignored)."""
        text = self.text
        if self.pos >= len(text) or text[self.pos] != ".":
            return 0
        self.pos += 1
        start = self.pos
        digits = self.number(9)
        nanos: int = digits * 10 ** (9 - (self.pos - start))
        while self.pos < len(text) and text[self.pos] in _DIGITS:
            self.pos += 1
        return nanos

    def date(self, fields: _Fields) -> None:
        fields.year = self.year()
        self.skip_space()
        self.literal("-")
        fields.month = self.field(2, 1, 12)
        self.skip_space()
        self.literal("-")
        fields.day = self.field(2, 1, 31)

    def time(self, fields: _Fields) -> None:
        fields.hour = self.field(2, 0, 23)
        self.skip_space()
        self.literal(":")
        fields.minute = self.field(2, 0, 59)
        self.skip_space()
        self.literal(":")
        fields.second = self.field(2, 0, 60)
        fields.nanos = self.fraction()
        self.skip_space()

    def offset(self) -> int:
        """``Z``, ``UTC`` or a signed ``HH[:]MM`` offset, in seconds."""
        rest = self.rest()
        head = rest[:3]
        if len(head) == 3 and head.isascii() and head.lower() == "utc":
            self.pos += 3
            return 0
        if rest[:1] in ("Z", "z"):
            self.pos += 1
            return 0
        if not rest:
            raise ChronoError(TOO_SHORT)
        if rest[0] not in ("+", "-", "\u2212"):
            raise ChronoError(INVALID)
        negative = rest[0] != "+"
        self.pos += 1
        hours = self._two_digits(required=True)
        assert hours is not None
        # Colons and whitespace may separate hours and minutes.
        text = self.text
        while self.pos < len(text) and (text[self.pos] == ":" or text[self.pos] in RUST_WHITESPACE):
            self.pos += 1
        minutes = self._two_digits(required=False)
        if minutes is None:
            raise ChronoError(TOO_SHORT)
        seconds = hours * 3600 + minutes * 60
        return -seconds if negative else seconds

    def _two_digits(self, *, required: bool) -> int | None:
        """Two ASCII digits (minutes must be below 60); ``None`` if fewer than 2 bytes are left
        and they are not ``required``."""
        rest = self.rest()
        if len(rest[:2].encode()) < 2:
            if required:
                raise ChronoError(TOO_SHORT)
            return None
        first, second = rest[0], rest[1] if len(rest) > 1 else ""
        if first not in _DIGITS or second not in _DIGITS:
            raise ChronoError(INVALID)
        if not required and first in "6789":
            raise ChronoError(OUT_OF_RANGE)
        self.pos += 2
        return int(first + second)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_MONTH_DAYS: Final = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (any year)."""
    shifted = year - 1 if month <= 2 else year
    era = shifted // 400
    year_of_era = shifted - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


#: The first and last second chrono can represent, relative to the epoch.
_MIN_SECS: Final = _days_from_civil(_MIN_YEAR, 1, 1) * 86400
#: The earliest Unix time chrono can represent (numeric timestamps below it are rejected).
MIN_TIMESTAMP: Final = _MIN_SECS
_MAX_SECS: Final = _days_from_civil(_MAX_YEAR, 12, 31) * 86400 + 86399


def _epoch(fields: _Fields, offset: int) -> tuple[int, int]:
    """Whole UTC seconds and the sub-second nanoseconds (above 1e9 for a leap second)."""
    year, month, day = fields.year, fields.month, fields.day
    days_in_month = 29 if month == 2 and _is_leap(year) else _MONTH_DAYS[month - 1]
    if not _MIN_YEAR <= year <= _MAX_YEAR or day > days_in_month:
        raise ChronoError(OUT_OF_RANGE)
    second, nanos = fields.second, fields.nanos
    if second == 60:
        # A leap second: chrono keeps it as second 59 with an extra second of nanoseconds.
        second, nanos = 59, nanos + 1_000_000_000
    local = (
        _days_from_civil(year, month, day) * 86400
        + fields.hour * 3600
        + fields.minute * 60
        + second
    )
    if not -86400 < offset < 86400:
        raise ChronoError(OUT_OF_RANGE)
    utc = local - offset
    if not _MIN_SECS <= utc <= _MAX_SECS:
        raise ChronoError(IMPOSSIBLE)
    return utc, nanos


def _naive(text: str) -> tuple[int, int]:
    scanner = _Scanner(text)
    fields = _Fields()
    scanner.date(fields)
    scanner.skip_space()
    scanner.literal("T")
    scanner.time(fields)
    if scanner.pos != len(text):
        raise ChronoError(TOO_LONG)
    return _epoch(fields, 0)


def _relaxed(text: str) -> tuple[int, int]:
    scanner = _Scanner(text)
    fields = _Fields()
    scanner.date(fields)
    rest = scanner.rest()
    if not rest:
        raise ChronoError(TOO_SHORT)
    if rest[0] not in ("T", "t", " "):
        raise ChronoError(INVALID)
    scanner.pos += 1
    scanner.time(fields)
    scanner.skip_space()
    offset = scanner.offset()
    scanner.skip_space()
    if scanner.pos != len(text):
        raise ChronoError(TOO_LONG)
    return _epoch(fields, offset)


#: The everyday spellings (``2026-11-26T12:03:58.228814Z``, ``...+01:00``, naive ``...T...``),
#: read in one match; anything else (and any error) goes through the scanners.
_COMMON: Final = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})([Tt ])([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:([Zz])|([+-])([0-9]{2}):([0-5][0-9]))?"
)
#: Days since the epoch of ``YYYY-MM-DD`` dates seen (``None``: no such day), bounded.
_DATE_DAYS: Final[dict[str, int | None]] = {}
_DATE_CACHE_SIZE: Final = 4096


def _date_days(date: str) -> int | None:
    if date in _DATE_DAYS:
        return _DATE_DAYS[date]
    year, month, day = int(date[:4]), int(date[5:7]), int(date[8:])
    found: int | None = None
    if 1 <= month <= 12 and day >= 1:
        days_in_month = 29 if month == 2 and _is_leap(year) else _MONTH_DAYS[month - 1]
        if day <= days_in_month:
            found = _days_from_civil(year, month, day)
    if len(_DATE_DAYS) >= _DATE_CACHE_SIZE:
        _DATE_DAYS.clear()
    _DATE_DAYS[date] = found
    return found


def _common(text: str) -> tuple[int, int] | None:
    """``parse_datetime`` of a common spelling, or ``None`` to leave it to the scanners.

    Four-digit years, hours below 24, no leap second and offsets below a day are always
    in chrono's range, so only the day of the month is left to check.
    """
    match = _COMMON.fullmatch(text)
    if match is None:
        return None
    date, sep, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    if zulu is None and sign is None and sep != "T":
        return None  # neither naive nor RFC 3339: the scanners give the error
    days = _date_days(date)
    hours, minutes, seconds = int(hour), int(minute), int(second)
    if days is None or hours > 23 or minutes > 59 or seconds > 59:
        return None
    offset = 0
    if sign is not None:
        offset_hours = int(off_h)
        if offset_hours > 23:
            return None
        offset = offset_hours * 3600 + int(off_m) * 60
        offset = -offset if sign == "-" else offset
    nanos = int(frac.ljust(9, "0")) if frac else 0
    return days * 86400 + hours * 3600 + minutes * 60 + seconds - offset, nanos


#: ``YYYY-MM-DDTHH:MM``, the minute of the spelling SDKs send nearly always: UTC, whole
#: microseconds or none (:func:`utc_timestamp`).
_UTC_MINUTE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")
#: Seconds since the epoch of ``YYYY-MM-DDTHH:MM`` prefixes seen (``None``: invalid), bounded.
_MINUTES: Final[dict[str, int | None]] = {}


def utc_timestamp(text: str) -> float | None:
    """Relay's float timestamp of a UTC datetime with whole microseconds (the common
    spelling), or ``None`` to leave ``text`` to :func:`parse_datetime`.

    Equal to ``secs + round(nanos / 1000) / 1e6`` of :func:`parse_datetime`: the minute
    is looked up once, the rest is a second and six fraction digits.
    """
    # The hot path of span timestamps: checked by length and character, as a regex match
    # object, its groups and ``int()`` of them cost three times as much.
    size = len(text)
    if size == 20 or size == 27:
        zone = text[size - 1]
        if zone != "Z" and zone != "z":
            return None
        body = size - 1
    elif size == 25 or size == 32:
        if not text.endswith("+00:00"):
            return None
        body = size - 6
    else:
        return None
    # After the minute: ":SS", then ".ffffff" when ``body`` leaves room for it.
    tens = ord(text[17]) - 48
    ones = ord(text[18]) - 48
    if text[16] != ":" or not (0 <= tens <= 9 and 0 <= ones <= 9):
        return None
    micros = -1
    if body == 26:
        if text[19] != ".":
            return None
        micros = 0
        for i in range(20, 26):
            digit = ord(text[i]) - 48
            if not 0 <= digit <= 9:
                return None
            micros = micros * 10 + digit
    minute = text[:16]
    base = _MINUTES.get(minute, _UNSEEN)
    if base is _UNSEEN:
        if _UTC_MINUTE.fullmatch(minute) is None:
            return None
        parsed = _common(minute + ":00Z")
        base = None if parsed is None else parsed[0]
        if len(_MINUTES) >= _DATE_CACHE_SIZE:
            _MINUTES.clear()
        _MINUTES[minute] = base
    seconds = tens * 10 + ones
    if base is None or seconds > 59:
        return None
    secs = base + seconds
    return secs + micros / 1_000_000 if micros >= 0 else float(secs)


_UNSEEN: Final[Any] = object()


def parse_datetime(text: str) -> tuple[int, int]:
    """UTC seconds since the epoch and nanoseconds of ``text``; raises :class:`ChronoError`."""
    common = _common(text)
    if common is not None:
        return common
    try:
        return _naive(text)
    except ChronoError:
        return _relaxed(text)


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The proleptic Gregorian (year, month, day) ``days`` after 1970-01-01."""
    days += 719468
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + (3 if shifted_month < 10 else -9)
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def format_utc(secs: int) -> str:
    """chrono's ``Display`` of a UTC datetime's whole seconds (``2020-01-01 00:00:00``).

    Years outside 0..=9999 get an explicit sign, as chrono writes them.
    """
    days, rest = divmod(secs, 86400)
    year, month, day = _civil_from_days(days)
    year_text = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}"
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{year_text}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
