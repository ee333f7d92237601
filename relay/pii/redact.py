"""Applying rules to one value: regex matches become redaction chunks and `_meta` remarks.

A string is seen as a sequence of chunks: plain text, and redactions that earlier rules
made (known from the remarks' byte ranges). Each rule searches the text with earlier
redactions replaced by NUL placeholders, so rules never re-match what was already
redacted, and the remarks are rebuilt from the resulting chunks.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections.abc import Iterable
from typing import Any, AnyStr, Final

from relay.pii.compiled import RuleRef
from relay.pii.regexes import (
    ANYTHING,
    EXACT_TRIGGERS,
    KEY,
    PATTERN_PREFILTERS,
    PATTERN_TRIGGERS,
    PREFILTERS,
    TRIGGERS,
    VALUE,
    Behaviour,
    text_features,
)

# A chunk: (text, None) for plain text, (text, (rule_id, remark_type)) for a redaction.
Chunk = tuple[str, tuple[str, str] | None]


def _byte_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def split_chunks(text: str, remarks: list[Any]) -> list[Chunk]:
    """Split `text` by the byte ranges of existing remarks (stopping at any bad range)."""
    ascii_only = text.isascii()
    data = text.encode("utf-8")
    size = len(data)

    def piece(start: int, end: int) -> str | None:
        if start < 0 or end > size or start > end:
            return None
        if ascii_only:
            return text[start:end]
        try:
            return data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            return None

    chunks: list[Chunk] = []
    pos = 0
    for remark in remarks:
        if not isinstance(remark, list) or len(remark) < 4:
            continue
        start, end = remark[2], remark[3]
        if not isinstance(start, int) or not isinstance(end, int):
            continue
        if start > pos:
            before = piece(pos, start)
            if before is None:
                break
            chunks.append((before, None))
            pos = start
        elif start < pos:
            break
        redacted = piece(start, end)
        if redacted is None:
            break
        chunks.append((redacted, (str(remark[0]), str(remark[1]))))
        pos = end
    if pos < size:
        rest = piece(pos, size)
        if rest is not None:
            chunks.append((rest, None))
    return chunks


def join_chunks(chunks: list[Chunk]) -> tuple[str, list[list[Any]]]:
    """Concatenate chunks; every redaction becomes a remark with its byte range."""
    out: list[str] = []
    remarks: list[list[Any]] = []
    pos = 0
    for text, note in chunks:
        end = pos + _byte_len(text)
        out.append(text)
        if note is not None:
            remarks.append([note[0], note[1], pos, end])
        pos = end
    return "".join(out), remarks


def hash_value(data: str) -> str:
    """HMAC-SHA1 with an empty key, uppercase hex (Relay ignores `vars.hashKey`)."""
    return hash_bytes(data.encode("utf-8"))


def hash_bytes(data: bytes) -> str:
    """`hash_value` of raw bytes (attachments hash the bytes as they are encoded)."""
    return hmac.new(b"", data, hashlib.sha1).hexdigest().upper()


def _replacement(rule: RuleRef, text: str, out: list[Chunk]) -> None:
    method = rule.redaction.method
    if method in ("default", "remove"):
        out.append(("", (rule.origin, "x")))
    elif method == "mask":
        out.append(("*" * len(text), (rule.origin, "m")))
    elif method == "hash":
        out.append((hash_value(text), (rule.origin, "p")))
    elif method == "replace":
        out.append((rule.redaction.text, (rule.origin, "s")))
    # Unknown methods: Relay emits nothing, so the match silently disappears.


def _matches(regex: re.Pattern[AnyStr], text: AnyStr) -> list[re.Match[AnyStr]]:
    # Rust's regex iterator, not Python's: an empty match where the previous match ended
    # is skipped by searching again one character on. Python's finditer instead tries a
    # non-empty match at that same position (`|a` on "a" gives 0..0, 0..1, 1..1 there
    # and 0..0, 1..1 in Rust).
    found = []
    last_end = -1
    pos = 0
    size = len(text)
    while pos <= size:
        m = regex.search(text, pos)
        if m is None:
            break
        start, end = m.span()
        if start == end == last_end:
            pos = end + 1
            continue
        found.append(m)
        last_end = pos = end
    return found


def _rewrite(
    chunks: list[Chunk], rule: RuleRef, regex: re.Pattern[str], behaviour: Behaviour
) -> list[Chunk] | None:
    """Apply one regex to the chunks; None when nothing matched."""
    has_text = False
    parts = []
    for text, note in chunks:
        if note is None:
            has_text = True
            parts.append(text.replace("\x00", "") if "\x00" in text else text)
        else:
            parts.append("\x00")
    if not has_text:
        return None
    search = "".join(parts)
    matches = _matches(regex, search)
    if not matches:
        return None
    pending = [c for c in chunks if c[1] is not None]
    pending.reverse()
    out: list[Chunk] = []

    def plain(text: str) -> None:
        if not text:
            return
        for i, part in enumerate(text.split("\x00")):
            if i and pending:
                out.append(pending.pop())
            out.append((part, None))

    if behaviour is None:
        _replacement(rule, search, out)
        return out
    pos = 0
    for m in matches:
        for group in range(regex.groups + 1):
            if group in behaviour and m.start(group) != -1:
                plain(search[pos : m.start(group)])
                _replacement(rule, m.group(group), out)
                pos = m.end(group)
    plain(search[pos:])
    return out


def _rewrite_plain(
    text: str,
    matches: list[re.Match[str]],
    rule: RuleRef,
    regex: re.Pattern[str],
    behaviour: Behaviour,
) -> list[Chunk]:
    """`_rewrite` of a text without earlier redactions, given the regex's matches in it."""
    out: list[Chunk] = []
    if behaviour is None:
        _replacement(rule, text, out)
        return out
    pos = 0
    groups = range(regex.groups + 1)
    for m in matches:
        for group in groups:
            start = m.start(group)
            if group in behaviour and start != -1:
                if start > pos:
                    out.append((text[pos:start], None))
                _replacement(rule, m.group(group), out)
                pos = m.end(group)
    if pos < len(text):
        out.append((text[pos:], None))
    return out


