"""Relay's rule-condition language (``relay-protocol`` ``RuleCondition``), compiled once.

A condition is JSON with an ``op``: ``eq``, ``gt``/``gte``/``lt``/``lte``, ``glob``, ``cidr``,
``release``, ``and``/``or``/``not`` and ``any``/``all`` over arrays. Fields are read through a
``Getter`` (``event.release``, ``envelope.client_ip``, ...). Unknown or malformed conditions
compile to a condition that never matches, like Relay's ``Unsupported`` variant.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from relay.filters.glob import Patterns
from relay.filters.release import compare_releases, parse_release

__all__ = ["Condition", "Getter", "compile_condition", "condition_supported"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Getter(Protocol):
    """Field access for conditions; values are str, bool, int, float, or IP addresses."""

    def get_value(self, path: str) -> Any: ...

    def get_iter(self, path: str) -> Iterable[Getter] | None: ...


Condition = Callable[[Getter], bool]


def _never(_: Getter) -> bool:
    return False


def _always(_: Getter) -> bool:
    return True


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compile_eq(name: str, expected: Any, options: Any) -> Condition:
    ignore_case = isinstance(options, Mapping) and options.get("ignoreCase") is True

    def norm(s: str) -> str:
        return s.casefold() if ignore_case else s

    if expected is None:
        return lambda g: g.get_value(name) is None
    if isinstance(expected, bool):

        def eq_bool(g: Getter) -> bool:
            value = g.get_value(name)
            return isinstance(value, bool) and value is expected

        return eq_bool
    if isinstance(expected, str):
        target = norm(expected)
        try:
            target_ip: IpAddress | None = ipaddress.ip_address(expected)
        except ValueError:
            target_ip = None

        def eq_str(g: Getter) -> bool:
            value = g.get_value(name)
            if isinstance(value, str):
                return norm(value) == target
            if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                return value == target_ip
            return False

        return eq_str
    if isinstance(expected, list):
        targets = {norm(v) for v in expected if isinstance(v, str)}

        def eq_any(g: Getter) -> bool:
            value = g.get_value(name)
            return isinstance(value, str) and norm(value) in targets

        return eq_any
    # Relay compares only strings, booleans, ids and IPs for equality: numbers never match.
    return _never


_COMPARATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _compile_cmp(op: str, name: str, expected: Any) -> Condition:
    compare = _COMPARATORS[op]
    if _is_number(expected):

        def cmp_num(g: Getter) -> bool:
            value = g.get_value(name)
            return _is_number(value) and compare(value, expected)

        return cmp_num
    if isinstance(expected, str):

        def cmp_str(g: Getter) -> bool:
            value = g.get_value(name)
            return isinstance(value, str) and compare(value, expected)

        return cmp_str
    return _never


def _compile_glob(name: str, value: Any) -> Condition:
    if not isinstance(value, list):
        raise ValueError("glob value must be a list")
    patterns = Patterns(value, case_insensitive=True)

    def glob(g: Getter) -> bool:
        field = g.get_value(name)
        return isinstance(field, str) and patterns.is_match(field)

    return glob


def _compile_cidr(name: str, value: Any) -> Condition:
    if not isinstance(value, list):
        raise ValueError("cidr value must be a list")
    networks: list[IpNetwork] = []
    for entry in value:
        if isinstance(entry, str):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue  # Relay skips entries that are neither an address nor a range.

    def cidr(g: Getter) -> bool:
        field = g.get_value(name)
        if isinstance(field, str):
            try:
                field = ipaddress.ip_address(field)
            except ValueError:
                return False
        if not isinstance(field, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return any(field in net for net in networks)

    return cidr


_RELEASE_OPS: Final[dict[str, Callable[[int], bool]]] = {
    "eq": lambda o: o == 0,
    "gt": lambda o: o > 0,
    "gte": lambda o: o >= 0,
    "lt": lambda o: o < 0,
    "lte": lambda o: o <= 0,
}


def _compile_release(name: str, comparator: Any, value: Any) -> Condition:
    check = _RELEASE_OPS.get(comparator) if isinstance(comparator, str) else None
    if check is None or not isinstance(value, str):
        return _never
    reference = value
    parsed = parse_release(reference)
    if parsed is None or compare_releases(reference, reference) is None:
        return _never  # a release without a version never matches

    def release(g: Getter) -> bool:
        field = g.get_value(name)
        if not isinstance(field, str):
            return False
        ordering = compare_releases(reference, field)
        return ordering is not None and check(ordering)

    return release


def compile_condition(raw: Any) -> Condition:
    """Compile a condition; anything unknown or malformed never matches."""
    try:
        return _compile(raw)
    except (ValueError, TypeError, KeyError):
        return _never


def _compile(raw: Any) -> Condition:
    if not isinstance(raw, Mapping):
        return _never
    op = raw.get("op")
    if op in ("and", "or"):
        inner = [_compile(c) for c in raw["inner"]]
        if op == "and":
            return (lambda g: all(c(g) for c in inner)) if inner else _always
        return (lambda g: any(c(g) for c in inner)) if inner else _never
    if op == "not":
        inner_cond = _compile(raw["inner"])
        return lambda g: not inner_cond(g)
    name = raw.get("name")
    if not isinstance(name, str):
        return _never
    if op in ("any", "all"):
        each = _compile(raw["inner"])

        def over(g: Getter) -> bool:
            items = g.get_iter(name)
            if items is None:
                return False
            if op == "any":
                return any(each(item) for item in items)
            return all(each(item) for item in items)

        return over
    if op == "eq":
        return _compile_eq(name, raw["value"], raw.get("options"))
    if op in _COMPARATORS:
        return _compile_cmp(op, name, raw["value"])
    if op == "glob":
        return _compile_glob(name, raw["value"])
    if op == "cidr":
        return _compile_cidr(name, raw["value"])
    if op == "release":
        return _compile_release(name, raw.get("comparator"), raw.get("value"))
    return _never


def condition_supported(raw: Any) -> bool:
    """Whether every part of a condition is one this implementation understands."""
    if not isinstance(raw, Mapping):
        return False
    op = raw.get("op")
    if op in ("and", "or"):
        inner = raw.get("inner")
        return isinstance(inner, list) and all(condition_supported(c) for c in inner)
    if op in ("not", "any", "all"):
        return condition_supported(raw.get("inner"))
    if op == "release":
        value = raw.get("value")
        return (
            raw.get("comparator") in _RELEASE_OPS
            and isinstance(value, str)
            and compare_releases(value, value) is not None
        )
    return op in ("eq", "gt", "gte", "lt", "lte", "glob", "cidr")
