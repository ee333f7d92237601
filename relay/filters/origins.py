"""Matching URLs against origin patterns like ``*.example.com``, ``https://x:8080``, ``*``.

Used for a project's ``allowedDomains`` (the request's Origin or Referer) and for CSP
filters. A pattern's parts left out (or ``*``) match anything; a domain starting with
``*`` matches that suffix and the bare domain after ``*.``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class SchemeDomainPort(NamedTuple):
    """An origin split into its parts; None means "any"."""

    scheme: str | None
    domain: str | None
    port: str | None

    @classmethod
    def parse(cls, url: str) -> SchemeDomainPort:
        """Split ``scheme://domain:port/path`` leniently, lower-casing each part."""
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "", url
        host_port = rest.split("/", 1)[0]
        bracket = host_port.rfind("]")
        colon = host_port.rfind(":")
        if colon > bracket:
            domain, port = host_port[:colon], host_port[colon + 1 :]
        else:
            domain, port = host_port, None
        return cls(_part(scheme) if sep else None, _part(domain), _part(port))

    @property
    def is_wildcard(self) -> bool:
        return self.scheme is None and self.domain is None and self.port is None


def _part(value: str | None) -> str | None:
    if value is None or value == "*":
        return None
    return value.lower()


def compile_origins(patterns: Iterable[str]) -> list[SchemeDomainPort]:
    """Parse patterns once (per project config revision)."""
    return [SchemeDomainPort.parse(p) for p in patterns]


def matches_any_origin(url: str | None, origins: list[SchemeDomainPort]) -> bool:
    """Whether ``url`` matches one of ``origins``; a bare ``*`` matches even no URL."""
    if any(origin.is_wildcard for origin in origins):
        return True
    if url is None:
        return False
    target = SchemeDomainPort.parse(url)
    for origin in origins:
        if origin.scheme is not None and origin.scheme != target.scheme:
            continue
        if origin.port is not None and origin.port != target.port:
            continue
        if origin.domain is not None and origin.domain != target.domain:
            domain = target.domain
            pattern = origin.domain
            if (
                domain is not None
                and pattern.startswith("*")
                and (domain.endswith(pattern[1:]) or domain == pattern[2:])
            ):
                return True
            continue
        return True
    return False