class Scrubbed:
    """Mutable view of one value's string and `_meta` remarks while rules run on it."""

    __slots__ = ("changed", "digits", "length", "lower", "probe", "remarks", "value")

    def __init__(self, value: str | None, remarks: list[Any]) -> None:
        self.value = value
        self.remarks = remarks
        self.changed = False
        self.length: int | None = None
        self.lower: str | None = None
        self.probe = ""
        self.digits = 0

    def apply_regex(self, rule: RuleRef, regex: re.Pattern[str], behaviour: Behaviour) -> None:
        value = self.value
        if value is None:
            return
        if not self.remarks and "\x00" not in value:
            # Fast path: no earlier redactions, so the search string is the value itself.
            matches = _matches(regex, value)
            if not matches:
                return
            rewritten: list[Chunk] | None = _rewrite_plain(value, matches, rule, regex, behaviour)
        else:
            rewritten = _rewrite(split_chunks(value, self.remarks), rule, regex, behaviour)
        if rewritten is None:
            return
        new_value, remarks = join_chunks(rewritten)
        if new_value != value:
            self.remarks = remarks
            if self.length is None:
                self.length = len(value)
            self.value = new_value
            self.lower = None
            self.changed = True


_KEY_CACHE: Final[dict[tuple[re.Pattern[str], str], bool]] = {}


def _key_matches(regex: re.Pattern[str], key: str) -> bool:
    # Keys repeat across events (header names, variable names): memoize, bounded.
    cache_key = (regex, key)
    found = _KEY_CACHE.get(cache_key)
    if found is None:
        if len(_KEY_CACHE) > 50_000:
            _KEY_CACHE.clear()
        found = _KEY_CACHE[cache_key] = regex.search(key) is not None
    return found


def apply_rule(rule: RuleRef, key: str | None, target: Scrubbed | None) -> bool:
    """Apply `rule` to a string (`target`) or a non-string (None). True: delete the value."""
    redact_chunks = rule.redaction.method not in ("default", "remove")
    if rule.ty == "anything" and (target is None or not redact_chunks):
        return True
    for kind, regex, behaviour in rule.patterns:
        if kind != VALUE and key is not None and _key_matches(regex, key):
            if target is not None and redact_chunks:
                target.apply_regex(rule, ANYTHING, behaviour)
            else:
                return True
        elif kind != KEY and target is not None:
            target.apply_regex(rule, regex, behaviour)
    return False


