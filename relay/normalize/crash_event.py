"""The event of a crash upload, assembled from the items that carry its parts.

Crash reporters cannot send an event item. The event of a minidump or Apple crash report
upload comes from the first of (Relay's ``take_event_from_crash_items``):

1. an ``event`` item (JSON);
2. the ``__sentry-event`` attachment (``event.payload``, msgpack) and up to two
   ``__sentry-breadcrumb`` attachments (``event.breadcrumbs``, a stream of msgpack
   breadcrumbs);
3. the ``form_data`` item: the ``sentry`` field (JSON), ``sentry___<namespace>`` fields
   (JSON), Electron's chunked ``sentry__1``, ``sentry__2``... fields (JSON split in pieces),
   Breakpad's ``sentry[key][key]`` fields, and any other field as ``extra``.

The items of the other sources are removed: they are consumed by the event.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any, Final

import msgpack
import msgspec

from relay.protocol.envelope import Item
from relay.protocol.items import AttachmentType, ItemType
from relay.protocol.limits import discard_item_type
from relay.protocol.multipart import iter_form_data

__all__ = [
    "CrashEventError",
    "event_from_attachments",
    "merge_form_data",
    "take_crash_event",
]

#: Relay limits ``sentry[a][b]...`` paths to this many keys (the JSON is built recursively).
MAX_PATH_DEPTH: Final = 15
_CHUNK_PREFIX: Final = "sentry__"
_NAMESPACE_PREFIX: Final = "sentry___"


class CrashEventError(ValueError):
    """The event parts cannot be read; ``reason`` is the outcome reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- form data ------------------------------------------------------------------------


def merge_values(target: Any, source: Any) -> Any:
    """Fill ``target`` with ``source`` without overwriting what ``target`` has.

    Objects merge key by key; a missing (``None``) target takes the source. Returns the
    merged value (a new value only when ``target`` was ``None``).
    """
    if target is None:
        return source
    if isinstance(target, dict) and isinstance(source, dict):
        for key, value in source.items():
            target[key] = merge_values(target.get(key), value)
    return target


def update_nested_value(target: dict[str, Any], path: list[str], value: str) -> None:
    """Set ``value`` at ``path`` unless something is there already (first value wins)."""
    if len(path) > MAX_PATH_DEPTH:
        raise CrashEventError("nesting_too_deep")
    current: Any = target
    for index, key in enumerate(path):
        if not isinstance(current, dict):
            return
        if index == len(path) - 1:
            current.setdefault(key, value)
        else:
            current = current.setdefault(key, {})


def sentry_entry_keys(name: str) -> list[str] | None:
    """``sentry[a][b]`` -> ``["a", "b"]``; None for other names or a broken bracket syntax."""
    if not name.startswith("sentry["):
        return None
    keys: list[str] = []
    start: int | None = None
    expect_bracket = False
    for index, char in enumerate(name):
        if start is not None:
            if char == "]":
                keys.append(name[start:index])
                start = None
                expect_bracket = True
        elif expect_bracket:
            if char == "[":
                start = index + 1
            elif char == "=":
                return keys
            else:
                return None
        elif char == "[":
            start = index + 1
    return keys


def _chunk_index(name: str) -> int | None:
    rest = name[len(_CHUNK_PREFIX) :]
    # Relay parses the index as an unsigned integer; "+1" or "1.0" are not indexes.
    return int(rest) if rest.isascii() and rest.isdigit() else None


def _json_or_none(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None


def merge_form_data(target: dict[str, Any], payload: bytes) -> None:
    """Merge the fields of a ``form_data`` payload into the event ``target``.

    Invalid JSON in a ``sentry`` field is ignored, as in Relay. Raises
    :class:`CrashEventError` (``nesting_too_deep``) for a too deeply nested key.
    """
    chunks: dict[int, str] = {}
    for key, value in iter_form_data(payload):
        if key == "sentry" or key.startswith(_NAMESPACE_PREFIX):
            merge_values(target, _json_or_none(value))
        elif key.startswith(_CHUNK_PREFIX) and (index := _chunk_index(key)) is not None:
            chunks[index] = value
        elif (path := sentry_entry_keys(key)) is not None:
            update_nested_value(target, path, value)
        else:
            update_nested_value(target, ["extra", key], value)
    if chunks:
        joined = "".join(chunks[index] for index in sorted(chunks))
        merge_values(target, _json_or_none(joined))


# --- msgpack attachments ----------------------------------------------------------------


def _check_size(item: Item, max_size: int) -> None:
    # Attachments may be far larger than events; refuse before decoding.
    if len(item.payload) > max_size:
        raise CrashEventError("too_large:" + discard_item_type(item))


def _unpack_event(item: Item | None, max_size: int) -> dict[str, Any]:
    if item is None or not item.payload:
        return {}
    _check_size(item, max_size)
    try:
        event = msgpack.unpackb(item.payload, raw=False, strict_map_key=False)
    except Exception:  # msgpack raises a range of types for corrupt data
        raise CrashEventError("invalid_msgpack") from None
    if not isinstance(event, dict):
        raise CrashEventError("invalid_msgpack")
    converted: dict[str, Any] = _jsonable(event)
    return converted


def _jsonable(value: Any) -> Any:
    # Msgpack may carry bytes and non-string keys, which JSON events cannot.
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _unpack_breadcrumbs(item: Item | None, max_size: int) -> list[Any]:
    if item is None or not item.payload:
        return []
    _check_size(item, max_size)
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max_size)
    unpacker.feed(item.payload)
    try:
        return [_jsonable(crumb) for crumb in unpacker]
    except Exception:
        raise CrashEventError("invalid_msgpack") from None


