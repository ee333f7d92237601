"""Inbound filters on profiles and profile chunks.

Relay filters a profile on its own fields, not on its transaction's: a profile only
exposes its ``release`` (release filter, generic ``event.release``) and ``platform``
(generic ``event.platform``). Everything else a filter could look at is absent, so the
other filters never match a profile (except ``clientIps``, which reads the request).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay.filters.inbound import CompiledFilters

__all__ = ["filterable_profile", "should_filter_profile"]


def filterable_profile(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The event-shaped view of a profile: only the fields its filters may read."""
    view: dict[str, Any] = {}
    release = profile.get("release")
    if isinstance(release, str):
        view["release"] = release
    platform = profile.get("platform")
    if isinstance(platform, str):
        view["platform"] = platform
    return view


def should_filter_profile(
    filters: CompiledFilters, profile: Any, *, client_ip: str | None = None
) -> str | None:
    """The outcome reason of the filter that drops this decoded profile, else None.

    A profile that is not a JSON object is never filtered here (parsing reports it).
    """
    if filters.is_empty or not isinstance(profile, Mapping):
        return None
    return filters.should_filter(filterable_profile(profile), client_ip=client_ip)
