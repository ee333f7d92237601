"""An estimate of the size of Relay's compiled regex program (its limit rejects patterns).

Relay builds every piiConfig pattern with `size_limit(262_144)`: the Rust `regex` crate
refuses patterns whose compiled automaton would take more memory. We cannot run that
compiler, so this module approximates its size from the pattern's structure:

- each literal costs 32 bytes per UTF-8 byte (`x{8185}` is Relay's largest `x{n}`);
- a class costs in proportion to the UTF-8 byte sequences it expands to, which is why
  Unicode classes are large (Relay accepts `\\w{5}` but not `\\w{6}`);
- an optional copy (`x?`, the tail of `x{1,n}`) costs its body plus 40 bytes.

The constants were fitted against `sentry_relay.validate_pii_config` on single repeated
atoms; for large classes the fit errs low, so a pattern near the limit may be accepted
here while Relay rejects it, never the reverse by much (see the agreement test in
tests/unit/test_pii_validation_parity.py).
"""

from __future__ import annotations

import functools
from typing import Final

import regex

COMPILED_PATTERN_MAX_SIZE: Final = 262_144
# What every program costs before its first atom (Relay's largest `x{n}` leaves this much).
BASE_COST: Final = 224.0
# No class costs more than this (the largest, `\w`, measures about 52,400 bytes).
CLASS_UPPER_BOUND: Final = 60_000.0
# `.` expands to every code point but `\n`: few, but long, UTF-8 sequences.
DOT_COST: Final = 1_000.0
_LITERAL_BYTE: Final = 32.0
_CASELESS_FACTOR: Final = 2.5
_OPTIONAL_EXTRA: Final = 40.0
_CLASS_BASE: Final = 40.0
_PER_SEQUENCE: Final = 18.0
_PER_SEQUENCE_BYTE: Final = 9.0
_ENCODING_BOUNDS: Final = (0x7F, 0x7FF, 0xFFFF)


def literal_cost(char: str, case_insensitive: bool) -> float:
    """The estimated size of one literal character."""
    cost = _LITERAL_BYTE * len(char.encode("utf-8", "surrogatepass"))
    if case_insensitive and char.lower() != char.upper():
        cost *= _CASELESS_FACTOR
    return cost


def optional_cost(unit: float) -> float:
    """The estimated size of one optional copy of something costing `unit`."""
    return unit + _OPTIONAL_EXTRA


@functools.lru_cache(maxsize=512)
def class_cost(class_text: str, _v1: bool, case_insensitive: bool) -> float:
    """The estimated size of a translated class such as `[\\p{Greek}a-z]` (slow; cached)."""
    flags = regex.V1 | (regex.IGNORECASE if case_insensitive else 0)
    try:
        # Runs of matching characters in code point order are the class's ranges.
        compiled = regex.compile(f"(?-f)(?:{class_text})+", flags)
    except regex.error:
        return CLASS_UPPER_BOUND
    sequences = 0
    sequence_bytes = 0
    for base, chars in _scalar_values():
        for run in compiled.finditer(chars):
            for length in _utf8_sequences(base + run.start(), base + run.end() - 1):
                sequences += 1
                sequence_bytes += length
    return _CLASS_BASE + _PER_SEQUENCE * sequences + _PER_SEQUENCE_BYTE * sequence_bytes


@functools.cache
def _scalar_values() -> tuple[tuple[int, str], ...]:
    """Every Unicode scalar value, in two runs around the surrogates (not in Rust strings)."""
    return (
        (0, "".join(map(chr, range(0xD800)))),
        (0xE000, "".join(map(chr, range(0xE000, 0x110000)))),
    )


def _utf8_sequences(low: int, high: int) -> list[int]:
    """The lengths of the UTF-8 byte-range sequences that cover `low..=high`."""
    out: list[int] = []
    stack = [(low, high)]
    while stack:
        lo, hi = stack.pop()
        split = next((b for b in _ENCODING_BOUNDS if lo <= b < hi), None)
        if split is not None:
            # A range across encoding lengths splits where the length changes.
            stack += [(split + 1, hi), (lo, split)]
            continue
        length = 1 if lo < 0x80 else 2 if lo < 0x800 else 3 if lo < 0x10000 else 4
        parted = False
        for level in range(1, length):
            mask = (1 << (6 * level)) - 1
            if lo & ~mask == hi & ~mask:
                continue
            # Each continuation byte must span a whole range: split off the ragged ends.
            if lo & mask:
                stack += [((lo | mask) + 1, hi), (lo, lo | mask)]
                parted = True
                break
            if hi & mask != mask:
                stack += [(hi & ~mask, hi), (lo, (hi & ~mask) - 1)]
                parted = True
                break
        if not parted:
            out.append(length)
    return out
