"""The final pass: drop what Relay would not serialize, remove unknown fields, emit errors.

Walks the typed event in schema order (which is the order Relay reports ``errors`` in),
applying each field's skip rule: a null (or empty) field disappears unless it carries meta.
"""

from __future__ import annotations

from typing import Any, Final, cast

from relay.normalize.containers import ContextsKind, PairsKind, ValuesKind
from relay.normalize.meta import Meta, prune
from relay.normalize.types import (
    ANY_VALUE,
    OTHER_DROP,
    OTHER_ERROR,
    SKIP_DEEP,
    SKIP_EMPTY,
    SKIP_NEVER,
    ArrayKind,
    Field,
    Kind,
    MapKind,
    Prim,
    Struct,
    ValueKind,
)

#: Unknown top-level keys of old SDKs that are dropped without an error.
_LEGACY_EVENT_KEYS: Final = frozenset(
    {"metadata", "hashes", "applecrashreport", "device", "repos", "query"}
)


def is_empty(value: Any) -> bool:
    """Relay's ``Empty`` check on a finished value (structs recurse, containers do not)."""
    if value is None or value == "":
        return True
    if type(value) is list:
        return not value
    if type(value) is dict:
        return all(is_empty(v) for v in value.values())
    return False


def is_deep_empty(value: Any) -> bool:
    """Like :func:`is_empty`, but lists count as empty when all their items are."""
    if value is None or value == "":
        return True
    if type(value) is list:
        return all(is_deep_empty(v) for v in value)
    if type(value) is dict:
        return all(is_deep_empty(v) for v in value.values())
    return False


