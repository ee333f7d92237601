"""Request body decompression (``Content-Encoding``) with a hard size limit, plus zstd helpers.

Relay decodes request bodies in tower-http's ``RequestDecompressionLayer``: it accepts exactly
``gzip``, ``deflate``, ``br``, ``zstd`` and ``identity``, ignores an empty or ``utf-8`` header
(sentry-ruby and old Android SDKs send those), and answers **415** for anything else. We accept a
superset because HTTP clients vary: names are case-insensitive, ``x-gzip`` means gzip,
``deflate`` may be zlib-wrapped or raw, and comma-separated stacked encodings are undone in
reverse order. Unknown encodings raise :class:`~relay.errors.UnsupportedMediaType` (415, like
Relay); data that does not decode raises :class:`~relay.errors.InvalidCompression` (400).

Every decoder stops as soon as its output passes ``limit`` and raises
:class:`~relay.errors.PayloadTooLarge` (413), so a decompression bomb costs at most about
``limit`` bytes of memory (zstd: ``limit`` + 2 MiB, see :func:`zstd_decompress`).

gzip and deflate are inflated by zlib-ng (the ``zlib_ng`` module, zlib's API): the same output
as the standard library's zlib, about 3x faster on SDK bodies (20 -> 6.6 us for the corpus's
~10 KB envelopes, every one of them gzip).
"""

from __future__ import annotations

import threading
from typing import Final, cast

import brotli
import zstandard
from zlib_ng import zlib_ng

from relay.errors import InvalidCompression, PayloadTooLarge, UnsupportedMediaType

__all__ = [
    "SUPPORTED_ENCODINGS",
    "decode_body",
    "zstd_compress",
    "zstd_decompress",
]

#: Content codings :func:`decode_body` understands (lower case).
SUPPORTED_ENCODINGS: Final = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd", "identity"})

# Header values that mean "not encoded" (Relay's `remove_empty_encoding`).
_IGNORED_ENCODINGS: Final = frozenset({"", "identity", "utf-8"})

_GZIP_WBITS: Final = 16 + zlib_ng.MAX_WBITS
_ZLIB_WBITS: Final = zlib_ng.MAX_WBITS
_RAW_DEFLATE_WBITS: Final = -zlib_ng.MAX_WBITS
# zlib_ng's stub declares `error` as an instance; at runtime it is the exception class.
_INFLATE_ERROR: Final = cast(type[Exception], zlib_ng.error)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"decompressed body exceeds {limit} bytes")


def _join(chunks: list[bytes]) -> bytes:
    # The common case is a single chunk: return it without copying.
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _inflate(data: bytes, wbits: int, limit: int, *, multi_member: bool) -> bytes:
    """Decompress zlib/gzip/raw deflate, never producing more than ``limit + 1`` bytes."""
    chunks: list[bytes] = []
    size = 0
    decoder = zlib_ng.decompressobj(wbits)
    pending = data
    while True:
        # `max_length` caps this call's output; leftover input waits in `unconsumed_tail`.
        chunk = decoder.decompress(pending, limit - size + 1)
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if decoder.eof:
            rest = decoder.unused_data
            # gzip allows several concatenated members (RFC 1952 2.2); anything else after the
            # end of the stream is padding that decoders traditionally ignore.
            if multi_member and rest[:2] == b"\x1f\x8b":
                decoder = zlib_ng.decompressobj(wbits)
                pending = rest
                continue
            break
        pending = decoder.unconsumed_tail
        if not pending and not chunk:
            # All input consumed and nothing more to flush, yet the stream has not ended.
            raise InvalidCompression("compressed body is truncated")
    return _join(chunks) if chunks else b""


