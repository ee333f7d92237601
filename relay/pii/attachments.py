"""piiConfig rules applied to plain attachments, as Relay scrubs them (relay-pii attachments.rs).

An attachment is a binary blob addressed as `$attachments.'<filename>'` (value type
`$binary`, always PII-able). Every rule of a matching application runs over the bytes
twice: once as UTF-8 (a bytes regex, ASCII semantics, `.` matches newlines) and then as
UTF-16LE text in the ranges the UTF-8 pass left alone. Redactions never change the
length: removed and masked text becomes `*`, replacements and hashes are truncated or
padded with `*`. Pattern kinds are ignored: a key pattern (`@password`'s `token`, a
`redact_pair` key) is matched against the content and blanks the whole attachment.

Relay's server only scrubs plain attachments of projects whose piiConfig has at least one
application whose selector starts with `$attachments.<key>` (`has_simple_attachment_selector`).
"""

from __future__ import annotations

import codecs
import re
import threading
from collections.abc import Iterator
from typing import Final

from relay.pii.compiled import Application, RuleRef
from relay.pii.config import PiiConfig
from relay.pii.redact import _matches, hash_bytes
from relay.pii.regex_compat import RUST_WHITESPACE
from relay.pii.regexes import Behaviour
from relay.pii.selector import KeyItem, PathSelector, State, TypeItem, matches_path
from relay.pii.value_types import Pii, vt

ATTACHMENTS: Final = vt("attachments")
BINARY: Final = vt("binary")
_ATTACHMENTS_INDEX: Final = ATTACHMENTS.bit_length() - 1

# Which passes `AttachmentScrubber.scrub_buffer` runs.
UTF8: Final = 1
UTF16: Final = 2
ALL_ENCODINGS: Final = UTF8 | UTF16

# UTF-16 text shorter than this (in characters) inside a blob is not scrubbed.
MIN_STRING_LEN: Final = 5
_PAD: Final = "*"
_PAD_UTF16: Final = b"*\x00"
# Rust's non-Unicode `\s` is ASCII whitespace.
_ASCII_WS: Final = "\\t\\n\\x0b\\x0c\\r "

Span = tuple[int, int]


def has_simple_attachment_selector(config: PiiConfig) -> bool:
    """Whether Relay scrubs plain attachments for this piiConfig at all."""
    for selector, _rules in config.applications:
        if not isinstance(selector, PathSelector) or len(selector.items) < 2:
            continue
        first, second = selector.items[0], selector.items[1]
        if (
            isinstance(first, TypeItem)
            and first.index == _ATTACHMENTS_INDEX
            and isinstance(second, KeyItem)
        ):
            return True
    return False


def bytes_regex(regex: re.Pattern[str]) -> re.Pattern[bytes] | None:
    """The UTF-8 pass's regex: the same pattern compiled for bytes without Unicode.

    None if it does not compile that way (Relay logs an error and finds no matches).
    """
    pattern = regex.pattern.replace(RUST_WHITESPACE, _ASCII_WS)
    flags = re.DOTALL | (regex.flags & (re.IGNORECASE | re.MULTILINE))
    try:
        return re.compile(pattern.encode("utf-8"), flags)
    except (re.error, ValueError):
        return None


# -- redactions on byte ranges -----------------------------------------------------------------


def _swap_utf8(data: bytearray, start: int, end: int, replacement: str) -> None:
    size = end - start
    encoded = replacement.encode("utf-8")[:size]  # may cut a character, as Relay does
    data[start:end] = encoded + b"*" * (size - len(encoded))


def _redact_utf8(data: bytearray, start: int, end: int, rule: RuleRef) -> None:
    method = rule.redaction.method
    if method in ("default", "remove", "mask"):
        data[start:end] = b"*" * (end - start)
    elif method == "hash":
        _swap_utf8(data, start, end, hash_bytes(bytes(data[start:end])))
    elif method == "replace":
        _swap_utf8(data, start, end, rule.redaction.text)