class Finisher:
    """One finishing run: collects the ``errors`` entries as it goes."""

    __slots__ = ("errors", "pending", "remove_other", "value_meta")

    def __init__(self, remove_other: bool) -> None:
        self.remove_other = remove_other
        self.errors: list[dict[str, Any]] = []
        #: Annotations inside an error's ``value`` (a removed value's fields), by entry index.
        self.value_meta: list[tuple[int, Meta]] = []
        #: Meta created for nodes that had none yet, by path (attached after the walk).
        self.pending: list[tuple[str, Meta]] = []

    def emit(self, meta: Meta | None, path: str) -> None:
        """Report the node's own errors (once each), with the original value on the first."""
        if not meta:
            return
        own = meta.get("")
        if not own:
            return
        errs = own.get("err")
        if not errs:
            return
        original = own.get("val", _NONE)
        inner = own.pop("val_meta", None)
        for err in errs:
            if type(err) is list:
                kind, data = err[0], err[1] if len(err) > 1 else {}
            else:
                kind, data = err, {}
            entry: dict[str, Any] = {"type": kind, "name": path}
            if original is not _NONE:
                entry["value"] = original
                original = _NONE
                if inner:
                    self.value_meta.append((len(self.errors), inner))
            if isinstance(data, dict):
                for k, v in data.items():
                    entry.setdefault(k, v)
            self.errors.append(entry)

    def finish(self, kind: Kind, value: Any, meta: Meta | None, path: str) -> Any:
        """Finish ``value`` of type ``kind`` whose meta subtree is ``meta``."""
        if meta:
            self.emit(meta, path)
            if value is not None and kind.name in _NEWTYPES:
                # Relay visits these newtype wrappers and their inner value with the same meta.
                self.emit(meta, path)
        if value is None:
            return None
        if type(kind) is Prim and not meta:
            return value  # the common leaf: nothing to report, nothing to drop
        if type(kind) is Struct:
            return self.finish_struct(kind, value, meta, path)
        if type(kind) is ArrayKind or type(kind) is MapKind:
            item: Kind = kind.item
            if type(value) is list:
                if not meta and type(item) is not Struct and type(item) is not MapKind:
                    return value
                return [
                    self.finish(item, v, meta.get(str(i)) if meta else None, f"{path}.{i}")
                    for i, v in enumerate(value)
                ]
            if type(value) is dict:
                keep_nulls = type(item) is ValueKind
                if (
                    not meta
                    and type(item) not in (Struct, MapKind)
                    and (keep_nulls or None not in value.values())
                ):
                    return value
                out: dict[str, Any] = {}
                for k in sorted(value):
                    sub = meta.get(k) if meta else None
                    v = value[k]
                    if v is None and not sub and not keep_nulls:
                        continue
                    out[k] = self.finish(item, v, sub, f"{path}.{k}")
                return out
            return value
        if type(kind) is ValuesKind:
            return self.finish_values(kind, value, meta, path)
        if type(kind) is PairsKind or kind.name in ("cookies", "query", "tags", "headers"):
            return self.finish_pairs(value, meta, path, kind.name == "headers")
        if type(kind) is ContextsKind:
            return self.finish_contexts(kind, value, meta, path)
        if meta and type(value) in (dict, list):
            self.emit_value(value, meta, path)
        return value

    def emit_value(self, value: Any, meta: Meta, path: str) -> None:
        """Errors nested inside untyped JSON (e.g. trimmed ``extra`` entries)."""
        for key in sorted(k for k in meta if k != ""):
            sub = meta[key]
            self.emit(sub, f"{path}.{key}")
            if type(value) is dict:
                inner = value.get(key)
            elif type(value) is list and key.isdigit() and int(key) < len(value):
                inner = value[int(key)]
            else:
                inner = None
            if type(inner) in (dict, list):
                self.emit_value(inner, sub, f"{path}.{key}")

    def finish_struct(
        self, struct: Struct, value: dict[str, Any], meta: Meta | None, path: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        prefix = f"{path}." if path else ""
        # Values of one struct mostly share their keys (frames of one SDK): which fields
        # to visit, in declaration order, is computed once per key tuple.
        keys = tuple(value)
        # Typed, so that the loop below runs on native ints and tuples (mypyc checks it).
        plan: tuple[list[Entry], list[str]] | None = struct.plans.get(keys)
        if plan is None:
            plan = _plan(struct, keys)
        entries, others = plan
        if meta and not meta.keys() <= value.keys():
            # Fields without a value but with meta are visited as well.
            names = struct.names
            extra = (meta.keys() & names) - value.keys()
            if extra:
                position = struct.position
                entries = sorted(
                    [*entries, *(_entry(struct.by_name[k]) for k in extra)],
                    key=lambda entry: position[entry[0]],
                )
        for name, leaf, skip, kind in entries:
            sub = meta.get(name) if meta else None
            v = value.get(name)
            if not sub:
                if v is None:
                    if skip == SKIP_NEVER and name in value:
                        out[name] = None
                    continue
                if leaf:
                    # Values that finish as they are without meta (see ``_entry``).
                    if leaf == _PASS:
                        out[name] = v
                        continue
                    if leaf == _PASS_SKIP_EMPTY:
                        if type(v) in _SCALARS:
                            if v != "":
                                out[name] = v
                            continue
                    elif type(v) is (list if leaf == _PASS_LIST else dict):
                        if v or skip != SKIP_EMPTY:
                            out[name] = v
                        continue
            fv = self.finish(kind, v, sub, prefix + name)
            if skip == SKIP_DEEP and fv is not None:
                # "Deep" skipping also applies to the items, unless they carry meta.
                fv = _without_deep_empty_items(kind, fv, sub)
            if not sub:
                if fv is None:
                    if skip != SKIP_NEVER:
                        continue
                elif skip == SKIP_EMPTY:
                    if type(kind) is ValuesKind:
                        # Relay checks ``Values`` before serializing it: the list counts
                        # even when all its items are left out as empty.
                        values_obj = cast(dict[str, Any], v)
                        if not values_obj.get("values") and len(values_obj) <= 1:
                            continue
                    elif is_empty_kind(kind, fv):
                        continue
                elif skip == SKIP_DEEP and is_deep_empty_kind(kind, fv):
                    continue
            out[name] = fv
        for name in others:
            self.finish_other(struct, name, value[name], meta, prefix, out)
        return out

    def finish_other(
        self,
        struct: Struct,
        name: str,
        v: Any,
        meta: Meta | None,
        prefix: str,
        out: dict[str, Any],
    ) -> None:
        if not self.remove_other or struct.other not in (OTHER_DROP, OTHER_ERROR):
            sub = meta.get(name) if meta else None
            self.emit(sub, prefix + name)
            if v is not None or sub:
                out[name] = v
            return
        if struct.other == OTHER_DROP or (struct.name == "Event" and name in _LEGACY_EVENT_KEYS):
            if meta:
                meta.pop(name, None)
            return
        sub = {"": {"err": ["invalid_attribute"]}}
        if meta is not None:
            meta[name] = sub
        else:
            self.pending.append((prefix + name, sub))
        self.emit(sub, prefix + name)
        out[name] = None

    def finish_values(
        self, kind: ValuesKind, value: dict[str, Any], meta: Meta | None, path: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        sub = meta.get("values") if meta else None
        items = value.get("values")
        if items is not None or sub:
            fv = self._finish_items(kind.item, items, sub, f"{path}.values")
            if sub or not is_deep_empty_kind(ArrayKind(kind.item), fv):
                out["values"] = fv
        if not self.remove_other:
            for k, v in value.items():
                if k != "values":
                    out[k] = v
        elif meta:
            for k in [k for k in meta if k not in ("", "values")]:
                del meta[k]
        return out

    def _finish_items(self, item: Kind, items: Any, meta: Meta | None, path: str) -> Any:
        self.emit(meta, path)
        if items is None:
            return None
        out = []
        for i, v in enumerate(items):
            sub = meta.get(str(i)) if meta else None
            fv = self.finish(item, v, sub, f"{path}.{i}")
            # ``values`` serializes "deep": empty items without meta are left out.
            if sub or not is_deep_empty_kind(item, fv):
                out.append(fv)
        return out

    def finish_pairs(
        self, value: list[Any], meta: Meta | None, path: str, newtype_values: bool = False
    ) -> list[Any]:
        """Pair lists; ``newtype_values`` (header values) report their errors twice when a
        value remains, as Relay visits the newtype and its string."""
        if not meta:
            return value
        for i, pair in enumerate(value):
            sub = meta.get(str(i))
            if not sub:
                continue
            self.emit(sub, f"{path}.{i}")
            if pair is not None:
                self.emit(sub.get("0"), f"{path}.{i}.0")
                self.emit(sub.get("1"), f"{path}.{i}.1")
                if newtype_values and pair[1] is not None:
                    self.emit(sub.get("1"), f"{path}.{i}.1")
        return value

    def finish_contexts(
        self, kind: ContextsKind, value: dict[str, Any], meta: Meta | None, path: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in sorted(value):
            ctx = value[name]
            sub = meta.get(name) if meta else None
            struct = kind.known.get(str(ctx.get("type"))) if type(ctx) is dict else None
            if struct is None:
                self.emit(sub, f"{path}.{name}")
                if sub and type(ctx) is dict:
                    self.emit_value(ctx, sub, f"{path}.{name}")
                out[name] = ctx
            else:
                out[name] = self.finish(struct, ctx, sub, f"{path}.{name}")
        return out


_NONE: Final[Any] = object()
_NO_KEYS: Final[list[str]] = []
#: Plans kept per struct at most (values with arbitrary key sets must not grow memory).
_MAX_PLANS: Final = 512


#: ``leaf`` of a plan entry, how a value without meta finishes: through ``finish``; as it
#: is; as it is unless ``""`` (scalars only); as it is unless empty and skipped (lists,
#: objects).
_NOT_LEAF: Final = 0
_PASS: Final = 1
_PASS_SKIP_EMPTY: Final = 2
_PASS_LIST: Final = 3
_PASS_DICT: Final = 4
#: A field as the serializer visits it: name, leaf mode (above), skip rule and type.
Entry = tuple[str, int, int, Kind]


def _entry(field: Field) -> Entry:
    """The plan entry of ``field``; the modes mirror what :meth:`Finisher.finish` and the
    skip rules do with a meta-less value of that type."""
    kind = field.kind
    kind_cls = type(kind)
    skip = field.skip
    keeps_empty = skip != SKIP_EMPTY and skip != SKIP_DEEP
    leaf = _NOT_LEAF
    if kind_cls is Prim:
        leaf = _PASS if keeps_empty else _PASS_SKIP_EMPTY
    elif kind_cls is ValueKind and keeps_empty:
        leaf = _PASS
    elif skip != SKIP_DEEP and skip != SKIP_NEVER:
        item_cls = type(getattr(kind, "item", None))
        if kind_cls is ArrayKind and item_cls is not Struct and item_cls is not MapKind:
            leaf = _PASS_LIST
        elif kind_cls is MapKind and item_cls is ValueKind:
            leaf = _PASS_DICT
    return (field.name, leaf, skip, kind)


def _plan(struct: Struct, keys: tuple[str, ...]) -> tuple[list[Entry], list[str]]:
    """The declared fields among ``keys`` in declaration order, and the unknown keys sorted."""
    names = struct.names
    position = struct.position.__getitem__
    entries = [_entry(struct.by_name[k]) for k in sorted(names.intersection(keys), key=position)]
    plan = (entries, sorted(k for k in keys if k not in names))
    if len(struct.plans) >= _MAX_PLANS:
        struct.plans.clear()
    struct.plans[keys] = plan
    return plan


#: Leaf values that need no finishing (no items to skip, not empty unless ``""``).
_SCALARS: Final = frozenset({str, int, float, bool})
#: Kinds Relay models as newtypes (visited twice: errors are reported twice if a value is left).
_NEWTYPES: Final = frozenset({"contexts", "tags", "measurements", "breakdowns", "cookies", "tid"})


def is_empty_kind(kind: Kind, value: Any) -> bool:
    """Relay's ``Empty::is_empty`` of a finished meta-less ``value`` of type ``kind``.

    Structs are empty when all their fields are; lists and objects when they have no
    entries (their entries are not inspected); strings when they are ``""``.
    """
    if value is None:
        return True
    # ``type(value) is ...`` each time, not once into a variable: only that narrows
    # ``value`` for mypyc, which then uses its dict and list primitives.
    if type(value) is str:
        return not value
    if type(value) is dict and (type(kind) is Struct or type(kind) is ValuesKind):
        by_name = kind.by_name if type(kind) is Struct else _VALUES_FIELDS
        for key, item in value.items():
            if item is None:
                continue
            field = by_name.get(key)
            if field is None:
                if item == "" or item == [] or item == {}:
                    continue
                return False
            if field is _VALUES_LIST:
                if item:
                    return False
            elif not is_empty_kind(field.kind, item):
                return False
        return True
    if type(value) is list or type(value) is dict:
        return not value
    return False


def is_deep_empty_kind(kind: Kind, value: Any) -> bool:
    """Relay's ``Empty::is_deep_empty`` of a finished meta-less ``value`` of type ``kind``.

    A struct is deep-empty when each field would be skipped by its own serialization rule
    (unknown fields only when null); lists and objects when all their entries are.
    """
    if value is None:
        return True
    if type(value) is str:
        return not value
    if type(value) is dict:
        if type(kind) is Struct:
            struct = kind
            for field in struct.fields:
                item = value.get(field.name)
                skip = field.skip
                if item is None:
                    if skip == SKIP_NEVER and field.name in value:
                        return False
                    continue
                if skip == SKIP_EMPTY:
                    if not is_empty_kind(field.kind, item):
                        return False
                elif skip == SKIP_DEEP:
                    if not is_deep_empty_kind(field.kind, item):
                        return False
                else:
                    return False
            by_name = struct.by_name
            return all(v is None for k, v in value.items() if k not in by_name)
        if type(kind) is ValuesKind:
            item_kind = kind.item
            for key, item in value.items():
                if key == "values":
                    if item is not None and not all(is_deep_empty_kind(item_kind, v) for v in item):
                        return False
                elif item is not None:
                    return False
            return True
        item_kind = kind.item if type(kind) is MapKind else ANY_VALUE
        return all(is_deep_empty_kind(item_kind, v) for v in value.values())
    if type(value) is list:
        item_kind = kind.item if type(kind) is ArrayKind else ANY_VALUE
        return all(is_deep_empty_kind(item_kind, v) for v in value)
    return False


def _without_deep_empty_items(kind: Kind, value: Any, meta: Meta | None) -> Any:
    """Leave out the deep-empty entries (without meta) of a list or object."""
    if type(value) is list:
        item_kind = kind.item if type(kind) is ArrayKind else ANY_VALUE
        return [
            v
            for i, v in enumerate(value)
            if (meta and meta.get(str(i))) or not is_deep_empty_kind(item_kind, v)
        ]
    if type(value) is dict and type(kind) is MapKind:
        item_kind = kind.item
        return {
            k: v
            for k, v in value.items()
            if (meta and meta.get(k)) or not is_deep_empty_kind(item_kind, v)
        }
    return value


#: Marker for the list field of ``Values`` (see :func:`is_empty_kind`).
_VALUES_LIST: Final[Any] = object()
_VALUES_FIELDS: Final[dict[str, Any]] = {"values": _VALUES_LIST}


def finish_event(
    event_kind: Struct, event: dict[str, Any], meta: Meta, *, remove_other: bool, emit_errors: bool
) -> dict[str, Any]:
    """Serialize the typed ``event`` with its ``_meta`` and (optionally) ``errors`` entries."""
    prune(meta)
    finisher = Finisher(remove_other)
    out = finisher.finish_struct(event_kind, event, meta, "")
    for path, sub in finisher.pending:
        target = meta
        parts = path.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = sub
    if emit_errors and finisher.errors:
        existing = out.get("errors") or []
        out["errors"] = existing + finisher.errors
        for index, inner in finisher.value_meta:
            # Relay keeps a removed value's own annotations with the value, in ``errors``.
            meta.setdefault("errors", {})[str(len(existing) + index)] = {"value": inner}
    if prune(meta):
        out["_meta"] = meta
    return out
