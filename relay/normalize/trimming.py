"""Trimming to Relay's size limits (``relay-event-normalization``'s ``TrimmingProcessor``).

Three kinds of limits, all recorded in ``_meta``:

- ``max_chars`` (plus an allowance) on single string fields: the string is cut to
  ``max_chars - 3`` characters plus ``"..."``, with a ``["!limit", "s", start, end]`` remark
  and the original length in ``len``;
- data bags (``max_depth``/``max_bytes``, e.g. ``extra``, breadcrumb ``data``, contexts,
  ``spans``): a walk in Relay's processing order (declared fields, then sorted keys) that
  spends a byte budget per bag. Once it is spent, the remaining items of a list or object
  are cut (``len`` records the original count) and strings are cut to what is left;
  containers one level above the depth limit are replaced by their JSON text;
- stack traces: at most 250 frames (the 50 oldest and 200 newest), and beyond 50 frames the
  middle frames lose ``vars``, ``pre_context`` and ``post_context``.

Sizes are Relay's estimates: a value costs its flat JSON size (strings in UTF-8 bytes plus
quotes, containers 2) plus one, and every declared struct field costs one even when absent.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Final

from relay.normalize.containers import ContextsKind, PairsKind, ValuesKind
from relay.normalize.meta import Meta, child, f64_len, set_original_length, utf8_len
from relay.normalize.schema import EVENT
from relay.normalize.serde_json import float_text
from relay.normalize.types import ANY_VALUE, ArrayKind, Kind, MapKind, Prim, Struct, ValueKind

__all__ = ["trim_event"]

#: Field attributes: ``(max_chars, allowance, max_depth, max_bytes)``.
Attrs = tuple[int | None, int, int | None, int | None]

_ATTRS: Final[dict[tuple[str, str], Attrs]] = {
    ("Event", "culprit"): (200, 0, None, None),
    ("Event", "transaction"): (200, 0, None, None),
    ("Event", "logger"): (64, 0, None, None),
    ("Event", "modules"): (None, 0, 7, 8192),
    ("Event", "server_name"): (256, 20, None, None),
    ("Event", "release"): (200, 0, None, None),
    ("Event", "environment"): (64, 0, None, None),
    ("Event", "site"): (256, 20, None, None),
    ("Event", "extra"): (None, 0, 7, 262_144),
    ("Event", "ingest_path"): (None, 0, 5, 2048),
    ("Event", "checksum"): (128, 0, None, None),
    ("Event", "spans"): (None, 0, None, 819_200),
    ("TransactionInfo", "original"): (200, 0, None, None),
    ("LogEntry", "message"): (8192, 200, None, None),
    ("LogEntry", "formatted"): (8192, 200, None, None),
    ("LogEntry", "params"): (None, 0, 5, 2048),
    ("Breadcrumb", "type"): (128, 0, None, None),
    ("Breadcrumb", "category"): (128, 0, None, None),
    ("Breadcrumb", "message"): (8192, 200, None, None),
    ("Breadcrumb", "data"): (None, 0, 5, 2048),
    ("ClientSdkInfo", "name"): (256, 20, None, None),
    ("ClientSdkInfo", "version"): (256, 20, None, None),
    ("Exception", "type"): (256, 20, None, None),
    ("Exception", "value"): (8192, 200, None, None),
    ("Exception", "module"): (256, 20, None, None),
    ("Mechanism", "type"): (128, 0, None, None),
    ("Mechanism", "description"): (8192, 200, None, None),
    ("Mechanism", "help_link"): (256, 40, None, None),
    ("Mechanism", "source"): (128, 0, None, None),
    ("Mechanism", "data"): (None, 0, 5, 2048),
    ("RelayInfo", "version"): (256, 20, None, None),
    ("RelayInfo", "public_key"): (256, 20, None, None),
    ("Request", "url"): (256, 40, None, None),
    ("Request", "data"): (None, 0, 7, 8192),
    ("Request", "query_string"): (None, 0, 3, 1024),
    ("Request", "fragment"): (1024, 100, None, None),
    ("Request", "cookies"): (None, 0, 5, 2048),
    ("Request", "headers"): (None, 0, 7, 8192),
    ("Request", "env"): (None, 0, 7, 8192),
    ("ResponseContext", "cookies"): (None, 0, 5, 2048),
    ("ResponseContext", "headers"): (None, 0, 7, 8192),
    ("ResponseContext", "data"): (None, 0, 7, 8192),
    ("Span", "op"): (128, 0, None, None),
    ("Span", "origin"): (128, 0, None, None),
    ("TraceContext", "op"): (128, 0, None, None),
    ("TraceContext", "origin"): (128, 0, None, None),
    ("Frame", "function"): (512, 20, None, None),
    ("Frame", "raw_function"): (512, 20, None, None),
    ("Frame", "symbol"): (512, 0, None, None),
    ("Frame", "vars"): (None, 0, 5, 2048),
    ("Frame", "trust"): (128, 0, None, None),
    ("Frame", "lang"): (128, 0, None, None),
    ("Stacktrace", "lang"): (128, 0, None, None),
    ("TemplateInfo", "filename"): (128, 20, None, None),
    ("TemplateInfo", "abs_path"): (256, 40, None, None),
    ("Thread", "name"): (1024, 100, None, None),
    ("Geo", "country_code"): (102, 1004, None, None),
    ("Geo", "city"): (1024, 100, None, None),
    ("Geo", "subdivision"): (1024, 100, None, None),
    ("Geo", "region"): (1024, 100, None, None),
    ("User", "id"): (128, 0, None, None),
    ("User", "email"): (75, 0, None, None),
    ("User", "username"): (128, 0, None, None),
    ("User", "name"): (128, 0, None, None),
}

#: Declared Rust fields our schema does not list (each costs one byte inside a bag).
_HIDDEN_FIELDS: Final[dict[str, int]] = {"ProfileContext": 0, "TransactionInfo": 0}

#: Prims that are strings in Relay (``String``, ``LenientString``, ``JsonLenientString``, ...).
_STRING_PRIMS: Final = frozenset({"str", "lstr", "jlstr", "thread_id", "ip"})

#: Stack trace limits: frames kept from the top (most recent) and the bottom (oldest).
_RECENT_FRAMES: Final = 200
_OLD_FRAMES: Final = 50
_FRAME_ALLOWANCE: Final = 50

_DELETE: Final[Any] = object()


def trim_event(event_kind: Struct, event: dict[str, Any], meta: Meta, *, fast: bool = True) -> None:
    """Trim ``event`` (typed, in place) to Relay's limits, annotating ``meta``.

    ``fast=False`` walks every value of every bag node by node (the reference the fast path
    is tested against); the default skips subtrees that provably fit their bags.
    """
    _Trimmer(fast).struct_fields(event_kind, event, meta, 0)


# -- size estimates --------------------------------------------------------------------


def _flat_size(value: Any) -> int:
    """Relay's ``estimate_size_flat``: a value's JSON size, containers counted as ``2``."""
    if value is None:
        return 0
    # ``type(value) is ...`` each time: only that narrows ``value`` for mypyc (native str
    # and int operations instead of generic method calls).
    if type(value) is str:
        return utf8_len(value) + 2
    if type(value) is bool:
        return 4 if value else 5
    if type(value) is int:
        return len(str(value))
    if type(value) is float:
        return f64_len(value)
    return 2


def _serde_json(value: Any) -> str:
    """Compact JSON with sorted keys, as Relay's ``serde_json::to_string(&Value)``."""
    if value is None:
        return "null"
    if type(value) is str:
        return json.dumps(value, ensure_ascii=False)
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return float_text(value)
    if type(value) is list:
        return "[" + ",".join(_serde_json(v) for v in value) + "]"
    if type(value) is dict:
        return (
            "{"
            + ",".join(
                json.dumps(k, ensure_ascii=False) + ":" + _serde_json(value[k])
                for k in sorted(value)
            )
            + "}"
        )
    return json.dumps(value, ensure_ascii=False)