def _swap_utf16(data: bytearray, start: int, end: int, replacement: str) -> None:
    size = end - start
    out = bytearray()
    units = replacement.encode("utf-16-le")
    for i in range(0, len(units), 2):
        code = units[i] | (units[i + 1] << 8)
        # Relay reserves room for a surrogate pair whenever these bits are set.
        needed = 4 if code & 0xD800 == 0xD800 else 2
        if size - len(out) < needed:
            break
        out += units[i : i + 2]
    out += _PAD_UTF16 * ((size - len(out)) // 2)
    data[start:end] = out


def _redact_utf16(data: bytearray, start: int, end: int, rule: RuleRef) -> None:
    method = rule.redaction.method
    if method in ("default", "remove", "mask"):
        data[start:end] = _PAD_UTF16 * ((end - start) // 2)
    elif method == "hash":
        _swap_utf16(data, start, end, hash_bytes(bytes(data[start:end])))
    elif method == "replace":
        _swap_utf16(data, start, end, rule.redaction.text)


# -- UTF-8 -------------------------------------------------------------------------------------


def _scrub_utf8(
    data: bytearray, rule: RuleRef, regex: re.Pattern[bytes] | None, behaviour: Behaviour
) -> list[Span]:
    if regex is None:
        return []
    spans: list[Span] = []
    snapshot = bytes(data)
    for m in _matches(regex, snapshot):
        for group in range(regex.groups + 1):
            start, end = m.span(group)
            if start == -1 or start == end:
                continue
            if behaviour is None:
                spans.append((0, len(data)))
                break
            if group in behaviour:
                spans.append((start, end))
    for start, end in spans:
        _redact_utf8(data, start, end, rule)
    return spans


# -- UTF-16LE ----------------------------------------------------------------------------------

_errors = threading.local()


def _record_error(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)
    _errors.spans.append((exc.start, exc.end))
    return "", exc.end


codecs.register_error("relay-pii-utf16-segments", _record_error)


def utf16_segments(data: bytes) -> Iterator[tuple[int, int, str]]:
    """Valid UTF-16LE runs of at least `MIN_STRING_LEN` characters: (start, end, text).

    Invalid units (unpaired surrogates) split runs; a trailing odd byte or a surrogate cut
    off by the end of the data ends the last one.
    """
    spans: list[Span] = []
    _errors.spans = spans
    try:
        data.decode("utf-16-le", "relay-pii-utf16-segments")
    finally:
        _errors.spans = []
    bounds = [*spans, (len(data), len(data))]
    pos = 0
    for err_start, err_end in bounds:
        if err_start > pos:
            text = data[pos:err_start].decode("utf-16-le")
            if len(text) >= MIN_STRING_LEN:
                yield pos, err_start, text
        pos = max(pos, err_end)


def _unit_offsets(text: str) -> list[int] | None:
    """Byte offset (within the segment) of each character; None if all are one unit."""
    if text.isascii() or all(ord(c) < 0x10000 for c in text):
        return None
    offsets = []
    pos = 0
    for char in text:
        offsets.append(pos)
        pos += 4 if ord(char) >= 0x10000 else 2
    return offsets


def _encoded_span(text: str, offsets: list[int] | None, size: int, start: int, end: int) -> Span:
    # Relay walks the characters: a match starting at the very end maps to the whole run.
    if start >= len(text):
        return 0, size
    enc_start = offsets[start] if offsets is not None else start * 2
    if end >= len(text):
        return enc_start, size
    return enc_start, offsets[end] if offsets is not None else end * 2


def _scrub_utf16(
    data: bytearray,
    base: int,
    stop: int,
    rule: RuleRef,
    regex: re.Pattern[str],
    behaviour: Behaviour,
) -> bool:
    changed = False
    for seg_start, seg_end, text in list(utf16_segments(bytes(data[base:stop]))):
        offsets = _unit_offsets(text)
        size = seg_end - seg_start
        for m in _matches(regex, text):
            groups = (0,) if behaviour is None else behaviour
            for group in groups:
                if group > regex.groups:
                    continue
                start, end = m.span(group)
                if start == -1:
                    continue
                changed = True
                enc_start, enc_end = _encoded_span(text, offsets, size, start, end)
                at = base + seg_start
                _redact_utf16(data, at + enc_start, at + enc_end, rule)
    return changed


# -- the scrubber --------------------------------------------------------------------------------


class AttachmentScrubber:
    """A piiConfig compiled for plain attachments (build once per config revision)."""

    def __init__(self, applications: tuple[Application, ...]) -> None:
        self.applications = applications
        self._bytes: dict[int, re.Pattern[bytes] | None] = {}
        for app in applications:
            for rule in app.rules:
                for _kind, regex, _behaviour in rule.patterns:
                    if id(regex) not in self._bytes:
                        self._bytes[id(regex)] = bytes_regex(regex)

    def _rules_for(self, filename: str) -> list[RuleRef]:
        return self.rules_at([*file_states(filename, BINARY)], Pii.TRUE)

    def rules_at(self, states: list[State], pii: Pii) -> list[RuleRef]:
        """The rules of every application whose selector matches this path (root first)."""
        rules: list[RuleRef] = []
        for app in self.applications:
            if app.rules and matches_path(app.selector, states, pii):
                rules.extend(app.rules)
        return rules

    def applies_to(self, filename: str) -> bool:
        """Whether any rule would run on an attachment with this name."""
        return bool(self._rules_for(filename))

    def scrub(self, filename: str, payload: bytes) -> tuple[bytes, bool]:
        """Scrubbed copy of `payload` (same length) and whether anything changed."""
        rules = self._rules_for(filename)
        if not rules:
            return payload, False
        data = bytearray(payload)
        changed = self.scrub_buffer(data, rules, ALL_ENCODINGS)
        return bytes(data), changed

    def scrub_buffer(self, data: bytearray, rules: list[RuleRef], encodings: int) -> bool:
        """Apply `rules` to `data` in place (length kept); True if anything changed.

        `encodings` says which passes run: `UTF8`, `UTF16` or both (`ALL_ENCODINGS`, where
        UTF-16 only covers what the UTF-8 pass left alone).
        """
        changed = False
        for rule in rules:
            for _kind, regex, behaviour in rule.patterns:
                if encodings == UTF16:
                    changed |= _scrub_utf16(data, 0, len(data), rule, regex, behaviour)
                    continue
                spans = _scrub_utf8(data, rule, self._bytes[id(regex)], behaviour)
                changed |= bool(spans)
                if encodings == UTF8:
                    continue
                # UTF-16 only where the UTF-8 pass changed nothing (between its matches,
                # each gap starting on an even offset).
                previous_end = 0
                for span_start, span_end in [*spans, (len(data), 0)]:
                    start = previous_end if previous_end % 2 == 0 else previous_end + 1
                    if span_start > start:
                        changed |= _scrub_utf16(data, start, span_start, rule, regex, behaviour)
                    previous_end = span_end
        return changed


def file_states(filename: str, value_type: int) -> tuple[State, State, State]:
    """The path of an attachment file: root, `$attachments` (key ""), the file (by name)."""
    return (None, None, 0), ("", None, ATTACHMENTS), (filename, None, value_type)
