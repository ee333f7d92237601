"""Envelope item types and data categories, as the Relay version we mirror defines them.

Item types stay plain strings everywhere: Relay keeps unknown item types and forwards them
unchanged, so an enum would only get in the way. ``ItemType`` is a namespace of the names Relay
knows; :data:`KNOWN_ITEM_TYPES` says which of them this Relay version actually recognises.

Reference: ``relay-server/src/envelope/item.rs`` and ``relay-base-schema/src/data_category.rs``.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "ATTACHMENT_REF_CONTENT_TYPES",
    "CONTAINER_ITEM_TYPES",
    "EVENT_ATTACHMENT_TYPES",
    "EVENT_ITEM_TYPES",
    "INTEGRATION_CONTENT_TYPES",
    "ITEM_TYPE_ALIASES",
    "KNOWN_ITEM_TYPES",
    "NON_CONTAINER_ITEM_TYPES",
    "REQUIRES_EVENT_ITEM_TYPES",
    "TRACE_ATTACHMENT_CONTENT_TYPES",
    "UI_PROFILE_PLATFORMS",
    "AttachmentType",
    "DataCategory",
    "ItemType",
    "category_name",
    "event_type_category",
    "item_category",
    "item_type_for_event_type",
]


class ItemType:
    """Names of envelope item types (the ``type`` item header)."""

    EVENT: Final = "event"
    TRANSACTION: Final = "transaction"
    SECURITY: Final = "security"
    ATTACHMENT: Final = "attachment"
    FORM_DATA: Final = "form_data"
    RAW_SECURITY: Final = "raw_security"
    UNREAL_REPORT: Final = "unreal_report"
    USER_REPORT: Final = "user_report"
    SESSION: Final = "session"
    SESSIONS: Final = "sessions"
    METRIC_BUCKETS: Final = "metric_buckets"
    CLIENT_REPORT: Final = "client_report"
    PROFILE: Final = "profile"
    REPLAY_EVENT: Final = "replay_event"
    REPLAY_RECORDING: Final = "replay_recording"
    REPLAY_VIDEO: Final = "replay_video"
    CHECK_IN: Final = "check_in"
    LOG: Final = "log"
    TRACE_METRIC: Final = "trace_metric"
    SPAN: Final = "span"
    #: User feedback as an event. Relay's variant is ``UserReportV2``; its wire name is "feedback".
    FEEDBACK: Final = "feedback"
    USER_REPORT_V2: Final = "feedback"
    PROFILE_CHUNK: Final = "profile_chunk"
    #: Relay-internal: payloads of integration endpoints (OTLP, NEL, Vercel); never forwarded.
    INTEGRATION: Final = "integration"

    # Names that older Relay versions knew. This version parses them as unknown item types: they
    # are kept and forwarded as-is, never counted, and never create an event.
    STATSD: Final = "statsd"
    NEL: Final = "nel"
    OTEL_LOG: Final = "otel_log"
    OTEL_SPAN: Final = "otel_span"
    OTEL_TRACES_DATA: Final = "otel_traces_data"


#: Item types this Relay version parses into a known variant (everything else is "unknown").
KNOWN_ITEM_TYPES: Final = frozenset(
    {
        ItemType.EVENT,
        ItemType.TRANSACTION,
        ItemType.SECURITY,
        ItemType.ATTACHMENT,
        ItemType.FORM_DATA,
        ItemType.RAW_SECURITY,
        ItemType.UNREAL_REPORT,
        ItemType.USER_REPORT,
        ItemType.SESSION,
        ItemType.SESSIONS,
        ItemType.METRIC_BUCKETS,
        ItemType.CLIENT_REPORT,
        ItemType.PROFILE,
        ItemType.REPLAY_EVENT,
        ItemType.REPLAY_RECORDING,
        ItemType.REPLAY_VIDEO,
        ItemType.CHECK_IN,
        ItemType.LOG,
        ItemType.TRACE_METRIC,
        ItemType.SPAN,
        ItemType.FEEDBACK,
        ItemType.PROFILE_CHUNK,
        ItemType.INTEGRATION,
    }
)

#: Alternative spellings Relay accepts and rewrites to the canonical name. Android SDK 8.10 and
#: 8.11 send "profile_chunk_ui" as an item type.
ITEM_TYPE_ALIASES: Final[dict[str, str]] = {"profile_chunk_ui": ItemType.PROFILE_CHUNK}

#: Item types that always create an event (Relay's ``Item::creates_event``). Attachments create an
#: event only with one of :data:`EVENT_ATTACHMENT_TYPES`; form data never does on its own.
EVENT_ITEM_TYPES: Final = frozenset(
    {
        ItemType.EVENT,
        ItemType.TRANSACTION,
        ItemType.SECURITY,
        ItemType.RAW_SECURITY,
        ItemType.UNREAL_REPORT,
        ItemType.FEEDBACK,
    }
)

#: Item types that belong to an event and need the envelope's ``event_id`` (``requires_event``).
REQUIRES_EVENT_ITEM_TYPES: Final = frozenset(
    {
        ItemType.EVENT,
        ItemType.TRANSACTION,
        ItemType.SECURITY,
        ItemType.ATTACHMENT,
        ItemType.FORM_DATA,
        ItemType.RAW_SECURITY,
        ItemType.UNREAL_REPORT,
        ItemType.USER_REPORT,
        ItemType.FEEDBACK,
        ItemType.REPLAY_EVENT,
        ItemType.PROFILE,
    }
)

#: Known item types that can never be an item container, so their ``item_count`` header is
#: ignored. Every other type, unknown ones included, may carry ``item_count``.
NON_CONTAINER_ITEM_TYPES: Final = frozenset(
    {
        ItemType.EVENT,
        ItemType.TRANSACTION,
        ItemType.SECURITY,
        ItemType.ATTACHMENT,
        ItemType.FORM_DATA,
        ItemType.RAW_SECURITY,
        ItemType.UNREAL_REPORT,
        ItemType.USER_REPORT,
        ItemType.REPLAY_EVENT,
        ItemType.REPLAY_RECORDING,
        ItemType.REPLAY_VIDEO,
        ItemType.FEEDBACK,
        ItemType.INTEGRATION,
    }
)

#: Known item types whose ``item_count`` header is honoured.
CONTAINER_ITEM_TYPES: Final = KNOWN_ITEM_TYPES - NON_CONTAINER_ITEM_TYPES


class AttachmentType:
    """Values of the ``attachment_type`` item header."""

    ATTACHMENT: Final = "event.attachment"
    MINIDUMP: Final = "event.minidump"
    APPLE_CRASH_REPORT: Final = "event.applecrashreport"
    EVENT_PAYLOAD: Final = "event.payload"
    PROSPERODUMP: Final = "playstation.prosperodump"
    BREADCRUMBS: Final = "event.breadcrumbs"
    NINTENDO_SWITCH_DYING_MESSAGE: Final = "nswitch.dying_message"
    UNREAL_CONTEXT: Final = "unreal.context"
    UNREAL_LOGS: Final = "unreal.logs"
    VIEW_HIERARCHY: Final = "event.view_hierarchy"
    NV_GPU_DUMP: Final = "event.nv_gpudmp"
    NV_SHADER_DEBUG: Final = "event.nv_shader_debug"


#: Attachment types that turn an attachment item into an event item (crash reports and partial
#: event payloads).
EVENT_ATTACHMENT_TYPES: Final = frozenset(
    {
        AttachmentType.APPLE_CRASH_REPORT,
        AttachmentType.MINIDUMP,
        AttachmentType.EVENT_PAYLOAD,
        AttachmentType.PROSPERODUMP,
        AttachmentType.BREADCRUMBS,
        AttachmentType.NINTENDO_SWITCH_DYING_MESSAGE,
        AttachmentType.NV_GPU_DUMP,
    }
)

#: Content types (lower case) of V2 "trace attachments", whose payload starts with a meta segment.
TRACE_ATTACHMENT_CONTENT_TYPES: Final = frozenset(
    {"application/vnd.sentry.trace-attachment", "application/vnd.sentry.attachment.v2"}
)
#: Content types (lower case) of attachment placeholders pointing at an uploaded attachment.
ATTACHMENT_REF_CONTENT_TYPES: Final = frozenset(
    {"application/vnd.sentry.attachment-ref+json", "application/vnd.sentry.attachment-ref"}
)
#: Content types of ``integration`` items, mapped to the product they feed ("logs" or "spans").
INTEGRATION_CONTENT_TYPES: Final[dict[str, str]] = {
    "application/vnd.sentry.integration.browser.nel+json": "logs",
    "application/vnd.sentry.integration.otel.logs+json": "logs",
    "application/vnd.sentry.integration.otel.logs+protobuf": "logs",
    "application/vnd.sentry.integration.otel.spans+json": "spans",
    "application/vnd.sentry.integration.otel.spans+protobuf": "spans",
    "application/vnd.sentry.integration.vercel.logs+json": "logs",
    "application/vnd.sentry.integration.vercel.logs+ndjson": "logs",
}
#: Profile platforms counted as UI profiles; every other platform is a backend profile.
UI_PROFILE_PLATFORMS: Final = frozenset({"cocoa", "android", "javascript"})


class DataCategory(enum.IntEnum):
    """Relay's data categories with their numeric wire values (outcomes, rate limits)."""

    DEFAULT = 0
    ERROR = 1
    TRANSACTION = 2
    SECURITY = 3
    ATTACHMENT = 4
    SESSION = 5
    PROFILE = 6
    REPLAY = 7
    TRANSACTION_PROCESSED = 8
    TRANSACTION_INDEXED = 9
    MONITOR = 10
    PROFILE_INDEXED = 11
    SPAN = 12
    MONITOR_SEAT = 13
    USER_REPORT_V2 = 14
    METRIC_BUCKET = 15
    SPAN_INDEXED = 16
    PROFILE_DURATION = 17
    PROFILE_CHUNK = 18
    METRIC_SECOND = 19
    REPLAY_VIDEO = 20
    UPTIME = 21
    ATTACHMENT_ITEM = 22
    LOG_ITEM = 23
    LOG_BYTE = 24
    PROFILE_DURATION_UI = 25
    PROFILE_CHUNK_UI = 26
    SEER_AUTOFIX = 27
    SEER_SCANNER = 28
    PREVENT_USER = 29
    PREVENT_REVIEW = 30
    SIZE_ANALYSIS = 31
    INSTALLABLE_BUILD = 32
    TRACE_METRIC = 33
    SEER_USER = 34
    PROFILE_BACKEND = 35
    PROFILE_UI = 36
    TRACE_METRIC_BYTE = 37
    SNAPSHOT_IMAGE = 38
    #: A category this Relay does not know; never sent as an outcome.
    UNKNOWN = -1

    @property
    def name_str(self) -> str:
        """Relay's canonical snake_case name ("error", "feedback", "replay_video", ...)."""
        return _CATEGORY_NAMES[self]

    @classmethod
    def from_name(cls, name: str) -> DataCategory:
        """Parse a category name as Relay does; unknown names give ``UNKNOWN``."""
        return _CATEGORY_BY_NAME.get(name, cls.UNKNOWN)


