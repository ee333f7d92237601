"""Scrubbing JSON attachments (view hierarchies) the way Relay's `scrub_json` does.

Relay streams the document through serde_json and back, running the piiConfig on every
string value; the output is the compact re-serialization, even when nothing matched.
What a rule sees of a string:

* its path is the chain of object keys above it (array indices are not part of it),
  each step typed as a string and PII-able, so `$string`, `key.other` and `**`
  selectors work but `$object` / `$array` ones do not; the document root is not
  PII-able, so a top-level string (or one directly in a top-level array) is kept;
* a rule that removes the value leaves an empty string;
* object keys are never scrubbed.

serde_json's quirks are kept: keys containing escape sequences do not enter the path
(yet leaving their value still steps out of it, so such a key shifts its siblings' paths
up a level), duplicate keys survive, data after the first complete value is ignored,
nesting is limited to 127 levels, and numbers are re-printed as serde_json prints them
(`relay.pii.json_numbers`).
"""

from __future__ import annotations

import json
import re
from typing import Final

from relay.pii.json_numbers import NUMBER_RE, NumberError, format_number, parse_number
from relay.pii.processor import ROOT_SIGNATURE, PiiProcessor

#: serde_json's recursion limit: a container at this nesting level is an error.
MAX_DEPTH: Final = 128

_WS: Final = re.compile(r"[ \t\n\r]*")
# A complete string token (validated escapes, no raw control characters); group 1 is
# the raw content between the quotes.
_STRING: Final = re.compile(
    r'"([^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*)"'
)
# Surrogates: lone `\uD800`-style escapes, or invalid UTF-8 (kept by surrogateescape).
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_LITERALS: Final = ("true", "false", "null")


class JsonScrubError(ValueError):
    """The attachment is not a JSON document serde_json reads (Relay leaves it as is)."""


def _decode_string(raw: str) -> str:
    value = raw if "\\" not in raw else str(json.loads(f'"{raw}"'))
    if _SURROGATE.search(value) is not None:
        raise JsonScrubError("invalid unicode in string")
    return value


def _encode_string(value: str) -> str:
    # Same escapes as serde_json: quote, backslash and control characters only.
    return json.dumps(value, ensure_ascii=False)


class _Transcoder:
    """One pass over one document: parses, scrubs and writes compact JSON."""

    def __init__(self, processor: PiiProcessor, text: str) -> None:
        self.processor = processor
        self.text = text
        self.out: list[str] = []
        # Open containers ("{" or "["), and the path: signatures and keys of the object
        # members being read (not one per container: arrays add none, escaped keys none).
        self.containers: list[str] = []
        self.sigs: list[int] = []
        self.keys: list[str] = []

    def error(self, message: str, pos: int) -> JsonScrubError:
        return JsonScrubError(f"{message} at offset {pos}")

    def skip_ws(self, pos: int) -> int:
        match = _WS.match(self.text, pos)
        assert match is not None  # `*` always matches
        return match.end()

    def char_at(self, pos: int) -> str:
        if pos >= len(self.text):
            raise self.error("unexpected end of document", pos)
        return self.text[pos]

    def run(self) -> str:
        pos = self.skip_ws(0)
        while True:
            pos, opened = self.value(pos)
            if opened:
                continue  # a non-empty container: its first element comes next
            # A value is complete: step out of its member, close finished containers.
            while True:
                if not self.containers:
                    return "".join(self.out)  # anything after the first value is ignored
                in_object = self.containers[-1] == "{"
                if in_object:
                    self.leave_member()
                pos = self.skip_ws(pos)
                char = self.char_at(pos)
                if char == ",":
                    self.out.append(",")
                    pos = self.skip_ws(pos + 1)
                    if in_object:
                        pos = self.member_key(pos)
                    break
                close = "}" if in_object else "]"
                if char != close:
                    raise self.error("expected `,` or the end of the container", pos)
                self.containers.pop()
                self.out.append(close)
                pos += 1

    def member_key(self, pos: int) -> int:
        """Read `"key":` and enter the member (unless the key has escapes, as serde_json)."""
        match = _STRING.match(self.text, pos)
        if match is None:
            raise self.error("expected an object key", pos)
        raw = match.group(1)
        key = _decode_string(raw)
        pos = self.skip_ws(match.end())
        if self.char_at(pos) != ":":
            raise self.error("expected `:`", pos)
        self.out.append(f'"{raw}":' if "\\" not in raw else f"{_encode_string(key)}:")
        if "\\" not in raw:
            parent = self.sigs[-1] if self.sigs else ROOT_SIGNATURE
            self.sigs.append(self.processor.string_field(parent, key))
            self.keys.append(key)
        return self.skip_ws(pos + 1)

    def leave_member(self) -> None:
        # serde_json steps out after every member value, entered or not.
        if self.sigs:
            self.sigs.pop()
            self.keys.pop()

    def value(self, pos: int) -> tuple[int, bool]:
        """Read one value at `pos`; returns where it ends and whether it opened a
        non-empty container (whose first element, after the key in objects, comes next)."""
        char = self.char_at(pos)
        if char == '"':
            match = _STRING.match(self.text, pos)
            if match is None:
                raise self.error("invalid string", pos)
            raw = match.group(1)
            value = _decode_string(raw)
            scrubbed = self.scrub(value)
            if scrubbed is value and "\\" not in raw:
                self.out.append(f'"{raw}"')
            else:
                self.out.append(_encode_string(scrubbed))
            return match.end(), False
        if char in "{[":
            if len(self.containers) >= MAX_DEPTH - 1:
                raise self.error("recursion limit exceeded", pos)
            close = "}" if char == "{" else "]"
            after = self.skip_ws(pos + 1)
            if self.char_at(after) == close:
                self.out.append(char + close)
                return after + 1, False
            self.containers.append(char)
            self.out.append(char)
            if char == "{":
                return self.member_key(after), True
            return after, True
        if char == "-" or "0" <= char <= "9":
            match = NUMBER_RE.match(self.text, pos)
            if match is None:
                raise self.error("invalid number", pos)
            try:
                number = parse_number(match.group())
            except NumberError as exc:
                raise self.error(str(exc), pos) from None
            self.out.append(format_number(number))
            return match.end(), False
        for literal in _LITERALS:
            if self.text.startswith(literal, pos):
                self.out.append(literal)
                return pos + len(literal), False
        raise self.error("expected a value", pos)

    def scrub(self, value: str) -> str:
        if not self.sigs:
            return value  # the root is not PII-able
        scrubbed = self.processor.scrub_text(self.sigs[-1], self.keys[-1], value)
        return "" if scrubbed is None else scrubbed


def scrub_json(processor: PiiProcessor, payload: bytes) -> bytes:
    """Scrub a JSON document's string values with a compiled piiConfig, as Relay does.

    Returns the compact re-serialization (always, even when no rule matched). Raises
    JsonScrubError when serde_json would not read the document.
    """
    # surrogateescape: invalid UTF-8 only matters inside strings (checked there) or in
    # the ignored tail; anywhere else it is a syntax error anyway.
    text = payload.decode("utf-8", "surrogateescape")
    processor.bound_caches()
    output = _Transcoder(processor, text).run()
    try:
        return output.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonScrubError("replacement text is not valid unicode") from None
