"""PII level of attribute and span-data keys according to sentry-conventions."""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from relay.pii.conventions_data import ATTRIBUTE_SCRUBBING
from relay.pii.value_types import Pii

_PLACEHOLDER: Final = "<key>"
_LEVELS: Final = {"a": Pii.TRUE, "m": Pii.MAYBE, "n": Pii.FALSE}

_Node = tuple[dict[str, "_Node"], list[Pii]]  # children, [level] or []


def _build() -> _Node:
    root: _Node = ({}, [])
    for key, level in ATTRIBUTE_SCRUBBING.items():
        node = root
        for part in key.split("."):
            node = node[0].setdefault(part, ({}, []))
        node[1][:] = [_LEVELS[level]]
    return root


_ROOT: Final = _build()


def _find(node: _Node, key: str) -> Pii | None:
    if not key:
        return node[1][0] if node[1] else None
    prefix, _, suffix = key.partition(".")
    # A literal segment wins over the placeholder, as in Relay's lookup.
    if prefix != _PLACEHOLDER:
        child = node[0].get(prefix)
        if child is not None:
            found = _find(child, suffix)
            if found is not None:
                return found
    child = node[0].get(_PLACEHOLDER)
    if child is not None:
        return _find(child, suffix)
    return None


@lru_cache(maxsize=8192)
def attribute_scrubbing(key: str) -> Pii | None:
    """PII level for a known attribute key, or None when sentry-conventions does not know it."""
    return _find(_ROOT, key)
