"""Read-only access to the fields of an event payload that filters look at.

Works on the JSON shape Relay produces after normalization (headers as a list of pairs,
``exception.values``, ``logentry``), and tolerates the raw SDK shapes where they differ
(headers as an object, a bare ``message`` string, frames with only ``filename``), so the result
is the same whether a relay filters before or after full normalization.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from relay.filters.release import parse_release

__all__ = ["EventView", "normalize_header_name"]


def normalize_header_name(name: str) -> str:
    """Relay's header-name normalization: upper-case the first letter of each dash segment."""
    out: list[str] = []
    upper = True
    for c in name:
        out.append(c.upper() if upper else c)
        upper = c == "-"
    return "".join(out)


def _header_value(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # Relay joins array header values with commas.
        return ",".join(_lenient_str(v) or "" for v in value if v is not None)
    return _lenient_str(value)


def _lenient_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _nonempty(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _scalar(value: Any) -> Any:
    """A JSON scalar as a condition value; containers are not comparable."""
    if isinstance(value, str | bool | int | float):
        return value
    return None


# Context fields Relay's getter exposes, by context key; all other paths read as missing.
_CONTEXT_FIELDS: Final[dict[str, frozenset[str]]] = {
    "app": frozenset({"in_foreground", "device_app_hash"}),
    "device": frozenset(
        {
            "arch",
            "battery_level",
            "brand",
            "charging",
            "family",
            "model",
            "locale",
            "online",
            "orientation",
            "name",
            "screen_density",
            "screen_dpi",
            "screen_width_pixels",
            "screen_height_pixels",
            "simulator",
            "uuid",
        }
    ),
    "gpu": frozenset({"vendor_name", "name"}),
    "monitor": frozenset({"id", "slug"}),
    "os": frozenset({"build", "kernel_version", "name", "version", "rooted"}),
    "browser": frozenset({"name", "version"}),
    "profile": frozenset({"profile_id"}),
    "trace": frozenset({"status", "op"}),
    "response": frozenset({"status_code"}),
    "unreal": frozenset({"crash_type"}),
    "runtime": frozenset({"name"}),
}
# `event.contexts.os` etc. read the context's raw description field of the same name.
_CONTEXT_ROOTS: Final = frozenset({"os", "browser", "runtime"})


class _ExceptionView:
    """Getter for one exception inside ``any``/``all`` over ``event.exception.values``."""

    __slots__ = ("_exc",)

    def __init__(self, exc: Mapping[str, Any]) -> None:
        self._exc = exc

    def get_value(self, path: str) -> Any:
        if path == "ty":
            return _str(self._exc.get("type"))
        if path == "value":
            return _str(self._exc.get("value"))
        return None

    def get_iter(self, path: str) -> Iterable[Any] | None:
        return None


class EventView:
    """The filterable view of one event; computes each field at most once."""

    __slots__ = ("_client_ip", "_event", "_headers", "_ua", "_ua_done")

    def __init__(self, event: Mapping[str, Any], client_ip: str | None = None) -> None:
        self._event = event
        self._client_ip = client_ip
        self._headers: list[tuple[str, str]] | None = None
        self._ua: str | None = None
        self._ua_done = False

    # -- fields used by the built-in filters --------------------------------------------

    @property
    def event_type(self) -> str | None:
        return _str(self._event.get("type"))

    def csp(self) -> Mapping[str, Any] | None:
        """The CSP report, only for events of type ``csp``."""
        if self.event_type != "csp":
            return None
        return _dict(self._event.get("csp"))

    def exceptions(self) -> list[Mapping[str, Any] | None]:
        """Exception values, in order; None for entries that are not objects."""
        exc = self._event.get("exception")
        if exc is None:
            exc = self._event.get("exceptions")  # legacy alias accepted by Relay's schema
        values: Any = exc.get("values") if isinstance(exc, Mapping) else exc
        if not isinstance(values, list):
            return []
        return [v if isinstance(v, Mapping) else None for v in values]

    def has_exceptions(self) -> bool:
        """Whether the event carries an exception list (even with null entries)."""
        exc = self._event.get("exception")
        if isinstance(exc, Mapping):
            return isinstance(exc.get("values"), list)
        return isinstance(exc, list)

    def ip_addr(self) -> str | None:
        user = _dict(self._event.get("user"))
        return _str(user.get("ip_address")) if user is not None else None

    def logentry(self) -> Mapping[str, Any] | None:
        logentry = self._event.get("logentry")
        if logentry is None:
            logentry = self._event.get("message")
        if isinstance(logentry, str):
            # A bare string is a message without parameters.
            return {"message": logentry}
        return _dict(logentry)

    def release(self) -> str | None:
        return _lenient_str(self._event.get("release"))

    def transaction(self) -> str | None:
        """The transaction name, only for transaction events."""
        if self.event_type != "transaction":
            return None
        return _str(self._event.get("transaction"))

    def request(self) -> Mapping[str, Any] | None:
        return _dict(self._event.get("request"))

    def url(self) -> str | None:
        request = self.request()
        return _str(request.get("url")) if request is not None else None

    def headers(self) -> list[tuple[str, str]]:
        """Request headers as (normalized name, value) pairs, in order."""
        if self._headers is not None:
            return self._headers
        pairs: list[tuple[str, str]] = []
        request = self.request()
        raw = request.get("headers") if request is not None else None
        items: Iterable[Any]
        if isinstance(raw, Mapping):
            # Relay sorts headers that arrive as an object.
            items = sorted(raw.items(), key=lambda kv: normalize_header_name(str(kv[0])))
        elif isinstance(raw, list):
            items = raw
        else:
            items = ()
        for item in items:
            if not isinstance(item, list | tuple) or len(item) != 2:
                continue
            name, value = item
            if not isinstance(name, str):
                continue
            text = _header_value(value)
            if text is not None:
                pairs.append((normalize_header_name(name), text))
        self._headers = pairs
        return pairs

    def header(self, name: str) -> str | None:
        """First header with exactly this (normalized) name."""
        for key, value in self.headers():
            if key == name:
                return value
        return None

    def user_agent(self) -> str | None:
        """The ``User-Agent`` request header (any case), as Relay reads it for filters."""
        if not self._ua_done:
            self._ua_done = True
            for key, value in self.headers():
                if key.lower() == "user-agent":
                    self._ua = value
                    break
        return self._ua

    # -- Getter for generic filter conditions ---------------------------------------------

    def get_value(self, path: str) -> Any:
        """Relay's ``Getter`` paths for events, plus ``envelope.client_ip``."""
        if path == "envelope.client_ip":
            if self._client_ip is None:
                return None
            try:
                return ipaddress.ip_address(self._client_ip)
            except ValueError:
                return None
        if not path.startswith("event."):
            return None
        rest = path[6:]
        event = self._event
        simple = _SIMPLE_FIELDS.get(rest)
        if simple is not None:
            return (
                _lenient_str(event.get(simple)) if simple == "release" else _str(event.get(simple))
            )
        if rest == "level":
            return _str(event.get("level"))
        if rest == "platform":
            return _str(event.get("platform")) or "other"
        first, _, tail = rest.partition(".")
        if first == "logentry":
            logentry = self.logentry()
            return _str(logentry.get(tail)) if logentry and tail in _LOGENTRY else None
        if first == "user":
            user = _dict(event.get("user"))
            if user is None:
                return None
            if tail in ("email", "id", "segment"):
                return _nonempty(_lenient_str(user.get(tail)))
            if tail in ("ip_address", "name", "sentry_user"):
                return _str(user.get(tail))
            if tail.startswith("geo."):
                geo = _dict(user.get("geo"))
                field = tail[4:]
                if geo is not None and field in ("city", "country_code", "region", "subdivision"):
                    return _str(geo.get(field))
            return None
        if first == "sentry_user":
            user = _dict(event.get("user"))
            return _str(user.get("sentry_user")) if user is not None else None
        if first == "request":
            request = self.request()
            if request is None:
                return None
            if tail in ("method", "url"):
                return _str(request.get(tail))
            if tail.startswith("headers."):
                return self.header(tail[8:])
            return None
        if rest == "transaction.source":
            info = _dict(event.get("transaction_info"))
            return _str(info.get("source")) if info is not None else None
        if first == "sdk":
            sdk = _dict(event.get("sdk"))
            return _str(sdk.get(tail)) if sdk is not None and tail in ("name", "version") else None
        if first == "contexts":
            return self._context_value(tail)
        if rest == "duration":
            return self._duration()
        if first == "release":
            return self._release_part(tail)
        if first == "measurements":
            if not tail.endswith(".value"):
                return None
            measurements = _dict(event.get("measurements"))
            entry = _dict(measurements.get(tail[:-6])) if measurements is not None else None
            return _num(entry.get("value")) if entry is not None else None
        if first == "breakdowns":
            name, _, measurement = tail.partition(".")
            breakdowns = _dict(event.get("breakdowns"))
            group = _dict(breakdowns.get(name)) if breakdowns is not None else None
            entry = _dict(group.get(measurement)) if group is not None else None
            return _num(entry.get("value")) if entry is not None else None
        if first == "extra":
            return self._extra(tail)
        if first == "tags":
            return self._tag(tail)
        return None

    def get_iter(self, path: str) -> Iterable[Any] | None:
        """Arrays that ``any``/``all`` conditions can walk."""
        if path == "event.exception.values" and self.has_exceptions():
            return _iter_exceptions(self._event)
        return None

    def _context_value(self, path: str) -> Any:
        contexts = _dict(self._event.get("contexts"))
        if contexts is None:
            return None
        key, _, field = path.partition(".")
        ctx = _dict(contexts.get(key))
        if ctx is None:
            return None
        if not field:
            return _str(ctx.get(key)) if key in _CONTEXT_ROOTS else None
        if field not in _CONTEXT_FIELDS.get(key, ()):
            return None
        return _scalar(ctx.get(field))

    def _duration(self) -> float | None:
        if self.event_type != "transaction":
            return None
        start = _num(self._event.get("start_timestamp"))
        end = _num(self._event.get("timestamp"))
        if start is None or end is None or start > end:
            return None
        return (end - start) * 1000.0

    def _release_part(self, part: str) -> str | None:
        release = self.release()
        if release is None:
            return None
        parsed = parse_release(release)
        if parsed is None:
            return None
        if part == "build":
            return parsed.build_hash
        if part == "package":
            return parsed.package
        if part == "version.short":
            return parsed.version.short() if parsed.version is not None else None
        return None

    def _extra(self, path: str) -> Any:
        value: Any = self._event.get("extra")
        for key in path.split("."):
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return _scalar(value)

    def _tag(self, key: str) -> str | None:
        tags = self._event.get("tags")
        if isinstance(tags, Mapping):
            return _lenient_str(tags.get(key))
        if isinstance(tags, list):
            for item in tags:
                if isinstance(item, list | tuple) and len(item) == 2 and item[0] == key:
                    return _lenient_str(item[1])
        return None


_SIMPLE_FIELDS: Final = {
    "release": "release",
    "dist": "dist",
    "environment": "environment",
    "transaction": "transaction",
    "logger": "logger",
}
_LOGENTRY: Final = frozenset({"formatted", "message"})


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _iter_exceptions(event: Mapping[str, Any]) -> Iterator[_ExceptionView]:
    exc = event.get("exception")
    values = exc.get("values") if isinstance(exc, Mapping) else exc
    if isinstance(values, list):
        for value in values:
            # Null entries have no fields: every field reads as missing.
            yield _ExceptionView(value if isinstance(value, Mapping) else {})