# Relay's names are the lower-cased member names except for these two: the feedback category
# is named after the product, and the replay video category lost its "do not use" prefix.
_CATEGORY_NAMES: Final[dict[DataCategory, str]] = {
    cat: cat.name.lower() for cat in DataCategory
} | {DataCategory.USER_REPORT_V2: "feedback"}
_CATEGORY_BY_NAME: Final[dict[str, DataCategory]] = {
    name: cat for cat, name in _CATEGORY_NAMES.items()
} | {"user_report_v2": DataCategory.USER_REPORT_V2}


def category_name(cat: DataCategory) -> str:
    """Return Relay's snake_case name of a data category."""
    return _CATEGORY_NAMES[cat]


def event_type_category(event_type: str | None) -> DataCategory:
    """Return the category of an event by its ``type`` field.

    Both "error" and "default" events (and unknown types, which Relay reads as "default") count as
    ``ERROR``; ``DataCategory.DEFAULT`` is reserved and never produced.
    """
    if event_type is None:
        return DataCategory.ERROR
    return _EVENT_TYPE_CATEGORIES.get(event_type, DataCategory.ERROR)


_EVENT_TYPE_CATEGORIES: Final[dict[str, DataCategory]] = {
    "transaction": DataCategory.TRANSACTION,
    "csp": DataCategory.SECURITY,
    "feedback": DataCategory.USER_REPORT_V2,
}