# -- strings ---------------------------------------------------------------------------


def trim_string(value: str, meta: Meta, key: str, max_chars: int, allowance: int) -> str:
    """Relay's ``trim_string``: cut to ``max_chars`` with an ``...`` marker and a remark."""
    hard_limit = max_chars + allowance
    if len(value) <= hard_limit:
        return value
    sub = meta.get(key)
    own = sub.get("") if sub else None
    remarks = own.get("rem") if own else None
    chunks = _split_chunks(value, remarks) if remarks else [(value, None)]
    length = 0
    out: list[tuple[str, Any]] = []
    for text, remark in chunks:
        count = len(text)
        if length + count < max_chars:
            out.append((text, remark))
            length += count
            continue
        if remark is not None:
            if length + count + 3 < hard_limit:
                out.append((text, remark))
        else:
            take = max(0, min(count, max_chars - 3 - length))
            out.append((text[:take], None))
        out.append(("...", ["!limit", "s"]))
        break
    new_value = "".join(text for text, _ in out)
    if new_value == value:
        return value
    new_remarks: list[Any] = []
    pos = 0
    for text, remark in out:
        end = pos + len(text.encode())
        if remark is not None:
            new_remarks.append([remark[0], remark[1], pos, end])
        pos = end
    sub = child(meta, key)
    own = sub.get("")
    if own is None:
        own = sub[""] = {}
    own["rem"] = new_remarks
    set_original_length(sub, len(value))
    return new_value