# One flattened rule step: (rule, is_anything, redacts_chunks, kind, regex, behaviour, prefilter).
Step = tuple[RuleRef, bool, bool, int, re.Pattern[str], Behaviour, Any]


# A step resolved for one key class: (operation, rule, regex, behaviour, prefilter).
Op = tuple[int, RuleRef, re.Pattern[str], Behaviour, Any]
_OP_REGEX: Final = 0  # apply the regex (with the redaction) to the value
_OP_REMOVE: Final = 1  # the rule deletes the value

_PLAN_IDS: Final = itertools.count(1)
# The combined trigger scan tries every alternative at every position: worth it for the
# short strings that make up most events; long ones go through the cheaper per-rule checks.
_TRIGGER_MAX_LEN: Final = 256


class Plan:
    """The rules that apply to one kind of field, flattened for the hot loop.

    `pid` is unique per process (never reused), so cached results keyed by it cannot be
    confused across configs. `key_class` folds a field's key into what the rules can
    observe of it: which of their key patterns match.
    """

    __slots__ = (
        "_key_classes",
        "_ops",
        "_removals",
        "exact",
        "key_regexes",
        "pid",
        "rules",
        "steps",
        "trigger",
    )

    def __init__(self, rules: tuple[RuleRef, ...]) -> None:
        self.rules = rules
        self.steps = plan(rules)
        self.pid = next(_PLAN_IDS)
        self.key_regexes = tuple({id(s[4]): s[4] for s in self.steps if s[3] != VALUE}.values())
        self._key_classes: dict[str | None, int] = {}
        self._removals: dict[int, str | None] = {}
        self._ops: dict[int, tuple[Op, ...]] = {}
        trigger = _combined_trigger(self.steps)
        self.trigger = trigger[0] if trigger is not None else None
        self.exact = trigger[1] if trigger is not None else frozenset()

    def cannot_change(self, text: str, key_class: int) -> bool:
        """True when no rule can match: no key rule applies and no value pattern's trigger
        occurs in the text (ASCII only; NULs, the placeholders of earlier redactions, are
        removed so that the check covers every piece the rules will search)."""
        trigger = self.trigger
        if trigger is None or key_class or len(text) > _TRIGGER_MAX_LEN or not text.isascii():
            return False
        if "\x00" in text:
            text = text.replace("\x00", "")
        low = text.lower()
        return trigger.search(low) is None and low not in self.exact

    def removal(self, key: str | None) -> str | None:
        """For a non-string value (container, number): the rule that deletes it, if any."""
        key_class = self.key_class(key)
        try:
            return self._removals[key_class]
        except KeyError:
            pass
        found = None
        for rule in self.rules:
            if apply_rule(rule, key, None):
                found = rule.origin
                break
        self._removals[key_class] = found
        return found

    def scrub(self, key_class: int, target: Scrubbed) -> str | None:
        """Run the rules on a string whose key is of class `key_class`, in order.

        Returns the origin of a rule that removes the value, if any (later rules then do
        not run); redactions are applied to `target` as they happen.
        """
        ops = self._ops.get(key_class)
        if ops is None:
            ops = self._ops[key_class] = self._ops_for(key_class)
        for op, rule, regex, behaviour, prefilter in ops:
            if op == _OP_REMOVE:
                return rule.origin
            if prefilter is not None:
                value = target.value
                if value is None:
                    continue
                if target.lower is None:
                    # Rules search the text without NULs (they mark earlier redactions):
                    # prefilters see a superset of every NUL-free piece of it.
                    probe = value.replace("\x00", "") if "\x00" in value else value
                    target.probe = probe
                    target.lower, target.digits = text_features(probe)
                if not prefilter(target.probe, target.lower, target.digits):
                    continue
            target.apply_regex(rule, regex, behaviour)
        return None

    def _ops_for(self, key_class: int) -> tuple[Op, ...]:
        # The steps with their key patterns resolved for this key class: a key pattern that
        # matches deletes the value (or, redacting, replaces all of it); one that does not
        # drops its step, except `redact_pair`-like steps, which then match the value.
        bits = {id(regex): 1 << bit for bit, regex in enumerate(self.key_regexes)}
        ops: list[Op] = []
        for rule, anything, redact, kind, regex, behaviour, prefilter in self.steps:
            if anything and not redact:
                ops.append((_OP_REMOVE, rule, regex, behaviour, None))
                break
            if kind != VALUE and key_class & bits[id(regex)]:
                if not redact:
                    ops.append((_OP_REMOVE, rule, regex, behaviour, None))
                    break
                ops.append((_OP_REGEX, rule, ANYTHING, behaviour, None))
            elif kind != KEY:
                ops.append((_OP_REGEX, rule, regex, behaviour, prefilter))
        return tuple(ops)

    def key_class(self, key: str | None) -> int:
        """Bit mask of the key patterns that match `key` (0 when none or no key)."""
        if not self.key_regexes or key is None:
            return 0
        found = self._key_classes.get(key)
        if found is None:
            found = 0
            for bit, regex in enumerate(self.key_regexes):
                if _key_matches(regex, key):
                    found |= 1 << bit
            if len(self._key_classes) > 50_000:
                self._key_classes.clear()
            self._key_classes[key] = found
        return found


