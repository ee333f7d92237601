"""Relay's glob patterns (``relay-pattern``), as used by inbound filters and rule conditions.

Syntax: ``?`` one character, ``*`` any run of characters (no path separator special case),
``[abc]`` / ``[a-z]`` / ``[!a-z]`` classes, ``{a,b}`` alternations (not nested) and ``\\``
escapes. A pattern that reduces to nothing (``""``, ``"{}"``, ``"[]"``) never matches, while
``"{a,}"`` can match the empty string. Invalid patterns are skipped, as Relay does when it
deserializes a pattern list.

Patterns are compiled once into a single Python regular expression per list, so a list of
patterns costs one ``fullmatch`` call per checked value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["GlobError", "Patterns", "glob_to_regex"]


class GlobError(ValueError):
    """A pattern that Relay would reject (and therefore skip)."""


def _escape_class_char(c: str) -> str:
    return "\\" + c if c in "\\]^-[" else c


def _parse_class(pattern: str, i: int) -> tuple[str, int]:
    """Parse a ``[...]`` class starting after ``[``; returns (regex, next index)."""
    n = len(pattern)
    negated = i < n and pattern[i] == "!"
    if negated:
        i += 1
    ranges: list[list[str]] = []
    first = True
    in_range = False
    while True:
        if i >= n:
            raise GlobError("unbalanced character class")
        c = pattern[i]
        i += 1
        if c == "[":
            raise GlobError("invalid character class")
        if c == "]":
            break
        if c == "-":
            if first:
                ranges.append(["-", "-"])
            elif in_range:
                _set_end(ranges[-1], "-")
                in_range = False
            else:
                in_range = True
        else:
            if c == "\\":
                if i >= n:
                    raise GlobError("dangling escape")
                c = pattern[i]
                i += 1
            if in_range:
                _set_end(ranges[-1], c)
                in_range = False
            else:
                ranges.append([c, c])
        first = False
    if in_range:
        # A class ending in `-` keeps the dash as a literal.
        ranges.append(["-", "-"])
    if not ranges:
        # Relay drops empty classes (`[]`, `[!]`) instead of treating them as "match nothing".
        return "", i
    body = "".join(
        _escape_class_char(a) if a == b else f"{_escape_class_char(a)}-{_escape_class_char(b)}"
        for a, b in ranges
    )
    return ("[^" if negated else "[") + body + "]", i


def _set_end(rng: list[str], end: str) -> None:
    if rng[0] > end:
        raise GlobError(f"invalid range {rng[0]}-{end}")
    rng[1] = end


def glob_to_regex(pattern: str) -> str | None:
    """Translate one glob to a regex body; None if it reduces to nothing (never matches).

    Raises ``GlobError`` for patterns Relay rejects.
    """
    out: list[str] = []  # tokens at top level
    alternates: list[list[str]] | None = None
    i = 0
    n = len(pattern)

    def push(token: str) -> None:
        if alternates is not None:
            alternates[-1].append(token)
        else:
            out.append(token)

    while i < n:
        c = pattern[i]
        i += 1
        if c == "?":
            push(".")
        elif c == "*":
            push(".*")
        elif c == "[":
            token, i = _parse_class(pattern, i)
            if token:
                push(token)
        elif c == "]":
            raise GlobError("unbalanced character class")
        elif c == "{":
            if alternates is not None:
                raise GlobError("nested alternates")
            alternates = [[]]
        elif c == "}":
            if alternates is None:
                raise GlobError("unbalanced alternates")
            branches = ["".join(b) for b in alternates]
            alternates = None
            if any(branches):
                out.append("(?:" + "|".join(branches) + ")")
        elif c == "\\":
            if i >= n:
                raise GlobError("dangling escape")
            push(re.escape(pattern[i]))
            i += 1
        elif c == "," and alternates is not None:
            alternates.append([])
        else:
            push(re.escape(c))
    if alternates is not None:
        # Relay leaves an unclosed `{` pending and drops its content at the end of parsing.
        pass
    if not out:
        return None
    return "".join(out)


class Patterns:
    """A compiled list of globs; matches if any pattern matches the whole string."""

    __slots__ = ("_regex", "sources")

    def __init__(self, patterns: Iterable[str], *, case_insensitive: bool = True) -> None:
        bodies: list[str] = []
        sources: list[str] = []
        for pattern in patterns:
            if not isinstance(pattern, str):
                continue
            try:
                body = glob_to_regex(pattern)
            except GlobError:
                continue  # Relay ignores invalid patterns in a list.
            sources.append(pattern)
            if body is not None:
                bodies.append(body)
        self.sources: tuple[str, ...] = tuple(sources)
        flags = re.DOTALL | (re.IGNORECASE if case_insensitive else 0)
        self._regex: re.Pattern[str] | None = (
            re.compile("|".join(f"(?:{b})" for b in bodies), flags) if bodies else None
        )

    def __bool__(self) -> bool:
        return bool(self.sources)

    def is_match(self, value: str) -> bool:
        """Whether any pattern matches all of ``value``."""
        regex = self._regex
        return regex is not None and regex.fullmatch(value) is not None

    def __repr__(self) -> str:
        return f"Patterns({list(self.sources)!r})"
