"""The final pass: drop what Relay would not serialize, remove unknown fields, emit errors.

Walks the typed event in schema order (which is the order Relay reports ``errors`` in),
applying each field's skip rule: a null (or empty) field disappears unless it carries meta.
"""

from __future__ import annotations

from typing import Any, cast

from relay.normalize.containers import ContextsKind, PairsKind, ValuesKind
from relay.normalize.meta import Meta, prune
from relay.normalize.types import (
    OTHER_DROP,
    OTHER_ERROR,
    SKIP_DEEP,
    SKIP_EMPTY,
    SKIP_NEVER,
    ArrayKind,
    Kind,
    MapKind,
    Struct,
    ValueKind,
)

#: Unknown top-level keys of old SDKs that are dropped without an error.
_LEGACY_EVENT_KEYS = frozenset(
    {"metadata", "hashes", "applecrashreport", "device", "repos", "query"}
)


def is_empty(value: Any) -> bool:
    """Relay's ``Empty`` check on a finished value (structs recurse, containers do not)."""
    if value is None or value == "":
        return True
    cls = value.__class__
    if cls is list:
        return not value
    if cls is dict:
        return all(is_empty(v) for v in value.values())
    return False


def is_deep_empty(value: Any) -> bool:
    """Like :func:`is_empty`, but lists count as empty when all their items are."""
    if value is None or value == "":
        return True
    cls = value.__class__
    if cls is list:
        return all(is_deep_empty(v) for v in value)
    if cls is dict:
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
            if err.__class__ is list:
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
        self.emit(meta, path)
        if kind.name in _NEWTYPES and meta and value is not None:
            # Relay visits these newtype wrappers and their inner value with the same meta.
            self.emit(meta, path)
        if value is None:
            return None
        cls = kind.__class__
        if cls is Struct:
            return self.finish_struct(kind, value, meta, path)  # type: ignore[arg-type]
        if cls is ArrayKind or cls is MapKind:
            item: Kind = kind.item  # type: ignore[attr-defined]
            if value.__class__ is list:
                if not meta and item.__class__ is not Struct and item.__class__ is not MapKind:
                    return value
                return [
                    self.finish(item, v, meta.get(str(i)) if meta else None, f"{path}.{i}")
                    for i, v in enumerate(value)
                ]
            if value.__class__ is dict:
                keep_nulls = item.__class__ is ValueKind
                if (
                    not meta
                    and item.__class__ not in (Struct, MapKind)
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
        if cls is ValuesKind:
            return self.finish_values(kind, value, meta, path)  # type: ignore[arg-type]
        if cls is PairsKind or kind.name in ("cookies", "query", "tags", "headers"):
            return self.finish_pairs(value, meta, path)
        if cls is ContextsKind:
            return self.finish_contexts(kind, value, meta, path)  # type: ignore[arg-type]
        if meta and value.__class__ in (dict, list):
            self.emit_value(value, meta, path)
        return value

    def emit_value(self, value: Any, meta: Meta, path: str) -> None:
        """Errors nested inside untyped JSON (e.g. trimmed ``extra`` entries)."""
        for key in sorted(k for k in meta if k != ""):
            sub = meta[key]
            self.emit(sub, f"{path}.{key}")
            if value.__class__ is dict:
                inner = value.get(key)
            elif value.__class__ is list and key.isdigit() and int(key) < len(value):
                inner = value[int(key)]
            else:
                inner = None
            if inner.__class__ in (dict, list):
                self.emit_value(inner, sub, f"{path}.{key}")

    def finish_struct(
        self, struct: Struct, value: dict[str, Any], meta: Meta | None, path: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        prefix = f"{path}." if path else ""
        by_name = struct.by_name
        for field in struct.fields:
            name = field.name
            sub = meta.get(name) if meta else None
            v = value.get(name)
            if v is None and not sub:
                if field.skip == SKIP_NEVER and name in value:
                    out[name] = None
                continue
            fv = self.finish(field.kind, v, sub, prefix + name)
            if not sub:
                skip = field.skip
                if fv is None:
                    if skip != SKIP_NEVER:
                        continue
                elif skip == SKIP_EMPTY:
                    if field.kind.__class__ is ValuesKind:
                        # ``Values`` is empty only when its list is (items are not inspected).
                        values_obj = cast(dict[str, Any], v)
                        if not values_obj.get("values") and len(values_obj) <= 1:
                            continue
                    elif _empty_for(field.kind, fv):
                        continue
                elif skip == SKIP_DEEP and is_deep_empty(fv):
                    continue
            out[name] = fv
        if len(value) > len(out):
            others = sorted(k for k in value if k not in by_name)
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
            if sub or not is_deep_empty(fv):
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
            if sub or fv is None or not is_deep_empty(fv):
                out.append(fv)
        return out

    def finish_pairs(self, value: list[Any], meta: Meta | None, path: str) -> list[Any]:
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
        return value

    def finish_contexts(
        self, kind: ContextsKind, value: dict[str, Any], meta: Meta | None, path: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in sorted(value):
            ctx = value[name]
            sub = meta.get(name) if meta else None
            struct = kind.known.get(str(ctx.get("type"))) if ctx.__class__ is dict else None
            if struct is None:
                self.emit(sub, f"{path}.{name}")
                if sub and ctx.__class__ is dict:
                    self.emit_value(ctx, sub, f"{path}.{name}")
                out[name] = ctx
            else:
                out[name] = self.finish(struct, ctx, sub, f"{path}.{name}")
        return out


_NONE: Any = object()
_NEWTYPES = frozenset({"contexts", "tags", "measurements", "breakdowns"})


def _empty_for(kind: Kind, value: Any) -> bool:
    """Relay's ``is_empty`` for a finished value of ``kind``: only structs look inside."""
    if kind.__class__ is Struct:
        return is_empty(value)
    if value is None or value == "":
        return True
    if value.__class__ in (list, dict):
        return not value
    return False


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