def _split_chunks(text: str, remarks: list[Any]) -> list[tuple[str, Any]]:
    """Split ``text`` at the byte ranges of its remarks (redactions) like Relay."""
    data = text.encode()
    chunks: list[tuple[str, Any]] = []
    pos = 0
    for remark in remarks:
        if not isinstance(remark, list) or len(remark) < 4:
            continue
        start, end = remark[2], remark[3]
        if not isinstance(start, int) or not isinstance(end, int):
            continue
        try:
            if start > pos:
                chunks.append((data[pos:start].decode(), None))
                pos = start
            elif start < pos:
                break
            if end > len(data) or end < start:
                break
            chunks.append((data[start:end].decode(), [remark[0], remark[1]]))
        except UnicodeDecodeError:
            break
        pos = end
    if pos < len(data):
        with contextlib.suppress(UnicodeDecodeError):
            chunks.append((data[pos:].decode(), None))
    return chunks


# -- the walk --------------------------------------------------------------------------


class _Trimmer:
    """One trimming run. ``bags`` holds ``[max_depth, depth_entered, bytes_left]`` entries."""

    __slots__ = ("bags", "fast", "notrim")

    def __init__(self, fast: bool = True) -> None:
        self.bags: list[list[Any]] = []
        #: Skip the walk of plain subtrees that fit every open bag (see ``fits``).
        self.fast = fast
        #: Inside a struct declared ``trim = false`` (spans): nothing is cut or dropped,
        #: containers are not entered; only ``max_chars`` applies.
        self.notrim = 0  # 1: not entered either; 2: entered, sizes counted

    def fits(self, plan: Any, value: Any, depth: int) -> int:
        """The bytes a plain subtree at ``depth`` spends, if the walk would leave it as is.

        Exact because the walk only ever changes a plain subtree when a bag runs out of
        bytes (strings are cut to what is left, later items dropped) or of depth
        (containers serialized or dropped): when the whole subtree costs no more than what
        every open bag has left, and its deepest container stays two levels above every
        depth limit, each check along the walk passes. Returns -1 otherwise (walk it).
        """
        budget: int | None = None
        room = _NO_LIMIT
        for bag in self.bags:
            left = bag[2]
            if left is not None and (budget is None or left < budget):
                budget = left
            if bag[0] is not None:
                room = min(room, bag[0] - (depth - bag[1]))
        if room < 1:
            return -1
        return _plain_cost(plan, value, room, _NO_LIMIT if budget is None else budget)

    def remaining_size(self) -> int | None:
        best: int | None = None
        for bag in self.bags:
            left = bag[2]
            if left is not None and (best is None or left < best):
                best = left
        return best

    def remaining_depth(self, depth: int) -> int | None:
        best: int | None = None
        for bag in self.bags:
            max_depth = bag[0]
            if max_depth is not None:
                left = max(0, max_depth - (depth - bag[1]))
                if best is None or left < best:
                    best = left
        return best

    def spend(self, value: Any) -> None:
        cost = _flat_size(value) + 1
        for bag in self.bags:
            if bag[2] is not None:
                bag[2] = max(0, bag[2] - cost)

    def spend_absent(self, count: int) -> None:
        if count:
            for bag in self.bags:
                if bag[2] is not None:
                    bag[2] = max(0, bag[2] - count)

    # ``funcs::process_value``: enter a value, process it by kind, account for it.
    def value(
        self,
        kind: Kind,
        value: Any,
        meta: Meta,
        key: str,
        depth: int,
        attrs: Attrs | None,
    ) -> Any:
        pushed = False
        bags = self.bags
        if attrs is not None and (attrs[2] is not None or attrs[3] is not None):
            bags.append([attrs[2], depth, attrs[3]])
            pushed = True
        if (
            bags
            and self.fast
            and not self.notrim
            and value is not None
            and (attrs is None or attrs[0] is None)
        ):
            plan = _plain_plan(kind)
            if plan is not None:
                cost = self.fits(plan, value, depth)
                if cost >= 0:
                    # Nothing in the subtree is cut: account for it as the walk would.
                    if pushed:
                        bags.pop()
                    for bag in bags:
                        if bag[2] is not None:
                            bag[2] -= cost
                    return value
        if (
            value is not None
            and bags
            and not self.notrim
            and (self.remaining_size() == 0 or self.remaining_depth(depth) == 0)
        ):
            value = _DELETE
        if value is not None and value is not _DELETE:
            value = self.dispatch(kind, value, meta, key, depth, attrs)
        if pushed:
            bags.pop()
        if bags:
            self.spend(None if value is _DELETE else value)
        return value

    def dispatch(
        self, kind: Kind, value: Any, meta: Meta, key: str, depth: int, attrs: Attrs | None
    ) -> Any:
        if type(kind) is Struct:
            if type(value) is dict:
                sub = meta.get(key)
                if kind.name in ("Stacktrace",):
                    self.stacktrace(kind, value, meta, key, depth)
                else:
                    if sub is None:
                        sub = {}
                        self.struct_fields(kind, value, sub, depth)
                        if sub:
                            meta[key] = sub
                    else:
                        self.struct_fields(kind, value, sub, depth)
            return value
        if type(kind) is ValueKind or kind.name == "params":
            return self.any_value(value, meta, key, depth, attrs)
        if type(value) is str:
            if attrs is not None and attrs[0] is not None:
                value = trim_string(value, meta, key, attrs[0], attrs[1])
            if self.bags and not self.notrim:
                left = self.remaining_size()
                if left is not None:
                    value = trim_string(value, meta, key, left, 0)
            return value
        if self.notrim == 1:
            return value
        if type(kind) is ArrayKind or type(kind) is MapKind:
            item_attrs = _EXTRA_VALUE if kind is _EXTRA_KIND else None
            return self.container(kind.item, value, meta, key, depth, item_attrs)
        if type(kind) is ValuesKind:
            if type(value) is dict:
                self.values(kind, value, meta, key, depth)
            return value
        if type(kind) is ContextsKind:
            if type(value) is dict:
                self.contexts(kind, value, meta, key, depth)
            return value
        if type(kind) is PairsKind or kind.name in ("cookies", "query", "tags", "headers"):
            if type(value) is list:
                self.pairs(value, meta, key, depth, _TAG_ATTRS if kind.name == "tags" else None)
            return value
        return value

    def _sub(self, meta: Meta, key: str) -> tuple[Meta, bool]:
        sub = meta.get(key)
        if sub is None:
            return {}, True
        return sub, False

    def struct_fields(self, struct: Struct, value: dict[str, Any], meta: Meta, depth: int) -> None:
        name = struct.name
        inner = depth + 1
        bags = self.bags
        outer_notrim = self.notrim
        is_span = name == "Span"
        if not bags and not outer_notrim and not is_span:
            # Outside of bags only fields with limits (or holding some) can change, and
            # unknown keys never do: skip the rest.
            fast = self.fast
            for fname, kind, attrs, max_len, bag in _struct_plan(struct):
                v = value.get(fname)
                if v is None or (type(v) is str and len(v) <= max_len):
                    # A string within its ``max_chars`` (and allowance) stays as it is.
                    continue
                if fast and bag is not None and _plain_cost(bag[0], v, bag[1], bag[2]) >= 0:
                    # A plain bag that fits (``fits``, with this bag the only one open).
                    continue
                new = self.value(kind, v, meta, fname, inner, attrs)
                if new is not v:
                    value[fname] = None if new is _DELETE else new
            return
        for fname, kind, attrs, walk in _fields_plan(struct):
            if is_span:
                # ``Span`` is ``trim = false``; its ``data`` (a struct in Relay) is entered.
                self.notrim = 2 if fname == "data" else 1
            v = value.get(fname)
            if v is None:
                if bags:
                    self.spend_absent(1)
                continue
            if not bags and attrs is None and not walk:
                continue
            new = self.value(kind, v, meta, fname, inner, attrs)
            if new is not v:
                value[fname] = None if new is _DELETE else new
        if is_span:
            self.notrim = outer_notrim
        if bags:
            self.spend_absent(_HIDDEN_FIELDS.get(name, 0))
        if len(value) > len(struct.fields) or any(k not in struct.by_name for k in value):
            for k in sorted(k for k in value if k not in struct.by_name):
                v = value[k]
                if v is None:
                    if bags:
                        self.spend_absent(1)
                    continue
                new = self.value(ANY_VALUE, v, meta, k, inner, None)
                if new is not v:
                    value[k] = None if new is _DELETE else new

    def any_value(self, value: Any, meta: Meta, key: str, depth: int, attrs: Attrs | None) -> Any:
        cls = type(value)
        if self.notrim == 1:
            return value
        if (
            self.bags
            and not self.notrim
            and (cls is list or cls is dict)
            and self.remaining_depth(depth) == 1
        ):
            value = _serde_json(value)
            cls = str
        if cls is str:
            if attrs is not None and attrs[0] is not None:
                value = trim_string(value, meta, key, attrs[0], attrs[1])
            if self.bags and not self.notrim:
                left = self.remaining_size()
                if left is not None:
                    value = trim_string(value, meta, key, left, 0)
            return value
        if cls is list or cls is dict:
            return self.container(ANY_VALUE, value, meta, key, depth)
        return value

    def container(
        self,
        item: Kind,
        value: Any,
        meta: Meta,
        key: str,
        depth: int,
        item_attrs: Attrs | None = None,
    ) -> Any:
        """``process_array``/``process_object``: children in order, cut when the bag is full."""
        if type(value) is not list and type(value) is not dict:
            return value
        if not self.bags or self.notrim:
            if not self.bags and not _needs_walk(item):
                return value
            sub, fresh = self._sub(meta, key)
            keys: Any = range(len(value)) if type(value) is list else list(value)
            # Structs outside of bags: what ``value``/``dispatch`` would do, minus the calls.
            direct = (
                not self.bags
                and item_attrs is None
                and type(item) is Struct
                and item.name != "Stacktrace"
            )
            for k in keys:
                v = value[k]
                if v is None:
                    continue
                if direct:
                    if type(v) is dict:
                        item_key = str(k)
                        item_meta = sub.get(item_key)
                        if item_meta is None:
                            item_meta = {}
                            self.struct_fields(item, v, item_meta, depth + 1)  # type: ignore[arg-type]
                            if item_meta:
                                sub[item_key] = item_meta
                        else:
                            self.struct_fields(item, v, item_meta, depth + 1)  # type: ignore[arg-type]
                    continue
                new = self.value(item, v, sub, str(k), depth + 1, item_attrs)
                if new is not v:
                    value[k] = None if new is _DELETE else new
            if fresh and sub:
                meta[key] = sub
            return value
        if self.remaining_depth(depth) == 1 and value:
            return _DELETE
        original = len(value)
        sub, fresh = self._sub(meta, key)
        if type(value) is list:
            cut = None
            for i, v in enumerate(value):
                if self.remaining_size() == 0:
                    cut = i
                    break
                new = self.value(item, v, sub, str(i), depth + 1, item_attrs)
                if new is not v:
                    value[i] = None if new is _DELETE else new
            if cut is not None:
                del value[cut:]
                for k in [k for k in sub if k.isdigit() and int(k) >= cut]:
                    del sub[k]
        elif type(value) is dict:  # (always: lists and objects only get here)
            ordered = sorted(value)
            cut_keys: list[str] = []
            for i, k in enumerate(ordered):
                if self.remaining_size() == 0:
                    cut_keys = ordered[i:]
                    break
                v = value[k]
                new = self.value(item, v, sub, k, depth + 1, item_attrs)
                if new is not v:
                    value[k] = None if new is _DELETE else new
            for k in cut_keys:
                del value[k]
                sub.pop(k, None)
        if len(value) != original:
            set_original_length(sub, original)
        if fresh and sub:
            meta[key] = sub
        return value

    def values(
        self, kind: ValuesKind, value: dict[str, Any], meta: Meta, key: str, depth: int
    ) -> None:
        items = value.get("values")
        sub, fresh = self._sub(meta, key)
        if type(items) is list:
            new = self.value(_values_array(kind), items, sub, "values", depth + 1, None)
            if new is _DELETE:
                value["values"] = None
        elif self.bags:
            self.spend_absent(1)
        if fresh and sub:
            meta[key] = sub

    def pairs(
        self, value: list[Any], meta: Meta, key: str, depth: int, attrs: Attrs | None
    ) -> None:
        sub, fresh = self._sub(meta, key)
        for i, pair in enumerate(value):
            if pair is None:
                if self.bags:
                    self.spend_absent(1)
                continue
            if self.bags and (self.remaining_size() == 0 or self.remaining_depth(depth + 1) == 0):
                value[i] = None
                self.spend_absent(1)
                continue
            psub, pfresh = self._sub(sub, str(i))
            if type(pair) is list:
                for j in range(len(pair)):
                    pv = pair[j]
                    if pv is None:
                        if self.bags:
                            self.spend_absent(1)
                        continue
                    new = self.value(ANY_VALUE, pv, psub, str(j), depth + 2, attrs)
                    if new is not pv:
                        pair[j] = None if new is _DELETE else new
            if pfresh and psub:
                sub[str(i)] = psub
            if self.bags:
                self.spend(pair)
        if fresh and sub:
            meta[key] = sub

    def contexts(
        self, kind: ContextsKind, value: dict[str, Any], meta: Meta, key: str, depth: int
    ) -> None:
        sub, fresh = self._sub(meta, key)
        inner = depth + 1
        for name in sorted(value):
            ctx = value[name]
            if ctx is None:
                continue
            struct = kind.known.get(str(ctx.get("type"))) if type(ctx) is dict else None
            if (
                self.fast
                and not self.bags
                and not self.notrim
                and type(ctx) is dict
                and _context_cost(struct, ctx) >= 0
            ):
                continue  # fits its bag: nothing is cut, and no outer bag to account to
            self.bags.append([_CONTEXT_DEPTH, inner, _CONTEXT_BYTES])
            if type(ctx) is dict:
                if struct is not None:
                    csub, cfresh = self._sub(sub, name)
                    self.context_fields(struct, ctx, csub, inner)
                    if cfresh and csub:
                        sub[name] = csub
                else:
                    csub, cfresh = self._sub(sub, name)
                    for k in sorted(ctx):
                        v = ctx[k]
                        new = self.value(ANY_VALUE, v, csub, k, inner + 1, None)
                        if new is not v:
                            ctx[k] = None if new is _DELETE else new
                    if cfresh and csub:
                        sub[name] = csub
            self.bags.pop()
        if fresh and sub:
            meta[key] = sub

    def context_fields(self, struct: Struct, value: dict[str, Any], meta: Meta, depth: int) -> None:
        """A known context: declared fields (``type`` is not one in Relay), then the rest."""
        name = struct.name
        inner = depth + 1
        for field in struct.fields:
            fname = field.name
            if fname == "type":
                continue
            v = value.get(fname)
            if v is None:
                self.spend_absent(1)
                continue
            new = self.value(field.kind, v, meta, fname, inner, _ATTRS.get((name, fname)))
            if new is not v:
                value[fname] = None if new is _DELETE else new
        for k in sorted(k for k in value if k not in struct.by_name):
            v = value[k]
            if v is None:
                self.spend_absent(1)
                continue
            new = self.value(ANY_VALUE, v, meta, k, inner, None)
            if new is not v:
                value[k] = None if new is _DELETE else new

    def stacktrace(
        self, kind: Struct, value: dict[str, Any], meta: Meta, key: str, depth: int
    ) -> None:
        """``process_raw_stacktrace``: the frame hard limit, the fields, then frame slimming."""
        sub, fresh = self._sub(meta, key)
        frames = value.get("frames")
        if type(frames) is list and len(frames) > _RECENT_FRAMES + _OLD_FRAMES:
            original = len(frames)
            end = original - _RECENT_FRAMES
            del frames[_OLD_FRAMES:end]
            fsub = child(sub, "frames")
            removed = end - _OLD_FRAMES
            moved: dict[str, Any] = {}
            for k in list(fsub):
                if k.isdigit():
                    index = int(k)
                    entry = fsub.pop(k)
                    if index < _OLD_FRAMES:
                        moved[k] = entry
                    elif index >= end:
                        moved[str(index - removed)] = entry
            fsub.update(moved)
            set_original_length(fsub, original)
        self.struct_fields(kind, value, sub, depth)
        frames = value.get("frames")
        if type(frames) is list:
            _slim_frame_data(frames, sub.get("frames"), _FRAME_ALLOWANCE)
        if fresh and sub:
            meta[key] = sub


