"""Event tags: environment from tags, reserved tags removed, de-duplication, well-known
attributes (``server_name``, ``site``) turned into tags."""

from __future__ import annotations

from typing import Any, Final

from relay.normalize.meta import Meta, add_error, child, invalid

_RESERVED: Final = frozenset({"release", "dist", "user", "filename", "function"})


def normalize_event_tags(event: dict[str, Any], meta: Meta) -> None:
    """Clean up ``tags`` (a list of ``[key, value]`` pairs) in place, keeping meta aligned."""
    tags = event.get("tags")
    if tags is None:
        tags = event["tags"] = []
    tags_meta = meta.get("tags") or {}
    if event.get("environment") == "":
        event["environment"] = None
    entries: list[tuple[Any, Any]] = [(tag, tags_meta.get(str(i))) for i, tag in enumerate(tags)]
    pair: Any  # declared: mypyc would infer None for this loop target
    for position, (pair, _) in enumerate(entries):
        if pair is not None and pair[0] == "environment":
            del entries[position]
            if pair[1] is not None and event.get("environment") is None:
                event["environment"] = pair[1]
            break
    seen: set[Any] = set()
    kept: list[tuple[Any, Any]] = []
    for pair, sub in entries:
        if pair is None:
            kept.append((pair, sub))
            continue
        key = pair[0]
        if key in _RESERVED or key in seen:
            continue
        seen.add(key)
        kept.append((pair, sub))
    new_meta: Meta = {k: v for k, v in tags_meta.items() if k == ""}
    out: list[Any] = []
    for i, (pair, sub) in enumerate(kept):
        index = str(i)
        if sub:
            new_meta[index] = sub
        if pair is not None:
            if pair[0] == "":
                pair[0] = None
                add_error(child(child(new_meta, index), "0"), invalid("expected a non-empty value"))
            if pair[1] == "":
                pair[1] = None
                add_error(child(child(new_meta, index), "1"), invalid("expected a non-empty value"))
        out.append(pair)
    for name in ("server_name", "site"):
        value = event.get(name)
        if name in event:
            event[name] = None
            meta.pop(name, None)
        if value is not None:
            for pair in out:
                if pair is not None and pair[0] == name:
                    pair[1] = value
                    break
            else:
                out.append([name, value])
    event["tags"] = out
    if new_meta:
        meta["tags"] = new_meta
    else:
        meta.pop("tags", None)


def remove_device_class(event: dict[str, Any]) -> None:
    """Only Relay sets ``device.class``; a client-sent one is dropped."""
    tags = event.get("tags")
    if tags:
        event["tags"] = [p for p in tags if p is None or p[0] != "device.class"]
