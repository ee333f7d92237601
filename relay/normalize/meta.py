"""The ``_meta`` tree: errors, original values, remarks and lengths, keyed like the event.

A meta tree is a plain dict shaped like Relay's ``_meta`` output: the key ``""`` holds the
node's own annotations (``err``, ``val``, ``rem``, ``len``), every other key is a child
(object key or list index as a string). Trees are built lazily: most nodes never get one.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Final

import msgspec

Meta = dict[str, Any]

#: Marker for "no original value"; ``None`` is a legitimate original value (JSON null).
MISSING: Final[Any] = object()


def child(meta: Meta, key: str) -> Meta:
    """The child tree at ``key``, created on first use."""
    sub = meta.get(key)
    if sub is None:
        sub = meta[key] = {}
    return sub


def node(meta: Meta) -> dict[str, Any]:
    """The node's own annotations (``meta[""]``), created on first use."""
    own = meta.get("")
    if own is None:
        own = meta[""] = {}
    return own


def add_error(meta: Meta, error: Any, original: Any = MISSING, size: int | None = None) -> None:
    """Record ``error`` (a kind string or ``[kind, data]``, once) and keep the first original
    value, if it is small enough (``size`` overrides its estimated size)."""
    own = node(meta)
    errors = own.setdefault("err", [])
    # Relay never records the same error twice on one value.
    if error not in errors:
        errors.append(error)
    if (
        original is not MISSING
        and "val" not in own
        and (estimate_size(original) if size is None else size) < MAX_ORIGINAL_SIZE
    ):
        own["val"] = original


#: Relay keeps an original value in ``_meta`` only when its estimated JSON size is below this.
MAX_ORIGINAL_SIZE: Final = 500


_encode_json: Final = msgspec.json.encode


def f64_len(value: float) -> int:
    """The length of ``f64``'s ``Display`` in Rust: shortest round-trip digits, never an
    exponent (``1e-7`` is ``0.0000001``, ``100.0`` is ``100``, NaN is ``NaN``)."""
    if math.isnan(value):
        return 3
    if math.isinf(value):
        return 3 if value > 0 else 4
    # msgspec writes the same shortest round-trip digits as ``repr``, ~7x faster (span
    # timestamps have 16 of them): plain ``I.F`` or ``D[.DDD]eN``.
    text = _encode_json(value)
    exponent_at = text.find(b"e")
    if exponent_at < 0:
        return len(text) - 2 if text.endswith(b".0") else len(text)
    sign = 1 if text[0] == 45 else 0  # "-"
    mantissa = exponent_at - sign
    digits = mantissa - 1 if mantissa > 1 else 1
    # Digits before the decimal point (``<= 0``: a ``0.`` and zeros come first).
    point = int(text[exponent_at + 1 :]) + 1
    if point <= 0:
        return sign + 2 - point + digits
    if point < digits:
        return sign + digits + 1
    return sign + point


def utf8_len(text: str) -> int:
    """The UTF-8 length of ``text``; an ASCII string's is its length (``isascii`` is a flag
    test), so no encoded copy is made for it."""
    return len(text) if text.isascii() else len(text.encode())


def estimate_size(value: Any, skip_nulls: bool = False) -> int:
    """Relay's ``estimate_size`` of a JSON value: compact JSON length, strings unescaped.

    ``skip_nulls`` leaves null object members out, as for typed structs (whose null fields
    Relay does not serialize).
    """
    if type(value) is str:
        return utf8_len(value) + 2
    if value is None:
        return 4
    if type(value) is bool:
        return 4 if value else 5
    if type(value) is int:
        return len(str(value))
    if type(value) is float:
        return f64_len(value)
    if type(value) is list:
        return 1 + sum(estimate_size(v, skip_nulls) + 1 for v in value) if value else 2
    if type(value) is dict:
        size = sum(
            estimate_size(k) + estimate_size(v, skip_nulls) + 2
            for k, v in value.items()
            if v is not None or not skip_nulls
        )
        return size + 1 if size else 2
    return 0


def set_original(meta: Meta, original: Any) -> None:
    """Keep ``original`` as the node's original value (the first one, if small enough)."""
    own = node(meta)
    if "val" not in own and estimate_size(original) < MAX_ORIGINAL_SIZE:
        own["val"] = original


def set_error(parent: Meta, key: str, error: Any, original: Any = MISSING) -> None:
    """:func:`add_error` on the child ``key`` of ``parent``."""
    add_error(child(parent, key), error, original)


def has_errors(meta: Meta | None) -> bool:
    """Whether the node itself carries errors (children not considered)."""
    if not meta:
        return False
    own = meta.get("")
    return bool(own and own.get("err"))


def add_remark(meta: Meta, remark: list[Any]) -> None:
    """Append a remark ``[rule_id, type, start?, end?]``."""
    node(meta).setdefault("rem", []).append(remark)


def set_original_length(meta: Meta, length: int) -> None:
    """Record the original length once (the first truncation wins)."""
    node(meta).setdefault("len", length)


def expected(what: str) -> list[Any]:
    """An ``invalid_data`` error saying what was expected, as Relay words it."""
    return ["invalid_data", {"reason": f"expected {what}"}]


def invalid(reason: str) -> list[Any]:
    """An ``invalid_data`` error with a free-form reason."""
    return ["invalid_data", {"reason": reason}]


def merge(into: Meta, other: Meta) -> None:
    """Merge an incoming ``_meta`` tree into ours: errors/remarks append, first value wins."""
    for key, sub in other.items():
        if not isinstance(sub, dict):
            continue
        if key == "":
            own = node(into)
            for name, value in sub.items():
                if name in ("err", "rem") and isinstance(value, list):
                    own.setdefault(name, []).extend(value)
                else:
                    own.setdefault(name, value)
        else:
            merge(child(into, key), sub)