def _slim_frame_data(frames: list[Any], meta: Meta | None, allowance: int) -> None:
    count = len(frames)
    if count <= allowance:
        return
    app: list[int] = []
    system: list[int] = []
    for i, frame in enumerate(frames):
        if type(frame) is dict:
            (app if frame.get("in_app") is True else system).append(i)
    system_half = max(0, allowance - len(app)) // 2
    system_remove = (
        system[system_half : len(system) - system_half]
        if system_half <= len(system) - system_half
        else []
    )
    remaining = max(0, max(0, count - allowance) - len(system_remove))
    app_half = max(0, len(app) - remaining) // 2
    app_remove = app[app_half : len(app) - app_half] if app_half <= len(app) - app_half else []
    top = max(0, count - 1)
    for i in [*system_remove, *app_remove]:
        if i == top:
            continue
        frame = frames[i]
        if type(frame) is dict:
            frame_meta = meta.get(str(i)) if meta else None
            for name in ("vars", "pre_context", "post_context"):
                frame.pop(name, None)
                if frame_meta:
                    frame_meta.pop(name, None)


_TAG_ATTRS: Final[Attrs] = (200, 0, None, None)
#: ``ExtraValue``: every entry of ``extra`` is a bag of its own.
_EXTRA_VALUE: Final[Attrs] = (None, 0, 7, 16_384)
_EXTRA_KIND: Final = EVENT.by_name["extra"].kind
_VALUES_ARRAYS: Final[dict[int, ArrayKind]] = {}


