"""Runs ``relay.normalize`` and ``relay.pii`` on an envelope's event item, on every hop.

POP relays normalize lightly (unknown fields kept, no ``errors``) before forwarding;
processing relays normalize fully before writing to Kafka. Both call this module so the
arguments taken from the request and the project config are gathered in one place.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from relay.filters import CompiledFilters, compile_filters
from relay.kafka.outcomes import OutcomeCode
from relay.normalize import InvalidTransaction, normalize_for_relay
from relay.pii import ScrubbingPipeline, compile_project_configs
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.protocol.project_config import ProjectState
from relay.server.request_meta import RequestMeta

_encoder = msgspec.json.Encoder()

#: Item types whose payload is an event JSON that normalization applies to.
NORMALIZED_ITEM_TYPES = frozenset({ItemType.EVENT, ItemType.TRANSACTION})
#: Items Relay processes together with a transaction, and drops with it.
_TRANSACTION_BOUND = frozenset({ItemType.ATTACHMENT, ItemType.PROFILE})
#: Items Relay processes together with an error event (``requires_event``), and drops with
#: it. Replay events are not among them: Relay's replay processor takes them first.
_ERROR_BOUND = frozenset(
    {ItemType.ATTACHMENT, ItemType.FORM_DATA, ItemType.USER_REPORT, ItemType.PROFILE}
)


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


def normalize_event_payload(
    item: Item,
    envelope: Envelope,
    meta: RequestMeta,
    state: ProjectState,
    *,
    processing: bool,
    max_secs_in_future: int = 60,
    global_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decode, normalize, filter, scrub and re-encode ``item``'s event; returns it.

    Raises EventRejected (``invalid_json`` or ``invalid_transaction``) when the event
    cannot be kept.
    """
    try:
        event = msgspec.json.decode(item.payload)
    except msgspec.DecodeError:
        raise EventRejected("invalid_json") from None
    if not isinstance(event, dict):
        raise EventRejected("invalid_json")
    if item.type == ItemType.TRANSACTION:
        event["type"] = "transaction"
        spans = event.get("spans")
        if isinstance(spans, list):
            # Relay's ``span_count`` header: outcomes for a dropped transaction, here or on
            # a later hop, count its spans too.
            item.headers["span_count"] = len(spans)
    normalized = normalize_event_dict(
        event,
        envelope,
        meta,
        state,
        processing=processing,
        max_secs_in_future=max_secs_in_future,
        global_config=global_config,
    )
    item.set_payload(_encoder.encode(normalized))
    return normalized


def normalize_event_dict(
    event: dict[str, Any],
    envelope: Envelope,
    meta: RequestMeta,
    state: ProjectState,
    *,
    processing: bool,
    max_secs_in_future: int = 60,
    global_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Normalize, filter and scrub a decoded event, in Relay's order; raises EventRejected.

    Inbound filters run after normalization and before scrubbing, on every hop; a
    filtered event is rejected with outcome ``filtered`` and the filter's stat key.
    """
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
        )
    except InvalidTransaction:
        raise EventRejected("invalid_transaction") from None
    filters = inbound_filters(state, global_config)
    if not filters.is_empty:
        reason = filters.should_filter(normalized, client_ip=meta.client_ip, user_agent=None)
        if reason is not None:
            raise EventRejected(reason, OutcomeCode.FILTERED)
    scrubber = pii_pipeline(state)
    if not scrubber.is_empty:
        scrubber.process_event(normalized)
    return normalized


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


#: Attachment types Relay scrubs with special logic (or not at all); plain rules skip them.
_SPECIAL_ATTACHMENTS = frozenset({"event.minidump", "event.view_hierarchy"})


def scrub_attachments(envelope: Envelope, state: ProjectState) -> None:
    """Apply the project's ``$attachments.*`` piiConfig rules to plain attachments.

    Sizes never change (masks keep the length), so quantities and outcomes stay the same.
    Minidumps and view hierarchies are left alone: Relay scrubs them with their own logic.
    """
    scrubber = pii_pipeline(state)
    if scrubber.attachments is None:
        return
    for item in envelope.items:
        if item.type != ItemType.ATTACHMENT or item.attachment_type in _SPECIAL_ATTACHMENTS:
            continue
        scrubbed = scrubber.process_attachment(item.filename or "", item.payload)
        if scrubbed is not item.payload:
            item.set_payload(scrubbed)
