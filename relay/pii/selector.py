"""The PII selector language: parsing, display, ordering and path matching.

Grammar (Relay's): `a.b.c`, `$type`, `*`, `**`, numeric indices, `'quoted keys'` (with
`''` for a quote), combined with `&&`/`&`, `||`/`|`, `!`/`~` and parentheses. Spaces are
allowed between tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from relay.pii.value_types import (
    SCHEMA_TYPES_MASK,
    VALUE_TYPE_ALIASES,
    VALUE_TYPE_NAMES,
    Pii,
)


class InvalidSelectorError(ValueError):
    """A selector string that Relay would refuse."""


# -- path items ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeItem:
    """`$type`: matches states whose value type includes this type."""

    index: int  # position in VALUE_TYPE_NAMES

    @property
    def bit(self) -> int:
        return 1 << self.index


@dataclass(frozen=True, slots=True)
class IndexItem:
    """A numeric array index."""

    index: int


@dataclass(frozen=True, slots=True)
class KeyItem:
    """An object key, compared ASCII-case-insensitively."""

    key: str


@dataclass(frozen=True, slots=True)
class WildcardItem:
    """`*`: any single path segment."""


@dataclass(frozen=True, slots=True)
class DeepWildcardItem:
    """`**`: any number of segments (only on fully PII-able fields)."""


PathItem = TypeItem | IndexItem | KeyItem | WildcardItem | DeepWildcardItem
WILDCARD: Final = WildcardItem()
DEEP_WILDCARD: Final = DeepWildcardItem()

# -- selectors -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AndSelector:
    """All sub-selectors match."""

    items: tuple[Selector, ...]


@dataclass(frozen=True, slots=True)
class OrSelector:
    """Any sub-selector matches."""

    items: tuple[Selector, ...]


@dataclass(frozen=True, slots=True)
class NotSelector:
    """The sub-selector does not match."""

    item: Selector


@dataclass(frozen=True, slots=True)
class PathSelector:
    """A path matched against the end of the processing path."""

    items: tuple[PathItem, ...]


Selector = AndSelector | OrSelector | NotSelector | PathSelector

_LEGACY: Final = {
    "freeform": PathSelector((TypeItem(0),)),
    "email": PathSelector((TypeItem(0),)),
    "sensitive": PathSelector((TypeItem(0),)),
    "text": PathSelector((TypeItem(0),)),
    "databag": PathSelector((TypeItem(VALUE_TYPE_NAMES.index("object")),)),
    "container": PathSelector((TypeItem(VALUE_TYPE_NAMES.index("object")),)),
}


def parse_selector(text: str) -> Selector:
    """Parse a selector as found in `applications` (legacy aliases included)."""
    legacy = _LEGACY.get(text)
    if legacy is not None:
        return legacy
    return parse_selector_strict(text)


def parse_selector_strict(text: str) -> Selector:
    """Parse a selector without the legacy aliases (`freeform`, `databag`, ...)."""
    parser = _Parser(text)
    parser.skip_ws()
    selector = parser.or_selector()
    parser.skip_ws()
    if parser.pos != len(text):
        raise parser.error()
    return selector


class _Parser:
    """Recursive-descent parser over the PEG grammar; no backtracking into committed items."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self) -> InvalidSelectorError:
        return InvalidSelectorError(f"invalid syntax near {self.text!r} at {self.pos}")

    def skip_ws(self) -> None:
        text = self.text
        while self.pos < len(text) and text[self.pos] == " ":
            self.pos += 1

    def peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def or_selector(self) -> Selector:
        items = [self.and_selector()]
        while True:
            save = self.pos
            self.skip_ws()
            if self.peek("||"):
                self.pos += 2
            elif self.peek("|"):
                self.pos += 1
            else:
                self.pos = save
                break
            self.skip_ws()
            items.append(self.and_selector())
        return items[0] if len(items) == 1 else OrSelector(tuple(items))

    def and_selector(self) -> Selector:
        items = [self.maybe_not()]
        while True:
            save = self.pos
            self.skip_ws()
            if self.peek("&&"):
                self.pos += 2
            elif self.peek("&"):
                self.pos += 1
            else:
                self.pos = save
                break
            self.skip_ws()
            items.append(self.maybe_not())
        return items[0] if len(items) == 1 else AndSelector(tuple(items))

    def maybe_not(self) -> Selector:
        if self.peek("!") or self.peek("~"):
            self.pos += 1
            self.skip_ws()
            return NotSelector(self.paren_or_path())
        return self.paren_or_path()

    def paren_or_path(self) -> Selector:
        if self.peek("("):
            self.pos += 1
            self.skip_ws()
            inner = self.or_selector()
            self.skip_ws()
            if not self.peek(")"):
                raise self.error()
            self.pos += 1
            return inner
        return self.path()

    def path(self) -> Selector:
        items = [self.path_item()]
        while True:
            save = self.pos
            self.skip_ws()
            if not self.peek("."):
                self.pos = save
                break
            self.pos += 1
            self.skip_ws()
            items.append(self.path_item())
        if sum(1 for item in items if item is DEEP_WILDCARD) > 1:
            raise InvalidSelectorError("deep wildcard used more than once")
        if len(items) == 1 and items[0] is WILDCARD:
            raise InvalidSelectorError("wildcard must be part of a path")
        return PathSelector(tuple(items))

    def path_item(self) -> PathItem:
        text, pos = self.text, self.pos
        if pos >= len(text):
            raise self.error()
        char = text[pos]
        if char == "$":
            end = pos + 1
            while end < len(text) and (("a" <= text[end] <= "z") or text[end] == "_"):
                end += 1
            if end == pos + 1:
                raise self.error()
            self.pos = end
            index = VALUE_TYPE_ALIASES.get(text[pos + 1 : end])
            if index is None:
                raise InvalidSelectorError("unknown value")
            return TypeItem(index)
        if text.startswith("**", pos):
            self.pos = pos + 2
            return DEEP_WILDCARD
        if char == "*":
            self.pos = pos + 1
            return WILDCARD
        if "0" <= char <= "9":
            end = pos
            while end < len(text) and "0" <= text[end] <= "9":
                end += 1
            self.pos = end
            value = int(text[pos:end])
            if value >= 1 << 64:
                raise InvalidSelectorError("invalid index")
            return IndexItem(value)
        if char == "_" or (char.isascii() and char.isalpha()):
            end = pos + 1
            while end < len(text) and (
                text[end].isascii() and (text[end].isalnum() or text[end] in "-_")
            ):
                end += 1
            self.pos = end
            return KeyItem(text[pos:end])
        if char == "'":
            self.pos = pos + 1
            self.skip_ws()
            return KeyItem(self.quoted_key())
        raise self.error()

    def quoted_key(self) -> str:
        text = self.text
        out: list[str] = []
        pos = self.pos
        while pos < len(text):
            if text[pos] != "'":
                out.append(text[pos])
                pos += 1
            elif text.startswith("''", pos):
                out.append("'")
                pos += 2
            else:
                break
        if not out or pos >= len(text):
            self.pos = pos
            raise self.error()
        self.pos = pos + 1  # closing quote
        return "".join(out)


