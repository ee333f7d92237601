"""Scrubbing of EAP items: logs (`OurLog`) and V2 spans, with their typed attributes.

Relay scrubs these items apart from events and with two processors: the project's
piiConfig (advanced rules) sees each attribute as an object, so a selector names
`attributes.<name>.value`; the rules derived from datascrubbingSettings (legacy rules)
see an attribute as its value, so `attributes.<name>` (and the default `password`-like
key rules) reach it. Which attribute values may be scrubbed at all follows
sentry-conventions (`pii` of the attribute; unknown names are scrubbed).
"""

from __future__ import annotations

from typing import Any, Final

from relay.pii import schema as sc
from relay.pii.processor import PiiProcessor
from relay.pii.value_types import OBJECT

__all__ = ["OURLOG", "SPAN_V2", "scrub_item"]

T, F, M = sc.T, sc.F, sc.M

#: `attributes` of logs and spans: name -> {"type", "value", ...}.
ATTRIBUTES: Final = sc.Node(sc.K_ATTRIBUTES, OBJECT)

#: Relay's `OurLog` (a Sentry log).
OURLOG: Final = sc.struct(
    "OurLog",
    {
        "timestamp": sc.TIME,
        "trace_id": sc.OPAQUE,
        "span_id": sc.OPAQUE,
        "level": sc.OPAQUE,
        "body": (sc.STR, M),
        "attributes": (ATTRIBUTES, M),
    },
    other=M,
    value_type="log",
)

_SPAN_V2_LINK: Final = sc.struct(
    "SpanV2Link",
    {
        "trace_id": sc.OPAQUE,
        "span_id": sc.OPAQUE,
        "sampled": sc.BOOL,
        "attributes": (ATTRIBUTES, M),
    },
    other=M,
)

#: Relay's `SpanV2` (the span format of span containers and of the `snuba-spans` topic).
SPAN_V2: Final = sc.struct(
    "SpanV2",
    {
        "trace_id": sc.OPAQUE,
        "parent_span_id": sc.OPAQUE,
        "span_id": sc.OPAQUE,
        "name": sc.STR,
        "status": sc.OPAQUE,
        "kind": sc.OPAQUE,
        "is_segment": sc.BOOL,
        "is_remote": sc.BOOL,
        "start_timestamp": sc.TIME,
        "end_timestamp": sc.TIME,
        "links": (sc.arr(_SPAN_V2_LINK), M),
        "attributes": (ATTRIBUTES, T),
    },
    other=M,
    value_type="span",
)

#: Keys that are not part of the item: the container's per-item header.
_ITEM_HEADER: Final = "__header"


def scrub_item(
    item: dict[str, Any],
    node: sc.Node,
    advanced: PiiProcessor | None,
    legacy: PiiProcessor | None,
) -> None:
    """Scrub one EAP item in place: piiConfig rules first, then datascrubbingSettings.

    `node` is `OURLOG` or `SPAN_V2`. A container item's `__header` is left alone (it is
    the container's, not the item's). Remarks go to the item's `_meta`.
    """
    header = item.pop(_ITEM_HEADER, None)
    try:
        if advanced is not None:
            advanced.process_item(item, node, attribute_values_only=False)
        if legacy is not None:
            legacy.process_item(item, node, attribute_values_only=True)
    finally:
        if header is not None:
            # Back in front, where containers carry it.
            rest = dict(item)
            item.clear()
            item[_ITEM_HEADER] = header
            item.update(rest)
