"""Container types with their own JSON spellings: values lists, pair lists, tags, contexts."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl, unquote_to_bytes

from relay.normalize.chrono import RUST_WHITESPACE
from relay.normalize.meta import (
    MAX_ORIGINAL_SIZE,
    Meta,
    add_error,
    child,
    estimate_size,
    expected,
    invalid,
    set_error,
)
from relay.normalize.primitives import json_lenient_str, lenient_str, to_str
from relay.normalize.types import Kind, Struct, TypeLike, _rust_char, as_kind


def values_list(event: dict[str, Any], key: str) -> list[Any]:
    """The list inside ``event[key]``, a ``{"values": [...]}`` container, for editing in place.

    The container is made whole first: a bare list (which SDKs may send) is wrapped, and
    anything that is neither a list nor an object becomes an empty container.
    """
    container = event.get(key)
    if isinstance(container, list):
        container = {"values": container}
    if not isinstance(container, dict):
        container = {}
    values = container.get("values")
    if not isinstance(values, list):
        values = []
    container["values"] = values
    event[key] = container
    return values


class ValuesKind(Kind):
    """``Values<T>``: ``[T, ...]``, ``{"values": [T, ...]}`` or a single bare ``T``."""

    __slots__ = ("item",)

    def __init__(self, item: TypeLike) -> None:
        self.item: Kind = as_kind(item)
        item_conv = self.item.conv

        def conv_list(items: list[Any], meta: Meta) -> list[Any]:
            sub = child(meta, "values")
            return [item_conv(v, sub, str(i)) for i, v in enumerate(items)]

        def conv(value: Any, meta: Meta, key: str) -> Any:
            if type(value) is list:
                return {"values": conv_list(value, child(meta, key))}
            if type(value) is dict:
                if not value:
                    return None
                sub = child(meta, key)
                if "values" in value:
                    rest = {k: v for k, v in value.items() if k != "values"}
                    items = value["values"]
                    if type(items) is list:
                        rest["values"] = conv_list(items, sub)
                    elif items is None:
                        # ``values`` is required: an explicit null is reported.
                        set_error(sub, "values", "missing_attribute")
                        rest["values"] = None
                    else:
                        set_error(sub, "values", expected("an array"), items)
                        rest["values"] = None
                    return rest
                # A bare single item, e.g. ``{"exception": {"type": "ValueError"}}``.
                return {"values": [item_conv(value, child(sub, "values"), "0")]}
            if value is None:
                return None
            set_error(meta, key, expected("a list or values object"), value)
            return None

        super().__init__(f"values<{self.item.name}>", conv)


class PairsKind(Kind):
    """A pair list: ``[[k, v], ...]`` or an object (whose keys Relay sorts)."""

    __slots__ = ("key_conv", "value_conv")

    def __init__(
        self,
        name: str,
        key: TypeLike,
        value: TypeLike,
        *,
        sort_key: Callable[[str], str] | None = None,
    ) -> None:
        key_conv = as_kind(key).conv
        value_conv = as_kind(value).conv
        self.key_conv = key_conv
        self.value_conv = value_conv
        order = sort_key

        def pair(item: Any, meta: Meta, index: str) -> Any:
            if type(item) is list and len(item) == 2:
                # The pair's meta node is attached only if something is recorded in it.
                sub = meta.get(index)
                if sub is not None:
                    return [key_conv(item[0], sub, "0"), value_conv(item[1], sub, "1")]
                sub = {}
                converted = [key_conv(item[0], sub, "0"), value_conv(item[1], sub, "1")]
                if sub:
                    meta[index] = sub
                return converted
            if item is None:
                return None
            set_error(meta, index, expected("a tuple"), item)
            return None

        def conv(value: Any, meta: Meta, key: str) -> Any:
            if type(value) is list:
                sub = child(meta, key)
                return [pair(item, sub, str(i)) for i, item in enumerate(value)]
            if type(value) is dict:
                sub = child(meta, key)
                # Incoming ``_meta`` for object keys moves to the pair's value (index "1").
                keyed = {k: sub.pop(k) for k in list(sub) if k != "" and k in value}
                out = []
                # Relay's objects are BTreeMaps (sorted keys); headers re-sort by their
                # normalized name.
                keys = sorted(value) if order is None else sorted(sorted(value), key=order)
                for i, k in enumerate(keys):
                    index = str(i)
                    if k in keyed:
                        child(sub, index)["1"] = keyed[k]
                    out.append(pair([k, value[k]], sub, index))
                return out
            if value is None:
                return None
            set_error(meta, key, expected("an array"), value)
            return None

        super().__init__(name, conv)


def _fingerprint(value: Any, meta: Meta, key: str) -> Any:
    """Fingerprint entries are lenient strings; bad entries are reported together."""
    if type(value) is list:
        good: list[str] = []
        bad: list[Any] = []
        scratch: Meta = {}
        for i, item in enumerate(value):
            if item is None:
                continue
            converted = lenient_str(item, scratch, str(i))
            if converted is not None:
                good.append(converted)
            elif estimate_size(item) < MAX_ORIGINAL_SIZE:
                # Bad entries are reported by their original value, which Relay keeps
                # only when it is small; larger ones are dropped without a trace.
                bad.append(item)
        if bad:
            sub = child(meta, key)
            own = sub.setdefault("", {})
            own.setdefault("len", len(good) + len(bad))
            own.setdefault("err", []).append(["invalid_data", {"value": bad}])
            if not good:
                return None
        return good
    if value is None:
        return None
    set_error(meta, key, expected("an array"), value)
    return None


FINGERPRINT: Final = Kind("fingerprint", _fingerprint)

_TAG_KEY_BAD: Final = re.compile(r"[^a-zA-Z0-9_.:\-]")


def _tag_key(value: Any, meta: Meta, key: str) -> Any:
    """Tag keys: lenient strings, spaces become dashes, only ``a-zA-Z0-9_.:-`` allowed."""
    text = lenient_str(value, meta, key)
    if text is None:
        return None
    text = text.replace(" ", "-").strip(RUST_WHITESPACE)
    bad = _TAG_KEY_BAD.search(text)
    if bad is not None:
        set_error(
            meta,
            key,
            ["invalid_data", {"reason": f"invalid character {_rust_char(bad.group())}"}],
            text,
        )
        return None
    return text


def _tag_value(value: Any, meta: Meta, key: str) -> Any:
    text = lenient_str(value, meta, key)
    if text is None:
        return None
    text = text.strip(RUST_WHITESPACE)
    if "\n" in text:
        set_error(meta, key, ["invalid_data", {"reason": "invalid character '\\n'"}], text)
        return None
    return text


#: Tag keys/values: strings, with numbers and booleans stringified.
TAGS: Final = PairsKind("tags", _tag_key, _tag_value)


def _header_value(value: Any, meta: Meta, key: str) -> Any:
    """A header value; a list of values is joined with commas (empty ones add nothing
    at the start), and the errors of invalid items go to the header value."""
    if type(value) is list:
        joined = ""
        scratch: Meta = {}
        for i, item in enumerate(value):
            converted = lenient_str(item, scratch, str(i))
            if converted is not None:
                joined = f"{joined},{converted}" if joined else converted
        for item_meta in scratch.values():
            for error in item_meta.get("", {}).get("err", ()):
                add_error(child(meta, key), error)
        return joined
    return lenient_str(value, meta, key)


_HEADER_NAMES: Final[dict[str, str]] = {}


def header_name(name: str) -> str:
    """Upper-case the first letter of each dash-separated word, leaving the rest alone."""
    normalized = _HEADER_NAMES.get(name)
    if normalized is None:
        normalized = "-".join(part[:1].upper() + part[1:] for part in name.split("-"))
        # The same few header names come again and again; keep the cache bounded.
        if len(_HEADER_NAMES) < 4096:
            _HEADER_NAMES[name] = normalized
    return normalized


def _header_key(value: Any, meta: Meta, key: str) -> Any:
    converted = to_str(value, meta, key)
    return header_name(converted) if converted is not None else None


HEADERS: Final = PairsKind(
    "headers", Kind("header_name", _header_key), Kind("hv", _header_value), sort_key=header_name
)


def _headers_sorted(value: Any, meta: Meta, key: str) -> Any:
    """Objects of headers are sorted by their normalized name (as Relay's BTreeMap does)."""
    return HEADERS.conv(value, meta, key)


# The error wording of the ``cookie`` crate Relay parses cookies with.
_COOKIE_NO_PAIR: Final = invalid("the cookie is missing a name/value pair")
_COOKIE_NO_NAME: Final = invalid("the cookie's name is empty")
_COOKIE_BAD_UTF8: Final = invalid("decoding the cookie's name or value resulted in invalid UTF-8")


def _parse_cookie(part: str) -> list[str] | list[Any]:
    """One ``name=value`` cookie: the decoded pair, or ``[error]`` when it is invalid."""
    name, sep, value = part.partition("=")
    if not sep:
        return [_COOKIE_NO_PAIR]
    name = name.strip(RUST_WHITESPACE)
    if not name:
        return [_COOKIE_NO_NAME]
    value = value.strip(RUST_WHITESPACE)
    if "%" not in name and "%" not in value:
        return [name, value]
    try:
        # Percent escapes decode to bytes (bad escapes stay literal); the result must be
        # UTF-8. Quotes around the value are kept, as Relay keeps them.
        return [
            unquote_to_bytes(name).decode("utf-8"),
            unquote_to_bytes(value).decode("utf-8"),
        ]
    except UnicodeDecodeError:
        return [_COOKIE_BAD_UTF8]


def parse_cookies(text: str) -> tuple[list[list[str]], list[Any]]:
    """Split a Cookie header into ``[name, value]`` pairs, plus the errors of bad cookies.

    Empty segments are skipped; every other ``;``-separated segment is one cookie.
    """
    pairs: list[list[str]] = []
    errors: list[Any] = []
    for part in text.split(";"):
        if not part.strip(RUST_WHITESPACE):
            continue
        parsed = _parse_cookie(part)
        if len(parsed) == 2:
            pairs.append(parsed)
        elif parsed[0] not in errors:
            errors.append(parsed[0])
    return pairs, errors


_COOKIE_PAIRS: Final = PairsKind("cookies", to_str, to_str)


def _cookies(value: Any, meta: Meta, key: str) -> Any:
    """A Cookie header string (bad cookies are reported and left out) or a pair list."""
    if type(value) is str:
        pairs, errors = parse_cookies(value)
        for error in errors:
            set_error(meta, key, error, value)
        return pairs
    if type(value) in (dict, list):
        return _COOKIE_PAIRS.conv(value, meta, key)
    if value is None:
        return None
    set_error(meta, key, expected("cookies"), value)
    return None


COOKIES: Final = Kind("cookies", _cookies)


def parse_query(text: str) -> list[list[str]]:
    """``a=1&b=2`` to pairs, decoding like ``application/x-www-form-urlencoded``."""
    if text.startswith("?"):
        text = text[1:]
    if "%" not in text and "+" not in text:
        # Nothing to decode: the same split as ``parse_qsl`` (empty parts skipped, a
        # part without ``=`` is a name with an empty value), without its overhead.
        pairs = []
        for part in text.split("&"):
            if part:
                name, _, value = part.partition("=")
                pairs.append([name, value])
        return pairs
    return [[k, v] for k, v in parse_qsl(text, keep_blank_values=True)]


def _query(value: Any, meta: Meta, key: str) -> Any:
    if type(value) is str:
        return parse_query(value)
    if type(value) in (dict, list):
        return _QUERY_PAIRS.conv(value, meta, key)
    if value is None:
        return None
    set_error(meta, key, expected("a query string or map"), value)
    return None


_QUERY_PAIRS: Final = PairsKind("query", to_str, json_lenient_str)
QUERY: Final = Kind("query", _query)


class ContextsKind(Kind):
    """``contexts``: each entry typed by its ``type`` (or its key), unknown types kept."""

    __slots__ = ("known",)

    def __init__(self, known: dict[str, Struct]) -> None:
        self.known = known

        def conv(value: Any, meta: Meta, key: str) -> Any:
            if type(value) is not dict:
                if value is None:
                    return None
                set_error(meta, key, expected("an object"), value)
                return None
            sub = child(meta, key)
            out: dict[str, Any] = {}
            for name, ctx in value.items():
                if type(ctx) is dict:
                    ty = ctx.get("type")
                    if type(ty) is not str or not ty:
                        ctx = {**ctx, "type": name}
                        ty = name
                    struct = known.get(ty)
                    out[name] = ctx if struct is None else struct.conv(ctx, sub, name)
                elif ctx is None:
                    out[name] = None
                else:
                    set_error(sub, name, expected("an object"), ctx)
                    out[name] = None
            return out

        super().__init__("contexts", conv)
