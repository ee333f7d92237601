"""Profile and profile chunk messages for the ``profiles`` topic (msgpack)."""

from __future__ import annotations

import msgpack


def profile_headers(project_id: int, sampled: bool) -> list[tuple[str, bytes]]:
    """Kafka headers of a profile message; the consumer routes unsampled profiles by them.

    In Relay's order (its headers are a sorted map): ``project_id``, then ``sampled``.
    """
    return [("project_id", str(project_id).encode()), ("sampled", b"true" if sampled else b"false")]


def encode_profile_message(
    *,
    organization_id: int,
    project_id: int,
    key_id: int | None,
    received: int,
    retention_days: int,
    payload: bytes,
) -> bytes:
    """Encode a ``profile`` message (a transaction profile, payload as sent)."""
    return msgpack.packb(
        {
            "type": "profile",
            "organization_id": organization_id,
            "project_id": project_id,
            "key_id": key_id,
            "received": received,
            "retention_days": retention_days,
            "payload": bytes(payload),
        },
        use_bin_type=True,
    )


def encode_profile_chunk_message(
    *,
    organization_id: int,
    project_id: int,
    key_id: int | None,
    received: int,
    retention_days: int,
    payload: bytes,
) -> bytes:
    """Encode a ``profile_chunk`` message (continuous profiling).

    Relay leaves out ``key_id`` here, but the ``profiles`` schema requires it; the consumer
    ignores it, so it is written to keep the message schema-valid.
    """
    return msgpack.packb(
        {
            "type": "profile_chunk",
            "organization_id": organization_id,
            "project_id": project_id,
            "key_id": key_id,
            "received": received,
            "retention_days": retention_days,
            "payload": bytes(payload),
        },
        use_bin_type=True,
    )
