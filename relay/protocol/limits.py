"""Per-item size limits of an envelope, as Relay's ``check_envelope_size_limits`` applies them.

Every known item type belongs to one budget (events, attachments, sessions, ...). A budget caps
the size of one item, the number of items and their total size. Container items (logs, spans v2,
trace metrics) are checked by their average contained item. The first item over a budget names
the offender: Relay then rejects the whole envelope with 413 and an ``invalid`` outcome whose
reason is ``too_large:<offender>``. Unknown item types are never limited (they are forwarded or
dropped as they are).
"""

from __future__ import annotations

from typing import Final

import msgspec

from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import INTEGRATION_CONTENT_TYPES, KNOWN_ITEM_TYPES, ItemType

__all__ = ["SizeLimits", "check_envelope_size_limits", "discard_item_type"]


class SizeLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The ``limits`` values the per-item check needs, in bytes and counts (Relay's defaults)."""

    max_event_size: int = 1024**2
    max_attachment_size: int = 200 * 1024**2
    max_attachment_count: int = 30
    max_attachments_size: int = 200 * 1024**2
    max_replay_compressed_size: int = 10 * 1024**2
    max_sessions_size: int = 10 * 1024**2
    max_session_count: int = 100
    max_client_reports_size: int = 100 * 1024
    max_client_reports_count: int = 100
    max_profile_size: int = 50 * 1024**2
    max_check_in_size: int = 100 * 1024
    max_metric_buckets_size: int = 1024**2
    max_log_size: int = 2 * 1024**2
    max_trace_metric_size: int = 1024**2
    max_span_size: int = 10 * 1024**2
    max_standalone_span_count: int = 25
    max_container_size: int = 12 * 1024**2


# Relay's names for attachment types in outcome reasons (``DiscardAttachmentType``).
_ATTACHMENT_DISCARD_NAMES: Final[dict[str, str]] = {
    "event.attachment": "attachment",
    "event.minidump": "minidump",
    "event.applecrashreport": "apple_crash_report",
    "event.payload": "event_payload",
    "event.breadcrumbs": "breadcrumbs",
    "playstation.prosperodump": "prosperodump",
    "nswitch.dying_message": "nnswitch_dying_message",
    "unreal.context": "unreal_context",
    "unreal.logs": "unreal_logs",
    "event.view_hierarchy": "view_hierarchy",
}
# Item types whose discard name differs from the wire name.
_ITEM_DISCARD_NAMES: Final[dict[str, str]] = {ItemType.FEEDBACK: "user_report_v2"}


def discard_item_type(item: Item) -> str:
    """Relay's ``DiscardItemType`` name of an item, e.g. "attachment:minidump" or "event"."""
    attachment_type = item.attachment_type
    if attachment_type is not None:
        # Unknown attachment types (including the NVIDIA dumps) count as plain attachments.
        return "attachment:" + _ATTACHMENT_DISCARD_NAMES.get(attachment_type, "attachment")
    item_type = item.type
    if item_type == ItemType.ATTACHMENT:
        return "attachment:attachment"
    if item_type not in KNOWN_ITEM_TYPES:
        return "unknown"
    return _ITEM_DISCARD_NAMES.get(item_type, item_type)


class _Budget:
    __slots__ = ("item_size", "total_count", "total_size")

    def __init__(self, item_size: int, total_count: int, total_size: int) -> None:
        self.item_size = item_size
        self.total_count = total_count
        self.total_size = total_size

    def take(self, item: Item) -> bool:
        size = item.length
        if item.is_container:
            # Contained items are validated one by one after parsing; here only on average.
            size //= max(item.item_count or 1, 1)
        if size > self.item_size or self.total_count < 1 or self.total_size < item.length:
            return False
        self.total_count -= 1
        self.total_size -= item.length
        return True


_EVENT_LIKE: Final = frozenset(
    {
        ItemType.EVENT,
        ItemType.TRANSACTION,
        ItemType.SECURITY,
        ItemType.REPLAY_EVENT,
        ItemType.RAW_SECURITY,
        ItemType.FEEDBACK,
        ItemType.FORM_DATA,
    }
)
_ATTACHMENT_LIKE: Final = frozenset(
    {ItemType.ATTACHMENT, ItemType.UNREAL_REPORT, ItemType.USER_REPORT}
)


def check_envelope_size_limits(limits: SizeLimits, envelope: Envelope) -> str | None:
    """The discard name of the first item over its budget, or None if all items fit."""
    lim = limits
    event = _Budget(lim.max_event_size, 1, lim.max_event_size)
    attachment = _Budget(
        lim.max_attachment_size, lim.max_attachment_count, lim.max_attachments_size
    )
    replay_recording = _Budget(lim.max_replay_compressed_size, 1, lim.max_replay_compressed_size)
    replay_video = _Budget(lim.max_replay_compressed_size, 1, lim.max_replay_compressed_size)
    session = _Budget(lim.max_sessions_size, lim.max_session_count, lim.max_sessions_size)
    client_report = _Budget(
        lim.max_client_reports_size, lim.max_client_reports_count, lim.max_client_reports_size
    )
    profile = _Budget(lim.max_profile_size, 1, lim.max_profile_size)
    check_in = _Budget(lim.max_check_in_size, 1, lim.max_check_in_size)
    metric_bucket = _Budget(lim.max_metric_buckets_size, 1, lim.max_metric_buckets_size)
    log = _Budget(lim.max_log_size, 1, lim.max_container_size)
    log_integration = _Budget(lim.max_container_size, 1, lim.max_container_size)
    trace_metric = _Budget(lim.max_trace_metric_size, 1, lim.max_container_size)
    span = _Budget(lim.max_span_size, 1, lim.max_container_size)
    span_integration = _Budget(lim.max_container_size, 1, lim.max_container_size)
    span_legacy = _Budget(lim.max_span_size, lim.max_standalone_span_count, lim.max_container_size)
    empty = _Budget(0, 0, 0)

    for item in envelope.items:
        item_type = item.type
        budget: _Budget
        if item_type in _EVENT_LIKE:
            budget = event
        elif item_type in _ATTACHMENT_LIKE:
            budget = attachment
        elif item_type == ItemType.REPLAY_RECORDING:
            budget = replay_recording
        elif item_type == ItemType.REPLAY_VIDEO:
            budget = replay_video
        elif item_type in (ItemType.SESSION, ItemType.SESSIONS):
            budget = session
        elif item_type == ItemType.CLIENT_REPORT:
            budget = client_report
        elif item_type in (ItemType.PROFILE, ItemType.PROFILE_CHUNK):
            budget = profile
        elif item_type == ItemType.CHECK_IN:
            budget = check_in
        elif item_type == ItemType.METRIC_BUCKETS:
            budget = metric_bucket
        elif item_type == ItemType.LOG:
            budget = log
        elif item_type == ItemType.TRACE_METRIC:
            budget = trace_metric
        elif item_type == ItemType.SPAN:
            budget = span if item.is_container else span_legacy
        elif item_type == ItemType.INTEGRATION:
            product = INTEGRATION_CONTENT_TYPES.get((item.content_type or "").lower())
            if product == "logs":
                budget = log_integration
            elif product == "spans":
                budget = span_integration
            else:
                budget = empty
        else:
            # Unknown items are forwarded or dropped as they are, never limited here.
            continue
        if not budget.take(item):
            return discard_item_type(item)
    return None
