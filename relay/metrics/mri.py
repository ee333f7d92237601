"""Metric resource identifiers (MRIs): ``<type>:<namespace>/<name>@<unit>``.

Parsing follows Relay's lenient rules: type aliases (``m``, ``h``, ``ms``) are accepted, a
missing unit means ``none``, unknown namespaces parse as ``unsupported`` (and are rejected
later, by :func:`relay.metrics.bucket.normalize_bucket`), and the name is normalized rather
than refused when it contains characters outside ``[a-zA-Z0-9_.]``.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

__all__ = [
    "NAMESPACES",
    "MetricResourceIdentifier",
    "ParseMetricError",
    "is_valid_tag_key",
    "metric_namespace",
    "normalize_metric_name",
    "normalize_tag_value",
    "parse_metric_type",
    "parse_metric_unit",
    "parse_mri",
]

#: Namespaces Relay knows; anything else is ``unsupported``.
NAMESPACES: Final = frozenset({"sessions", "spans", "transactions", "outcomes"})
UNSUPPORTED: Final = "unsupported"

_TYPE_ALIASES: Final = {
    "c": "c",
    "m": "c",
    "d": "d",
    "h": "d",
    "ms": "d",
    "s": "s",
    "g": "g",
}

_DURATION = ("nanosecond", "microsecond", "millisecond", "second", "minute", "hour", "day", "week")
_INFORMATION = (
    "bit",
    "byte",
    "kilobyte",
    "kibibyte",
    "megabyte",
    "mebibyte",
    "gigabyte",
    "gibibyte",
    "terabyte",
    "tebibyte",
    "petabyte",
    "pebibyte",
    "exabyte",
    "exbibyte",
)
_UNITS: Final[dict[str, str]] = {
    **{unit: unit for unit in (*_DURATION, *_INFORMATION, "ratio", "percent", "none")},
    "ns": "nanosecond",
    "ms": "millisecond",
    "s": "second",
    "": "none",
}
_CUSTOM_UNIT = re.compile(r"[0-9A-Za-z_]{1,15}")
# `-` is deliberately not kept: Relay maps it to `_` like every other odd character.
_NAME_INVALID_RUN = re.compile(r"[^a-zA-Z0-9_.]+")
_MAX_NAME_LEN: Final = 150
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNICODE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ParseMetricError(ValueError):
    """The string is not a metric resource identifier."""


class MetricResourceIdentifier(msgspec.Struct, frozen=True):
    """A parsed MRI; ``str()`` gives its canonical form with an explicit unit."""

    type: str
    namespace: str
    name: str
    unit: str

    def __str__(self) -> str:
        return f"{self.type}:{self.namespace}/{self.name}@{self.unit}"


def parse_metric_type(raw: str) -> str:
    """The canonical type letter (``c``, ``d``, ``s``, ``g``) of a type or alias."""
    try:
        return _TYPE_ALIASES[raw]
    except KeyError:
        raise ParseMetricError(f"invalid metric type {raw!r}") from None


def parse_metric_unit(raw: str) -> str:
    """The canonical unit name; custom units are lowercased word characters (max 15)."""
    unit = _UNITS.get(raw)
    if unit is not None:
        return unit
    if _CUSTOM_UNIT.fullmatch(raw) is None:
        raise ParseMetricError(f"invalid metric unit {raw!r}")
    return raw.lower()


def normalize_metric_name(name: str) -> str | None:
    """Relay's metric name normalization, or ``None`` if the name can never be valid."""
    if not name or not (name[0].isascii() and name[0].isalpha()):
        return None
    normalized = _NAME_INVALID_RUN.sub("_", name)
    # Only ASCII survives the substitution, so slicing by characters equals slicing bytes.
    return normalized[:_MAX_NAME_LEN]


def parse_mri(raw: str) -> MetricResourceIdentifier:
    """Parse ``<type>:<namespace>/<name>[@<unit>]``; raise :class:`ParseMetricError`."""
    raw_type, sep, rest = raw.partition(":")
    if not sep:
        raise ParseMetricError("missing metric type")
    metric_type = parse_metric_type(raw_type)
    # Relay splits on every `@` and only looks at the first two parts.
    parts = rest.split("@")
    unit = parse_metric_unit(parts[1]) if len(parts) > 1 else "none"
    raw_namespace, slash, raw_name = parts[0].partition("/")
    if not slash:
        raise ParseMetricError("missing metric namespace")
    namespace = raw_namespace if raw_namespace in NAMESPACES else UNSUPPORTED
    name = normalize_metric_name(raw_name)
    if name is None:
        raise ParseMetricError(f"invalid metric name {raw_name!r}")
    return MetricResourceIdentifier(metric_type, namespace, name, unit)


def metric_namespace(name: str) -> str:
    """The namespace of a well-formed MRI string, without parsing it fully.

    Mirrors ``MetricName::namespace``: the text between the type prefix and the first
    ``/``, or ``unsupported``.
    """
    candidate = name[2:].split("/", 1)[0]
    return candidate if candidate in NAMESPACES else UNSUPPORTED


def is_valid_tag_key(key: str) -> bool:
    """Tag keys with ASCII control characters are dropped."""
    return _ASCII_CONTROL.search(key) is None


def normalize_tag_value(value: str) -> str:
    """Tag values lose their control characters (SDKs sending UTF-16 as UTF-8 add NULs)."""
    if value.isprintable():
        return value
    return _UNICODE_CONTROL.sub("", value)
