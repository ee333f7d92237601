"""Sentry logs (Relay's ``OurLog``): attributes, canonical size, normalization, containers.

A log is a JSON object with ``timestamp`` (Unix seconds), ``trace_id``, ``level``, ``body``
and ``attributes``: a map of name to ``{"type": ..., "value": ...}``. Logs travel in a
``log`` item holding a container ``{"version": 2, "items": [...]}``; each entry carries a
``__header`` with the ``byte_size`` the first relay measured, so later hops count the same
bytes for quotas and outcomes even after attributes were added.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Final

import msgspec

from relay.normalize.meta import utf8_len
from relay.normalize.useragent import browser_from_user_agent
from relay.protocol.attributes import typed_attribute

__all__ = [
    "LOG_CONTAINER_CONTENT_TYPE",
    "Attributes",
    "LogTimestampOutOfRange",
    "check_log_timestamp",
    "encode_log_container",
    "log_byte_size",
    "normalize_log",
]

#: Content type of a ``log`` item holding a log container.
LOG_CONTAINER_CONTENT_TYPE: Final = "application/vnd.sentry.items.log+json"
#: The container version this relay writes (ingest settings are for SDKs, not relays).
LOG_CONTAINER_VERSION: Final = 2

#: Attribute name to ``{"type": ..., "value": ...}``.
Attributes = dict[str, dict[str, Any]]

OBSERVED_TIMESTAMP_NANOS: Final = "sentry.observed_timestamp_nanos"
RELAY_INGRESS: Final = "sentry.relay.ingress"
USER_AGENT_ORIGINAL: Final = "user_agent.original"
BROWSER_NAME: Final = "browser.name"
BROWSER_VERSION: Final = "browser.version"

_encoder = msgspec.json.Encoder()


class LogTimestampOutOfRange(ValueError):
    """A log's timestamp is older than the project keeps data (outcome ``timestamp``)."""

    # ClassVar: mypyc would otherwise make it an instance attribute, never set.
    reason: ClassVar[str] = "timestamp"


def _value_size(value: Any) -> int:
    # Relay's canonical sizes: fixed 1/8 bytes for scalars, UTF-8 length for strings.
    if isinstance(value, str):
        return utf8_len(value)
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 8
    if isinstance(value, list):
        return sum(_value_size(v) for v in value)
    if isinstance(value, dict):
        return sum(utf8_len(str(k)) + _value_size(v) for k, v in value.items())
    return 0


def log_byte_size(log: dict[str, Any]) -> int:
    """The canonical size of a log (body plus attribute names and values), at least 1.

    Computed on every log at the first relay (the container's ``byte_size``), so it reads
    only what it sizes and copies no string.
    """
    size = 0
    body = log.get("body")
    if isinstance(body, str):
        size += utf8_len(body)
    attributes = log.get("attributes")
    if isinstance(attributes, dict):
        for name, attr in attributes.items():
            size += utf8_len(str(name))
            if isinstance(attr, dict):
                size += _value_size(attr.get("value"))
    return max(size, 1)


def check_log_timestamp(
    log: dict[str, Any], received_at: float, max_secs_in_past: float, max_secs_in_future: float
) -> None:
    """Enforce the time window: too old is an error, too far in the future is clamped.

    A timestamp more than ``max_secs_in_future`` ahead comes from a drifting clock; like
    Relay, it is corrected to the arrival time. Raises :class:`LogTimestampOutOfRange`.
    """
    timestamp = log.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return
    if not math.isfinite(timestamp):
        raise LogTimestampOutOfRange("log timestamp is not a finite number")
    if timestamp > received_at + max_secs_in_future:
        log["timestamp"] = received_at
    elif timestamp < received_at - max_secs_in_past:
        raise LogTimestampOutOfRange(
            f"the log's timestamp ({timestamp}) is too far in the past "
            f"({received_at - max_secs_in_past})"
        )


def _insert_if_missing(attributes: Attributes, name: str, value: str) -> None:
    if name not in attributes:
        attributes[name] = typed_attribute(value)


def normalize_log(
    log: dict[str, Any],
    *,
    received_at: float,
    ingress: str,
    user_agent: str | None = None,
) -> None:
    """Relay's attribute normalization of a log, in place.

    Adds when missing: the arrival time (``sentry.observed_timestamp_nanos``), how the log
    entered (``sentry.relay.ingress``: ``integration``, ``container`` ...) and, when a client
    ``user_agent`` is given (only for clients that are the browser itself), the user agent
    and the browser it names. Attributes already present are never overwritten.
    """
    attributes = log.get("attributes")
    if not isinstance(attributes, dict):
        attributes = log["attributes"] = {}
    _insert_if_missing(attributes, OBSERVED_TIMESTAMP_NANOS, str(int(received_at * 1e9)))
    if BROWSER_NAME not in attributes and BROWSER_VERSION not in attributes:
        if user_agent:
            _insert_if_missing(attributes, USER_AGENT_ORIGINAL, user_agent)
        original = attributes.get(USER_AGENT_ORIGINAL)
        value = original.get("value") if isinstance(original, dict) else None
        browser = browser_from_user_agent(value) if isinstance(value, str) else None
        if browser is not None:
            name, version = browser
            _insert_if_missing(attributes, BROWSER_NAME, name)
            if version is not None:
                _insert_if_missing(attributes, BROWSER_VERSION, version)
    _insert_if_missing(attributes, RELAY_INGRESS, ingress)


def encode_log_container(logs: list[tuple[dict[str, Any], int]]) -> bytes:
    """A version 2 log container of ``(log, byte_size)`` pairs."""
    items = [{"__header": {"byte_size": size}, **log} for log, size in logs]
    return _encoder.encode({"version": LOG_CONTAINER_VERSION, "items": items})
