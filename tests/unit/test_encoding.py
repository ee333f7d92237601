"""Unit tests for relay.protocol.encoding (Content-Encoding and zstd helpers)."""

from __future__ import annotations

import gzip
import json
import random
import tracemalloc
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import brotli
import pytest
import zstandard

from relay.errors import InvalidCompression, PayloadTooLarge, UnsupportedMediaType
from relay.protocol import encoding as module
from relay.protocol.encoding import decode_body, zstd_compress, zstd_decompress
from relay.protocol.envelope import parse_envelope
from tests.paths import CORPUS

WIRE_DIR = CORPUS / "wire"
DATA = b'{"message":"hello world","level":"error"}\n' * 2000


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def zstd_streamed(data: bytes) -> bytes:
    """A zstd frame without content size, as streaming encoders (Relay's) write it."""
    compressor = zstandard.ZstdCompressor().compressobj()
    return compressor.compress(data) + compressor.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd_compress,
}


# -- identity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "", "identity", "IDENTITY", " identity ", "utf-8"])
def test_identity_returns_same_object(encoding: str | None) -> None:
    body = b"payload"
    assert decode_body(body, encoding, 100) is body


def test_identity_over_limit() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        decode_body(b"x" * 11, None, 10)
    assert info.value.status == 413
    assert decode_body(b"x" * 10, None, 10) == b"x" * 10


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_round_trip(encoding: str) -> None:
    compressed = ENCODERS[encoding](DATA)
    assert decode_body(compressed, encoding, len(DATA)) == DATA


@pytest.mark.parametrize("encoding", ["GZIP", "Deflate", " br ", "ZSTD"])
def test_encoding_names_are_case_insensitive(encoding: str) -> None:
    compressed = ENCODERS[encoding.strip().lower()](DATA)
    assert decode_body(compressed, encoding, len(DATA)) == DATA


def test_raw_deflate() -> None:
    assert decode_body(raw_deflate(DATA), "deflate", len(DATA)) == DATA


def test_raw_deflate_of_small_and_empty_payloads() -> None:
    for data in (b"", b"a", b"{}", bytes(range(256))):
        assert decode_body(raw_deflate(data), "deflate", 1000) == data
        assert decode_body(zlib.compress(data), "deflate", 1000) == data


def test_multi_member_gzip() -> None:
    body = gzip.compress(b"first ") + gzip.compress(b"second")
    assert decode_body(body, "gzip", 100) == b"first second"


def test_gzip_ignores_trailing_padding() -> None:
    assert decode_body(gzip.compress(b"data") + b"\0\0\0\0", "gzip", 100) == b"data"


def test_stacked_encodings_are_undone_in_reverse() -> None:
    # "gzip, br" means gzip was applied first, then brotli.
    body = brotli.compress(gzip.compress(DATA))
    assert decode_body(body, "gzip, br", len(DATA)) == DATA
    body = zstd_compress(zlib.compress(DATA))
    assert decode_body(body, "deflate,zstd", len(DATA)) == DATA
    body = gzip.compress(DATA)
    assert decode_body(body, "identity, gzip", len(DATA)) == DATA


