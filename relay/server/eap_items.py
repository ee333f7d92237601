"""Logs and V2 spans in containers: normalized and scrubbed at every managed relay.

Relay's logs and spans processors expand a container, normalize each item, scrub it with
the project's piiConfig and datascrubbingSettings (relay.pii.eap) and write the
container back, so PII is gone before the data leaves the first relay that knows the
project. Entries that are not JSON objects are left for the processing relay, which
drops them with an outcome.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec

from relay.normalize.ourlogs import LOG_CONTAINER_CONTENT_TYPE, log_byte_size, normalize_log
from relay.pii import ScrubbingPipeline
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.protocol.project_config import ProjectState
from relay.server.event_normalization import pii_pipeline
from relay.server.request_meta import RequestMeta

__all__ = [
    "SPAN_CONTAINER_CONTENT_TYPE",
    "infers_user_agent",
    "prepare_log",
    "process_eap_items",
]

log = logging.getLogger(__name__)

SPAN_CONTAINER_CONTENT_TYPE: Final = "application/vnd.sentry.items.span.v2+json"
_HEADER: Final = "__header"

_encoder = msgspec.json.Encoder()


def _infers_user_agent(container: dict[str, Any]) -> bool:
    # Containers of version 1 (or none) take the client's user agent; version 2 only when
    # its ingest settings ask for it ("auto"), as in Relay.
    version = container.get("version")
    if version is None or version == 1:
        return True
    if version == 2:
        settings = container.get("ingest_settings")
        infer = settings.get("infer_user_agent") if isinstance(settings, dict) else None
        return infer == "auto"
    return False


def prepare_log(
    entry: dict[str, Any],
    meta: RequestMeta,
    state: ProjectState,
    *,
    infer_user_agent: bool = True,
    scrubber: ScrubbingPipeline | None = None,
) -> int:
    """Size, normalize and scrub one log of a container, in place (Relay's order).

    The first relay (the client is not a relay) measures the log's `byte_size` before
    anything is added; later hops keep the size they were given. Returns that size.
    `scrubber` is the project's `pii_pipeline` (looked up when not given).
    """
    header = entry.get(_HEADER)
    if not isinstance(header, dict):
        header = {}
    size = header.get("byte_size")
    if meta.relay_id is None or not isinstance(size, int) or size <= 0:
        size = log_byte_size(entry)
    # The header goes first, where containers carry it.
    rest = entry.copy()
    rest.pop(_HEADER, None)
    entry.clear()
    entry[_HEADER] = {**header, "byte_size": size}
    entry.update(rest)
    normalize_log(
        entry,
        received_at=meta.received_at,
        ingress="container",
        user_agent=meta.user_agent if infer_user_agent else None,
    )
    if scrubber is None:
        scrubber = pii_pipeline(state)
    if _scrubs_eap(scrubber):
        scrubber.process_log(entry)
    return size


def _scrubs_eap(scrubber: ScrubbingPipeline) -> bool:
    # Without piiConfig rules or datascrubbingSettings, scrubbing a log or span changes
    # nothing (its `__header` is already in front): skip the walk.
    return scrubber.advanced is not None or scrubber.legacy is not None


def infers_user_agent(item: Item, meta: RequestMeta) -> bool:
    """Whether the logs of `item` take the client's user agent at this relay.

    Only the first relay decides (later hops would take the forwarding relay's view).
    """
    if meta.relay_id is not None:
        return False
    container = _decode_container(item)
    return container is None or _infers_user_agent(container)


def _decode_container(item: Item) -> dict[str, Any] | None:
    try:
        container = msgspec.json.decode(item.payload)
    except msgspec.DecodeError:
        return None
    if not isinstance(container, dict) or not isinstance(container.get("items"), list):
        return None
    return container


def process_eap_items(envelope: Envelope, meta: RequestMeta, state: ProjectState) -> None:
    """Normalize and scrub the log and span containers of an envelope, in place.

    Malformed containers are forwarded as they are: the processing relay rejects them
    with the right outcome.
    """
    for item in envelope.items:
        content_type = (item.content_type or "").lower()
        logs = item.type == ItemType.LOG and content_type == LOG_CONTAINER_CONTENT_TYPE
        spans = item.type == ItemType.SPAN and content_type == SPAN_CONTAINER_CONTENT_TYPE
        if not (logs or spans):
            continue
        container = _decode_container(item)
        if container is None:
            log.debug("%s container is not valid JSON; forwarded as is", item.type)
            continue
        entries = [entry for entry in container["items"] if isinstance(entry, dict)]
        scrubber = pii_pipeline(state)
        if logs:
            infer = _infers_user_agent(container)
            for entry in entries:
                prepare_log(entry, meta, state, infer_user_agent=infer, scrubber=scrubber)
        else:
            scrubs = _scrubs_eap(scrubber)
            for span in entries:
                # Scrubbing also moves a span's `__header` to the front: keep doing that.
                if scrubs or (_HEADER in span and next(iter(span)) != _HEADER):
                    scrubber.process_span(span)
        item.set_payload(_encoder.encode(container))
