"""The type system the event schema is written in, and the converters it compiles to.

A :class:`Struct` lists its fields in Relay's declaration order (which is also the order
``errors`` entries are emitted in). Converting a JSON value against a type yields the
typed value, with problems recorded in the meta tree (see :mod:`relay.normalize.primitives`).
Unknown keys of a struct stay in the dict; the serializer decides their fate.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any, Final

from relay.normalize import primitives
from relay.normalize.chrono import RUST_WHITESPACE
from relay.normalize.meta import Meta, add_error, child, expected, has_errors, invalid, set_error
from relay.normalize.primitives import Converter

#: Serialization behaviour of a field whose value is null or empty and carries no meta.
SKIP_NULL: Final = 0
SKIP_EMPTY: Final = 1
SKIP_DEEP: Final = 2
SKIP_NEVER: Final = 3

#: What happens to keys a struct does not know.
OTHER_DROP: Final = 0  # silently removed (most structs)
OTHER_ERROR: Final = 1  # replaced by null with an ``invalid_attribute`` error (event, breadcrumb)
OTHER_RETAIN: Final = 2  # kept as they are (contexts)


class Field:
    """One declared field of a struct."""

    __slots__ = (
        "chars",
        "conv",
        "kind",
        "leaf",
        "max_chars",
        "name",
        "nonempty",
        "required",
        "skip",
        "skips_empty",
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
        #: A primitive: without meta, its value is serialized as it is.
        self.leaf = type(self.kind) is Prim
        #: Whether an empty value is left out (``SKIP_EMPTY`` and ``SKIP_DEEP``).
        self.skips_empty = skip in (SKIP_EMPTY, SKIP_DEEP)


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
        # Items of this class come out of the item converter unchanged.
        pass_class = _PASS_CLASS.get(item_conv)

        def conv(value: Any, meta: Meta, key: str) -> Any:
            if type(value) is list:
                if pass_class is not None:
                    for v in value:
                        if type(v) is not pass_class:
                            break
                    else:
                        return value[:]
                sub = meta.get(key)
                if sub is not None:
                    return [item_conv(v, sub, str(i)) for i, v in enumerate(value)]
                sub = {}
                items = [item_conv(v, sub, str(i)) for i, v in enumerate(value)]
                if sub:
                    meta[key] = sub
                return items
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
            if type(value) is dict:
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

    __slots__ = ("aliases", "by_name", "fields", "names", "other", "plans", "position", "post")

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
        #: Each field's declaration index, to visit a few present fields in order.
        self.position = {f.name: i for i, f in enumerate(fields)}
        self.names = frozenset(self.by_name)
        #: The serializer's visiting plans, by the key tuple of a value (see serialize.py).
        self.plans: dict[tuple[str, ...], Any] = {}
        self.aliases = aliases or {}
        self.other = other
        #: Optional hook run on the converted dict (struct-specific FromValue quirks).
        self.post: Callable[[dict[str, Any], Meta], None] | None = None
        what = expect or name.lower()
        aliases_ = self.aliases
        checked = [f for f in fields if f.required or f.nonempty or f.trim_ws or f.chars]
        #: For each alias, the keys that take precedence over it.
        outranked_by: dict[str, tuple[str, ...]] = {}
        for alias, canonical in self.aliases.items():
            earlier = [a for a, c in self.aliases.items() if c == canonical]
            outranked_by[alias] = (canonical, *earlier[: earlier.index(alias)])

        # The per-key dispatch table is built on the first conversion, not here: the
        # schema still swaps a few fields' converters after declaring the struct. Each key
        # (field or alias) maps to the class a value passes unchanged as (or None) and the
        # field's converter (None for an alias).
        table: dict[str, tuple[type | None, Converter | None]] = {}
        convs: dict[str, Converter] = {}
        ready = False

        def compile_table() -> None:
            nonlocal ready
            for f in fields:
                convs[f.name] = f.conv
                table[f.name] = (_pass_class(f), f.conv)
            for alias in aliases_:
                table[alias] = (None, None)
            ready = True

        def conv(value: Any, meta: Meta, key: str) -> Any:
            if type(value) is not dict:
                if value is None:
                    return None
                set_error(meta, key, expected(what), value)
                return None
            if not ready:
                compile_table()
            # The meta node is attached only if something was recorded in it: most values
            # carry no meta, and empty nodes would only be pruned again.
            existing: Meta | None = meta.get(key)
            sub: Meta = {} if existing is None else existing
            out: dict[str, Any] = {}
            for k, v in value.items():
                entry = table.get(k)
                if entry is None:
                    out[k] = v  # unknown: the serializer decides
                    continue
                pass_class, field_conv = entry
                if type(v) is pass_class:
                    # Already of the field's type (a string for a string field, ...):
                    # the converter would return it unchanged.
                    out[k] = v
                    continue
                if field_conv is None:
                    # An alias. The canonical key wins over its legacy aliases, and an
                    # alias over the aliases declared after it (all of them are consumed).
                    if any(name in value for name in outranked_by[k]):
                        continue
                    k = aliases_[k]
                    field_conv = convs.get(k)
                    if field_conv is None:
                        out[k] = v
                        continue
                if v is not None:
                    out[k] = field_conv(v, sub, k)
            if checked:
                _check_fields(out, checked, sub)
            if self.post is not None:
                self.post(out, sub)
            if existing is None and sub:
                meta[key] = sub
            return out

        super().__init__(name, conv)


TypeLike = Kind | str | Converter


def _pass_class(field: Field) -> type | None:
    """The class of values ``field``'s converter returns unchanged, if there is one."""
    kind = field.kind
    if isinstance(kind, MapKind) and field.conv is kind.conv and isinstance(kind.item, ValueKind):
        return dict  # arbitrary JSON objects are kept as they are
    return _PASS_CLASS.get(field.conv)


