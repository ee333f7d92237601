"""Reading the few facts Relay takes from a minidump before symbolication.

A processing relay does not symbolicate; it only marks the event as native and copies what is
cheap to read from the dump into it (Relay's ``process_minidump``):

* the header's ``TimeDateStamp`` (the crash time),
* which client wrote it: Crashpad (a ``CrashpadInfo`` stream), Breakpad (``BreakpadInfo``), or
  unknown,
* Crashpad annotations: the global simple annotations and, per module, the simple, string
  object and list annotations,
* Chromium's stability report stream (a protobuf message).

Everything is bounds-checked: a truncated or hostile dump gives :class:`MinidumpError` (the
dump cannot be read at all) or leaves the broken part out; it never raises anything else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Final

import msgspec

__all__ = [
    "CrashpadModule",
    "MinidumpError",
    "MinidumpInfo",
    "MinidumpRegion",
    "parse_stability_report",
    "read_minidump",
    "scrub_regions",
]

_HEADER_VERSION: Final = 0xA793
_THREAD_LIST_STREAM: Final = 3
_MODULE_LIST_STREAM: Final = 4
_MEMORY_LIST_STREAM: Final = 5
_LINUX_CMD_LINE_STREAM: Final = 0x47670006
_LINUX_ENVIRON_STREAM: Final = 0x47670007
_BREAKPAD_INFO_STREAM: Final = 0x47670001
_CRASHPAD_INFO_STREAM: Final = 0x43500001
_STABILITY_REPORT_STREAM: Final = 0x4B6B0002
_MODULE_SIZE: Final = 108
_THREAD_SIZE: Final = 48
_MEMORY_DESCRIPTOR_SIZE: Final = 16
_HEADER_SIZE: Final = 32
#: PDB CodeView record signatures ("RSDS", "NB10") and where their file name starts.
_CV_PDB70: Final = 0x53445352
_CV_PDB20: Final = 0x3031424E
_CV_NAME_OFFSET: Final = {_CV_PDB70: 24, _CV_PDB20: 16}
_CRASHPAD_INFO_SIZE: Final = 52
_ANNOTATION_STRING: Final = 1
#: Bounds on list lengths read from the dump, so a forged count cannot cost much.
_MAX_ENTRIES: Final = 65536
_MAX_PROTOBUF_DEPTH: Final = 8


class MinidumpError(ValueError):
    """The data is not a minidump that can be read (bad header or stream directory)."""


class CrashpadModule(msgspec.Struct, frozen=True):
    """The Crashpad annotations of one module, with the module's code file name."""

    code_file: str
    simple_annotations: list[tuple[str, str]]
    string_annotations: list[tuple[str, str]]
    list_annotations: list[str]


class MinidumpInfo(msgspec.Struct, frozen=True):
    """What a processing relay reads from a minidump."""

    timestamp: int
    #: ``minidump.crashpad``, ``minidump.breakpad`` or ``minidump.unknown``.
    sdk_name: str
    #: Whether the module list and the Crashpad info could both be read (else no annotations).
    has_annotations: bool = False
    crashpad_annotations: list[tuple[str, str]] = []
    modules: list[CrashpadModule] = []
    #: The stability report, already shaped as Relay's ``chromium_stability_report`` context.
    stability_report: dict[str, Any] | None = None


