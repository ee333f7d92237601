"""Replay messages for ``ingest-replay-recordings`` (msgpack).

Relay combines an envelope's replay event, recording and video into one
``replay_recording_not_chunked`` message; Sentry's consumer publishes the replay event.
"""

from __future__ import annotations

import uuid

import msgpack

from relay.kafka.keys import event_uuid


def encode_replay_recording_message(
    *,
    replay_id: str | uuid.UUID,
    key_id: int | None,
    org_id: int,
    project_id: int,
    received: int,
    retention_days: int,
    payload: bytes,
    replay_event: bytes | None = None,
    replay_video: bytes | None = None,
) -> bytes:
    """Encode one replay segment: the recording, with the event and video if present."""
    return msgpack.packb(
        {
            "type": "replay_recording_not_chunked",
            "replay_id": event_uuid(replay_id).hex,
            "key_id": key_id,
            "org_id": org_id,
            "project_id": project_id,
            "received": received,
            "retention_days": retention_days,
            "payload": bytes(payload),
            "replay_event": None if replay_event is None else bytes(replay_event),
            "replay_video": None if replay_video is None else bytes(replay_video),
            # Relay no longer publishes replay events itself; this tells the consumer to.
            "relay_snuba_publish_disabled": True,
        },
        use_bin_type=True,
    )
