"""Runs ``relay.normalize`` and ``relay.pii`` on an envelope's event item, on every hop.

POP relays normalize lightly (unknown fields kept, no ``errors``) before forwarding;
processing relays normalize fully before writing to Kafka. Both call this module so the
arguments taken from the request and the project config are gathered in one place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import msgspec

from relay.filters import CompiledFilters, compile_filters
from relay.kafka.outcomes import OutcomeCode
from relay.normalize import InvalidTransaction, normalize_for_relay
from relay.normalize.geoip import GeoIpLookup
from relay.normalize.security_report import (
    SecurityReportError,
    check_security_event,
    event_from_security_report,
)
from relay.pii import ScrubbingPipeline, compile_project_configs
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ATTACHMENT_REF_CONTENT_TYPES, AttachmentType, ItemType
from relay.protocol.project_config import ProjectState
from relay.server.request_meta import RequestMeta

_encoder = msgspec.json.Encoder()

#: Item types whose payload is an event JSON that normalization applies to.
NORMALIZED_ITEM_TYPES = frozenset(
    {ItemType.EVENT, ItemType.TRANSACTION, ItemType.SECURITY, ItemType.RAW_SECURITY}
)
#: Items carrying a browser security report: as sent (raw) or already an event (classified).
SECURITY_ITEM_TYPES = frozenset({ItemType.RAW_SECURITY, ItemType.SECURITY})
#: Items Relay processes together with a transaction, and drops with it.
_TRANSACTION_BOUND = frozenset({ItemType.ATTACHMENT, ItemType.PROFILE})
#: Items Relay processes together with an error event (``requires_event``), and drops with
#: it. Replay events are not among them: Relay's replay processor takes them first.
_ERROR_BOUND = frozenset(
    {ItemType.ATTACHMENT, ItemType.FORM_DATA, ItemType.USER_REPORT, ItemType.PROFILE}
)


#: Returns the upstream's global config, or None while it is not known.
GlobalConfigLookup = Callable[[], dict[str, Any] | None]


def no_global_config() -> dict[str, Any] | None:
    """The lookup of a relay that has no global config (tests, static setups)."""
    return None


class EventRejected(Exception):
    """The event cannot be kept; ``reason`` and ``code`` make its outcome."""

    def __init__(self, reason: str, code: OutcomeCode = OutcomeCode.INVALID) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def event_bound_items(envelope: Envelope, event_item: Item) -> list[Item]:
    """The other items that share ``event_item``'s fate: dropped with it, same outcome.

    Relay processes an event together with its attachments, profile and (for errors) user
    reports and form data; when the event is filtered or invalid, they all go.
    """
    bound = _TRANSACTION_BOUND if event_item.type == ItemType.TRANSACTION else _ERROR_BOUND
    return [i for i in envelope.items if i is not event_item and i.type in bound]


@functools.lru_cache(maxsize=1024)
def _compile_filters(sections: bytes) -> CompiledFilters:
    filter_settings, global_filters = msgspec.json.decode(sections)
    return compile_filters(filter_settings, global_filters)


def inbound_filters(state: ProjectState, global_config: dict[str, Any] | None) -> CompiledFilters:
    """The project's inbound filters (with the global generic filters), compiled once."""
    sections = (state.config.get("filterSettings"), (global_config or {}).get("filters"))
    return _compile_filters(_encoder.encode(sections))


def is_fully_normalized(item: Item, meta: RequestMeta) -> bool:
    """Whether ``item`` was fully normalized by an earlier hop we trust.

    Only an internal relay's word counts: anyone else could set the header to skip
    normalization (and the validation that comes with it).
    """
    return meta.from_relay and item.headers.get("fully_normalized") is True


def mark_fully_normalized(item: Item, meta: RequestMeta, full: bool) -> None:
    """Set the item's ``fully_normalized`` header for the next hop, as Relay does.

    True after a full normalization here, or when a trusted relay already did one;
    an untrusted claim is removed rather than passed on to a hop that would trust us.
    """
    if full or is_fully_normalized(item, meta):
        item.headers["fully_normalized"] = True
    else:
        item.headers.pop("fully_normalized", None)