def item_type_for_event_type(event_type: str | None) -> str:
    """Return the item type carrying an event of this ``type`` (``ItemType::from_event_type``)."""
    if event_type == "transaction":
        return ItemType.TRANSACTION
    if event_type == "csp":
        return ItemType.SECURITY
    # "userreportv2" is how Relay's serde names the feedback event type (its FromStr says
    # "feedback"): store requests may carry either.
    if event_type in ("feedback", "userreportv2"):
        return ItemType.FEEDBACK
    return ItemType.EVENT


# The main category of each item type (the first entry of Relay's ``Item::quantities``).
_ITEM_CATEGORIES: Final[dict[str, DataCategory]] = {
    ItemType.TRANSACTION: DataCategory.TRANSACTION,
    ItemType.SECURITY: DataCategory.SECURITY,
    ItemType.RAW_SECURITY: DataCategory.SECURITY,
    ItemType.UNREAL_REPORT: DataCategory.ERROR,
    ItemType.ATTACHMENT: DataCategory.ATTACHMENT,
    ItemType.SESSION: DataCategory.SESSION,
    ItemType.SESSIONS: DataCategory.SESSION,
    ItemType.LOG: DataCategory.LOG_ITEM,
    ItemType.TRACE_METRIC: DataCategory.TRACE_METRIC,
    ItemType.USER_REPORT: DataCategory.USER_REPORT_V2,
    ItemType.FEEDBACK: DataCategory.USER_REPORT_V2,
    ItemType.PROFILE: DataCategory.PROFILE,
    ItemType.PROFILE_CHUNK: DataCategory.PROFILE_CHUNK,
    ItemType.REPLAY_EVENT: DataCategory.REPLAY,
    ItemType.REPLAY_RECORDING: DataCategory.REPLAY,
    ItemType.REPLAY_VIDEO: DataCategory.REPLAY,
    ItemType.CHECK_IN: DataCategory.MONITOR,
    ItemType.SPAN: DataCategory.SPAN,
}


def item_category(item_type: str, event_type: str | None = None) -> DataCategory | None:
    """Return the main data category an item of ``item_type`` is counted in.

    ``event`` items are categorised by ``event_type`` (see :func:`event_type_category`);
    attachments count in ``ATTACHMENT`` (their quantity is the size in bytes). Returns ``None``
    for items Relay never counts: client reports, metric buckets, form data, integrations and
    unknown types. ``Item.quantities()`` in ``relay.protocol.envelope`` gives all categories.
    """
    if item_type == ItemType.EVENT:
        return event_type_category(event_type)
    return _ITEM_CATEGORIES.get(item_type)