def _values_array(kind: ValuesKind) -> ArrayKind:
    arr = _VALUES_ARRAYS.get(id(kind))
    if arr is None:
        arr = _VALUES_ARRAYS[id(kind)] = ArrayKind(kind.item)
    return arr


#: Fields of a struct (by id) that the walk enters outside of bags: with attributes, or
#: of a kind that may hold something with a limit.
#: Then: the longest string the field leaves alone outside of bags (``-1`` when a string
#: may still change: no ``max_chars``, or the field opens a bag); and for a field that
#: opens a bag of a plain kind, ``(plain plan, depth limit, byte limit)`` (else ``None``).
_FieldPlan = tuple[str, Kind, Attrs | None, int, tuple[Any, int, int] | None]
_STRUCT_PLANS: Final[dict[int, list[_FieldPlan]]] = {}


def _struct_plan(struct: Struct) -> list[_FieldPlan]:
    plan = _STRUCT_PLANS.get(id(struct))
    if plan is None:
        plan = []
        for name, kind, attrs, walk in _fields_plan(struct):
            if attrs is not None or walk:
                max_len = -1
                if attrs is not None and attrs[0] is not None and attrs[2:] == (None, None):
                    max_len = attrs[0] + attrs[1]
                bag = None
                plain = _plain_plan(kind)
                if attrs is not None and attrs[0] is None and plain is not None:
                    bag = (plain, attrs[2] or _NO_LIMIT, attrs[3] or _NO_LIMIT)
                plan.append((name, kind, attrs, max_len, bag))
        _STRUCT_PLANS[id(struct)] = plan
    return plan


