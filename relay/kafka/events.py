"""Event messages for ``ingest-events``, ``ingest-transactions``, ``ingest-attachments``
and ``ingest-feedback-events`` (msgpack).

All four topics carry the same message, ``type: "event"`` whatever the event's type; the
topic alone tells errors, transactions and feedback apart.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgpack

from relay.kafka.attachments import AttachmentRef
from relay.kafka.keys import event_uuid
from relay.kafka.topics import KafkaTopic

# Relay's ``EventType::UserReportV2`` is spelled "feedback" on the wire; older code paths
# wrote the variant name.
_FEEDBACK_TYPES = frozenset({"feedback", "user_report_v2"})


def safe_timestamp(received_at: datetime | float) -> int:
    """Whole seconds since the epoch for a message's ``start_time``.

    Like Relay, a time before the epoch (a broken clock or input) is replaced by now.
    """
    seconds = received_at.timestamp() if isinstance(received_at, datetime) else received_at
    if seconds >= 0:
        return int(seconds)
    return int(time.time())


def event_topic(
    event_type: str | None, *, has_attachments: bool = False, has_user_reports: bool = False
) -> KafkaTopic:
    """The topic an event goes to, given its ``type`` and what is produced along with it.

    Transactions and feedback (``user_report_v2``) have topics of their own (their
    attachments go out as standalone messages); other events go to the attachments
    topic when attachment references or user reports come with them, so that Sentry's
    attachments consumer sees the chunks and reports first.
    """
    if event_type == "transaction":
        return KafkaTopic.TRANSACTIONS
    if event_type in _FEEDBACK_TYPES:
        return KafkaTopic.FEEDBACK
    if has_attachments or has_user_reports:
        return KafkaTopic.ATTACHMENTS
    return KafkaTopic.EVENTS


def sends_individual_attachments(event_type: str | None) -> bool:
    """Whether an event's attachments go out as standalone ``attachment`` messages.

    True for transactions and feedback: their consumers do not process attachments, so
    the attachments are not listed in the event message.
    """
    return event_type == "transaction" or event_type in _FEEDBACK_TYPES


def encode_event_message(
    *,
    event_id: str | uuid.UUID,
    project_id: int,
    payload: bytes,
    start_time: int,
    remote_addr: str | None,
    attachments: Sequence[AttachmentRef] = (),
) -> bytes:
    """Encode an ``event`` message as Relay's store service writes it.

    ``payload`` is the normalized event JSON, ``start_time`` the receipt time in whole
    seconds since the epoch (see :func:`safe_timestamp`), ``remote_addr`` the client IP
    (written as nil when unknown) and ``attachments`` the references of attachments
    whose chunks were produced before. The event id is written as 32 hex digits.
    """
    message: dict[str, Any] = {
        "type": "event",
        "payload": bytes(payload),
        "start_time": start_time,
        "event_id": event_uuid(event_id).hex,
        "project_id": project_id,
        "remote_addr": remote_addr,
        "attachments": [ref.to_message_dict() for ref in attachments],
    }
    return msgpack.packb(message, use_bin_type=True)
