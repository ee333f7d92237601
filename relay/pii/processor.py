"""The scrubbing walk: visits an event like Relay's PII processor and rewrites it in place.

Each visited field is a processing state: its key or index, value type and PII level.
Which rules apply to a state depends only on the path of (key, index, value type) from
the root and the field's PII level, so that decision is cached per path signature: a
small integer interned from (parent signature, key, index, value type), where keys and
indices that no selector mentions are folded into one placeholder. The cache lives in
the compiled processor and is reused across events.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Any, Final

from relay.pii import schema as sc
from relay.pii.compiled import Application, RuleRef
from relay.pii.conventions import attribute_scrubbing
from relay.pii.redact import Plan, Scrubbed
from relay.pii.selector import State, ascii_lower, matches_path, selector_indices, selector_keys
from relay.pii.value_types import ARRAY, NUMBER, OBJECT, STRING, Pii

_SKIP_STRINGS: Final = frozenset(("", "true", "false", "null", "undefined"))
_OTHER_KEY: Final = "\x00"  # placeholder for keys no selector mentions
_MAX_SIGNATURES: Final = 200_000
#: Signature of the root state (no key, no value type, not PII-able).
ROOT_SIGNATURE: Final = 0
# Cross-event cache of string results per (rule plan, key class, value): values repeat
# across events (module names, paths, SDK strings, variables). Bounded in entries and in
# the length of the strings it keeps.
VALUE_CACHE_ENTRIES: Final = 16384
VALUE_CACHE_CHARS: Final = 4_000_000
VALUE_CACHE_MAX_LEN: Final = 65536
#: Strings up to this length that no rule can change are re-checked rather than cached.
_UNCHANGED_MIN_CACHED_LEN: Final = 48

Json = Any
MetaNode = dict[str, Any] | None


def _is_valid_ip(value: object) -> bool:
    if not isinstance(value, str):
        return False
    if value == "{{auto}}":
        return True
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _json_node(value: Json) -> sc.Node:
    if isinstance(value, str):
        return sc.STR
    if isinstance(value, dict):
        return _VALUE_OBJECT
    if isinstance(value, list):
        return _VALUE_ARRAY
    if isinstance(value, bool):
        return sc.BOOL
    return sc.NUM


_VALUE_OBJECT: Final = sc.Node(sc.K_OBJECT, OBJECT, item=sc.VALUE)
_VALUE_ARRAY: Final = sc.Node(sc.K_ARRAY, ARRAY, item=sc.VALUE)


def _is_pairlist(items: list[Json]) -> bool:
    if not items:
        return False
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            return False
    return True


class PiiProcessor:
    """A compiled PII config, ready to scrub many events (build once per config revision)."""

    def __init__(self, applications: tuple[Application, ...]) -> None:
        self.applications = applications
        keys: set[str] = set()
        indices: set[int] = set()
        for app in applications:
            keys |= selector_keys(app.selector)
            indices |= selector_indices(app.selector)
        self._keys = frozenset(keys)
        self._indices = frozenset(indices)
        self._reset_caches()

    def _reset_caches(self) -> None:
        self._intern: dict[tuple[int, object, int], int] = {}
        self._fast: dict[tuple[int, str | None, int | None, int], int] = {}
        self._states: list[tuple[int, State]] = [(-1, (None, None, 0))]
        self._plans: dict[int, Plan | None] = {}
        self._interned: dict[tuple[int, ...], Plan] = {}
        self.values: OrderedDict[_CacheKey, _Cached] = OrderedDict()

        self._value_chars = 0

    def clear_value_cache(self) -> None:
        """Forget cached string results (benchmarks use it to measure the cold path)."""
        self.values.clear()
        self._value_chars = 0

    def cached_scrub(
        self,
        plan: Plan,
        text: str,
        key: str | None,
        key_class: int,
        prior_key: tuple[tuple[object, ...], ...],
        prior: list[Any] | None,
    ) -> tuple[Scrubbed | None, str | None]:
        """`Plan.scrub` of `text`, memoized across events in a bounded LRU."""
        short = len(text) <= _UNCHANGED_MIN_CACHED_LEN
        if short and plan.cannot_change(text, key_class):
            # Most strings: no rule can match. For short ones the trigger scan is cheaper
            # than remembering its answer (an entry, and evicting it later).
            return None, None
        values = self.values
        cache_key = (plan.pid, key_class, text, prior_key)
        cached = values.get(cache_key)
        if cached is not None:
            values.move_to_end(cache_key)
            if cached is _UNCHANGED:
                return None, None
            value, remarks, length, removed_by, changed = cached
            hit = Scrubbed(value, [list(r) for r in remarks])
            hit.changed = changed
            hit.length = length
            return hit, removed_by
        if not short and plan.cannot_change(text, key_class):
            self._remember(cache_key, _UNCHANGED, len(text) + 64)
            return None, None
        scrubbed = Scrubbed(text, list(prior or ()))
        removed_by = plan.scrub(key_class, scrubbed)
        if scrubbed.changed or removed_by is not None:
            result: _Cached = (
                scrubbed.value,
                tuple(tuple(r) for r in scrubbed.remarks),
                scrubbed.length,
                removed_by,
                scrubbed.changed,
            )
            self._remember(cache_key, result, len(text) + len(scrubbed.value or "") + 64)
            return scrubbed, removed_by
        self._remember(cache_key, _UNCHANGED, len(text) + 64)
        return None, None

    def _remember(self, cache_key: _CacheKey, result: _Cached, size: int) -> None:
        values = self.values
        values[cache_key] = result
        self._value_chars += size
        while len(values) > VALUE_CACHE_ENTRIES or self._value_chars > VALUE_CACHE_CHARS:
            (_, _, old, _), old_result = values.popitem(last=False)
            self._value_chars -= len(old) + len(old_result[0] or "") + 64

    @property
    def is_empty(self) -> bool:
        """True when no application has any rule (scrubbing would change nothing)."""
        return not any(app.rules for app in self.applications)

    # -- free-form documents (JSON attachments) -------------------------------------------------

    def bound_caches(self) -> None:
        """Forget the path signatures once there are too many (call before a document)."""
        if len(self._states) > _MAX_SIGNATURES:
            self._reset_caches()

    def string_field(self, parent: int, key: str) -> int:
        """Signature of the field `key` under `parent` (ROOT_SIGNATURE at the top), typed
        as a string: scrubbed JSON documents pretend every value is one."""
        return self._sig(parent, key, None, STRING)

    def scrub_text(self, sig: int, key: str | None, text: str) -> str | None:
        """Run the rules of PII-able field `sig` (named `key`) on a string.

        Returns the new text (`text` itself when nothing changed) or None when a rule
        removes the value. Like Relay, "", "true", "false", "null" and "undefined" are
        never scrubbed.
        """
        if text in _SKIP_STRINGS:
            return text
        plan = self._plan_for(sig, Pii.TRUE)
        if plan is None:
            return text
        key_class = plan.key_class(key)
        if len(text) > VALUE_CACHE_MAX_LEN:
            if plan.cannot_change(text, key_class):
                return text
            fresh = Scrubbed(text, [])
            removed_by = plan.scrub(key_class, fresh)
            scrubbed: Scrubbed | None = fresh
        else:
            scrubbed, removed_by = self.cached_scrub(plan, text, key, key_class, (), None)
        if removed_by is not None:
            return None
        if scrubbed is None or not scrubbed.changed or scrubbed.value is None:
            return text
        return scrubbed.value

    # -- signatures ------------------------------------------------------------------------

    def _sig(self, parent: int, key: str | None, index: int | None, vt: int) -> int:
        raw = (parent, key, index, vt)
        sig = self._fast.get(raw)
        if sig is None:
            sig = self._fast[raw] = self._sig_slow(parent, key, index, vt)
        return sig

    def _sig_slow(self, parent: int, key: str | None, index: int | None, vt: int) -> int:
        if key is not None:
            low = ascii_lower(key)
            norm: object = low if low in self._keys else _OTHER_KEY
        elif index is not None:
            norm = index if index in self._indices else -1
        else:
            norm = None
        ident = (parent, norm, vt)
        sig = self._intern.get(ident)
        if sig is None:
            sig = len(self._states)
            state: State = (
                norm if isinstance(norm, str) else None,
                norm if isinstance(norm, int) else None,
                vt,
            )
            self._states.append((parent, state))
            self._intern[ident] = sig
        return sig

    def _rules_for(self, sig: int, pii: int) -> tuple[RuleRef, ...]:
        plan = self._plan_for(sig, pii)
        return plan.rules if plan is not None else ()

    def _plan_for(self, sig: int, pii: int) -> Plan | None:
        cache_key = sig * 4 + pii
        try:
            return self._plans[cache_key]
        except KeyError:
            pass
        states: list[State] = []
        cursor = sig
        while cursor != -1:
            parent, state = self._states[cursor]
            states.append(state)
            cursor = parent
        states.reverse()
        level = Pii(pii)
        collected: list[RuleRef] = []
        for app in self.applications:
            if app.rules and matches_path(app.selector, states, level):
                collected.extend(app.rules)
        found: Plan | None = None
        if collected:
            # Interned by rule identity: equal rule lists share one plan (and cache id).
            ident = tuple(id(r) for r in collected)
            found = self._interned.get(ident)
            if found is None:
                found = self._interned[ident] = Plan(tuple(collected))
        self._plans[cache_key] = found
        return found

    # -- public ----------------------------------------------------------------------------

    def process_event(self, event: dict[str, Any]) -> None:
        """Scrub an event (or transaction) dict in place, writing remarks into `_meta`."""
        self.process_root(event, sc.EVENT)

    def process_root(self, payload: dict[str, Any], node: sc.Node) -> None:
        """Scrub any schema root (event, replay, ...) in place."""
        if self.is_empty:
            return
        if len(self._states) > _MAX_SIGNATURES:
            # Bound memory for adversarial key variety; signatures are only a cache.
            self._reset_caches()
        meta = payload.get("_meta")
        walk = _Walk(self, payload, meta if isinstance(meta, dict) else None)
        walk.struct(node, payload, 0, walk.meta_root, Pii.FALSE, None)
        if walk.meta_root:
            payload["_meta"] = walk.meta_root

    def process_item(
        self, payload: dict[str, Any], node: sc.Node, *, attribute_values_only: bool
    ) -> None:
        """Scrub an EAP item (a log, a V2 span) in place, writing remarks into `_meta`.

        Like Relay, the item is entered as a field named "" of the item's value type, so
        `$log.body` or `$span.attributes.*` address it. With `attribute_values_only`
        (how Relay applies datascrubbingSettings), an attribute is identified with its
        value: `attributes.password` reaches the value; otherwise (piiConfig) attributes
        are objects and `attributes.password.value` does.
        """
        if self.is_empty:
            return
        if len(self._states) > _MAX_SIGNATURES:
            self._reset_caches()
        meta = payload.pop("_meta", None)
        walk = _Walk(self, payload, meta if isinstance(meta, dict) else None)
        walk.values_only = attribute_values_only
        top = self._sig(ROOT_SIGNATURE, "", None, node.vt)
        # The root field has no PII level of its own (nothing can delete the item).
        walk.children(node, payload, top, walk.meta_root, Pii.FALSE, None)
        if walk.meta_root:
            payload["_meta"] = walk.meta_root


class _Walk:
    """One traversal of one payload; keeps the `_meta` path for writing remarks."""

    __slots__ = (
        "fast",
        "meta_root",
        "path",
        "plan_for",
        "plans",
        "proc",
        "rules_for",
        "sig",
        "values",
        "values_only",
    )

    def __init__(self, proc: PiiProcessor, payload: dict[str, Any], meta: MetaNode) -> None:
        self.proc = proc
        self.meta_root: dict[str, Any] = meta if meta is not None else {}
        self.path: list[str] = []
        self.sig = proc._sig
        # The processor's signature and plan caches, read inline on the hot path (a
        # method call per field costs more than the lookup itself).
        self.fast = proc._fast
        self.plans = proc._plans
        self.rules_for = proc._rules_for
        self.plan_for = proc._plan_for
        self.values = proc.values
        #: Attributes are identified with their values (datascrubbingSettings on EAP items).
        self.values_only = False

    # -- meta --------------------------------------------------------------------------------

    def _meta_entry(self, key: str) -> dict[str, Any]:
        node = self.meta_root
        for part in self.path:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        entry = child.get("")
        if not isinstance(entry, dict):
            entry = child[""] = {}
        return entry

    def _write(self, key: str, scrubbed: Scrubbed | None, removed_by: str | None) -> None:
        entry = self._meta_entry(key)
        if scrubbed is not None:
            remarks = scrubbed.remarks
            if scrubbed.length is not None and "len" not in entry:
                entry["len"] = scrubbed.length
        else:
            remarks = list(entry.get("rem") or ())
        if removed_by is not None:
            remarks = [*remarks, [removed_by, "x"]]
        if remarks:
            entry["rem"] = remarks
        else:
            entry.pop("rem", None)

    # -- dispatch ----------------------------------------------------------------------------

    def visit(
        self,
        node: sc.Node,
        holder: Any,
        hkey: Any,
        value: Json,
        parent: int,
        key: str | None,
        index: int | None,
        mnode: MetaNode,
        pii: int,
        dyn: tuple[str, ...] | None,
    ) -> None:
        if mnode is not None:
            entry = mnode.get("")
            if isinstance(entry, dict) and isinstance(entry.get("val"), str):
                self.original_value(entry, node, value, parent, key, index, pii, dyn)
        elif node is sc.VALUE and dyn is None:
            # Plain JSON without `_meta` (frame vars, extra, request data): the lean walker.
            if value is not None:
                self.json_value(holder, hkey, value, parent, key, index, pii)
            return
        if value is None:
            return
        kind = node.kind
        if kind == sc.K_STRING and dyn is None and type(value) is str:
            # The most common field: a schema string (the general path below, shortened).
            if pii and value not in _SKIP_STRINGS:
                sig = self.fast.get((parent, key, index, node.vt))
                if sig is None:
                    sig = self.sig(parent, key, index, node.vt)
                self.string(holder, hkey, value, sig, key, mnode, pii)
            return
        # Arbitrary JSON, or a value whose JSON type does not fit the schema (input not in
        # Relay's canonical shape): type it by its JSON type, as Relay types a `Value`.
        if (
            kind == sc.K_VALUE
            or ((kind == sc.K_STRING or kind == sc.K_PATH) and not isinstance(value, str))
            or (
                kind in (sc.K_STRUCT, sc.K_OBJECT, sc.K_CONTEXTS, sc.K_TAGGED, sc.K_ATTRIBUTES)
                and not isinstance(value, dict)
            )
            or (kind == sc.K_ARRAY and not isinstance(value, list))
        ):
            node = _json_node(value)
            kind = node.kind
        if dyn is not None:
            pii = self._dynamic_pii(dyn, key)
            if key is not None:
                # Children look up conventions by the nearest keys (innermost first).
                dyn = (dyn[0], key, *dyn[1:])
        vt = node.vt
        if kind == sc.K_CONTEXTS or kind == sc.K_TAGGED:
            vt = self._variant_vt(node, value)
        sig = self.fast.get((parent, key, index, vt))
        if sig is None:
            sig = self.sig(parent, key, index, vt)
        if kind == sc.K_STRING:
            if pii and value not in _SKIP_STRINGS:
                self.string(holder, hkey, value, sig, key, mnode, pii)
            return
        if kind == sc.K_BOOL:
            return
        if kind == sc.K_PATH:
            if pii:
                self.native_path(holder, hkey, value, sig, key, mnode, pii)
            return
        # Containers, numbers and opaque values: rules can only delete them.
        if pii and self.container(holder, hkey, sig, key, pii):
            return
        if kind == sc.K_NUMBER or kind == sc.K_OPAQUE:
            return
        if kind == sc.K_WRAP:
            # A newtype re-declaring the PII level: its content is checked once more.
            assert node.item is not None and node.pii is not None
            pii = node.pii
            if pii and self.container(holder, hkey, sig, key, pii):
                return
            node = node.item
        self.path.append(str(hkey))
        try:
            self.children(node, value, sig, mnode, pii, dyn)
        finally:
            self.path.pop()

    def json_value(
        self,
        holder: Any,
        hkey: Any,
        value: Json,
        parent: int,
        key: str | None,
        index: int | None,
        pii: int,
    ) -> None:
        """`visit` specialized to arbitrary JSON with no `_meta` below (same result)."""
        if type(value) is str:
            if pii and value not in _SKIP_STRINGS:
                sig = self.fast.get((parent, key, index, STRING))
                if sig is None:
                    sig = self.sig(parent, key, index, STRING)
                self.string(holder, hkey, value, sig, key, None, pii)
            return
        if type(value) is dict:
            sig = self.sig(parent, key, index, OBJECT)
            if pii and self.container(holder, hkey, sig, key, pii):
                return
            path = self.path
            path.append(str(hkey))
            json_value = self.json_value
            for k, v in value.items():
                if v is not None:
                    json_value(value, k, v, sig, k, None, pii)
            path.pop()
            return
        if type(value) is list:
            sig = self.sig(parent, key, index, ARRAY)
            if pii and self.container(holder, hkey, sig, key, pii):
                return
            path = self.path
            path.append(str(hkey))
            if _is_pairlist(value):
                self.pairs(sc.VALUE, value, sig, None, pii, None)
            else:
                json_value = self.json_value
                for i, v in enumerate(value):
                    if v is not None:
                        json_value(value, i, v, sig, None, i, pii)
            path.pop()
            return
        if type(value) is bool or not pii:
            return
        # Numbers (and anything else Relay would type as a number): only deletable.
        self.container(holder, hkey, self.sig(parent, key, index, NUMBER), key, pii)

    def original_value(
        self,
        entry: dict[str, Any],
        node: sc.Node,
        value: Json,
        parent: int,
        key: str | None,
        index: int | None,
        pii: int,
        dyn: tuple[str, ...] | None,
    ) -> None:
        """Scrub `_meta` `val` (the original of a value normalization replaced), so it can't leak.

        Relay treats it as a string child of the field, under the field's own key.
        """
        if dyn is not None:
            pii = self._dynamic_pii(dyn, key)
        if not pii or entry["val"] == "":
            # Relay applies the rules to the original directly (not through its string
            # processing, which skips "true"/"null"/...); an empty text has nothing to redact.
            return
        vt = _json_node(value).vt if value is not None else 0
        if value is not None and node.kind not in (sc.K_VALUE,):
            vt = node.vt
        here = self.sig(parent, key, index, vt)
        sig = self.sig(here, key if key is not None else "", None, STRING)
        scrubbed, removed_by = self._scrub(
            entry["val"], sig, key if key is not None else "", None, pii
        )
        if scrubbed is None:
            return
        if removed_by is not None:
            del entry["val"]
        elif scrubbed.changed:
            entry["val"] = scrubbed.value

    def _dynamic_pii(self, dyn: tuple[str, ...], key: str | None) -> int:
        # "span": span data (the nearest key decides); otherwise attributes, where the
        # innermost key that sentry-conventions knows decides.
        mode = dyn[0]
        keys = dyn[1:]
        if mode == "span":
            nearest = key if key is not None else (keys[0] if keys else None)
            if nearest is None:
                return Pii.TRUE
            found = attribute_scrubbing(nearest)
            return Pii.TRUE if found is None else found
        candidates = ((key,) if key is not None else ()) + keys
        for candidate in candidates:
            found = attribute_scrubbing(candidate)
            if found is not None:
                return found
        return Pii.TRUE

    @staticmethod
    def _variant_vt(node: sc.Node, value: Json) -> int:
        if node.kind == sc.K_CONTEXTS:
            return node.vt
        variant = value.get("type") if isinstance(value, dict) else None
        if isinstance(variant, str) and variant in node.variants:
            return node.variants[variant].vt
        return OBJECT

    def container(self, holder: Any, hkey: Any, sig: int, key: str | None, pii: int) -> bool:
        """Container/number check (Relay's `before_process`); True if the value was removed."""
        plan = self.plans.get(sig * 4 + pii, _NO_PLAN)
        if plan is _NO_PLAN:
            plan = self.plan_for(sig, pii)
        if plan is None:
            return False
        origin = plan.removal(key)
        if origin is None:
            return False
        holder[hkey] = None
        self._write(str(hkey), None, origin)
        self._drop_child_meta(str(hkey))
        return True

    def _drop_child_meta(self, key: str) -> None:
        # A removed container takes the `_meta` of its children with it (as in Relay).
        node = self.meta_root
        for part in self.path:
            node = node[part]
        entry = node[key]
        for child in [k for k in entry if k != ""]:
            del entry[child]

    def _scrub(
        self, text: str, sig: int, key: str | None, mnode: MetaNode, pii: int
    ) -> tuple[Scrubbed | None, str | None]:
        """Run the rules of `sig` on `text`: (None, None) when nothing changes."""
        plan = self.plan_for(sig, pii)
        if plan is None:
            return None, None
        key_class = plan.key_class(key)
        entry = mnode.get("") if mnode else None
        prior = entry.get("rem") if isinstance(entry, dict) else None
        if type(prior) is not list:  # client _meta the normalizer did not vet
            prior = None
        # The result is a function of (plan, key class, text, earlier remarks).
        prior_key = _remarks_key(prior) if prior else ()
        if prior_key is None or len(text) > VALUE_CACHE_MAX_LEN:
            if plan.cannot_change(text, key_class):
                return None, None
            scrubbed = Scrubbed(text, list(prior or ()))
            return scrubbed, plan.scrub(key_class, scrubbed)
        return self.proc.cached_scrub(plan, text, key, key_class, prior_key, prior)

    def string(
        self,
        holder: Any,
        hkey: Any,
        value: str,
        sig: int,
        key: str | None,
        mnode: MetaNode,
        pii: int,
    ) -> None:
        if mnode is None and len(value) <= VALUE_CACHE_MAX_LEN:
            # `_scrub` inlined for the common case: no `_meta`, a cacheable length.
            plan = self.plans.get(sig * 4 + pii, _NO_PLAN)
            if plan is _NO_PLAN:
                plan = self.plan_for(sig, pii)
            if plan is None:
                return
            scrubbed, removed_by = self.proc.cached_scrub(
                plan, value, key, plan.key_class(key), (), None
            )
        else:
            scrubbed, removed_by = self._scrub(value, sig, key, mnode, pii)
        if scrubbed is None:
            return
        if removed_by is not None:
            holder[hkey] = None
            self._write(str(hkey), scrubbed, removed_by)
        elif scrubbed.changed:
            holder[hkey] = scrubbed.value
            self._write(str(hkey), scrubbed, None)

    def native_path(
        self,
        holder: Any,
        hkey: Any,
        value: str,
        sig: int,
        key: str | None,
        mnode: MetaNode,
        pii: int,
    ) -> None:
        # The basename must survive (symbolication needs it): scrub only the directory.
        cut = max(value.rfind("/"), value.rfind("\\"))
        if cut < 0:
            return
        dirname, basename = value[:cut], value[cut:]
        if dirname in _SKIP_STRINGS:
            return
        scrubbed, removed_by = self._scrub(dirname, sig, key, mnode, pii)
        if scrubbed is None:
            return
        if removed_by is not None:
            holder[hkey] = basename[1:]
            self._write(str(hkey), scrubbed, removed_by)
        elif scrubbed.changed:
            holder[hkey] = (scrubbed.value or "") + basename
            self._write(str(hkey), scrubbed, None)

    # -- containers --------------------------------------------------------------------------

    def children(
        self,
        node: sc.Node,
        value: Json,
        sig: int,
        mnode: MetaNode,
        pii: int,
        dyn: tuple[str, ...] | None,
    ) -> None:
        kind = node.kind
        if kind == sc.K_STRUCT:
            self.struct(node, value, sig, mnode, pii, dyn)
        elif kind == sc.K_OBJECT:
            item = node.item
            assert item is not None
            visit = self.visit
            if mnode is None:
                for k, v in value.items():
                    visit(item, value, k, v, sig, k, None, None, pii, dyn)
                return
            for k, v in value.items():
                visit(item, value, k, v, sig, k, None, _child(mnode, k), pii, dyn)
        elif kind == sc.K_ARRAY:
            item = node.item
            assert item is not None
            if item is sc.VALUE and _is_pairlist(value):
                self.pairs(sc.VALUE, value, sig, mnode, pii, dyn)
                return
            visit = self.visit
            if mnode is None:
                for i, v in enumerate(value):
                    visit(item, value, i, v, sig, None, i, None, pii, dyn)
                return
            for i, v in enumerate(value):
                visit(item, value, i, v, sig, None, i, _child(mnode, str(i)), pii, dyn)
        elif kind == sc.K_PAIRS:
            item = node.item
            assert item is not None
            if isinstance(value, dict):
                for k, v in value.items():
                    if v is not None:
                        self.visit(item, value, k, v, sig, k, None, _child(mnode, k), pii, dyn)
            elif isinstance(value, list):
                self.pairs(item, value, sig, mnode, pii, dyn)
        elif kind == sc.K_CONTEXTS:
            for k, ctx in value.items():
                if not isinstance(ctx, dict):
                    continue
                variant = ctx.get("type")
                target = node.variants.get(variant) if isinstance(variant, str) else None
                self.visit(
                    target or node.fallback or sc.VALUE,
                    value,
                    k,
                    ctx,
                    sig,
                    k,
                    None,
                    _child(mnode, k),
                    Pii.FALSE,
                    None,
                )
        elif kind == sc.K_ATTRIBUTES:
            self.attributes(value, sig, mnode, pii)
        elif kind == sc.K_TAGGED:
            variant = value.get("type")
            target = node.variants.get(variant) if isinstance(variant, str) else None
            if target is None:
                assert node.fallback is not None
                self.children(node.fallback, value, sig, mnode, pii, dyn)
            else:
                self.struct(target, value, sig, mnode, pii, dyn, skip_type=True)

    def attributes(self, value: dict[str, Json], sig: int, mnode: MetaNode, pii: int) -> None:
        """EAP attributes: `{name: {"type": ..., "value": ..., ...}}`.

        Each value's PII level comes from sentry-conventions (unknown names: true). In
        object mode an attribute is a struct (only its `value` is PII-able, as the other
        fields are not); in values-only mode the value stands at the attribute's place
        and the attribute's extra fields are visited as if they were attributes too.
        """
        path = self.path
        for k, attr in value.items():
            attr_meta = _child(mnode, k)
            if not isinstance(attr, dict):
                # Not an attribute (Relay would reject it): scrub it as plain JSON, so
                # that nothing slips through unscrubbed.
                if attr is not None:
                    self.visit(sc.VALUE, value, k, attr, sig, k, None, attr_meta, pii, None)
                continue
            dyn: tuple[str, ...]
            if self.values_only:
                parent, key, dyn = sig, k, ("attr",)
            else:
                # The attribute is a struct without a value type; rules can delete it whole.
                parent, key, dyn = self.sig(sig, k, None, 0), "value", ("attr", k)
                if pii and self.container(value, k, parent, k, pii):
                    continue
            path.append(k)
            try:
                inner = attr.get("value")
                self.visit(
                    sc.VALUE, attr, "value", inner, parent, key, None,
                    _child(attr_meta, "value"), Pii.TRUE, dyn,
                )  # fmt: skip
                # No `continue` here: mypyc cannot compile one inside try/finally.
                if self.values_only:
                    for ok, ov in attr.items():
                        if ok != "type" and ok != "value" and ov is not None:
                            meta = _child(attr_meta, ok)
                            self.visit(sc.VALUE, attr, ok, ov, sig, ok, None, meta, pii, None)
            finally:
                path.pop()

    def pairs(
        self,
        item: sc.Node,
        value: list[Json],
        sig: int,
        mnode: MetaNode,
        pii: int,
        dyn: tuple[str, ...] | None,
    ) -> None:
        for i, pair in enumerate(value):
            if not (isinstance(pair, list) and len(pair) == 2):
                continue
            k, v = pair
            pmeta = _child(_child(mnode, str(i)), "1")
            self.path.append(str(i))
            try:
                if isinstance(k, str):
                    self.visit(item, pair, 1, v, sig, k, None, pmeta, pii, dyn)
                else:
                    self.visit(item, pair, 1, v, sig, None, i, pmeta, pii, dyn)
            finally:
                self.path.pop()

    def struct(
        self,
        node: sc.Node,
        value: dict[str, Json],
        sig: int,
        mnode: MetaNode,
        pii: int,
        dyn: tuple[str, ...] | None,
        skip_type: bool = False,
    ) -> None:
        del pii, dyn
        fields = node.fields
        other = node.other
        inert = _inert_fields(node)
        user_ip_valid = False
        if node.is_user:
            ip = value.get("ip_address")
            user_ip_valid = ip is None or _is_valid_ip(ip)
        visit = self.visit
        for k, v in list(value.items()):
            if (skip_type and k == "type") or (sig == 0 and k == "_meta"):
                continue
            child_meta = None if mnode is None else _child(mnode, k)
            spec = fields.get(k)
            if spec is not None:
                if child_meta is None and k in inert:
                    continue
                child, child_pii = spec
                visit(child, value, k, v, sig, k, None, child_meta, child_pii, None)
            elif other is not None:
                if other >= sc.DYN_SPAN_DATA:
                    visit(sc.VALUE, value, k, v, sig, k, None, child_meta, Pii.TRUE, ("span",))
                else:
                    visit(sc.VALUE, value, k, v, sig, k, None, child_meta, other, None)
        if node.is_user and user_ip_valid:
            self._user_ip(value)

    def _user_ip(self, user: dict[str, Any]) -> None:
        # An IP that scrubbing made invalid moves into the user id (keeps user counts right).
        if user.get("id") is not None or user.get("username") is not None:
            return
        if user.get("email") is not None:
            return
        ip = user.get("ip_address")
        if ip is None or _is_valid_ip(ip):
            return
        user["id"] = ip
        user["ip_address"] = None
        owner = self.meta_root
        for part in self.path:
            child = owner.get(part)
            if not isinstance(child, dict):
                child = owner[part] = {}
            owner = child
        moved = owner.pop("ip_address", None)
        if moved is not None:
            owner["id"] = moved
        else:
            owner.pop("id", None)
        owner["ip_address"] = {"": {"rem": [["pii:ip_address", "x"]]}}


# A cached string result: (new value, remarks, original length, removing rule, changed).
_Cached = tuple[str | None, tuple[tuple[Any, ...], ...], int | None, str | None, bool]
_UNCHANGED: Final[_Cached] = (None, (), None, None, False)
_NO_PLAN: Final[Any] = object()  # not looked up yet (None: no rule applies)
_CacheKey = tuple[int, int, str, tuple[tuple[object, ...], ...]]


def _remarks_key(remarks: object) -> tuple[tuple[object, ...], ...] | None:
    """Hashable form of incoming remarks; None if they hold anything unusual."""
    if not isinstance(remarks, list):
        return None
    out = []
    for remark in remarks:
        if not isinstance(remark, list):
            return None
        for part in remark:
            if type(part) is not str and type(part) is not int:  # not bool, float
                return None
        out.append(tuple(remark))
    return tuple(out)


_LEAF_KINDS: Final = frozenset(
    (sc.K_STRING, sc.K_NUMBER, sc.K_BOOL, sc.K_OPAQUE, sc.K_PATH, sc.K_VALUE)
)
_INERT: Final[dict[int, frozenset[str]]] = {}


def _inherits_only(node: sc.Node) -> bool:
    """True if every value below `node` takes its PII level from `node` itself."""
    if node.kind in _LEAF_KINDS:
        return True
    if node.kind in (sc.K_ARRAY, sc.K_OBJECT, sc.K_PAIRS):
        return node.item is not None and _inherits_only(node.item)
    return False


def _inert_fields(node: sc.Node) -> frozenset[str]:
    """Fields of a struct that no rule can reach: PII level `false` all the way down.

    Without `_meta` below them (no original value to scrub) the walk can skip them.
    """
    found = _INERT.get(id(node))
    if found is None:
        found = frozenset(
            k
            for k, (child, pii) in node.fields.items()
            if pii == Pii.FALSE and _inherits_only(child)
        )
        _INERT[id(node)] = found
    return found


def _child(mnode: MetaNode, key: str) -> MetaNode:
    if mnode is None:
        return None
    child = mnode.get(key)
    return child if isinstance(child, dict) else None
