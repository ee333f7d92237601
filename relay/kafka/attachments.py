"""Attachment messages for the ``ingest-attachments`` topic (msgpack).

An attachment's content travels either in ``attachment_chunk`` messages (split at
``processing.attachment_chunk_size``) or inline in a standalone ``attachment`` message.
Its metadata (:class:`AttachmentRef`) goes into the ``attachments`` list of the event
message, or into an ``attachment`` message when it is not needed to process an event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgpack

from relay.kafka.keys import event_uuid
from relay.protocol.items import AttachmentType

#: Relay's default ``processing.attachment_chunk_size``: 1 MiB.
DEFAULT_ATTACHMENT_CHUNK_SIZE = 1024 * 1024

#: Relay's default event retention in days, when the project config has none.
DEFAULT_RETENTION_DAYS = 90

#: File name Relay uses for attachment items without a ``filename`` header.
UNNAMED_ATTACHMENT = "Unnamed Attachment"


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """Metadata of one attachment, and where its content is.

    Exactly one of ``chunks`` (content sent as that many ``attachment_chunk`` messages,
    ``0`` for an empty attachment), ``data`` (content inline) or ``stored_id`` (content
    already in the objectstore) is set.
    """

    #: Unique within the event: ``(project_id, event_id, id)`` names the attachment.
    id: str
    name: str
    size: int
    attachment_type: str = AttachmentType.ATTACHMENT
    content_type: str | None = None
    #: Set on attachments (native crash reports) that processing still needs although
    #: they were rate limited; Sentry drops them after processing.
    rate_limited: bool = False
    retention_days: int = DEFAULT_RETENTION_DAYS
    chunks: int | None = None
    data: bytes | None = None
    stored_id: str | None = None

    def __post_init__(self) -> None:
        places = sum(p is not None for p in (self.chunks, self.data, self.stored_id))
        if places != 1:
            raise ValueError("exactly one of chunks, data and stored_id must be set")

    def to_message_dict(self) -> dict[str, Any]:
        """The attachment as Relay serializes it inside event and attachment messages."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "rate_limited": self.rate_limited,
        }
        # Relay omits a missing content type rather than writing nil.
        if self.content_type is not None:
            out["content_type"] = self.content_type
        out["attachment_type"] = str(self.attachment_type)
        out["size"] = self.size
        out["retention_days"] = self.retention_days
        if self.chunks is not None:
            out["chunks"] = self.chunks
        elif self.data is not None:
            out["data"] = self.data
        else:
            out["stored_id"] = self.stored_id
        return out


def new_attachment_id() -> str:
    """A fresh attachment id: a random UUID, hyphenated, as Relay generates them."""
    return str(uuid.uuid4())


def _pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def encode_attachment_chunk(
    *,
    event_id: str | uuid.UUID,
    project_id: int,
    attachment_id: str,
    chunk_index: int,
    payload: bytes,
) -> bytes:
    """Encode one ``attachment_chunk`` message (``chunk_index`` counts from 0).

    The id is written both as ``id``, which Relay writes and Sentry's consumer reads,
    and as ``attachment_id``, which the ``ingest-attachments`` schema requires; the
    consumer ignores the extra key.
    """
    return _pack(
        {
            "type": "attachment_chunk",
            "payload": payload,
            "event_id": event_uuid(event_id).hex,
            "project_id": project_id,
            "id": attachment_id,
            "attachment_id": attachment_id,
            "chunk_index": chunk_index,
        }
    )


def encode_attachment_message(
    *, event_id: str | uuid.UUID, project_id: int, attachment: AttachmentRef
) -> bytes:
    """Encode a standalone ``attachment`` message.

    Relay sends these for attachments of transactions and feedback, and for attachments
    that arrive without their event; they are stored but play no part in processing.
    """
    return _pack(
        {
            "type": "attachment",
            "event_id": event_uuid(event_id).hex,
            "project_id": project_id,
            "attachment": attachment.to_message_dict(),
        }
    )


def chunk_attachment(
    payload: bytes,
    chunk_size: int = DEFAULT_ATTACHMENT_CHUNK_SIZE,
    *,
    event_id: str | uuid.UUID,
    project_id: int,
    name: str | None = None,
    content_type: str | None = None,
    attachment_type: str = AttachmentType.ATTACHMENT,
    rate_limited: bool = False,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    inline: bool = False,
    attachment_id: str | None = None,
    stored_id: str | None = None,
    size: int | None = None,
) -> tuple[AttachmentRef, list[bytes]]:
    """Split an attachment into its reference and its ``attachment_chunk`` messages.

    With ``inline`` (the attachment goes out as a standalone ``attachment`` message) a
    payload smaller than one chunk is carried in the reference's ``data`` and no chunk
    is produced, which saves Sentry a trip through its attachment cache. An empty
    payload has ``chunks=0`` and no chunk messages. A payload already in the objectstore
    (``stored_id``, its key there) is referenced by that key instead of chunked. The
    chunk messages must be produced before the message carrying the reference, with the
    same partition key. ``size`` is the attachment's size when the payload is not here
    (a placeholder for an object already stored under ``stored_id``).
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    ref_id = attachment_id or new_attachment_id()
    if size is None:
        size = len(payload)
    common: dict[str, Any] = {
        "id": ref_id,
        "name": UNNAMED_ATTACHMENT if name is None else name,
        "size": size,
        "attachment_type": attachment_type,
        # Relay lower-cases the item's content type (``Image/PNG`` is ``image/png``).
        "content_type": None if content_type is None else content_type.lower(),
        "rate_limited": rate_limited,
        "retention_days": retention_days,
    }
    if size == 0:
        return AttachmentRef(**common, chunks=0), []
    if stored_id is not None:
        return AttachmentRef(**common, stored_id=stored_id), []
    if inline and size < chunk_size:
        return AttachmentRef(**common, data=bytes(payload)), []
    view = memoryview(payload)
    messages = [
        encode_attachment_chunk(
            event_id=event_id,
            project_id=project_id,
            attachment_id=ref_id,
            chunk_index=index,
            payload=bytes(view[offset : offset + chunk_size]),
        )
        for index, offset in enumerate(range(0, size, chunk_size))
    ]
    return AttachmentRef(**common, chunks=len(messages)), messages