#: Per struct: every declared field with its attributes and whether it needs a walk outside
#: of bags (``_needs_walk``), so that the walk does not look them up field by field.
_FieldsPlan = list[tuple[str, Kind, Attrs | None, bool]]
_FIELDS_PLANS: Final[dict[int, _FieldsPlan]] = {}


def _fields_plan(struct: Struct) -> _FieldsPlan:
    plan = _FIELDS_PLANS.get(id(struct))
    if plan is None:
        plan = [
            (f.name, f.kind, _ATTRS.get((struct.name, f.name)), _needs_walk(f.kind))
            for f in struct.fields
        ]
        _FIELDS_PLANS[id(struct)] = plan
    return plan


#: Per known context struct: its declared fields but ``type``, each with its plain plan
#: (``None``: not plain), the longest string its ``max_chars`` leaves alone, and the depth
#: and byte limits of a bag of its own.
_ContextPlan = list[tuple[str, Any, int, int, int]]
_CONTEXT_PLANS: Final[dict[int, _ContextPlan]] = {}
#: A context is a bag of its own (``Trimmer.contexts``).
_CONTEXT_DEPTH: Final = 7
_CONTEXT_BYTES: Final = 8192


def _context_plan(struct: Struct) -> _ContextPlan:
    plan = _CONTEXT_PLANS.get(id(struct))
    if plan is None:
        plan = []
        for field in struct.fields:
            if field.name == "type":
                continue
            attrs = _ATTRS.get((struct.name, field.name)) or (None, 0, None, None)
            max_len = _NO_LIMIT if attrs[0] is None else attrs[0] + attrs[1]
            plan.append((
                field.name, _plain_plan(field.kind), max_len,
                attrs[2] or _NO_LIMIT, attrs[3] or _NO_LIMIT,
            ))  # fmt: skip
        _CONTEXT_PLANS[id(struct)] = plan
    return plan