def normalize_event_payload(
    item: Item,
    envelope: Envelope,
    meta: RequestMeta,
    state: ProjectState,
    *,
    processing: bool,
    max_secs_in_future: int = 60,
    global_config: dict[str, Any] | None = None,
    geoip: GeoIpLookup | None = None,
    before_scrub: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Decode, normalize, filter, scrub and re-encode ``item``'s event; returns it.

    Raises EventRejected (``invalid_json`` or ``invalid_transaction``) when the event
    cannot be kept. A raw security report becomes a classified ``security`` item.
    ``before_scrub`` sees the filtered event before PII scrubbing (dynamic sampling, which
    Relay runs on unscrubbed data); it may raise to drop the event.
    """
    if item.type in SECURITY_ITEM_TYPES:
        event = security_event(item, meta)
    else:
        event = decode_event(item.payload)
    if item.type == ItemType.TRANSACTION:
        event["type"] = "transaction"
        spans = event.get("spans")
        if isinstance(spans, list):
            # Relay's ``span_count`` header: outcomes for a dropped transaction, here or on
            # a later hop, count its spans too.
            item.headers["span_count"] = len(spans)
    elif item.type == ItemType.EVENT:
        # An event item is never a transaction: like Relay, drop the declared type and let
        # normalization infer it (some SDKs send errors with ``type: transaction``).
        event["type"] = None
    normalized = normalize_event_dict(
        event,
        envelope,
        meta,
        state,
        processing=processing,
        max_secs_in_future=max_secs_in_future,
        global_config=global_config,
        geoip=geoip,
        scrub=before_scrub is None,
    )
    if before_scrub is not None:
        before_scrub(normalized)
        scrub_event(normalized, state)
    item.set_payload(_encoder.encode(normalized))
    if item.type == ItemType.RAW_SECURITY:
        # The report is an event now; the next hop gets it as a classified security item.
        item.headers["type"] = ItemType.SECURITY
        item.headers.pop("sentry_release", None)
        item.headers.pop("sentry_environment", None)
    return normalized


def decode_event(payload: bytes) -> dict[str, Any]:
    """An event item's JSON object; raises EventRejected (``invalid_json``) otherwise."""
    try:
        event = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        raise EventRejected("invalid_json") from None
    if not isinstance(event, dict):
        raise EventRejected("invalid_json")
    return event


def security_event(item: Item, meta: RequestMeta) -> dict[str, Any]:
    """The event of a ``raw_security`` or ``security`` item, before normalization.

    A raw report is converted (release and environment from its ``sentry_release`` and
    ``sentry_environment`` headers, the request's ``Origin`` as a header); a classified one
    must still be a supported (CSP) report. Raises EventRejected with the report's outcome:
    ``invalid_json``, ``security_report_type``, ``security_report`` or filtered ``invalid-csp``.
    """
    try:
        if item.type == ItemType.RAW_SECURITY:
            return event_from_security_report(
                item.payload,
                release=_str(item.headers.get("sentry_release")),
                environment=_str(item.headers.get("sentry_environment")),
                origin=meta.origin,
            )
        event = decode_event(item.payload)
        check_security_event(event)
    except SecurityReportError as exc:
        code = OutcomeCode.FILTERED if exc.filtered else OutcomeCode.INVALID
        raise EventRejected(exc.reason, code) from None
    return event


def normalize_event_dict(
    event: dict[str, Any],
    envelope: Envelope,
    meta: RequestMeta,
    state: ProjectState,
    *,
    processing: bool,
    max_secs_in_future: int = 60,
    global_config: dict[str, Any] | None = None,
    normalize: bool = True,
    geoip: GeoIpLookup | None = None,
    scrub: bool = True,
) -> dict[str, Any]:
    """Normalize, filter and scrub a decoded event, in Relay's order; raises EventRejected.

    Inbound filters run after normalization and before scrubbing, on every hop; a
    filtered event is rejected with outcome ``filtered`` and the filter's stat key.
    ``normalize=False`` (an event a trusted relay fully normalized) only filters and scrubs.
    ``scrub=False`` leaves scrubbing to the caller (``scrub_event``), for the steps Relay
    runs between filtering and scrubbing.
    """
    if not normalize:
        return _filter_and_scrub(event, meta, state, global_config, scrub)
    config = state.config
    scrubbing = config.get("datascrubbingSettings")
    key = state.key_config(meta.public_key)
    trace = envelope.trace or {}
    sample_rate = trace.get("sample_rate")
    try:
        normalized = normalize_for_relay(
            event,
            processing=processing,
            event_id=envelope.event_id,
            received_at=meta.received_at,
            sent_at=_sent_at(envelope),
            project_id=state.project_id,
            key_id=str(key.numeric_id) if key and key.numeric_id is not None else None,
            client=meta.client,
            protocol_version=str(meta.version),
            client_ip=meta.client_ip,
            scrub_ip_addresses=bool(
                isinstance(scrubbing, dict) and scrubbing.get("scrubIpAddresses")
            ),
            grouping_config=config.get("groupingConfig"),
            retention_days=_int(config.get("eventRetention")),
            max_secs_in_future=max_secs_in_future,
            client_sample_rate=_float(sample_rate),
            replay_id=_str(trace.get("replay_id")),
            user_agent=meta.user_agent,
            measurements_config=config.get("measurements"),
            global_measurements_config=(global_config or {}).get("measurements"),
            breakdowns_config=config.get("breakdownsV2"),
            geoip=geoip,
        )
    except InvalidTransaction:
        raise EventRejected("invalid_transaction") from None
    return _filter_and_scrub(normalized, meta, state, global_config, scrub)


def _filter_and_scrub(
    normalized: dict[str, Any],
    meta: RequestMeta,
    state: ProjectState,
    global_config: dict[str, Any] | None,
    scrub: bool,
) -> dict[str, Any]:
    filters = inbound_filters(state, global_config)
    if not filters.is_empty:
        reason = filters.should_filter(normalized, client_ip=meta.client_ip, user_agent=None)
        if reason is not None:
            raise EventRejected(reason, OutcomeCode.FILTERED)
    if scrub:
        scrub_event(normalized, state)
    return normalized


def scrub_event(event: dict[str, Any], state: ProjectState) -> None:
    """Apply the project's PII scrubbing to a normalized event, in place."""
    scrubber = pii_pipeline(state)
    if not scrubber.is_empty:
        scrubber.process_event(event)


@functools.lru_cache(maxsize=1024)
def _compile_pii(sections: bytes) -> ScrubbingPipeline:
    pii_config, scrubbing = msgspec.json.decode(sections)
    return compile_project_configs(pii_config, scrubbing)


def pii_pipeline(state: ProjectState) -> ScrubbingPipeline:
    """The project's scrubber (piiConfig, then datascrubbingSettings), compiled once.

    Keyed by the two config sections themselves, so a new config revision that changes
    them compiles anew and one that does not reuses the compiled rules.
    """
    config = state.config
    sections = (config.get("piiConfig"), config.get("datascrubbingSettings"))
    return _compile_pii(_encoder.encode(sections))


def _sent_at(envelope: Envelope) -> float | None:
    """The envelope's ``sent_at`` header as Unix seconds (None: absent or invalid)."""
    sent_at = envelope.sent_at_datetime
    return None if sent_at is None else sent_at.timestamp()


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


#: With this feature, view hierarchies are scrubbed as JSON, not as binary blobs.
_VIEW_HIERARCHY_SCRUBBING = "organizations:view-hierarchy-scrubbing"


def scrub_attachments(envelope: Envelope, state: ProjectState) -> None:
    """Apply the project's piiConfig to attachments, as Relay does.

    View hierarchies of projects with the view-hierarchy-scrubbing feature are scrubbed
    as JSON (re-serialized, so their size may change: quantities are taken later, from
    the new payload). Other attachments get the ``$attachments.*`` rules as bytes, sizes
    unchanged. Minidumps (own logic) and attachment placeholders are left alone.
    """
    scrubber = pii_pipeline(state)
    features = state.config.get("features")
    json_view_hierarchies = (
        scrubber.documents is not None
        and isinstance(features, list)
        and _VIEW_HIERARCHY_SCRUBBING in features
    )
    for item in envelope.items:
        if item.type != ItemType.ATTACHMENT:
            continue
        if (item.content_type or "").lower() in ATTACHMENT_REF_CONTENT_TYPES:
            continue
        attachment_type = item.attachment_type
        if json_view_hierarchies and attachment_type == AttachmentType.VIEW_HIERARCHY:
            scrubbed = scrubber.process_json_attachment(item.payload)
            if scrubbed is not item.payload:
                default_type = None if item.content_type else "application/json"
                item.set_payload(scrubbed, default_type)
        elif attachment_type != AttachmentType.MINIDUMP and scrubber.attachments is not None:
            scrubbed = scrubber.process_attachment(item.filename or "", item.payload)
            if scrubbed is not item.payload:
                item.set_payload(scrubbed)


def scrub_minidumps(envelope: Envelope, state: ProjectState) -> None:
    """Apply the project's piiConfig to minidump attachments, as Relay does.

    Only the dump's memory, Linux environ/cmdline and module paths are rewritten (lengths
    unchanged; see ``relay.pii.minidumps``). Run after the crash expansion has read the
    dump, as Relay scrubs last. Placeholders of uploaded dumps are left alone.
    """
    scrubber = pii_pipeline(state)
    if scrubber.minidumps is None:
        return
    for item in envelope.items:
        if item.type != ItemType.ATTACHMENT or item.attachment_type != AttachmentType.MINIDUMP:
            continue
        if (item.content_type or "").lower() in ATTACHMENT_REF_CONTENT_TYPES:
            continue
        scrubbed = scrubber.process_minidump(item.filename or "", item.payload)
        default_type = None if item.content_type else "application/x-dmp"
        if scrubbed is not item.payload or default_type is not None:
            item.set_payload(scrubbed, default_type)