def _timestamp(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    return None


def _last_timestamp(breadcrumbs: list[Any]) -> float | None:
    # A reversed slice, not reversed(): mypyc cannot compile reversed() over list[Any].
    for crumb in breadcrumbs[::-1]:
        if isinstance(crumb, dict):
            found = _timestamp(crumb.get("timestamp"))
            if found is not None:
                return found
    return None


def _earlier_first(first: list[Any], second: list[Any]) -> bool:
    # Relay compares optional timestamps: a list without any sorts before one with.
    a, b = _last_timestamp(first), _last_timestamp(second)
    if a is None:
        return True
    return b is not None and a <= b


def event_from_attachments(
    event_item: Item | None,
    breadcrumbs1: Item | None,
    breadcrumbs2: Item | None,
    max_size: int,
) -> dict[str, Any]:
    """The event of the msgpack ``__sentry-event`` and ``__sentry-breadcrumb`` attachments.

    The two breadcrumb files are a ring buffer: ordered by their last timestamp, joined, and
    cut to the length of the longer one (keeping the most recent).
    """
    event = _unpack_event(event_item, max_size)
    first = _unpack_breadcrumbs(breadcrumbs1, max_size)
    second = _unpack_breadcrumbs(breadcrumbs2, max_size)
    if not _earlier_first(first, second):
        first, second = second, first
    limit = max(len(first), len(second))
    crumbs = (first + second)[-limit:] if limit else []
    if crumbs:
        event["breadcrumbs"] = {"values": crumbs}
    return event


# --- the items of a crash ---------------------------------------------------------------


def _take(items: list[Item], wanted: Any) -> Item | None:
    for index, item in enumerate(items):
        if wanted(item):
            return items.pop(index)
    return None


def _is_event_part(item: Item) -> bool:
    return item.type == ItemType.FORM_DATA or item.attachment_type in (
        AttachmentType.EVENT_PAYLOAD,
        AttachmentType.BREADCRUMBS,
    )


def _without_event_parts(items: Iterable[Item]) -> list[Item]:
    return [item for item in items if not _is_event_part(item)]


def take_crash_event(items: list[Item], max_event_size: int) -> dict[str, Any] | None:
    """Take the event of a crash from ``items``, removing every item that carried a part.

    Returns None when no item carries an event. Raises :class:`CrashEventError` with the
    outcome reason (``invalid_json``, ``invalid_msgpack``, ``too_large:...``).
    """
    event: dict[str, Any] | None = None
    event_item = _take(items, lambda item: item.type == ItemType.EVENT)
    if event_item is not None:
        try:
            decoded = msgspec.json.decode(event_item.payload)
        except msgspec.DecodeError:
            raise CrashEventError("invalid_json") from None
        if not isinstance(decoded, dict):
            raise CrashEventError("invalid_json")
        event = decoded
    else:
        payload = _take(items, lambda item: item.attachment_type == AttachmentType.EVENT_PAYLOAD)
        crumbs1 = _take(items, lambda item: item.attachment_type == AttachmentType.BREADCRUMBS)
        crumbs2 = _take(items, lambda item: item.attachment_type == AttachmentType.BREADCRUMBS)
        if payload is not None or crumbs1 is not None:
            event = event_from_attachments(payload, crumbs1, crumbs2, max_event_size)
        else:
            form_data = _take(items, lambda item: item.type == ItemType.FORM_DATA)
            if form_data is not None:
                event = {}
                merge_form_data(event, form_data.payload)
    items[:] = _without_event_parts(items)
    return event


#: Attachment types whose upload is a crash: the event is assembled from the crash parts.
CRASH_ATTACHMENT_TYPES: Final = frozenset(
    {AttachmentType.MINIDUMP, AttachmentType.APPLE_CRASH_REPORT}
)


def crash_attachment(items: Iterable[Item]) -> Item | None:
    """The minidump (preferred, as in Relay) or Apple crash report among ``items``."""
    found: Item | None = None
    for item in items:
        if item.type != ItemType.ATTACHMENT:
            continue
        if item.attachment_type == AttachmentType.MINIDUMP:
            return item
        if found is None and item.attachment_type == AttachmentType.APPLE_CRASH_REPORT:
            found = item
    return found


def expand_crash_items(items: list[Item], max_event_size: int) -> bool:
    """Turn the event parts of a crash upload into one ``event`` item, in place.

    Only uploads with a minidump or Apple crash report are touched. An ``event`` item the
    upload already has stays as it is (the other parts are dropped: the event item wins).
    Returns whether ``items`` changed; raises :class:`CrashEventError` when the parts cannot
    be read.
    """
    if crash_attachment(items) is None:
        return False
    if any(item.type == ItemType.EVENT for item in items):
        kept = _without_event_parts(items)
        changed = len(kept) != len(items)
        items[:] = kept
        return changed
    if not any(_is_event_part(item) for item in items):
        return False
    event = take_crash_event(items, max_event_size)
    if event is not None:
        items.insert(
            0,
            Item.new(ItemType.EVENT, msgspec.json.encode(event), content_type="application/json"),
        )
    return True