#: Converters that return a value of this class unchanged (so it need not be converted).
_PASS_CLASS: Final[dict[Converter, type]] = {
    primitives.to_str: str,
    primitives.lenient_str: str,
    primitives.json_lenient_str: str,
    primitives.to_bool: bool,
    primitives.to_f64: float,
    primitives.to_thread_id: str,
}


def as_kind(kind: TypeLike) -> Kind:
    """Resolve a primitive's name (see :data:`PRIMS`) or pass a kind through."""
    if isinstance(kind, Kind):
        return kind
    if callable(kind):
        return Prim(kind.__name__, kind)
    return PRIMS[kind]


PRIMS: Final[dict[str, Kind]] = {}

#: Arbitrary JSON (``Value``) where no type is declared (unknown keys, untyped entries): the
#: walks that take it (trimming, serializing) only look at its class; it converts nothing.
ANY_VALUE: Final[Kind] = ValueKind("value", lambda value, meta, key: value)


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
        if type(value) is str:
            if field.trim_ws:
                value = out[name] = value.strip(RUST_WHITESPACE)
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
        elif field.nonempty and not value and type(value) in (list, dict):
            add_error(child(meta, name), invalid("expected a non-empty value"))
            out[name] = None


_CHAR_ESCAPES: Final = {
    "\0": "\\0",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "'": "\\'",
    "\\": "\\\\",
}
#: Categories Rust prints as ``\u{..}``: controls, formats, private use, unassigned,
#: surrogates and combining marks (which extend graphemes).
_ESCAPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Co", "Cn", "Cs", "Mn", "Me"})
#: Spacing marks that extend graphemes, and the Hangul fillers: escaped by Rust as well.
_ESCAPED_EXTRA: Final = frozenset(
    {
        *(0x9BE, 0x9D7, 0xB3E, 0xB57, 0xBBE, 0xBD7, 0xCC0, 0xCC2, 0xCC7, 0xCC8, 0xCCA),
        *(0xCCB, 0xCD5, 0xCD6, 0xD3E, 0xD57, 0xDCF, 0xDDF, 0x115F, 0x1160, 0x1715, 0x1734),
        *(0x1B35, 0x1B3B, 0x1B3D, 0x1B43, 0x1B44, 0x1BAA, 0x1BF2, 0x1BF3, 0x302E, 0x302F),
    }
)
#: Characters unassigned in Python's Unicode tables but assigned (printable) in Relay's.
_PRINTABLE_NEWER: Final = frozenset(
    {
        *(0x88F, 0xC5C, 0xCDC, 0xCF3, 0x1B4E, 0x1B4F, 0x1B7F, 0x1C89, 0x1C8A, 0x20C1),
        *(0x2427, 0x2428, 0x2429, 0x2B96, 0x2FFC, 0x2FFD, 0x2FFE, 0x2FFF),
    }
)


def _rust_char(c: str) -> str:
    """A char as Rust's ``{:?}`` prints it (``'a'``, ``'\\n'``, ``'\\u{1f}'``)."""
    escaped = _CHAR_ESCAPES.get(c)
    if escaped is None:
        code = ord(c)
        if code < 0x7F and code >= 0x20:
            escaped = c
        elif code in _ESCAPED_EXTRA or (
            unicodedata.category(c) in _ESCAPED_CATEGORIES and code not in _PRINTABLE_NEWER
        ):
            escaped = f"\\u{{{code:x}}}"
        else:
            escaped = c
    return f"'{escaped}'"