def _looks_like_zlib(data: bytes) -> bool:
    # RFC 1950 header: CM = 8 (deflate), CINFO <= 7, and the 16-bit header is divisible by 31.
    if len(data) < 2:
        return False
    cmf, flg = data[0], data[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and ((cmf << 8) | flg) % 31 == 0


def _decode_gzip(data: bytes, limit: int) -> bytes:
    return _inflate(data, _GZIP_WBITS, limit, multi_member=True)


def _decode_deflate(data: bytes, limit: int) -> bytes:
    # HTTP "deflate" is zlib-wrapped (RFC 9110 8.4.1.2), but some clients send raw deflate.
    if _looks_like_zlib(data):
        try:
            return _inflate(data, _ZLIB_WBITS, limit, multi_member=False)
        except _INFLATE_ERROR:
            # A raw stream can start with bytes that happen to form a zlib header.
            pass
    return _inflate(data, _RAW_DEFLATE_WBITS, limit, multi_member=False)


def _decode_brotli(data: bytes, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    decoder = brotli.Decompressor()
    # With `output_buffer_limit` (brotli >= 1.2) each call returns a bounded amount; the decoder
    # keeps the rest and yields it on further calls with empty input.
    chunk: bytes = decoder.process(data, output_buffer_limit=limit + 1)
    while True:
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if decoder.is_finished():
            break
        if decoder.can_accept_more_data():
            # It wants more input, but there is none.
            raise InvalidCompression("compressed body is truncated")
        chunk = decoder.process(b"", output_buffer_limit=limit - size + 1)
    return _join(chunks) if chunks else b""


# zstandard contexts must not be used from two threads at once. The event loop is one thread,
# but a caller may offload big bodies to an executor, so each thread gets its own contexts.
class _ZstdContexts(threading.local):
    def __init__(self) -> None:
        self.decompressor = zstandard.ZstdDecompressor()
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}


_zstd: Final = _ZstdContexts()

# A zstd block is at least 4 bytes and regenerates at most 128 KiB (ratio <= 2**15), so feeding
# `n` input bytes yields at most `n << 15` bytes plus one block already buffered.
_ZSTD_MAX_RATIO_SHIFT: Final = 15
# Smallest input slice fed at once: bounds the overshoot past `limit` to 2 MiB while keeping the
# number of calls low for ordinary data.
_ZSTD_MIN_FEED: Final = 64


_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
# Skippable frames use the magic numbers 0x184D2A50 to 0x184D2A5F (little endian).
_ZSTD_SKIPPABLE_MAGIC_TAIL: Final = b"\x2a\x4d\x18"


def _starts_zstd_frame(head: bytes) -> bool:
    return head == _ZSTD_MAGIC or (
        head[1:] == _ZSTD_SKIPPABLE_MAGIC_TAIL and head[0] & 0xF0 == 0x50
    )


def zstd_compress(data: bytes, level: int = 1) -> bytes:
    """Compress ``data`` into one zstd frame (with content size), reusing a cached context."""
    compressor = _zstd.compressors.get(level)
    if compressor is None:
        compressor = _zstd.compressors[level] = zstandard.ZstdCompressor(level=level)
    # zstandard allocates the worst-case size (larger than the input) and only shortens the
    # object's length: 40 compressed bytes of a 10 KB envelope kept 10 KB alive. A POP holds
    # these while its upstream is slow, so keep a right-sized copy (~0.2 us).
    return bytes(memoryview(compressor.compress(data)))


def zstd_decompress(data: bytes, limit: int) -> bytes:
    """Decompress zstd data (one or more frames) of at most ``limit`` bytes.

    zstandard's one-shot API cannot cap its output, so the input is fed in slices small enough
    that a slice can never produce more than what is left of ``limit`` (at least 64 bytes at a
    time, which bounds a bomb to ``limit`` + 2 MiB). Raises :class:`PayloadTooLarge` past
    ``limit`` and :class:`InvalidCompression` for corrupt or truncated data.
    """
    view = memoryview(data)
    end = len(view)
    chunks: list[bytes] = []
    size = 0
    pos = 0
    dctx = _zstd.decompressor
    try:
        while pos < end:
            if pos and not _starts_zstd_frame(bytes(view[pos : pos + 4])):
                # Bytes after a complete frame that start no new frame are ignored, as gzip
                # decoders ignore trailing padding.
                break
            decoder = dctx.decompressobj()
            while True:
                step = max(_ZSTD_MIN_FEED, (limit - size) >> _ZSTD_MAX_RATIO_SHIFT)
                chunk = decoder.decompress(view[pos : pos + step])
                pos += step
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    chunks.append(chunk)
                if decoder.eof:
                    # The next frame starts where this one ended, inside the slice just fed.
                    pos = min(pos, end) - len(decoder.unused_data)
                    break
                if pos >= end:
                    raise InvalidCompression("compressed body is truncated")
    except zstandard.ZstdError as exc:
        raise InvalidCompression(f"invalid zstd data: {exc}") from exc
    return _join(chunks) if chunks else b""


_DECODERS: Final = {
    "gzip": _decode_gzip,
    "x-gzip": _decode_gzip,
    "deflate": _decode_deflate,
    "br": _decode_brotli,
    "zstd": zstd_decompress,
}


def _decode_one(body: bytes, encoding: str, limit: int) -> bytes:
    decoder = _DECODERS.get(encoding)
    if decoder is None:
        raise UnsupportedMediaType(f"unsupported content encoding: {encoding!r}")
    if not body:
        # Some clients label empty bodies as compressed; there is nothing to decode.
        return body
    try:
        return decoder(body, limit)
    except (_INFLATE_ERROR, brotli.error) as exc:
        raise InvalidCompression(f"invalid {encoding} data: {exc}") from exc


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` on a request body and enforce the decompressed size ``limit``.

    ``content_encoding`` is the raw header value; ``None``, "", "identity" and "utf-8" mean no
    encoding, and the body is returned as the same object. Stacked encodings ("gzip, br") are
    undone from last to first. Raises :class:`UnsupportedMediaType` (415) for an unknown coding,
    :class:`InvalidCompression` (400) for data that does not decode, and
    :class:`PayloadTooLarge` (413) as soon as any decoded stage exceeds ``limit`` bytes (an
    unencoded body longer than ``limit`` too).
    """
    if content_encoding is None:
        encodings: list[str] = []
    elif "," in content_encoding:
        encodings = [enc.strip().lower() for enc in content_encoding.split(",")]
    else:
        encodings = [content_encoding.strip().lower()]
    for encoding in reversed(encodings):
        if encoding not in _IGNORED_ENCODINGS:
            body = _decode_one(body, encoding, limit)
    if len(body) > limit:
        raise _too_large(limit)
    return body
