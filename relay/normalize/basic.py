"""The minimum every stored event needs: its id, receipt time and timestamp."""

from __future__ import annotations

from typing import Any


def prepare_event(event: dict[str, Any], event_id: str, received_at: float) -> dict[str, Any]:
    """Force the envelope's event id and fill ``received``/``timestamp``/``platform``.

    Sentry's consumers key everything by the envelope's event id, so a conflicting id in
    the payload is overwritten, as Relay does.
    """
    event["event_id"] = event_id
    event["received"] = received_at
    if not isinstance(event.get("timestamp"), int | float | str):
        event["timestamp"] = received_at
    if not isinstance(event.get("platform"), str):
        event["platform"] = "other"
    return event
