"""The dynamic sampling context (DSC, the envelope's ``trace`` header) as rules read it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DscView", "trace_id_of", "uuid_field"]


def uuid_field(mapping: Mapping[str, Any], key: str) -> uuid.UUID | None:
    """``mapping[key]`` as a UUID; None when it is absent or not one."""
    raw = mapping.get(key)
    if not isinstance(raw, str):
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def trace_id_of(dsc: Mapping[str, Any]) -> uuid.UUID | None:
    """The DSC's trace id (the seed of trace and project rules); None if it is not one."""
    return uuid_field(dsc, "trace_id")


def _nonempty(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class DscView:
    """``trace.*`` fields of a DSC for rule conditions (Relay's DSC getter)."""

    __slots__ = ("_dsc",)

    def __init__(self, dsc: Mapping[str, Any]) -> None:
        self._dsc = dsc

    def _user(self, field: str) -> str | None:
        # Flat ``user_id``/``user_segment`` win; the nested ``user`` object is the fallback.
        flat_id = _nonempty(self._dsc.get("user_id"))
        flat_segment = _nonempty(self._dsc.get("user_segment"))
        if flat_id is not None or flat_segment is not None:
            return flat_id if field == "id" else flat_segment
        user = self._dsc.get("user")
        if not isinstance(user, Mapping):
            return None
        return _nonempty(user.get(field))

    def get_value(self, path: str) -> Any:
        """The value at a ``trace.*`` path, or None."""
        if not path.startswith("trace."):
            return None
        name = path[6:]
        if name in ("release", "environment"):
            value = self._dsc.get(name)
            return value if isinstance(value, str) else None
        if name == "transaction":
            value = self._dsc.get("transaction", self._dsc.get("segment_name"))
            return value if isinstance(value, str) else None
        if name == "user.id":
            return self._user("id")
        if name == "user.segment":
            return self._user("segment")
        if name == "replay_id":
            value = self._dsc.get("replay_id")
            if not isinstance(value, str):
                return None
            try:
                # Relay compares the canonical (hyphenated) form.
                return str(uuid.UUID(value))
            except ValueError:
                return None
        return None

    def get_iter(self, path: str) -> Iterable[Any] | None:
        """A DSC has no arrays for ``any``/``all``."""
        del path
        return None
