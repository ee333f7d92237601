"""The dynamic sampling context (DSC, the envelope's ``trace`` header), rebuilt from an event.

An SDK puts the DSC of the trace's root project in every envelope. Dynamic sampling never
crosses organizations: when the root project's key belongs to another organization (or is
unknown or disabled), Relay replaces the DSC by one computed from the envelope's own
transaction, the way an SDK would, keyed by the envelope's own public key. Only the
``sample_rate`` survives: the client really applied it.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import msgspec

__all__ = ["dsc_from_transaction", "parse_sample_rate", "rebuild_dsc"]


def parse_sample_rate(value: Any) -> float | None:
    """A DSC ``sample_rate`` (a number, or a number in a string) if valid and not negative."""
    if isinstance(value, str):
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    rate = float(value)
    if not math.isfinite(rate) or rate < 0:
        return None
    return rate


def _trace_id(event: dict[str, Any]) -> str | None:
    contexts = event.get("contexts")
    trace = contexts.get("trace") if isinstance(contexts, dict) else None
    value = trace.get("trace_id") if isinstance(trace, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value).hex
    except ValueError:
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def dsc_from_transaction(event: Any, public_key: str) -> dict[str, Any] | None:
    """The DSC an SDK would send with this transaction; None for other events.

    Needs ``type: transaction`` and a valid ``contexts.trace.trace_id``. Fields the event
    lacks are ``null``, as Relay writes them; user fields only when set.
    """
    if not isinstance(event, dict) or event.get("type") != "transaction":
        return None
    trace_id = _trace_id(event)
    if trace_id is None:
        return None
    dsc: dict[str, Any] = {
        "trace_id": trace_id,
        "public_key": public_key,
        "release": _str(event.get("release")),
        "environment": _str(event.get("environment")),
        "transaction": _str(event.get("transaction")),
        "replay_id": None,
    }
    user = event.get("user")
    if isinstance(user, dict):
        segment = user.get("segment")
        if isinstance(segment, str) and segment:
            dsc["user_segment"] = segment
        user_id = user.get("id")
        if isinstance(user_id, int | float) and not isinstance(user_id, bool):
            user_id = str(user_id)
        if isinstance(user_id, str) and user_id:
            dsc["user_id"] = user_id
    return dsc


def rebuild_dsc(original: Any, event: Any, public_key: str) -> dict[str, Any] | None:
    """A DSC computed from ``event`` that keeps ``original``'s sample rate (as a string).

    None when the event cannot provide one; the envelope then carries no DSC at all.
    """
    dsc = dsc_from_transaction(event, public_key)
    if dsc is None:
        return None
    rate = parse_sample_rate(original.get("sample_rate")) if isinstance(original, dict) else None
    if rate is not None:
        dsc["sample_rate"] = msgspec.json.encode(rate).decode()
    return dsc
