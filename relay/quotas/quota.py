"""The quota model of project configs (``config.quotas``) and the scoping it is matched against.

A quota counts data of some categories within one scope (organization, project or DSN key)
over a time window. ``limit: 0`` rejects matching data outright and needs no counter; a missing
``limit`` counts without limiting. Quotas this Relay version cannot enforce correctly are
dropped when a config is read (:func:`parse_quotas`), exactly the set Relay drops, so that two
relays of different versions never disagree about which quotas apply.

Reference: ``relay-quotas/src/quota.rs`` (semantics only; this is an independent implementation).
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from relay.protocol.items import DataCategory

__all__ = [
    "ANY_NAMESPACE",
    "METRIC_NAMESPACES",
    "CategoryUnit",
    "GroupBy",
    "ItemScoping",
    "Quota",
    "QuotaScope",
    "Scoping",
    "category_unit",
    "parse_quotas",
]

log = logging.getLogger(__name__)


class QuotaScope(enum.Enum):
    """The kind of scope a quota counts in; unknown names become ``UNKNOWN``."""

    ORGANIZATION = "organization"
    PROJECT = "project"
    KEY = "key"
    UNKNOWN = "unknown"

    @classmethod
    def from_name(cls, name: str) -> QuotaScope:
        """Parse a scope name; anything unrecognised is ``UNKNOWN``."""
        try:
            return cls(name)
        except ValueError:
            return cls.UNKNOWN


class CategoryUnit(enum.Enum):
    """What a category's quantity measures; a counted quota must not mix units."""

    COUNT = "count"
    BYTES = "bytes"
    MILLISECONDS = "milliseconds"


_BYTE_CATEGORIES: Final = frozenset(
    {DataCategory.ATTACHMENT, DataCategory.LOG_BYTE, DataCategory.TRACE_METRIC_BYTE}
)
_MS_CATEGORIES: Final = frozenset({DataCategory.PROFILE_DURATION, DataCategory.PROFILE_DURATION_UI})


def category_unit(category: DataCategory) -> CategoryUnit | None:
    """The unit of a category's quantity, or None for ``UNKNOWN``."""
    if category == DataCategory.UNKNOWN:
        return None
    if category in _BYTE_CATEGORIES:
        return CategoryUnit.BYTES
    if category in _MS_CATEGORIES:
        return CategoryUnit.MILLISECONDS
    return CategoryUnit.COUNT


#: Metric namespaces a quota or rate limit can name. Any other name is read as "unsupported",
#: which makes a quota invalid.
METRIC_NAMESPACES: Final = frozenset({"sessions", "spans", "transactions", "outcomes"})
_UNSUPPORTED_NAMESPACE: Final = "unsupported"


class _AnyNamespace:
    """Sentinel: an item scoping that matches limits of every metric namespace."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY_NAMESPACE"


#: Use as :attr:`ItemScoping.namespace` to match namespaced limits of every namespace.
ANY_NAMESPACE: Final = _AnyNamespace()

#: The dimensions a quota may group by; any other makes the quota invalid.
_KNOWN_DIMENSIONS: Final = frozenset({"checkInEnvironment", "checkInSlug"})


@dataclass(frozen=True, slots=True)
class Scoping:
    """Who data belongs to: organization, project, DSN key and the key's numeric id."""

    organization_id: int
    project_id: int
    project_key: str
    key_id: int | None = None

    def item(
        self, category: DataCategory, namespace: str | _AnyNamespace | None = None
    ) -> ItemScoping:
        """The scoping of items of one data category (and metric namespace) in this scope."""
        return ItemScoping(category, self, namespace)


@dataclass(frozen=True, slots=True)
class ItemScoping:
    """A data category within a :class:`Scoping`, the unit that quotas and limits match."""

    category: DataCategory
    scoping: Scoping
    #: Metric namespace of metric buckets; ``None`` for every other kind of item.
    namespace: str | _AnyNamespace | None = None

    def scope_id(self, scope: QuotaScope) -> int | None:
        """The id this scoping has at ``scope`` (None for unknown scopes or a missing key id)."""
        if scope is QuotaScope.ORGANIZATION:
            return self.scoping.organization_id
        if scope is QuotaScope.PROJECT:
            return self.scoping.project_id
        if scope is QuotaScope.KEY:
            return self.scoping.key_id
        return None

    def matches_categories(self, categories: frozenset[DataCategory]) -> bool:
        """An empty category set matches everything; otherwise the category must be listed."""
        return not categories or self.category in categories

    def matches_namespaces(self, namespaces: Iterable[str]) -> bool:
        """No namespaces match everything; otherwise the item needs a listed namespace."""
        names = tuple(namespaces)
        if not names:
            return True
        if self.namespace is None:
            return False
        if isinstance(self.namespace, _AnyNamespace):
            return True
        return self.namespace in names


