"""Typed attributes, the ``{"type": ..., "value": ...}`` pairs of logs and V2 spans."""

from __future__ import annotations

from typing import Any


def typed_attribute(value: str | int | float | bool) -> dict[str, Any]:
    """The typed attribute of a plain value (``bool`` before ``int``: it is one in Python)."""
    if isinstance(value, bool):
        return {"type": "boolean", "value": value}
    if isinstance(value, int):
        return {"type": "integer", "value": value}
    if isinstance(value, float):
        return {"type": "double", "value": value}
    return {"type": "string", "value": value}
