"""Check-in messages for ``ingest-monitors`` (msgpack)."""

from __future__ import annotations

import msgpack


def encode_check_in_message(
    *, payload: bytes, project_id: int, start_time: float, sdk: str | None, retention_days: int
) -> bytes:
    """Encode a ``check_in`` message as Relay's store service writes it.

    ``payload`` is the check-in JSON, ``start_time`` the receipt time in seconds and
    ``sdk`` the client's ``sentry_client`` string.
    """
    return msgpack.packb(
        {
            "message_type": "check_in",
            "payload": bytes(payload),
            "start_time": start_time,
            "sdk": sdk,
            "project_id": project_id,
            "retention_days": retention_days,
        },
        use_bin_type=True,
    )