# -- display ---------------------------------------------------------------------------------


def _is_unquoted_key(key: str) -> bool:
    if not key or not (key[0] == "_" or (key[0].isascii() and key[0].isalpha())):
        return False
    return all(c.isascii() and (c.isalnum() or c in "-_") for c in key[1:])


def _item_str(item: PathItem) -> str:
    if isinstance(item, TypeItem):
        return "$" + VALUE_TYPE_NAMES[item.index]
    if isinstance(item, IndexItem):
        return str(item.index)
    if isinstance(item, KeyItem):
        if _is_unquoted_key(item.key):
            return item.key
        return "'" + item.key.replace("'", "''") + "'"
    if item is DEEP_WILDCARD:
        return "**"
    return "*"


def selector_to_str(selector: Selector) -> str:
    """Render a selector the way Relay prints it (canonical type names, minimal parens)."""
    if isinstance(selector, PathSelector):
        return ".".join(_item_str(item) for item in selector.items)
    if isinstance(selector, OrSelector):
        return " || ".join(selector_to_str(x) for x in selector.items)
    if isinstance(selector, AndSelector):
        return " && ".join(
            f"({selector_to_str(x)})" if isinstance(x, OrSelector) else selector_to_str(x)
            for x in selector.items
        )
    inner = selector.item
    if isinstance(inner, PathSelector):
        return "!" + selector_to_str(inner)
    return f"!({selector_to_str(inner)})"


SortKey = tuple[object, ...]


