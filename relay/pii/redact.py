"""Applying rules to one value: regex matches become redaction chunks and `_meta` remarks.

A string is seen as a sequence of chunks: plain text, and redactions that earlier rules
made (known from the remarks' byte ranges). Each rule searches the text with earlier
redactions replaced by NUL placeholders, so rules never re-match what was already
redacted, and the remarks are rebuilt from the resulting chunks.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from relay.pii.compiled import RuleRef
from relay.pii.regexes import ANYTHING, KEY, PREFILTERS, VALUE, Behaviour, text_features

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
    return hmac.new(b"", data.encode("utf-8"), hashlib.sha1).hexdigest().upper()


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


def _matches(regex: re.Pattern[str], text: str) -> list[re.Match[str]]:
    # Rust's regex iterator skips an empty match that starts where the previous one ended.
    found = []
    last_end = -1
    for m in regex.finditer(text):
        if m.start() == m.end() == last_end:
            continue
        found.append(m)
        last_end = m.end()
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


class Scrubbed:
    """Mutable view of one value's string and `_meta` remarks while rules run on it."""

    __slots__ = ("changed", "digits", "length", "lower", "remarks", "value")

    def __init__(self, value: str | None, remarks: list[Any]) -> None:
        self.value = value
        self.remarks = remarks
        self.changed = False
        self.length: int | None = None
        self.lower: str | None = None
        self.digits = 0

    def apply_regex(self, rule: RuleRef, regex: re.Pattern[str], behaviour: Behaviour) -> None:
        value = self.value
        if value is None:
            return
        if not self.remarks and "\x00" not in value:
            # Fast path: no earlier redactions, so the search string is the value itself.
            if regex.search(value) is None:
                return
            chunks: list[Chunk] = [(value, None)]
        else:
            chunks = split_chunks(value, self.remarks)
        rewritten = _rewrite(chunks, rule, regex, behaviour)
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


_KEY_CACHE: dict[tuple[re.Pattern[str], str], bool] = {}


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


def plan(rules: tuple[RuleRef, ...]) -> tuple[Step, ...]:
    """Flatten rules into pattern steps once per rule set (the hot loop avoids lookups)."""
    steps: list[Step] = []
    for rule in rules:
        redact = rule.redaction.method not in ("default", "remove")
        anything = rule.ty == "anything"
        for kind, regex, behaviour in rule.patterns:
            steps.append((rule, anything, redact, kind, regex, behaviour, PREFILTERS.get(regex)))
    return tuple(steps)


def scrub_string(steps: tuple[Step, ...], key: str | None, target: Scrubbed) -> str | None:
    """Run all steps on a string; returns the origin of a rule that deletes it, if any."""
    for rule, anything, redact, kind, regex, behaviour, prefilter in steps:
        if anything and not redact:
            return rule.origin
        if kind != VALUE and key is not None and _key_matches(regex, key):
            if redact:
                target.apply_regex(rule, ANYTHING, behaviour)
            else:
                return rule.origin
        elif kind != KEY:
            if prefilter is not None:
                value = target.value
                if value is None:
                    continue
                if target.lower is None:
                    target.lower, target.digits = text_features(value)
                if not prefilter(value, target.lower, target.digits):
                    continue
            target.apply_regex(rule, regex, behaviour)
    return None
