"""User-agent parsing for the legacy-browsers filter (and the web-crawlers fallback).

Relay parses with the uap-core rule set (``relay-ua``). We use the ``ua-parser`` package with
its bundled uap-core rules (``ua-parser-builtins``) and the native ``ua-parser-rs`` matcher:
about 4 µs for an unseen string. Only the browser domain is resolved, and results are kept in
a bounded LRU keyed by the raw string, because real traffic repeats a small set of agents.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Final, NamedTuple

__all__ = ["ParsedUserAgent", "init_parser", "parse_user_agent"]

CACHE_SIZE: Final = 4096
# Longer strings are not cached: they are rare, and caching them would let one client pin memory.
_MAX_CACHED_LEN: Final = 512


class ParsedUserAgent(NamedTuple):
    """Browser family and version parts; family "Other" when nothing matched."""

    family: str
    major: str | None = None
    minor: str | None = None
    patch: str | None = None


OTHER: Final = ParsedUserAgent("Other")

_lock = threading.Lock()
_resolver: object | None = None
_cache: OrderedDict[str, ParsedUserAgent] = OrderedDict()


def _load() -> object:
    global _resolver
    with _lock:
        if _resolver is None:
            import ua_parser
            from ua_parser import regex

            # ~0.2 s once per process: load the builtin rules and compile them natively.
            _resolver = regex.Resolver(ua_parser.load_builtins())
        return _resolver


def init_parser() -> None:
    """Compile the rule set now instead of on the first parsed event."""
    _load()


def _parse_uncached(user_agent: str) -> ParsedUserAgent:
    from ua_parser import Domain

    resolver = _resolver if _resolver is not None else _load()
    result = resolver(user_agent, Domain.USER_AGENT)  # type: ignore[operator]
    ua = result.user_agent
    if ua is None:
        return OTHER
    return ParsedUserAgent(ua.family, ua.major, ua.minor, ua.patch)


def parse_user_agent(user_agent: str) -> ParsedUserAgent:
    """Parse the browser part of ``user_agent`` (cached)."""
    cached = _cache.get(user_agent)
    if cached is not None:
        # Another thread may have evicted it meanwhile; the value is still right.
        with contextlib.suppress(KeyError):
            _cache.move_to_end(user_agent)
        return cached
    parsed = _parse_uncached(user_agent)
    if len(user_agent) <= _MAX_CACHED_LEN:
        _cache[user_agent] = parsed
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return parsed
