"""The type system the event schema is written in, and the converters it compiles to.

A :class:`Struct` lists its fields in Relay's declaration order (which is also the order
``errors`` entries are emitted in). Converting a JSON value against a type yields the
typed value, with problems recorded in the meta tree (see :mod:`relay.normalize.primitives`).
Unknown keys of a struct stay in the dict; the serializer decides their fate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from relay.normalize.meta import Meta, add_error, child, expected, has_errors, invalid, set_error
from relay.normalize.primitives import Converter

#: Serialization behaviour of a field whose value is null or empty and carries no meta.
SKIP_NULL = 0
SKIP_EMPTY = 1
SKIP_DEEP = 2
SKIP_NEVER = 3

#: What happens to keys a struct does not know.
OTHER_DROP = 0  # silently removed (most structs)
OTHER_ERROR = 1  # replaced by null with an ``invalid_attribute`` error (event, breadcrumb)
OTHER_RETAIN = 2  # kept as they are (contexts)


class Field:
    """One declared field of a struct."""

    __slots__ = (
        "chars",
        "conv",
        "kind",
        "max_chars",
        "name",
        "nonempty",
        "required",
        "skip",
        "trim_ws",
    )

    def __init__(
        self,
        name: str,
        kind: TypeLike,
        *,
        skip: int = SKIP_NULL,
        max_chars: int | None = None,
        trim_ws: bool = False,
        nonempty: bool = False,
        required: bool = False,
        chars: str | None = None,
    ) -> None:
        self.name = name
        #: Allowed characters as a regex class body (``^...`` for a deny list).
        self.chars = (
            re.compile(f"[^{chars}]")
            if chars and not chars.startswith("^")
            else (re.compile(f"[{chars[1:]}]") if chars else None)
        )
        self.kind: Kind = as_kind(kind)
        self.conv: Converter = self.kind.conv
        self.skip = skip
        self.max_chars = max_chars
        self.trim_ws = trim_ws
        self.nonempty = nonempty
        self.required = required


class Kind:
    """A type: converts JSON values and knows how to finish (serialize) typed values."""

    __slots__ = ("conv", "name")

    def __init__(self, name: str, conv: Converter) -> None:
        self.name = name
        self.conv = conv


class Prim(Kind):
    """A leaf type (string, number, timestamp, ...)."""

    __slots__ = ()


class ValueKind(Kind):
    """Arbitrary JSON, kept as is."""

    __slots__ = ()


class ArrayKind(Kind):
    """``Array<T>``: a JSON list of ``T``."""

    __slots__ = ("item",)

    def __init__(self, item: TypeLike) -> None:
        self.item: Kind = as_kind(item)
        item_conv = self.item.conv

        def conv(value: Any, meta: Meta, key: str) -> Any:
            if value.__class__ is list:
                sub = child(meta, key)
                return [item_conv(v, sub, str(i)) for i, v in enumerate(value)]
            if value is None:
                return None
            set_error(meta, key, expected("an array"), value)
            return None

        super().__init__(f"array<{self.item.name}>", conv)


class MapKind(Kind):
    """``Object<T>``: a JSON object with values of ``T``."""

    __slots__ = ("item",)

    def __init__(self, item: TypeLike) -> None:
        self.item: Kind = as_kind(item)
        item_conv = self.item.conv
        passthrough = isinstance(self.item, ValueKind)

        def conv(value: Any, meta: Meta, key: str) -> Any:
            if value.__class__ is dict:
                if passthrough:
                    return value
                sub = child(meta, key)
                return {k: item_conv(v, sub, k) for k, v in value.items()}
            if value is None:
                return None
            set_error(meta, key, expected("an object"), value)
            return None

        super().__init__(f"object<{self.item.name}>", conv)


class Struct(Kind):
    """A record with declared fields; ``other`` says what happens to unknown keys."""

    __slots__ = ("aliases", "by_name", "fields", "other", "post")

    def __init__(
        self,
        name: str,
        fields: list[Field],
        *,
        other: int = OTHER_DROP,
        aliases: dict[str, str] | None = None,
        expect: str | None = None,
    ) -> None:
        self.fields = fields
        self.by_name = {f.name: f for f in fields}
        self.aliases = aliases or {}
        self.other = other
        #: Optional hook run on the converted dict (struct-specific FromValue quirks).
        self.post: Callable[[dict[str, Any], Meta], None] | None = None
        what = expect or name.lower()
        by_name = self.by_name
        aliases_ = self.aliases
        checked = [f for f in fields if f.required or f.nonempty or f.trim_ws or f.chars]

        def conv(value: Any, meta: Meta, key: str) -> Any:
            if value.__class__ is not dict:
                if value is None:
                    return None
                set_error(meta, key, expected(what), value)
                return None
            sub = child(meta, key)
            out: dict[str, Any] = {}
            for k, v in value.items():
                if aliases_ and k in aliases_:
                    k = aliases_[k]
                    if k in value:
                        continue  # the canonical key wins over its legacy alias
                field = by_name.get(k)
                if field is None:
                    out[k] = v
                elif v is not None:
                    out[k] = field.conv(v, sub, k)
            if checked:
                _check_fields(out, checked, sub)
            if self.post is not None:
                self.post(out, sub)
            return out

        super().__init__(name, conv)


TypeLike = Kind | str | Converter


def as_kind(kind: TypeLike) -> Kind:
    """Resolve a primitive's name (see :data:`PRIMS`) or pass a kind through."""
    if isinstance(kind, Kind):
        return kind
    if callable(kind):
        return Prim(kind.__name__, kind)
    return PRIMS[kind]


PRIMS: dict[str, Kind] = {}


def register_prims(table: dict[str, Converter]) -> None:
    """Make primitive converters addressable by name in field declarations."""
    for name, conv in table.items():
        PRIMS[name] = ValueKind(name, conv) if name == "value" else Prim(name, conv)


def _check_fields(out: dict[str, Any], fields: list[Field], meta: Meta) -> None:
    """Relay's schema checks: trimming, required and non-empty values, character sets."""
    for field in fields:
        name = field.name
        value = out.get(name)
        if value is None:
            if field.required and not has_errors(meta.get(name)):
                add_error(child(meta, name), "missing_attribute")
            continue
        if value.__class__ is str:
            if field.trim_ws:
                value = out[name] = value.strip()
            if field.nonempty and not value:
                add_error(child(meta, name), invalid("expected a non-empty string"))
                out[name] = None
                continue
            if field.chars is not None:
                bad = field.chars.search(value)
                if bad is not None:
                    add_error(
                        child(meta, name),
                        invalid(f"invalid character {_rust_char(bad.group())}"),
                        value,
                    )
                    out[name] = None
        elif field.nonempty and not value and value.__class__ in (list, dict):
            add_error(child(meta, name), invalid("expected a non-empty value"))
            out[name] = None


def _rust_char(c: str) -> str:
    """A char as Rust's ``{:?}`` prints it."""
    escapes = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "'": "\\'", "\\": "\\\\"}
    return "'" + escapes.get(c, c) + "'"