def _context_cost(struct: Struct | None, ctx: dict[str, Any]) -> int:
    """``_plain_cost`` of a whole context in its own bag, with no other bag open, else -1.

    What ``Trimmer.contexts`` spends: each declared field but ``type`` (one byte when
    absent), then each other key (one byte when null). Its values sit one level below
    the bag, so ``_CONTEXT_DEPTH - 1`` levels are left for them.
    """
    room = _CONTEXT_DEPTH - 1
    budget = _CONTEXT_BYTES
    total = 0
    known: Any = ()
    if struct is not None:
        known = struct.by_name
        for fname, plan, max_len, depth_limit, byte_limit in _context_plan(struct):
            v = ctx.get(fname)
            if v is None:
                total += 1
                continue
            if plan is None or (type(v) is str and len(v) > max_len):
                return -1
            cost = _plain_cost(plan, v, min(room, depth_limit), min(budget - total, byte_limit))
            if cost < 0:
                return -1
            total += cost
    for k, v in ctx.items():
        if k in known:
            continue
        cost = _plain_cost(_JSON, v, room, budget - total)
        if cost < 0:
            return -1
        total += cost
    return total if total <= budget else -1


# -- plain subtrees --------------------------------------------------------------------
#
# A "plain" kind is one the walk treats like JSON: no struct fields (which cost a byte
# each even when absent), no pairs, no per-item bags, no string limits inside. For those
# the walk's effect is a function of the sizes alone, which ``_plain_cost`` computes in a
# single tight pass.

_NO_LIMIT: Final = 1 << 62
#: Plans: a leaf (the walk never enters the value), JSON (``any_value``), or
#: ``(item plan, item depth limit, item byte limit)`` for an array or object of plain items
#: (the limits of a bag each item opens, ``_NO_LIMIT`` if none).
_LEAF: Final = 0
_JSON: Final = 1
_PAIRS: Final = 2
_PAIR_NAMES: Final = frozenset({"cookies", "query", "tags", "headers"})
_PLAIN_PLANS: Final[dict[int, Any]] = {}


