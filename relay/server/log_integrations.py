"""Log integrations: ``integration`` items that become a ``log`` container at the first relay.

The NEL endpoint wraps the browser's reports in an ``integration`` item
(``application/vnd.sentry.integration.browser.nel+json``). The first managed relay that
sees it (POP or processing, as in Relay's logs processor) expands it: each report becomes a
log (relay.normalize.nel), normalized (relay.normalize.ourlogs) and written as one version 2
``log`` container, which is what travels upstream and what the processing relay stores.

Outcomes follow Relay: a payload that is not a JSON array is ``invalid_json``; a log outside
the time window is ``timestamp``; a log over ``limits.max_log_size`` is ``too_large:log``;
more than one log item in an envelope drops them all as ``duplicate_item``. Projects without
the ``organizations:ourlogs-ingestion`` feature drop the item without an outcome.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from relay.config import Config
from relay.kafka.outcomes import OutcomeCode
from relay.normalize.nel import InvalidNelPayload, nel_reports_to_logs
from relay.normalize.ourlogs import (
    LOG_CONTAINER_CONTENT_TYPE,
    LogTimestampOutOfRange,
    check_log_timestamp,
    encode_log_container,
    log_byte_size,
    normalize_log,
)
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import INTEGRATION_CONTENT_TYPES, DataCategory, ItemType
from relay.protocol.project_config import ProjectState
from relay.server.outcomes import OutcomeSink
from relay.server.request_meta import RequestMeta

__all__ = ["LOGS_FEATURE", "NEL_CONTENT_TYPE", "expand_log_integrations"]

log = logging.getLogger(__name__)

NEL_CONTENT_TYPE: Final = "application/vnd.sentry.integration.browser.nel+json"
LOGS_FEATURE: Final = "organizations:ourlogs-ingestion"
_DAY: Final = 24 * 3600


def _is_log_item(item: Item) -> bool:
    if item.type == ItemType.LOG:
        return True
    product = INTEGRATION_CONTENT_TYPES.get((item.content_type or "").lower())
    return item.type == ItemType.INTEGRATION and product == "logs"


def _is_nel(item: Item) -> bool:
    return item.type == ItemType.INTEGRATION and (item.content_type or "").lower() == (
        NEL_CONTENT_TYPE
    )


def log_retention_days(state: ProjectState) -> int:
    """Days logs are kept: ``retentions.log.standard``, else ``eventRetention``, else 90."""
    retentions = state.config.get("retentions")
    if isinstance(retentions, dict):
        entry = retentions.get("log")
        if isinstance(entry, dict):
            standard = entry.get("standard")
            if isinstance(standard, int) and not isinstance(standard, bool) and standard > 0:
                return standard
    return state.event_retention


def expand_log_integrations(
    envelope: Envelope,
    meta: RequestMeta,
    state: ProjectState,
    outcomes: OutcomeSink,
    config: Config,
) -> None:
    """Replace a NEL ``integration`` item by a ``log`` container, in place (managed relays)."""
    if not any(_is_nel(item) for item in envelope.items):
        return
    log_items = [item for item in envelope.items if _is_log_item(item)]
    if len(log_items) > 1:
        # Relay takes one log item per envelope; a mix cannot be attributed, so all go.
        for item in log_items:
            envelope.items.remove(item)
            outcomes.item_dropped(item, envelope, meta, state, "duplicate_item")
        return
    item = log_items[0]
    index = envelope.items.index(item)
    if not state.has_feature(LOGS_FEATURE):
        # A feature the organization does not have: dropped without an outcome, as Relay does.
        del envelope.items[index]
        return
    try:
        logs = nel_reports_to_logs(item.payload, meta.received_at)
    except InvalidNelPayload as exc:
        log.debug("dropping NEL item: %s", exc)
        del envelope.items[index]
        outcomes.item_dropped(item, envelope, meta, state, exc.reason)
        return

    max_in_past = log_retention_days(state) * _DAY
    max_in_future = config.processing.max_secs_in_future
    max_size = int(config.limits.max_log_size)
    kept: list[tuple[dict[str, Any], int]] = []
    for entry in logs:
        # The size is measured as the log was received, before attributes are added.
        size = log_byte_size(entry)
        quantities = [(DataCategory.LOG_ITEM, 1), (DataCategory.LOG_BYTE, size)]
        reason: str | None = None
        try:
            check_log_timestamp(entry, meta.received_at, max_in_past, max_in_future)
        except LogTimestampOutOfRange as exc:
            reason = exc.reason
        if reason is None and size > max_size:
            reason = "too_large:log"
        if reason is not None:
            outcomes.item_dropped(
                item, envelope, meta, state, reason, OutcomeCode.INVALID, quantities
            )
            continue
        normalize_log(
            entry, received_at=meta.received_at, ingress="integration", user_agent=meta.user_agent
        )
        kept.append((entry, size))

    if not kept:
        del envelope.items[index]
        return
    envelope.items[index] = Item.new(
        ItemType.LOG,
        encode_log_container(kept),
        content_type=LOG_CONTAINER_CONTENT_TYPE,
        item_count=len(kept),
    )