def _item_sort_key(item: PathItem) -> SortKey:
    if isinstance(item, TypeItem):
        return (0, item.index)
    if isinstance(item, IndexItem):
        return (1, item.index)
    if isinstance(item, KeyItem):
        return (2, item.key)
    return (3,) if item is WILDCARD else (4,)


def selector_sort_key(selector: Selector) -> SortKey:
    """Key reproducing Relay's ordering of selectors (it decides application order)."""
    if isinstance(selector, AndSelector):
        return (0, [selector_sort_key(x) for x in selector.items])
    if isinstance(selector, OrSelector):
        return (1, [selector_sort_key(x) for x in selector.items])
    if isinstance(selector, NotSelector):
        return (2, selector_sort_key(selector.item))
    return (3, [_item_sort_key(x) for x in selector.items])


# -- matching --------------------------------------------------------------------------------

# One entered processing state: (key or None, index or None, value type bits).
State = tuple[str | None, int | None, int]


def ascii_lower(text: str) -> str:
    """Lowercase ASCII letters only, as Rust's `eq_ignore_ascii_case` compares."""
    if text.isascii():
        return text.lower()
    return "".join(c.lower() if c.isascii() else c for c in text)


def _item_matches(item: PathItem, pii: Pii, position: int, state: State) -> bool:
    if item is WILDCARD:
        return True
    if item is DEEP_WILDCARD:
        return pii is Pii.TRUE
    if isinstance(item, TypeItem):
        if not state[2] & item.bit:
            return False
        if pii is Pii.TRUE:
            return True
        # `maybe` fields: only schema types, and only as the selector's first item.
        return bool(item.bit & SCHEMA_TYPES_MASK) and position == 0
    if isinstance(item, IndexItem):
        return state[1] == item.index
    if isinstance(item, KeyItem):
        return state[0] is not None and ascii_lower(state[0]) == ascii_lower(item.key)
    return False


def matches_path(selector: Selector, states: list[State], pii: Pii) -> bool:
    """Whether `selector` matches the path `states` (root first) of a field with `pii`."""
    if pii is Pii.FALSE:
        return False
    if isinstance(selector, AndSelector):
        return all(matches_path(x, states, pii) for x in selector.items)
    if isinstance(selector, OrSelector):
        return any(matches_path(x, states, pii) for x in selector.items)
    if isinstance(selector, NotSelector):
        return not matches_path(selector.item, states, pii)
    items = selector.items
    if len(items) > len(states) - 1:
        return False
    # Walk from the leaf backwards until the selector is used up or hits `**`.
    state_pos = len(states) - 1
    item_pos = len(items) - 1
    deep = False
    while state_pos >= 0 and item_pos >= 0:
        item = items[item_pos]
        if not _item_matches(item, pii, item_pos, states[state_pos]):
            return False
        state_pos -= 1
        item_pos -= 1
        if item is DEEP_WILDCARD:
            deep = True
            break
    if not deep:
        return True
    # Items before `**` must match a run of states starting at the first state (from the
    # root) that matches the first item; no backtracking, as in Relay.
    remaining = states[: state_pos + 1]
    prefix = items[: item_pos + 1]
    if not prefix:
        return bool(remaining)
    start = 0
    while start < len(remaining) and not _item_matches(prefix[0], pii, 0, remaining[start]):
        start += 1
    if start == len(remaining):
        return False
    rest_states = remaining[start + 1 :]
    rest_items = prefix[1:]
    if len(rest_items) > len(rest_states):
        return False
    return all(
        _item_matches(item, pii, i + 1, state)
        for i, (item, state) in enumerate(zip(rest_items, rest_states, strict=False))
    )


def selector_keys(selector: Selector) -> set[str]:
    """All lowercased keys a selector mentions (for path-signature caching)."""
    if isinstance(selector, (AndSelector, OrSelector)):
        out: set[str] = set()
        for x in selector.items:
            out |= selector_keys(x)
        return out
    if isinstance(selector, NotSelector):
        return selector_keys(selector.item)
    return {ascii_lower(i.key) for i in selector.items if isinstance(i, KeyItem)}


def selector_indices(selector: Selector) -> set[int]:
    """All array indices a selector mentions (for path-signature caching)."""
    if isinstance(selector, (AndSelector, OrSelector)):
        out: set[int] = set()
        for x in selector.items:
            out |= selector_indices(x)
        return out
    if isinstance(selector, NotSelector):
        return selector_indices(selector.item)
    return {i.index for i in selector.items if isinstance(i, IndexItem)}
