"""Item headers that rate limiting needs from payloads: ``span_count`` and profile platforms.

The envelope limiter counts items by their headers only. Two quantities depend on payloads
that SDKs rarely describe in headers, and are filled in from a shallow parse first, as Relay
does:

- a transaction dropped before its spans are extracted reports one ``span`` (and
  ``span_indexed``) per span plus one for the transaction itself: ``span_count``, from the
  length of ``spans`` (only when a transaction limit is active: parsing costs);
- a profile counts as ``profile_ui`` or ``profile_backend`` by its platform: the ``platform``
  header, from the profile's metadata, before the consistent (Redis) check of processing
  relays.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

import msgspec

from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType

__all__ = ["ensure_profile_platforms", "ensure_span_count", "parse_span_count"]


class _SpansOnly(msgspec.Struct):
    # Only the length matters: span payloads are not decoded.
    spans: list[msgspec.Raw]


class _ProfileHead(msgspec.Struct):
    platform: str
    version: Any = None


_spans_decoder = msgspec.json.Decoder(_SpansOnly)
_profile_decoder = msgspec.json.Decoder(_ProfileHead)


def parse_span_count(item: Item) -> int | None:
    """The number of entries of a transaction's ``spans``; None if it has none or no JSON."""
    if item.type != ItemType.TRANSACTION:
        return None
    try:
        return len(_spans_decoder.decode(item.payload).spans)
    except msgspec.DecodeError:
        return None


def ensure_span_count(envelope: Envelope) -> None:
    """Set ``span_count`` on the envelope's transaction item, unless it is set already.

    A payload without a readable ``spans`` list leaves the header unset (counted as 0).
    """
    for item in envelope.items:
        if item.type != ItemType.TRANSACTION:
            continue
        if "span_count" not in item.headers:
            count = parse_span_count(item)
            if count is not None:
                item.headers["span_count"] = count
        return


def ensure_profile_platforms(envelope: Envelope) -> None:
    """Set the ``platform`` header of profiles that lack it, from the profile's metadata.

    Only profiles whose metadata Relay can read get one (sample format v1, or legacy
    Android): the others are rejected later as invalid, counted without a platform.
    """
    for item in envelope.items:
        if item.type != ItemType.PROFILE or item.platform is not None:
            continue
        try:
            head = _profile_decoder.decode(item.payload)
        except msgspec.DecodeError:
            continue
        if head.version == "1" or head.platform == "android":
            item.headers["platform"] = head.platform