class _Reader:
    """Bounds-checked little- or big-endian reads from the dump."""

    def __init__(self, data: bytes, endian: str) -> None:
        self.data = data
        self.endian = endian

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        fmt = self.endian + fmt
        if offset < 0 or offset + struct.calcsize(fmt) > len(self.data):
            raise MinidumpError("read past the end of the minidump")
        return struct.unpack_from(fmt, self.data, offset)

    def u32(self, offset: int) -> int:
        return self.unpack("I", offset)[0]

    def slice(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise MinidumpError("read past the end of the minidump")
        return self.data[offset : offset + size]

    def utf16_string(self, rva: int) -> str:
        # MINIDUMP_STRING: byte length, then UTF-16 code units.
        size = self.u32(rva)
        raw = self.slice(rva + 4, size)
        return raw.decode("utf-16-be" if self.endian == ">" else "utf-16-le", "replace")

    def utf8_string(self, rva: int) -> str:
        # MinidumpUTF8String: byte length (without the NUL), then the bytes.
        size = self.u32(rva)
        return self.slice(rva + 4, size).decode("utf-8", "replace")

    def byte_array(self, rva: int) -> bytes:
        size = self.u32(rva)
        return self.slice(rva + 4, size)


def _count(reader: _Reader, offset: int) -> int:
    count = reader.u32(offset)
    if count > _MAX_ENTRIES:
        raise MinidumpError("implausible list length in minidump")
    return count


def read_minidump(data: bytes) -> MinidumpInfo:
    """Read the header, the client kind, Crashpad annotations and the stability report.

    Raises :class:`MinidumpError` when the header or the stream directory cannot be read.
    Annotations that cannot be read are left out (``has_annotations`` is then False).
    """
    reader, streams = _directory(data)
    timestamp = reader.unpack("IIIIII", 0)[5]

    if _CRASHPAD_INFO_STREAM in streams:
        sdk_name = "minidump.crashpad"
    elif _BREAKPAD_INFO_STREAM in streams:
        sdk_name = "minidump.breakpad"
    else:
        sdk_name = "minidump.unknown"

    info = MinidumpInfo(timestamp=timestamp, sdk_name=sdk_name)
    try:
        return _with_annotations(reader, streams, info)
    except (MinidumpError, struct.error):
        return info


def _with_annotations(
    reader: _Reader, streams: dict[int, tuple[int, int]], info: MinidumpInfo
) -> MinidumpInfo:
    # Relay reads the module list first: without it there are no annotations at all.
    if _MODULE_LIST_STREAM not in streams:
        return info
    code_files = _module_code_files(reader, *streams[_MODULE_LIST_STREAM])
    if _CRASHPAD_INFO_STREAM not in streams:
        return info
    rva, size = streams[_CRASHPAD_INFO_STREAM]
    if size < _CRASHPAD_INFO_SIZE:
        raise MinidumpError("crashpad info stream too small")
    # version, report id and client id (2 GUIDs), then two location descriptors.
    simple_size, simple_rva, modules_size, modules_rva = reader.unpack("IIII", rva + 36)
    simple = _simple_dictionary(reader, simple_rva) if simple_size else []
    modules: list[CrashpadModule] = []
    if modules_size:
        for module in _crashpad_modules(reader, modules_rva, code_files):
            modules.append(module)
    stability: dict[str, Any] | None = None
    if _STABILITY_REPORT_STREAM in streams:
        report_rva, report_size = streams[_STABILITY_REPORT_STREAM]
        try:
            stability = parse_stability_report(reader.slice(report_rva, report_size))
        except (MinidumpError, ValueError):
            stability = None  # Relay ignores a broken stability report.
    return MinidumpInfo(
        timestamp=info.timestamp,
        sdk_name=info.sdk_name,
        has_annotations=True,
        crashpad_annotations=simple,
        modules=modules,
        stability_report=stability,
    )


def _module_code_files(reader: _Reader, rva: int, size: int) -> list[str]:
    count = _count(reader, rva)
    start = rva + 4
    # Some writers pad the count to 8 bytes; the stream size tells.
    if size == 8 + count * _MODULE_SIZE:
        start += 4
    names = []
    for index in range(count):
        name_rva = reader.u32(start + index * _MODULE_SIZE + 20)
        names.append(reader.utf16_string(name_rva))
    return names


def _simple_dictionary(reader: _Reader, rva: int) -> list[tuple[str, str]]:
    entries = []
    for index in range(_count(reader, rva)):
        key_rva, value_rva = reader.unpack("II", rva + 4 + 8 * index)
        entries.append((reader.utf8_string(key_rva), reader.utf8_string(value_rva)))
    return entries


def _crashpad_modules(reader: _Reader, rva: int, code_files: list[str]) -> Iterator[CrashpadModule]:
    for index in range(_count(reader, rva)):
        module_index, size, info_rva = reader.unpack("III", rva + 4 + 12 * index)
        if module_index >= len(code_files):
            continue  # a link to a module that does not exist: skipped, as in Relay
        list_size, list_rva, simple_size, simple_rva = reader.unpack("IIII", info_rva + 4)
        objects_size = objects_rva = 0
        if size >= 28:
            objects_size, objects_rva = reader.unpack("II", info_rva + 20)
        lists = (
            [reader.utf8_string(reader.u32(list_rva + 4 + 4 * i))
             for i in range(_count(reader, list_rva))]
            if list_size else []
        )  # fmt: skip
        simple = _simple_dictionary(reader, simple_rva) if simple_size else []
        strings = _string_annotations(reader, objects_rva) if objects_size else []
        yield CrashpadModule(
            code_file=code_files[module_index],
            simple_annotations=simple,
            string_annotations=strings,
            list_annotations=lists,
        )


def _string_annotations(reader: _Reader, rva: int) -> list[tuple[str, str]]:
    entries = []
    for index in range(_count(reader, rva)):
        name_rva, kind, _, value_rva = reader.unpack("IHHI", rva + 4 + 12 * index)
        if kind != _ANNOTATION_STRING:
            continue
        value = reader.byte_array(value_rva).decode("utf-8", "replace")
        entries.append((reader.utf8_string(name_rva), value))
    return entries


# --- regions for PII scrubbing -------------------------------------------------------------

#: Region kinds, named after the selector keys Relay's minidump scrubbing uses for them.
STACK_MEMORY: Final = "stack_memory"
HEAP_MEMORY: Final = "heap_memory"
LINUX_STREAM: Final = ""  # the environ and cmdline streams (Relay enters them as key "")
CODE_FILE: Final = "code_file"  # UTF-16LE module path
DEBUG_FILE: Final = "debug_file"  # UTF-8 debug file path (CodeView record)


class MinidumpRegion(msgspec.Struct, frozen=True):
    """A byte range of a minidump that PII rules may rewrite (same length), and its kind."""

    kind: str
    start: int
    end: int


def scrub_regions(data: bytes) -> list[MinidumpRegion]:
    """The regions Relay scrubs in a minidump, in its order (relay-pii ``minidumps.rs``).

    Memory regions (stack memory when a thread's stack points at them, else heap), the
    Linux environ and cmdline streams, then per module (each name once) its code file name
    and the debug file name of its PDB CodeView record. Requires the thread, memory and
    module lists and fails like rust-minidump 0.26 does on what it cannot read: then
    :class:`MinidumpError` (Relay then scrubs the file as a plain attachment). A region's
    range is not checked against the data here (Relay fails on it only when it gets there).
    """
    if len(data) < _HEADER_SIZE:
        raise MinidumpError("missing minidump header")
    reader, streams = _directory(data)
    stack_rvas = {
        reader.u32(entry + 36)
        for entry in _stream_list(reader, streams, _THREAD_LIST_STREAM, _THREAD_SIZE)
    }
    regions: list[MinidumpRegion] = []
    for entry in _stream_list(reader, streams, _MEMORY_LIST_STREAM, _MEMORY_DESCRIPTOR_SIZE):
        size, rva = reader.unpack("II", entry + 8)
        # rust-minidump skips empty, null and out-of-bounds regions.
        if rva == 0 or size == 0 or rva + size > len(data):
            continue
        kind = STACK_MEMORY if rva in stack_rvas else HEAP_MEMORY
        regions.append(MinidumpRegion(kind, rva, rva + size))
    for stream_type in (_LINUX_ENVIRON_STREAM, _LINUX_CMD_LINE_STREAM):
        if stream_type in streams:
            rva, size = _stream_range(reader, streams, stream_type)
            if rva == 0:
                raise MinidumpError("stream at offset zero")
            regions.append(MinidumpRegion(LINUX_STREAM, rva, rva + size))
    seen: set[int] = set()
    for entry in _stream_list(reader, streams, _MODULE_LIST_STREAM, _MODULE_SIZE):
        if not _module_is_valid(reader, entry):
            continue
        name_rva = reader.u32(entry + 20)
        cv_size, cv_rva = reader.unpack("II", entry + 76)
        if name_rva in seen:
            continue
        seen.add(name_rva)
        name_size = reader.u32(name_rva)
        regions.append(MinidumpRegion(CODE_FILE, name_rva + 4, name_rva + 4 + name_size))
        offset = _CV_NAME_OFFSET.get(reader.u32(cv_rva))
        if offset is not None:
            regions.append(MinidumpRegion(DEBUG_FILE, cv_rva + offset, cv_rva + cv_size))
    return regions


def _directory(data: bytes) -> tuple[_Reader, dict[int, tuple[int, int]]]:
    """The byte order's reader and the stream directory: stream type -> (rva, size)."""
    if data[:4] == b"MDMP":
        reader = _Reader(data, "<")
    elif data[:4] == b"PMDM":
        reader = _Reader(data, ">")
    else:
        raise MinidumpError("missing minidump magic")
    _, version, stream_count, directory_rva = reader.unpack("IIII", 0)
    if version & 0xFFFF != _HEADER_VERSION:
        raise MinidumpError("unsupported minidump version")
    if stream_count > _MAX_ENTRIES:
        raise MinidumpError("implausible stream count")
    streams: dict[int, tuple[int, int]] = {}
    for index in range(stream_count):
        stream_type, size, rva = reader.unpack("III", directory_rva + 12 * index)
        # The last stream of a type wins, as in rust-minidump (a map insert per entry).
        streams[stream_type] = (rva, size)
    return reader, streams


def _stream_range(
    reader: _Reader, streams: dict[int, tuple[int, int]], stream_type: int
) -> tuple[int, int]:
    if stream_type not in streams:
        raise MinidumpError("minidump stream not found")
    rva, size = streams[stream_type]
    reader.slice(rva, size)  # bounds check
    return rva, size


def _stream_list(
    reader: _Reader, streams: dict[int, tuple[int, int]], stream_type: int, entry_size: int
) -> list[int]:
    """Offsets of the entries of a counted stream list (rust-minidump's ``read_stream_list``)."""
    rva, size = _stream_range(reader, streams, stream_type)
    if size < 4:
        raise MinidumpError("minidump stream too small")
    count = reader.u32(rva)
    expected = 4 + count * entry_size
    if size < expected or size - expected not in (0, 4):
        raise MinidumpError("minidump stream size mismatch")
    # Four extra bytes are padding after the count.
    start = rva + 4 + (size - expected)
    return [start + index * entry_size for index in range(count)]


def _module_is_valid(reader: _Reader, entry: int) -> bool:
    """Whether rust-minidump keeps the module (False); raises if it fails the whole list."""
    base, image_size = reader.unpack("QI", entry)
    if image_size == 0 or image_size > 0xFFFFFFFFFFFFFFFF - base:
        return False
    name_rva = reader.u32(entry + 20)
    name_size = reader.u32(name_rva)
    raw = reader.slice(name_rva + 4, name_size)
    if name_size % 2:
        raise MinidumpError("odd module name length")
    try:
        raw.decode("utf-16-be" if reader.endian == ">" else "utf-16-le")
    except UnicodeDecodeError:
        raise MinidumpError("module name is not UTF-16") from None
    cv_size, cv_rva = reader.unpack("II", entry + 76)
    if cv_size:
        record = reader.slice(cv_rva, cv_size)
        if len(record) < 4:
            raise MinidumpError("truncated CodeView record")
        signature = reader.u32(cv_rva)
        if len(record) < _CV_NAME_OFFSET.get(signature, 4):
            raise MinidumpError("truncated CodeView record")
    return True


# --- Chromium's stability report (protobuf) ---------------------------------------------

_PAGE: Final = 4096


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message; varints as int, lengths as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            yield number, data[pos : pos + size]
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError("unsupported wire type")
        if pos > len(data):
            raise ValueError("truncated field")


#: Message shapes: field number -> (output key, nested shape | scale for ints).
_Shape = dict[int, tuple[str, Any]]
_PROCESS_WINDOWS_MEMORY: _Shape = {
    1: ("process_private_usage", _PAGE),
    2: ("process_peak_workingset_size", _PAGE),
    3: ("process_peak_pagefile_usage", _PAGE),
    4: ("process_allocation_attempt", 1),
}
_FILE_SYSTEM_STATE: _Shape = {
    1: ("posix_file_system_state", {1: ("open_file_descriptors", 1)}),
    2: ("windows_file_system_state", {1: ("process_handle_count", 1)}),
}
_PROCESS_STATE: _Shape = {
    3: ("process_id", 1),
    4: ("memory_state", {1: ("windows_memory", _PROCESS_WINDOWS_MEMORY)}),
    7: ("file_system_state", _FILE_SYSTEM_STATE),
}
_SYSTEM_MEMORY_STATE: _Shape = {
    1: (
        "windows_memory",
        {
            1: ("system_commit_limit", _PAGE),
            2: ("system_commit_remaining", _PAGE),
            3: ("system_handle_count", 1),
        },
    ),
}


def _message(data: bytes, shape: _Shape, depth: int = 0) -> dict[str, Any]:
    if depth > _MAX_PROTOBUF_DEPTH:
        raise ValueError("protobuf nested too deeply")
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        spec = shape.get(number)
        if spec is None:
            continue
        key, kind = spec
        if isinstance(kind, dict) and isinstance(value, bytes):
            out[key] = _message(value, kind, depth + 1)
        elif isinstance(kind, int) and isinstance(value, int):
            out[key] = value * kind
    return out


def parse_stability_report(data: bytes) -> dict[str, Any]:
    """Chromium's stability report as Relay's ``chromium_stability_report`` context.

    Sizes counted in 4 KiB pages are converted to bytes. Raises ValueError when malformed.
    """
    process_states: list[dict[str, Any]] = []
    system_memory: dict[str, Any] | None = None
    for number, value in _fields(data):
        if not isinstance(value, bytes):
            continue
        if number == 2:
            process_states.append(_message(value, _PROCESS_STATE))
        elif number == 7:
            system_memory = _message(value, _SYSTEM_MEMORY_STATE)
    report: dict[str, Any] = {"type": "chromiumstabilityreport", "process_states": process_states}
    if system_memory is not None:
        report["system_memory_state"] = system_memory
    return report