def _combined_trigger(steps: tuple[Step, ...]) -> tuple[re.Pattern[str], frozenset[str]] | None:
    """One regex that finds every string some value pattern of `steps` could match, and
    the whole values they match without a trigger (None: some pattern has no trigger)."""
    parts: dict[str, None] = {}
    exact: set[str] = set()
    for rule, anything, _redact, kind, regex, _behaviour, _prefilter in steps:
        if kind == KEY:
            continue
        trigger = TRIGGERS.get(regex) or PATTERN_TRIGGERS.get(regex.pattern)
        if anything or trigger is None or rule.redaction.method == "other":
            return None
        parts.update(dict.fromkeys(trigger))
        exact.update(EXACT_TRIGGERS.get(regex, ()))
    if not parts:
        return None
    return re.compile(_factored(parts)), frozenset(exact)


def _factored(alternatives: Iterable[str]) -> str:
    """A flat alternation, with alternatives grouped by their first literal character.

    `re` then knows the characters a match can start with (it skips every other position
    without trying anything) and tries one branch per distinct first character, not one
    per alternative: together several times faster than `(?:a)|(?:b)|...`.
    """
    groups: dict[str, list[str]] = {}
    plain: list[str] = []
    for alt in alternatives:
        head = _first_literal(alt)
        if head is None:
            plain.append(alt)
        else:
            groups.setdefault(head, []).append(alt[len(head) :])
    out = []
    for head, rests in groups.items():
        out.append(head + (rests[0] if len(rests) == 1 else "(?:" + "|".join(rests) + ")"))
    return "|".join(out + plain)


def _first_literal(alt: str) -> str | None:
    """The leading literal character of a regex alternative (as written), if it has one."""
    if alt[:1] == "\\" and alt[1:2] in (".", "-", "/"):
        head = alt[:2]
    elif alt[:1].isalnum() or alt[:1] in ("-", "/", ":", "@", "=", "_"):
        head = alt[:1]
    else:
        return None
    # A quantified first character may be absent from a match: not a literal start.
    return None if alt[len(head) : len(head) + 1] in ("?", "*", "{", "+") else head


def plan(rules: tuple[RuleRef, ...]) -> tuple[Step, ...]:
    """Flatten rules into pattern steps once per rule set (the hot loop avoids lookups)."""
    steps: list[Step] = []
    for rule in rules:
        redact = rule.redaction.method not in ("default", "remove")
        anything = rule.ty == "anything"
        for kind, regex, behaviour in rule.patterns:
            prefilter = PREFILTERS.get(regex) or PATTERN_PREFILTERS.get(regex.pattern)
            steps.append((rule, anything, redact, kind, regex, behaviour, prefilter))
    return tuple(steps)