_ANY: Final[Any] = object()


def copy_meta(other: Meta, value: Any = _ANY) -> Meta:
    """A private copy of an incoming ``_meta`` tree: what :func:`merge` into an empty tree
    makes of a deep copy of it (non-object children are dropped).

    With ``value`` (the JSON the tree annotates), a child is kept only where ``value`` has
    that key or index, explicit nulls included: Relay attaches incoming meta to the raw
    JSON, so annotations of absent fields vanish.
    """
    out: Meta = {}
    for key, sub in other.items():
        if not isinstance(sub, dict):
            continue
        if key == "":
            own = _incoming_entry(sub)
            if own is not None:
                out[""] = own
        elif value is _ANY:
            out[key] = copy_meta(sub)
        else:
            present, inner = _child_value(value, key)
            if present:
                out[key] = copy_meta(sub, inner)
    return out


#: Remark types Relay knows: annotated, removed, substituted, masked, pseudonymized, encrypted.
_REMARK_TYPES: Final = frozenset("axsmpe")
_U32_MAX: Final = 2**32 - 1
_U64_MAX: Final = 2**64 - 1


def _is_uint(value: Any, limit: int) -> bool:
    return type(value) is int and 0 <= value <= limit


def _incoming_entry(entry: dict[str, Any]) -> dict[str, Any] | None:
    """A node's own incoming annotations (``err``, ``rem``, ``len``, ``val``), copied and in
    Relay's shapes, or None when Relay could not read them: then it drops the whole entry
    (its children's annotations stay). Other keys are ignored, as Relay ignores them.
    """
    own: dict[str, Any] = {}
    for name, read in (("rem", _incoming_remarks), ("err", _incoming_errors)):
        if name in entry:
            annotations = read(entry[name])
            if annotations is None:
                return None
            own[name] = annotations
    length = entry.get("len")
    if length is not None:
        if not _is_uint(length, _U32_MAX):
            return None
        own["len"] = length
    original = entry.get("val")
    if original is not None:
        own["val"] = copy_json(original)
    return own


def _incoming_remarks(remarks: Any) -> list[Any] | None:
    """``[rule_id, type]`` or ``[rule_id, type, start, end]`` each; a lone start is dropped."""
    if type(remarks) is not list:
        return None
    out: list[Any] = []
    for remark in remarks:
        if type(remark) is not list or len(remark) < 2:
            return None
        rule, kind = remark[0], remark[1]
        if type(rule) is not str or type(kind) is not str or kind not in _REMARK_TYPES:
            return None
        bounds = remark[2:4]
        if not all(_is_uint(b, _U64_MAX) for b in bounds):
            return None
        out.append([rule, kind, *bounds] if len(bounds) == 2 else [rule, kind])
    return out


def _incoming_errors(errors: Any) -> list[Any] | None:
    """A name, or ``[name]`` / ``[name, {data}]`` with non-null data values, each."""
    if type(errors) is not list:
        return None
    out: list[Any] = []
    for error in errors:
        if type(error) is str:
            out.append(error)
            continue
        if type(error) is not list or not error or type(error[0]) is not str:
            return None
        if len(error) < 2:
            out.append(error[0])
            continue
        data = error[1]
        if type(data) is not dict or any(v is None for v in data.values()):
            return None
        out.append([error[0], copy_json(data)] if data else error[0])
    return out


def _child_value(value: Any, key: str) -> tuple[bool, Any]:
    """Whether the JSON ``value`` has child ``key`` (object key or array index), and it."""
    if isinstance(value, dict):
        return (True, value[key]) if key in value else (False, None)
    if isinstance(value, list) and key.isascii() and key.isdigit():
        index = int(key)
        return (True, value[index]) if index < len(value) else (False, None)
    return False, None


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (objects and arrays copied, scalars shared)."""
    if type(value) is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if type(value) is list:
        return [copy_json(v) for v in value]
    if isinstance(value, (dict, list, set)):
        return copy.deepcopy(value)
    return value


def prune(meta: Meta) -> bool:
    """Drop empty nodes in place; return whether anything is left."""
    # Empty nodes are collected and deleted after the walk: no copy of every node's keys.
    dead: list[str] | None = None
    for key, sub in meta.items():
        if not isinstance(sub, dict):
            keep = False
        elif key == "":
            for name in ("err", "rem"):
                if name in sub and not sub[name]:
                    del sub[name]
            keep = bool(sub)
        else:
            keep = prune(sub)
        if not keep:
            if dead is None:
                dead = [key]
            else:
                dead.append(key)
    if dead is not None:
        for key in dead:
            del meta[key]
    return bool(meta)


def serialized(value: Any, kind: Any) -> Any:
    """A typed value as Relay keeps it in ``_meta.val``: every struct field, null or not."""
    from relay.normalize.types import ArrayKind, MapKind, Struct

    if value is None:
        return None
    if type(kind) is Struct and type(value) is dict:
        out = {f.name: serialized(value.get(f.name), f.kind) for f in kind.fields}
        for k, v in value.items():
            if k not in out:
                out[k] = v
        return out
    if type(kind) is ArrayKind and type(value) is list:
        return [serialized(v, kind.item) for v in value]
    if type(kind) is MapKind and type(value) is dict:
        return {k: serialized(v, kind.item) for k, v in value.items()}
    if hasattr(kind, "item") and type(value) is dict and "values" in value:
        return {"values": serialized(value["values"], ArrayKind(kind.item))}
    return value
