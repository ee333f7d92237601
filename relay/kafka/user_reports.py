"""User report messages (the legacy ``user_report`` item) for ``ingest-attachments``."""

from __future__ import annotations

import msgpack


def encode_user_report_message(*, project_id: int, start_time: int, payload: bytes) -> bytes:
    """Encode a ``user_report`` message as Relay writes it.

    ``payload`` is the user report JSON (it contains the event id). Relay keys the message
    by the event id (:func:`relay.kafka.keys.partition_key_for`) but does not write the id
    into the message, so the message does not satisfy the ``ingest-attachments`` schema,
    which requires ``event_id``; Sentry's consumer reads only ``project_id``,
    ``start_time`` and ``payload``.
    """
    return msgpack.packb(
        {
            "type": "user_report",
            "project_id": project_id,
            "start_time": start_time,
            "payload": bytes(payload),
        },
        use_bin_type=True,
    )