class GroupBy(msgspec.Struct, rename="camel", frozen=True):
    """Extra dimensions a quota counts by (monitor check-ins), with a cardinality cap."""

    max_cardinality: int
    dimensions: list[str]


class Quota(msgspec.Struct, rename="camel", omit_defaults=True, dict=True):
    """One entry of a project config's ``quotas`` list, with Relay's field names and defaults.

    Fields keep their wire form (category names stay strings) so that a config re-serialises
    unchanged for downstream relays; the parsed forms are cached properties.
    """

    id: str | None = None
    categories: list[str] = msgspec.field(default_factory=list)
    scope: str = "organization"
    scope_id: str | None = None
    limit: int | None = None
    window: int | None = None
    namespace: str | None = None
    reason_code: str | None = None
    group_by: GroupBy | None = None

    @functools.cached_property
    def category_set(self) -> frozenset[DataCategory]:
        """The categories as a set; unknown names become ``DataCategory.UNKNOWN``."""
        return frozenset(DataCategory.from_name(name) for name in self.categories)

    @functools.cached_property
    def scope_kind(self) -> QuotaScope:
        """``scope`` parsed; unknown scope names are ``QuotaScope.UNKNOWN``."""
        return QuotaScope.from_name(self.scope)

    @functools.cached_property
    def namespace_name(self) -> str | None:
        """``namespace`` normalised: unknown names read as "unsupported", as Relay reads them."""
        if self.namespace is None:
            return None
        return self.namespace if self.namespace in METRIC_NAMESPACES else _UNSUPPORTED_NAMESPACE

    @functools.cached_property
    def _scope_id_int(self) -> int | None:
        # A scope id that is not an unsigned integer can never be satisfied: -1 marks it.
        if self.scope_id is None:
            return None
        text = self.scope_id
        return int(text) if text.isascii() and text.isdigit() else -1

    @property
    def is_reject_all(self) -> bool:
        """``limit: 0``: rejects matching data without counting it."""
        return self.limit == 0

    def is_valid(self) -> bool:
        """Whether this Relay can enforce the quota; invalid quotas are ignored entirely.

        Invalid are: an unsupported namespace; a ``groupBy`` with no or unknown dimensions;
        categories that are all unknown; and counted quotas (limit not 0) that apply to all
        categories or mix units (errors and attachment bytes cannot share a counter).
        """
        if self.namespace_name == _UNSUPPORTED_NAMESPACE:
            return False
        if self.group_by is not None:
            dims = self.group_by.dimensions
            if not dims or any(d not in _KNOWN_DIMENSIONS for d in dims):
                return False
        if (self.limit is not None and self.limit < 0) or (self.window or 0) < 0:
            # Relay reads both as unsigned: a negative value is a quota it cannot parse.
            return False
        units = {u for u in map(category_unit, self.category_set) if u is not None}
        if not units:
            # Either only unknown categories (never valid), or no categories: only a reject-all
            # quota may apply to every category.
            return not self.categories and self.limit == 0
        return self.limit == 0 or len(units) == 1

    def matches(self, item: ItemScoping) -> bool:
        """Whether this quota applies to items of ``item``'s scope, category and namespace.

        A ``scopeId`` constrains the quota to one organization/project/key; an unparseable
        one matches nothing. Quotas with ``groupBy`` need dimensions, which envelope items do
        not carry, so they never match here.
        """
        scope_id = self._scope_id_int
        if scope_id is not None and item.scope_id(self.scope_kind) != scope_id:
            return False
        if not item.matches_categories(self.category_set):
            return False
        ns = self.namespace_name
        if ns is not None and not item.matches_namespaces((ns,)):
            return False
        return self.group_by is None


_quota_list_decoder: Final = msgspec.json.Decoder(list[msgspec.Raw])


def parse_quotas(raw: Any) -> list[Quota]:
    """The valid quotas of a config's ``quotas`` value (a list of dicts, or JSON bytes).

    Each entry is decoded on its own: a malformed or invalid quota is skipped with a debug log,
    never failing the others, since upstreams may send quota kinds newer than this Relay.
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            entries: list[Any] = list(_quota_list_decoder.decode(raw))
        except msgspec.DecodeError:
            return []
        decode = _decode_raw
    elif isinstance(raw, list):
        entries = raw
        decode = _convert
    else:
        return []
    out = []
    for entry in entries:
        quota = decode(entry)
        if quota is None:
            continue
        if quota.is_valid():
            out.append(quota)
        else:
            log.debug("ignoring invalid quota %r", entry)
    return out


def _convert(entry: Any) -> Quota | None:
    try:
        return msgspec.convert(entry, Quota)
    except msgspec.ValidationError as exc:
        log.debug("ignoring malformed quota %r: %s", entry, exc)
        return None


def _decode_raw(entry: Any) -> Quota | None:
    try:
        return msgspec.json.decode(entry, type=Quota)
    except msgspec.DecodeError as exc:
        log.debug("ignoring malformed quota: %s", exc)
        return None
