"""The Rust-regex translator (relay/pii/regex_compat.py) and Relay's size-limit estimate.

Validation and match parity with Relay on fixed patterns is in
test_pii_validation_parity.py; this file covers the engine choice, robustness on arbitrary
input, and how well the compiled-size estimate agrees with `sentry_relay`.
"""

from __future__ import annotations

import random
import re

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.pii.regex_compat import RegexError, compile_rust_regex, translate
from relay.pii.regex_size import class_cost
from tests.unit.pii_oracle import pattern_config, relay_accepts

# Relay's largest accepted count for each atom repeated `{n}` (measured with sentry_relay).
SIZE_ATOMS = {
    "x": 8185, "é": 4092, r"\w": 5, r"\d": 51, r"\s": 385, ".": 262, "[a-z]": 3638,
    r"\pL": 6, r"\p{Greek}": 116, r"\p{Lu}": 9, r"\p{N}": 26, "(?i)x": 3274, "(xy)": 2046,
    r"\S": 136, r"\D": 20, "[^a]": 262, "[\u03b1-\u03c9]": 1310, r"(?-u:\w)": 2728,
    r"[\p{L}&&\p{Greek}]": 0, r"[[:^alpha:]]": 0, "ab": 0,
}  # fmt: skip
FORMS = ("{%d}", "{1,%d}", "{%d,}", "{%d}*")


def _relay_accepts(pattern: str) -> bool:
    return relay_accepts(pattern_config(pattern))


def _we_accept(pattern: str) -> bool:
    try:
        compile_rust_regex(pattern)
    except RegexError:
        return False
    return True


def test_plain_patterns_stay_on_re_and_translate_to_themselves() -> None:
    # The built-in and datascrubbing patterns: same text, so their prefilters still apply.
    for pattern in (
        r"\b((?:[a-z0-9]+:)?//[a-zA-Z0-9%_.-]+:)([a-zA-Z0-9%_.-]+)@",
        r"(?i)password|secret",
        r"\d{2,}",
        r"[a-z]+|x",
    ):
        translation = translate(pattern)
        assert translation.pattern == pattern
        assert not translation.needs_regex_module
        assert isinstance(compile_rust_regex(pattern), re.Pattern)


@pytest.mark.parametrize(
    "pattern", [r"\pL", r"\P{Greek}", r"[\p{L}&&\p{Lu}]", r"[a--b]", r"[[a]b]", r"[[:^alpha:]]"]
)
def test_unicode_classes_and_set_operations_use_the_regex_module(pattern: str) -> None:
    assert translate(pattern).needs_regex_module
    compiled = compile_rust_regex(pattern)
    assert isinstance(compiled, regex.Pattern)
    # The scrubbers use the `re` API: iteration, group count, source text, flags.
    assert compiled.groups == 0
    assert isinstance(compiled.pattern, str)
    assert list(compiled.finditer("xyz")) is not None


def test_mid_pattern_flags_apply_to_each_branch() -> None:
    # Rust: `a(?i)b|c` is `a(?i:b)` or `(?i:c)`; scoping `(?i:b|c)` would join the branches.
    compiled = compile_rust_regex(r"a(?i)b|c")
    assert [m.group() for m in compiled.finditer("aB C c b")] == ["aB", "C", "c"]


def test_case_insensitive_rules_fold_simply_like_rust() -> None:
    # Full case folding would match `ß` against `SS`; Rust folds one character at a time.
    compiled = compile_rust_regex(r"\p{L}ß", case_insensitive=True)
    assert compiled.search("aSS") is None
    assert compiled.search("aẞ") is not None


def test_size_limit_errors_are_clear() -> None:
    with pytest.raises(RegexError, match="size limit"):
        compile_rust_regex(r"\w{6}")
    with pytest.raises(RegexError, match="size limit"):
        compile_rust_regex("x{100000}")


def test_class_cost_grows_with_utf8_sequences() -> None:
    ascii_cost = class_cost("[a-z]", False, False)
    greek = class_cost(r"[\p{Greek}]", True, False)
    word = class_cost(r"[\w]", False, False)
    assert ascii_cost < greek < word
    assert 40_000 < word < 262_144 / 5  # Relay accepts `\w{5}`, rejects `\w{6}`


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=list("ab()[]{}|*+?^$.-&~:\\,0123pPxLu<>=!#i U"), max_size=12))
def test_arbitrary_patterns_compile_or_raise_regex_error(pattern: str) -> None:
    try:
        compile_rust_regex(pattern)
    except RegexError as exc:
        assert str(exc)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    atom=st.sampled_from(sorted(SIZE_ATOMS)),
    form=st.sampled_from(FORMS),
    count=st.integers(min_value=1, max_value=20_000),
)
def test_size_estimate_never_rejects_what_relay_accepts(atom: str, form: str, count: int) -> None:
    pattern = atom + form % count
    if _relay_accepts(pattern):
        assert _we_accept(pattern), pattern


def test_size_estimate_agreement_rate() -> None:
    """Counts spread around each atom's limit: how often we decide like Relay."""
    rng = random.Random(7)
    decisions = []
    for _ in range(400):
        atom = rng.choice(sorted(SIZE_ATOMS))
        pattern = atom + rng.choice(FORMS) % int(10 ** rng.uniform(0, 4.3))
        decisions.append((_relay_accepts(pattern), _we_accept(pattern)))
    agreement = sum(relay == ours for relay, ours in decisions) / len(decisions)
    false_rejects = sum(relay and not ours for relay, ours in decisions)
    print(f"size-limit agreement with Relay: {agreement:.1%}")  # measured: 97.8%
    assert false_rejects == 0
    assert agreement >= 0.95