def test_empty_body_with_encoding() -> None:
    for encoding in ENCODERS:
        assert decode_body(b"", encoding, 10) == b""


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["compress", "lz4", "snappy", "gzip;q=1", "br, lzma"])
def test_unknown_encoding_is_415(encoding: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        decode_body(b"data", encoding, 100)
    assert info.value.status == 415


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_garbage_is_invalid(encoding: str) -> None:
    with pytest.raises(InvalidCompression) as info:
        decode_body(b"this is not compressed at all", encoding, 1000)
    assert info.value.status == 400


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_truncated_is_invalid(encoding: str) -> None:
    compressed = ENCODERS[encoding](DATA)
    for cut in (len(compressed) // 2, len(compressed) - 3):
        with pytest.raises(InvalidCompression):
            decode_body(compressed[:cut], encoding, len(DATA))


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_corrupt_is_invalid(encoding: str) -> None:
    encode = ENCODERS[encoding]
    if encoding == "zstd":
        # Without a checksum zstd cannot notice every corruption.
        encode = zstandard.ZstdCompressor(write_checksum=True).compress
    compressed = bytearray(encode(DATA))
    middle = len(compressed) // 2
    compressed[middle : middle + 16] = bytes(16)
    with pytest.raises(InvalidCompression):
        decode_body(bytes(compressed), encoding, len(DATA) * 2)


# -- limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_limit_is_inclusive(encoding: str) -> None:
    compressed = ENCODERS[encoding](DATA)
    assert decode_body(compressed, encoding, len(DATA)) == DATA
    with pytest.raises(PayloadTooLarge):
        decode_body(compressed, encoding, len(DATA) - 1)


def test_limit_applies_to_every_stage() -> None:
    body = brotli.compress(gzip.compress(DATA))
    with pytest.raises(PayloadTooLarge):
        decode_body(body, "gzip, br", 100)


BOMB_SIZE = 32 << 20
LIMIT = 1 << 20


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """32 MiB of zeros per encoding, built from 1 MiB chunks to keep the test light."""
    chunk = bytes(1 << 20)
    gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zl = zlib.compressobj(9)
    zs = zstandard.ZstdCompressor(level=3).compressobj()
    br = brotli.Compressor(quality=5)
    out: dict[str, list[bytes]] = {"gzip": [], "deflate": [], "zstd": [], "br": []}
    for _ in range(BOMB_SIZE // len(chunk)):
        out["gzip"].append(gz.compress(chunk))
        out["deflate"].append(zl.compress(chunk))
        out["zstd"].append(zs.compress(chunk))
        out["br"].append(br.process(chunk))
    out["gzip"].append(gz.flush())
    out["deflate"].append(zl.flush())
    out["zstd"].append(zs.flush())
    out["br"].append(br.finish())
    return {name: b"".join(parts) for name, parts in out.items()}


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_bomb_is_stopped_without_allocating_its_size(
    bombs: dict[str, bytes], encoding: str
) -> None:
    bomb = bombs[encoding]
    assert len(bomb) < BOMB_SIZE // 100
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            decode_body(bomb, encoding, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # gzip/deflate/br stop at limit + 1 bytes (x2 while joining chunks); zstd may overshoot
    # by its 2 MiB feed bound. Either way far below the 32 MiB the bomb expands to.
    bound = 3 * LIMIT if encoding != "zstd" else 3 * LIMIT + (2 << 20)
    assert peak < bound


def test_bomb_within_limit_decodes(bombs: dict[str, bytes]) -> None:
    for encoding, bomb in bombs.items():
        assert len(decode_body(bomb, encoding, BOMB_SIZE)) == BOMB_SIZE


# -- zstd helpers -----------------------------------------------------------------------------


def test_zstd_round_trip_and_levels() -> None:
    for level in (1, 3, 10):
        assert zstd_decompress(zstd_compress(DATA, level), len(DATA)) == DATA
    assert zstd_compress(DATA, 3) == zstd_compress(DATA, 3)
    assert zstandard.frame_content_size(zstd_compress(DATA)) == len(DATA)


def test_zstd_without_content_size() -> None:
    assert zstd_decompress(zstd_streamed(DATA), len(DATA)) == DATA
    with pytest.raises(PayloadTooLarge):
        zstd_decompress(zstd_streamed(DATA), len(DATA) - 1)


def test_zstd_multiple_and_skippable_frames() -> None:
    skippable = (0x184D2A53).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"xyz"
    body = zstd_compress(b"one ") + skippable + zstd_streamed(b"two")
    assert zstd_decompress(body, 100) == b"one two"
    assert zstd_decompress(skippable + zstd_compress(b"x"), 100) == b"x"
    # Bytes after the last frame that start no new frame are ignored, as for gzip.
    assert zstd_decompress(zstd_compress(b"x") + b"garbage", 100) == b"x"


def test_zstd_thread_safety() -> None:
    payloads = [DATA[: 1000 * (i + 1)] for i in range(16)]

    def work(data: bytes) -> bool:
        return all(
            zstd_decompress(zstd_compress(data, 1 + n % 3), len(data)) == data for n in range(20)
        )

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, payloads))


# -- the recorded corpus ----------------------------------------------------------------------


def wire_cases() -> list[Path]:
    return sorted(WIRE_DIR.glob("*.body"))


@pytest.mark.parametrize("body_path", wire_cases(), ids=lambda p: p.name)
def test_corpus_wire_bodies_decode(body_path: Path) -> None:
    meta = json.loads(body_path.with_suffix(".meta.json").read_text())
    headers = {name.lower(): value for name, value in meta["headers"]}
    body = body_path.read_bytes()
    assert len(body) == meta["body_len"]
    decoded = decode_body(body, headers.get("content-encoding"), 10 << 20)
    assert decoded.startswith(b"{")
    parse_envelope(decoded)
    # The same bytes survive a re-encoding with each of the other codings.
    for encoding, encode in ENCODERS.items():
        assert decode_body(encode(decoded), encoding, len(decoded)) == decoded


def test_zstd_compress_keeps_no_worst_case_buffer_alive() -> None:
    # A POP holds compressed envelopes while its upstream is slow: each must cost its size.
    data = b'{"message":"' + b"hello world " * 1000 + b'"}'
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [zstd_compress(data) for _ in range(20)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(held[0]) < 200
    assert grown < 20 * 400, f"{grown / 20:.0f} bytes held per {len(held[0])}-byte result"


def _outcome(body: bytes, encoding: str, limit: int) -> bytes | str:
    try:
        return decode_body(body, encoding, limit)
    except (InvalidCompression, PayloadTooLarge) as exc:
        return type(exc).__name__


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_zlib_ng_inflates_exactly_as_the_standard_zlib(
    encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Differential: every corpus body, cut short, corrupted, concatenated and with trailing
    bytes, under a tight limit too, decodes (or fails) the same with zlib-ng and with zlib."""
    rng = random.Random(11)
    plain = [decode_body(p.read_bytes(), "gzip", 10 << 20) for p in wire_cases()]
    wrap = gzip.compress if encoding == "gzip" else zlib.compress
    cases: list[tuple[bytes, int]] = []
    for data in plain:
        packed = wrap(data)
        cases += [(packed, 10 << 20), (packed, len(data) - 1), (packed + packed, 10 << 20)]
        cases += [(packed + b"\x00junk", 10 << 20), (zlib.compress(data)[2:-4], 10 << 20)]
        for _ in range(4):
            cut = rng.randrange(1, len(packed))
            flipped = bytearray(packed)
            flipped[rng.randrange(len(packed))] ^= 1 << rng.randrange(8)
            cases += [(packed[:cut], 10 << 20), (bytes(flipped), 10 << 20)]
    ours = [_outcome(body, encoding, limit) for body, limit in cases]
    monkeypatch.setattr(module, "zlib_ng", zlib)
    monkeypatch.setattr(module, "_INFLATE_ERROR", zlib.error)
    reference = [_outcome(body, encoding, limit) for body, limit in cases]
    assert ours == reference
    assert sum(isinstance(o, bytes) for o in ours) >= 3 * len(plain)
