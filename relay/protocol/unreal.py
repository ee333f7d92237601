"""Unreal Engine crash reports: the archive the UE4 crash reporter uploads.

The body is zlib-compressed. Inside: a header (directory name, file name, uncompressed size,
file count), the files (index, name, length-prefixed data), and the header again at the end,
which is the copy with the right file count (the leading one is written before the count is
known). Strings are Unreal ``FString``\\ s: a signed 32-bit length including the NUL, then the
characters (a negative length means UTF-16).
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

import msgspec

__all__ = ["UnrealError", "UnrealFile", "file_kind", "parse_unreal_crash"]

_I32: Final = struct.Struct("<i")
#: Relay keeps at most this many files of a report.
_MAX_FILES: Final = 1000


class UnrealError(ValueError):
    """The report cannot be read; ``reason`` is the outcome reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class UnrealFile(msgspec.Struct, frozen=True):
    """One file of the report."""

    name: str
    data: bytes


class _Cursor:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def i32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise UnrealError("process_unreal", "unexpected end of the crash report")
        (value,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise UnrealError("process_unreal", "unexpected end of the crash report")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def fstring(self) -> str:
        length = self.i32()
        if length < 0:
            raw = self.take(-2 * length)
            return raw.decode("utf-16-le", "replace").rstrip("\0")
        return self.take(length).decode("utf-8", "replace").rstrip("\0")


def _decompress(payload: bytes, limit: int) -> bytes:
    decoder = zlib.decompressobj()
    try:
        data = decoder.decompress(payload, limit + 1)
    except zlib.error as exc:
        raise UnrealError("invalid_compression", "invalid compression in crash report") from exc
    if len(data) > limit:
        raise UnrealError("too_large:unreal_report", "crash report exceeds the size limit")
    return data


def _header(cursor: _Cursor) -> int:
    """Read a header; returns its file count."""
    cursor.fstring()  # directory name
    cursor.fstring()  # file name
    cursor.i32()  # uncompressed size
    return cursor.i32()


def parse_unreal_crash(payload: bytes, limit: int) -> list[UnrealFile]:
    """The files of an Unreal crash report of at most ``limit`` bytes uncompressed.

    Raises :class:`UnrealError` (``invalid_compression``, ``too_large:unreal_report`` or
    ``process_unreal``) when it cannot be read.
    """
    if not payload:
        raise UnrealError("process_unreal", "empty crash report")
    data = _decompress(payload, limit)
    cursor = _Cursor(data)
    _header(cursor)
    header_size = cursor.pos
    try:
        count = _header(_Cursor(data, len(data) - header_size))
    except UnrealError:
        count = -1
    if not 0 <= count <= _MAX_FILES:
        raise UnrealError("process_unreal", "invalid file count in crash report")
    files = []
    for _ in range(count):
        cursor.i32()  # file index
        name = cursor.fstring()
        size = cursor.i32()
        files.append(UnrealFile(name=name, data=cursor.take(size)))
    return files


def file_kind(file: UnrealFile) -> str:
    """What a file of the report is: context, config, log, minidump, applecrashreport, other."""
    name = file.name
    if name == "CrashContext.runtime-xml":
        return "context"
    if name == "CrashReportClient.ini":
        return "config"
    if name.endswith(".log"):
        return "log"
    if name.endswith(".dmp"):
        # macOS crash reporters write an Apple crash report under the minidump's name.
        return "minidump" if file.data[:4] in (b"MDMP", b"PMDM") else "applecrashreport"
    return "other"
