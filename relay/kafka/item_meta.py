"""`_meta` of a trace item (log) as ``sentry._meta.fields.*`` attributes, as Relay stores it.

Scrubbing leaves remarks in the item's `_meta` (which rule changed which range, the
original length). EAP keeps them as string attributes: one per top-level field
(``sentry._meta.fields.body``) and one per attribute
(``sentry._meta.fields.attributes.<name>``), each the JSON ``{"meta": <meta tree>}``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = ["meta_attributes"]

PREFIX: Final = "sentry._meta.fields."
#: Relay serializes a meta entry's parts in this order.
_ENTRY_KEYS: Final = ("rem", "err", "len", "val")

_encoder = msgspec.json.Encoder()


def _entry(raw: object) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {}
    for key in _ENTRY_KEYS:
        value = raw.get(key)
        if value is None or value == []:
            continue
        out[key] = value
    return out or None


def _tree(raw: object) -> dict[str, Any] | None:
    """A meta tree in Relay's form: the node's own entry first, then children by name."""
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {}
    own = _entry(raw.get(""))
    if own is not None:
        out[""] = own
    for key in sorted(k for k in raw if k != ""):
        child = _tree(raw[key])
        if child is not None:
            out[key] = child
    return out or None


def _encoded(tree: dict[str, Any]) -> str:
    return _encoder.encode({"meta": tree}).decode()


def meta_attributes(meta: object) -> dict[str, str]:
    """Attribute name -> JSON string for an item's `_meta` (empty when there is none)."""
    if not isinstance(meta, dict):
        return {}
    out: dict[str, str] = {}
    for key, raw in meta.items():
        if key == "attributes" and isinstance(raw, dict):
            for name, child in raw.items():
                tree = _tree(child) if name != "" else None
                if tree is not None:
                    out[f"{PREFIX}attributes.{name}"] = _encoded(tree)
            own = _entry(raw.get(""))
            if own is not None:
                out[f"{PREFIX}attributes"] = _encoded({"": own})
            continue
        tree = _tree(raw)
        if tree is not None:
            out[f"{PREFIX}{key}"] = _encoded(tree)
    return out
