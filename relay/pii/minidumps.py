"""piiConfig rules applied to minidumps, as Relay scrubs them (relay-pii minidumps.rs).

A minidump is addressed as `$attachments.'<filename>'` of value type `$minidump`. Only
some of its regions are visited, each as a child of the file, and rewritten in place
(lengths never change, so the dump stays readable):

* memory regions that hold a thread's stack: `stack_memory` (`$binary`, `$stack_memory`),
  PII level *maybe*: only specific selectors reach them (`$stack_memory`,
  `$minidump.stack_memory`), not a bare `$binary` or `**`, so symbolication keeps working;
* other memory regions: `heap_memory` (`$binary`, `$heap_memory`);
* the Linux environ and cmdline streams: key "" (`$binary`);
* module paths: `code_file` (UTF-16LE) and `debug_file` (UTF-8), typed `$string`; only
  the directory part is scrubbed so that the file name survives.

When the dump cannot be read (or Relay's reading fails half-way), the file is scrubbed
as a plain attachment instead, including what was already rewritten.
"""

from __future__ import annotations

from typing import Final

from relay.pii.attachments import (
    ALL_ENCODINGS,
    UTF8,
    UTF16,
    AttachmentScrubber,
    file_states,
)
from relay.pii.compiled import RuleRef
from relay.pii.selector import State
from relay.pii.value_types import Pii, vt
from relay.protocol.minidump_reader import (
    CODE_FILE,
    DEBUG_FILE,
    HEAP_MEMORY,
    STACK_MEMORY,
    MinidumpError,
    MinidumpRegion,
    scrub_regions,
)

BINARY: Final = vt("binary")
STRING: Final = vt("string")
MINIDUMP: Final = vt("minidump")

#: Per region kind: the value type and PII level Relay gives the region.
_REGION_TYPES: Final[dict[str, tuple[int, Pii]]] = {
    STACK_MEMORY: (BINARY | vt("stack_memory"), Pii.MAYBE),
    HEAP_MEMORY: (BINARY | vt("heap_memory"), Pii.TRUE),
    CODE_FILE: (STRING, Pii.TRUE),
    DEBUG_FILE: (STRING, Pii.TRUE),
}
_LINUX_STREAM_TYPE: Final = (BINARY, Pii.TRUE)


class _RegionError(Exception):
    """A region Relay cannot rewrite (bad range or encoding): it stops scrubbing the dump."""


class MinidumpScrubber:
    """A piiConfig compiled for minidumps (build once per config revision)."""

    def __init__(self, attachments: AttachmentScrubber) -> None:
        self.attachments = attachments

    def scrub(self, filename: str, payload: bytes) -> tuple[bytes, bool]:
        """Scrubbed copy of `payload` (same length) and whether anything changed."""
        try:
            regions = scrub_regions(payload)
        except MinidumpError:
            return self.attachments.scrub(filename, payload)
        data = bytearray(payload)
        changed = False
        rules = _RulesByKind(self.attachments, filename)
        try:
            for region in regions:
                changed |= self._scrub_region(data, region, rules.get(region.kind))
        except _RegionError:
            # As Relay: fall back to scrubbing the whole file as a plain attachment, on top
            # of what the regions before the broken one already changed.
            scrubbed, fallback_changed = self.attachments.scrub(filename, bytes(data))
            return scrubbed, changed or fallback_changed
        return (bytes(data), True) if changed else (payload, False)

    def _scrub_region(self, data: bytearray, region: MinidumpRegion, rules: list[RuleRef]) -> bool:
        start, end = region.start, region.end
        if start > end or end > len(data):
            raise _RegionError("region out of bounds")
        if region.kind == CODE_FILE:
            return self._scrub_utf16_path(data, start, end, rules)
        if region.kind == DEBUG_FILE:
            return self._scrub_utf8_path(data, start, end, rules)
        if not rules:
            return False
        buffer = bytearray(data[start:end])
        if not self.attachments.scrub_buffer(buffer, rules, ALL_ENCODINGS):
            return False
        data[start:end] = buffer
        return True

    def _scrub_utf16_path(
        self, data: bytearray, start: int, end: int, rules: list[RuleRef]
    ) -> bool:
        raw = bytes(data[start:end])
        try:
            text = raw.decode("utf-16-le")
        except UnicodeDecodeError:
            raise _RegionError("code file name is not UTF-16LE") from None
        cut = max(text.rfind("/"), text.rfind("\\"))
        if cut < 0 or not rules:
            return False
        # Byte length of the directory: characters outside the BMP take two code units.
        size = len(text[:cut].encode("utf-16-le"))
        return self._scrub_part(data, start, start + size, rules, UTF16)

    def _scrub_utf8_path(self, data: bytearray, start: int, end: int, rules: list[RuleRef]) -> bool:
        raw = bytes(data[start:end])
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _RegionError("debug file name is not UTF-8") from None
        cut = max(raw.rfind(b"/"), raw.rfind(b"\\"))
        if cut < 0 or not rules:
            return False
        return self._scrub_part(data, start, start + cut, rules, UTF8)

    def _scrub_part(
        self, data: bytearray, start: int, end: int, rules: list[RuleRef], encodings: int
    ) -> bool:
        buffer = bytearray(data[start:end])
        if not self.attachments.scrub_buffer(buffer, rules, encodings):
            return False
        data[start:end] = buffer
        return True


class _RulesByKind:
    """The rules for each region kind of one file, resolved on first use."""

    def __init__(self, attachments: AttachmentScrubber, filename: str) -> None:
        self._attachments = attachments
        self._file: list[State] = list(file_states(filename, MINIDUMP))
        self._found: dict[str, list[RuleRef]] = {}

    def get(self, kind: str) -> list[RuleRef]:
        found = self._found.get(kind)
        if found is None:
            value_type, pii = _REGION_TYPES.get(kind, _LINUX_STREAM_TYPE)
            states = [*self._file, (kind, None, value_type)]
            found = self._found[kind] = self._attachments.rules_at(states, pii)
        return found
