"""Minidump uploads: compressed containers, the magic check, and nested multipart bodies.

Crash reporters (Breakpad, Crashpad, Electron) upload a minidump either as the request body or
as the ``upload_file_minidump`` field of a multipart form. The dump may be wrapped in gzip, xz,
bzip2 or zstd (recognised by magic bytes, not by headers), and some clients nest a whole
multipart body inside that field. After unwrapping, the dump must start with ``MDMP`` (or
``PMDM``, big endian); anything else is refused as "invalid minidump".
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Final

from relay.errors import BadRequest, InvalidCompression, PayloadTooLarge
from relay.protocol.encoding import zstd_decompress

__all__ = [
    "MINIDUMP_CONTENT_TYPE",
    "MINIDUMP_FIELD_NAME",
    "InvalidMinidump",
    "MissingMinidump",
    "decode_minidump",
    "is_compressed",
    "remove_container_extension",
    "validate_minidump",
]

MINIDUMP_FIELD_NAME: Final = "upload_file_minidump"
MINIDUMP_CONTENT_TYPE: Final = "application/x-dmp"

_MAGICS: Final = (b"MDMP", b"PMDM")
_GZIP: Final = b"\x1f\x8b"
_XZ: Final = b"\xfd\x37\x7a\x58\x5a\x00"
_BZIP2: Final = b"\x42\x5a\x68"
_ZSTD: Final = b"\x28\xb5\x2f\xfd"
_CONTAINER_SUFFIXES: Final = (".gz", ".xz", ".bz2", ".zst")


class InvalidMinidump(BadRequest):
    """The upload is not a minidump (no ``MDMP`` magic)."""

    reason = "invalid_minidump"

    def __init__(self) -> None:
        super().__init__("invalid minidump")


class MissingMinidump(BadRequest):
    """A multipart upload without an ``upload_file_minidump`` field."""

    reason = "missing_minidump_upload"

    def __init__(self) -> None:
        super().__init__("missing minidump")


def validate_minidump(data: bytes) -> None:
    """Raise :class:`InvalidMinidump` unless ``data`` starts with a minidump magic."""
    if data[:4] not in _MAGICS:
        raise InvalidMinidump()


def is_compressed(data: bytes) -> bool:
    """Whether the data starts with the magic of a container Relay unwraps."""
    return data.startswith((_GZIP, _XZ, _BZIP2, _ZSTD))


def remove_container_extension(filename: str) -> str:
    """``minidump.dmp.gz`` -> ``minidump.dmp``; other names unchanged."""
    for suffix in _CONTAINER_SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"decompressed minidump exceeds {limit} bytes")


def _inflate_gzip(data: bytes, limit: int) -> bytes:
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = decoder.decompress(data, limit + 1)
    if len(out) > limit:
        raise _too_large(limit)
    if not decoder.eof:
        raise InvalidCompression("invalid compression format")
    return out


def _decompress_stream(decoder: lzma.LZMADecompressor | bz2.BZ2Decompressor, data: bytes,
                       limit: int) -> bytes:  # fmt: skip
    # max_length bounds the output of each call; the decoder keeps the rest of the input.
    out = decoder.decompress(data, max_length=limit + 1)
    if len(out) > limit:
        raise _too_large(limit)
    if not decoder.eof:
        raise InvalidCompression("invalid compression format")
    return out


def decode_minidump(data: bytes, limit: int) -> bytes:
    """Unwrap a compressed minidump of at most ``limit`` bytes; plain data passes unchanged.

    Raises :class:`~relay.errors.PayloadTooLarge` past ``limit`` and
    :class:`~relay.errors.InvalidCompression` for a broken container.
    """
    try:
        if data.startswith(_GZIP):
            return _inflate_gzip(data, limit)
        if data.startswith(_XZ):
            return _decompress_stream(lzma.LZMADecompressor(), data, limit)
        if data.startswith(_BZIP2):
            return _decompress_stream(bz2.BZ2Decompressor(), data, limit)
        if data.startswith(_ZSTD):
            return zstd_decompress(data, limit)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as exc:
        raise InvalidCompression("invalid compression format") from exc
    return data
