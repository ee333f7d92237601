"""Crash uploads on their way through a managed relay: their event parts become an event.

Called by the forwarder (POP relays) and the processor (processing relays) before anything
else looks at the event: the ``form_data`` item and the msgpack event and breadcrumb
attachments of a minidump or Apple crash report upload are merged into one ``event`` item
(:mod:`relay.normalize.crash_event`). Processing relays then write the native placeholder
into that event (:func:`apply_crash_placeholder`).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from relay.config import Config
from relay.kafka.outcomes import OutcomeCode
from relay.normalize.containers import values_list
from relay.normalize.crash_event import (
    CrashEventError,
    crash_attachment,
    expand_crash_items,
    take_crash_event,
)
from relay.normalize.native import (
    apply_apple_crash_report,
    apply_minidump,
    strip_context_types,
)
from relay.normalize.unreal import (
    MAX_LOG_BREADCRUMBS,
    SENTRY_PAYLOAD_KEY,
    UnrealContext,
    breadcrumbs_from_logs,
    merge_unreal_context,
    merge_user_info,
    parse_unreal_context,
    user_report,
)
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import (
    ATTACHMENT_REF_CONTENT_TYPES,
    AttachmentType,
    DataCategory,
    ItemType,
)
from relay.protocol.project_config import ProjectState
from relay.protocol.unreal import UnrealError, UnrealFile, file_kind, parse_unreal_crash
from relay.server.event_normalization import EventRejected, decode_event
from relay.server.outcomes import OutcomeSink, scoping_for
from relay.server.request_meta import RequestMeta

__all__ = [
    "apply_crash_placeholder",
    "expand_crash_envelope",
    "expand_unreal_envelope",
    "strip_context_types",
]

#: The envelope header with the crash reporter's ``UserID`` (set by the unreal endpoint).
UNREAL_USER_HEADER = "unreal_user_id"

log = logging.getLogger(__name__)

#: Items that belong to a crash's error event and are dropped with it.
_ERROR_BOUND = frozenset({ItemType.ATTACHMENT, ItemType.FORM_DATA, ItemType.USER_REPORT})


def expand_crash_envelope(
    envelope: Envelope,
    meta: RequestMeta,
    state: ProjectState | None,
    outcomes: OutcomeSink,
    config: Config,
) -> None:
    """Merge a crash upload's event parts into an ``event`` item, in place.

    When the parts cannot be read the crash is dropped: its items and the error become
    ``invalid`` outcomes with the reason (``invalid_msgpack``, ``too_large:...``).
    """
    items = list(envelope.items)
    try:
        changed = expand_crash_items(items, int(config.limits.max_event_size))
    except CrashEventError as exc:
        log.debug("crash event parts dropped: %s", exc.reason)
        dropped = [i for i in envelope.items if i.type in _ERROR_BOUND or i.creates_event()]
        envelope.items = [i for i in envelope.items if i not in dropped]
        scoping = scoping_for(meta, state)
        outcomes.track(scoping, int(OutcomeCode.INVALID), exc.reason, int(DataCategory.ERROR), 1)
        for item in dropped:
            outcomes.item_dropped(item, envelope, meta, state, exc.reason)
        return
    if changed:
        envelope.items = items


def _is_placeholder(exception: Any) -> bool:
    mechanism = exception.get("mechanism") if isinstance(exception, dict) else None
    return (
        isinstance(mechanism, dict)
        and mechanism.get("synthetic") is True
        and mechanism.get("type") in ("minidump", "applecrashreport")
    )


def _has_placeholder(event: dict[str, Any]) -> bool:
    container = event.get("exception")
    values = container.get("values") if isinstance(container, dict) else container
    return isinstance(values, list) and bool(values) and _is_placeholder(values[0])


def apply_crash_placeholder(event: dict[str, Any], attachments: list[Item]) -> list[str]:
    """Write the native placeholder of the crash among ``attachments`` into ``event``.

    Nothing happens without a minidump or Apple crash report, or when the event has its
    placeholder already (an Unreal crash, expanded earlier). The dump of an attachment
    placeholder (uploaded separately) is not here and is not read. Returns the contexts to
    pass to :func:`strip_context_types` after normalization.
    """
    crash = crash_attachment(attachments)
    if crash is None or _has_placeholder(event):
        return []
    metrics = event.get("_metrics")
    if not isinstance(metrics, dict):
        metrics = event["_metrics"] = {}
    # Sentry's ingestion metrics: how many bytes of the crash came in.
    if crash.attachment_type == AttachmentType.APPLE_CRASH_REPORT:
        metrics["bytes.ingested.event.applecrashreport"] = len(crash.payload)
        apply_apple_crash_report(event)
        return []
    metrics["bytes.ingested.event.minidump"] = crash.attachment_body_size()
    is_ref = (crash.content_type or "").lower() in ATTACHMENT_REF_CONTENT_TYPES
    return apply_minidump(event, None if is_ref else crash.payload)


_UNREAL_ATTACHMENT_TYPES = {
    "minidump": (AttachmentType.MINIDUMP, "application/x-dmp"),
    "applecrashreport": (AttachmentType.APPLE_CRASH_REPORT, "text/plain"),
    "log": (AttachmentType.UNREAL_LOGS, "text/plain"),
    "config": (AttachmentType.ATTACHMENT, "application/octet-stream"),
    "context": (AttachmentType.UNREAL_CONTEXT, "text/xml"),
}
_UNREAL_NAMED_TYPES = {
    "__sentry-event": AttachmentType.EVENT_PAYLOAD,
    "__sentry-breadcrumb1": AttachmentType.BREADCRUMBS,
    "__sentry-breadcrumb2": AttachmentType.BREADCRUMBS,
}


def _unreal_attachment(file: UnrealFile) -> Item:
    kind = file_kind(file)
    if kind in _UNREAL_ATTACHMENT_TYPES:
        attachment_type, content_type = _UNREAL_ATTACHMENT_TYPES[kind]
    elif file.name in _UNREAL_NAMED_TYPES:
        attachment_type, content_type = _UNREAL_NAMED_TYPES[file.name], "application/x-msgpack"
    else:
        attachment_type, content_type = AttachmentType.ATTACHMENT, "application/octet-stream"
    return Item.new(
        ItemType.ATTACHMENT,
        file.data,
        filename=file.name,
        content_type=content_type,
        attachment_type=attachment_type,
    )


def _drop_crash(
    envelope: Envelope,
    meta: RequestMeta,
    state: ProjectState | None,
    outcomes: OutcomeSink,
    reason: str,
) -> None:
    dropped = [
        i
        for i in envelope.items
        if i.type in _ERROR_BOUND or i.creates_event() or i.type == ItemType.UNREAL_REPORT
    ]
    envelope.items = [i for i in envelope.items if not any(i is d for d in dropped)]
    for item in dropped:
        outcomes.item_dropped(item, envelope, meta, state, reason)


def _unreal_event(
    envelope: Envelope, attachments: list[Item], context: UnrealContext | None, max_size: int
) -> dict[str, Any] | None:
    # The event: an event item, else the game's __sentry JSON, else msgpack attachments.
    event_item = next((i for i in envelope.items if i.type == ItemType.EVENT), None)
    raw: bytes | None = event_item.payload if event_item is not None else None
    if raw is None and context is not None and context.game_data.get(SENTRY_PAYLOAD_KEY):
        raw = context.game_data[SENTRY_PAYLOAD_KEY].encode()
    if raw is not None:
        try:
            return decode_event(raw)
        except EventRejected as rejected:
            raise CrashEventError(rejected.reason) from None
    parts = [i for i in attachments if i.attachment_type in _UNREAL_NAMED_TYPES.values()]
    if not parts:
        return None
    event_parts = list(parts)
    found = take_crash_event(event_parts, max_size)
    for item in parts:
        if item not in event_parts:
            attachments.remove(item)
    return found


def expand_unreal_envelope(
    envelope: Envelope,
    meta: RequestMeta,
    state: ProjectState | None,
    outcomes: OutcomeSink,
    config: Config,
) -> None:
    """Expand an ``unreal_report`` item into its event, attachments and user report.

    Processing relays only (POP relays forward the report as it is). The event gets the
    crash context, logs and user info, and the native placeholder of its minidump or Apple
    crash report (replacing the exceptions it had, as in Relay). A report that cannot be
    read is dropped with its outcome reason.
    """
    report = next((i for i in envelope.items if i.type == ItemType.UNREAL_REPORT), None)
    if report is None:
        return
    limits = config.limits
    try:
        files = parse_unreal_crash(report.payload, int(limits.max_envelope_size))
        attachments = [_unreal_attachment(f) for f in files[: limits.max_attachment_count]]
        context_item = next(
            (i for i in attachments if i.attachment_type == AttachmentType.UNREAL_CONTEXT), None
        )
        context = parse_unreal_context(context_item.payload) if context_item else None
        attachments += [i for i in envelope.items if i.type == ItemType.ATTACHMENT]
        event = _unreal_event(envelope, attachments, context, int(limits.max_event_size))
    except UnrealError as exc:
        _drop_crash(envelope, meta, state, outcomes, exc.reason)
        return
    except CrashEventError as exc:
        _drop_crash(envelope, meta, state, outcomes, exc.reason)
        return
    except ValueError:
        _drop_crash(envelope, meta, state, outcomes, "process_unreal")
        return

    user_reports = [i for i in envelope.items if i.type == ItemType.USER_REPORT]
    user_info = envelope.headers.get(UNREAL_USER_HEADER)
    logs = [i for i in attachments if i.attachment_type == AttachmentType.UNREAL_LOGS]
    if context is not None or isinstance(user_info, str) or logs:
        event = event if event is not None else {}
        if isinstance(user_info, str):
            merge_user_info(event, user_info)
        crumbs = [c for log_item in logs for c in breadcrumbs_from_logs(log_item.payload)]
        if crumbs:
            container = values_list(event, "breadcrumbs")
            container.extend(crumbs[:MAX_LOG_BREADCRUMBS])
        if context is not None:
            report_json = user_report(envelope.event_id or "", context)
            if report_json is not None:
                payload = msgspec.json.encode(report_json)
                user_reports.append(
                    Item.new(ItemType.USER_REPORT, payload, content_type="application/json")
                )
            merge_unreal_context(event, context)
    crash = crash_attachment(attachments)
    minidump = next((i for i in attachments if i.attachment_type == AttachmentType.MINIDUMP), None)
    acr = next(
        (i for i in attachments if i.attachment_type == AttachmentType.APPLE_CRASH_REPORT), None
    )
    if crash is not None:
        event = event if event is not None else {}
        if minidump is not None:
            apply_minidump(event, minidump.payload, "delete")
        if acr is not None:
            apply_apple_crash_report(event, "delete")
    if event is None:
        _drop_crash(envelope, meta, state, outcomes, "no_event_payload")
        return
    event_item = Item.new(
        ItemType.EVENT, msgspec.json.encode(event), content_type="application/json"
    )
    consumed = (ItemType.UNREAL_REPORT, ItemType.EVENT, ItemType.ATTACHMENT, ItemType.USER_REPORT)
    rest = [i for i in envelope.items if i.type not in consumed]
    envelope.items = [event_item, *attachments, *user_reports, *rest]