def _plain_plan(kind: Kind) -> Any:
    """How to size values of ``kind`` without walking them, or ``None`` if it is not plain."""
    key = id(kind)
    if key in _PLAIN_PLANS:
        return _PLAIN_PLANS[key]
    _PLAIN_PLANS[key] = None  # recursion guard
    plan: Any = None
    if type(kind) is ValueKind or kind.name == "params":
        plan = _JSON
    elif type(kind) is PairsKind or kind.name in _PAIR_NAMES:
        # Tags cut their values to 200 characters: not plain.
        plan = None if kind.name == "tags" else _PAIRS
    elif type(kind) is Kind or type(kind) is Prim:
        plan = _LEAF
    elif type(kind) is ArrayKind or type(kind) is MapKind:
        item = _plain_plan(kind.item)
        if item is not None:
            # Items of ``extra``'s kind are bags of their own (``container``'s item_attrs).
            extra = kind is _EXTRA_KIND
            depth_limit = _EXTRA_VALUE[2] if extra else None
            byte_limit = _EXTRA_VALUE[3] if extra else None
            plan = (item, depth_limit or _NO_LIMIT, byte_limit or _NO_LIMIT)
    _PLAIN_PLANS[key] = plan
    return plan


def _leaf_cost(value: Any) -> int:
    if type(value) is str:
        return len(value) + 3 if value.isascii() else len(value.encode()) + 3
    return _flat_size(value) + 1


def _plain_cost(plan: Any, value: Any, room: int, budget: int) -> int:
    """What the walk spends on ``value`` (``room`` levels of depth left), else -1.

    -1 when the walk could change something: the cost exceeds ``budget``, or a container
    sits where the depth limit serializes or drops it (``room`` < 2).
    """
    if value is None:
        return 1
    container = type(value) is list or type(value) is dict
    if type(plan) is int:
        # A leaf, JSON or pairs plan (typed, so that the comparisons are native).
        code: int = plan
        if code == _PAIRS and type(value) is list:
            return _pairs_cost(value, room, budget)
        if code != _JSON or not container:
            cost = _leaf_cost(value)
            return cost if cost <= budget else -1
        return _json_cost(value, room, budget) if room >= 2 else -1
    if not container:
        cost = _leaf_cost(value)
        return cost if cost <= budget else -1
    if room < 2:
        return -1
    items_plan: tuple[Any, int, int] = plan
    item, item_room, item_budget = items_plan
    item_room = min(room - 1, item_room)
    total = 3
    children = value.values() if type(value) is dict else value
    if item == _LEAF and item_budget == _NO_LIMIT:
        # E.g. ``modules``: leaves only, sized inline.
        for leaf in children:
            if type(leaf) is str:
                total += len(leaf) + 3 if leaf.isascii() else len(leaf.encode()) + 3
            elif leaf is None:
                total += 1
            else:
                total += _flat_size(leaf) + 1
        return total if total <= budget else -1
    for child_value in children:
        cost = _plain_cost(item, child_value, item_room, min(budget - total, item_budget))
        if cost < 0:
            return -1
        total += cost
    return total if total <= budget else -1


def _json_cost(value: Any, room: int, budget: int) -> int:
    """``_plain_cost`` of a JSON list or object (the hot case, with leaves inlined)."""
    if room < 2:
        return -1
    total = 3
    for item in value.values() if type(value) is dict else value:
        if type(item) is str:
            total += len(item) + 3 if item.isascii() else len(item.encode()) + 3
        elif item is None:
            total += 1
        elif type(item) is dict or type(item) is list:
            cost = _json_cost(item, room - 1, budget - total)
            if cost < 0:
                return -1
            total += cost
        else:
            total += _flat_size(item) + 1
        if total > budget:
            return -1
    return total if total <= budget else -1


def _pairs_cost(value: list[Any], room: int, budget: int) -> int:
    """``_plain_cost`` of a pair list (``Trimmer.pairs``: pairs, then their two values)."""
    if room < 3:
        return -1
    total = 3
    for pair in value:
        if pair is None:
            total += 1
            continue
        if type(pair) is list:
            cost = 3
            for part in pair:
                part_cost = _plain_cost(_JSON, part, room - 2, budget - total - cost)
                if part_cost < 0:
                    return -1
                cost += part_cost
        else:
            cost = _flat_size(pair) + 1
        total += cost
        if total > budget:
            return -1
    return total if total <= budget else -1


#: Whether a kind (by id) may contain anything to trim outside of a bag.
_NEEDS_WALK: Final[dict[int, bool]] = {}


def _needs_walk(kind: Kind) -> bool:
    """Whether values of ``kind`` can hold anything with a limit (outside of any bag)."""
    known = _NEEDS_WALK.get(id(kind))
    if known is not None:
        return known
    _NEEDS_WALK[id(kind)] = False  # recursion guard
    result = False
    if type(kind) is Struct:
        struct: Struct = kind
        result = struct.name == "Stacktrace" or any(
            (struct.name, f.name) in _ATTRS or _needs_walk(f.kind) for f in struct.fields
        )
    elif type(kind) in (ArrayKind, MapKind, ValuesKind):
        result = _needs_walk(kind.item)  # type: ignore[attr-defined]
    elif type(kind) is ContextsKind or kind.name == "tags":
        result = True
    _NEEDS_WALK[id(kind)] = result
    return result
