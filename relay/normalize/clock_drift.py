"""Clock drift correction from the envelope's ``sent_at`` header.

An SDK stamps the envelope with its own clock (``sent_at``). When that clock differs from
the relay's receive time by at least :data:`MINIMUM_CLOCK_DRIFT_SECS`, every timestamp of
the event is shifted by the difference and a ``clock_drift`` error on ``timestamp`` keeps
both clocks. Smaller differences are network latency or harmless skew and stay as sent;
the 55-minute bound still catches clocks set to the wrong time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from relay.normalize.meta import Meta, add_error, child
from relay.normalize.timestamps import rfc3339_ns, shift_event_timestamps

#: Relay's lower bound for a correction (``MINIMUM_CLOCK_DRIFT``), in seconds.
MINIMUM_CLOCK_DRIFT_SECS: Final = 55 * 60


def drift_ns(sent_at_ns: int, received_ns: int, minimum_secs: int) -> int | None:
    """The signed correction ``received - sent`` in nanoseconds, or None if too small.

    Whole seconds are compared, truncated toward zero, so a drift of 54:59.9 is not one.
    """
    drift = received_ns - sent_at_ns
    whole_secs = abs(drift) // 1_000_000_000
    return drift if whole_secs >= minimum_secs else None


def correct_clock_drift(
    event: dict[str, Any],
    meta: Meta,
    sent_at_ns: int,
    received_ns: int,
    minimum_secs: int = MINIMUM_CLOCK_DRIFT_SECS,
) -> bool:
    """Shift the event's timestamps when the sender's clock drifted; returns whether it did.

    ``event`` is the typed event (timestamps as Unix seconds); ``meta`` its meta tree.
    """
    drift = drift_ns(sent_at_ns, received_ns, minimum_secs)
    if drift is None:
        return False
    shift_event_timestamps(event, drift)
    add_error(
        child(meta, "timestamp"),
        [
            "clock_drift",
            {"sdk_time": rfc3339_ns(sent_at_ns), "server_time": rfc3339_ns(received_ns)},
        ],
    )
    return True


def sent_at_now() -> str:
    """The ``sent_at`` header a relay puts on envelopes it forwards: its own clock, now.

    The event's timestamps were corrected on this hop, so the next one measures drift
    against this relay's clock rather than the SDK's (which would shift them twice).
    """
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
