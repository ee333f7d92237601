"""Which flush partition a bucket belongs to, computed exactly as Relay computes it.

Relay spreads the buckets of one time window over ``flush_partitions`` partitions and
sends each partition's number upstream in ``X-Sentry-Relay-Shard``, so that the next hop
can route a shard consistently. The number is a hash of the bucket key modulo the
partition count; the hash is aHash's portable ("fallback") hasher with Relay's fixed
seeds, fed the same sequence of writes that Rust's ``#[derive(Hash)]`` produces for the
key fields. Reproducing it keeps shard numbers identical across mixed Relay/our chains.

What is hashed depends on ``flush_batching``:

- ``project``: the project key (all buckets of a project flush together),
- ``partition``: project key, metric name and tags,
- ``bucket``: the whole bucket key (project key, timestamp, name, tags and the
  ``extracted_from_indexed`` flag, always false here),
- ``none``: no hashing; everything is partition 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["RelayHasher", "partition_hash", "partition_key"]

_MASK64: Final = (1 << 64) - 1
_MASK128: Final = (1 << 128) - 1
# aHash's multiplier (Knuth's MMIX LCG constant) and its rotation for 128-bit updates.
_MULTIPLE: Final = 6364136223846793005
_ROTATION: Final = 23
# aHash XORs user seeds with these digits of pi (`RandomState::with_seeds`).
_PI2: Final = (
    0x4528_21E6_38D0_1377,
    0xBE54_66CF_34E9_0C6C,
    0xC0AC_29B7_C97C_50DD,
    0x3F84_D5B5_B547_0917,
)
# Relay's fixed aggregator seeds: the same partition on every Relay instance.
_RELAY_SEEDS: Final = (
    0x0645_9B7D_5DA8_4ED8,
    0x3321_CE26_36C5_67CC,
    0x56C9_4D71_07C4_9765,
    0x685B_F5F9_ABBE_A5AB,
)
# Rust's `Hasher::write_str` terminates every string with this byte (prefix-freedom).
_STR_TERMINATOR: Final = 0xFF


def _folded_multiply(a: int, b: int) -> int:
    """128-bit product of two u64, folded to 64 bits by XOR of its halves."""
    product = (a * b) & _MASK128
    return (product & _MASK64) ^ (product >> 64)


def _rotate_left(value: int, bits: int) -> int:
    bits &= 63
    if not bits:
        return value
    return ((value << bits) | (value >> (64 - bits))) & _MASK64


def _le(data: bytes) -> int:
    return int.from_bytes(data, "little")


class RelayHasher:
    """aHash's fallback hasher keyed like Relay's aggregator (one value per instance)."""

    __slots__ = ("_buffer", "_extra", "_pad")

    def __init__(self, seeds: tuple[int, int, int, int] = _RELAY_SEEDS) -> None:
        k0, k1, k2, k3 = (seed ^ pi for seed, pi in zip(seeds, _PI2, strict=True))
        self._buffer = k1
        self._pad = k0
        self._extra = (k2, k3)

    def _update(self, value: int) -> None:
        self._buffer = _folded_multiply((value & _MASK64) ^ self._buffer, _MULTIPLE)

    def _update128(self, low: int, high: int) -> None:
        combined = _folded_multiply(low ^ self._extra[0], high ^ self._extra[1])
        mixed = ((self._buffer + self._pad) & _MASK64) ^ combined
        self._buffer = _rotate_left(mixed, _ROTATION)

    def write_u8(self, value: int) -> None:
        """Hash one byte (Rust ``write_u8``)."""
        self._update(value)

    def write_u64(self, value: int) -> None:
        """Hash a 64-bit integer (also ``usize`` lengths on 64-bit targets)."""
        self._update(value)

    def write_bytes(self, data: bytes) -> None:
        """Hash a byte slice (Rust ``write``): length first, then 16-byte blocks."""
        size = len(data)
        self._buffer = ((self._buffer + size) * _MULTIPLE) & _MASK64
        if size > 16:
            # The last 16 bytes first, then every full leading block.
            self._update128(_le(data[-16:-8]), _le(data[-8:]))
            rest = data
            while len(rest) > 16:
                self._update128(_le(rest[:8]), _le(rest[8:16]))
                rest = rest[16:]
        elif size > 8:
            self._update128(_le(data[:8]), _le(data[-8:]))
        elif size >= 4:
            self._update128(_le(data[:4]), _le(data[-4:]))
        elif size >= 2:
            self._update128(_le(data[:2]), data[-1])
        elif size == 1:
            self._update128(data[0], data[0])
        else:
            self._update128(0, 0)

    def write_str(self, text: str) -> None:
        """Hash a string as Rust's ``str: Hash`` does: its bytes, then ``0xff``."""
        self.write_bytes(text.encode())
        self.write_u8(_STR_TERMINATOR)

    def write_project_key(self, project_key: str) -> None:
        """Hash a project key (Relay stores it as ``[u8; 32]``: length prefix, bytes)."""
        raw = project_key.encode()
        self.write_u64(len(raw))
        self.write_bytes(raw)

    def write_tags(self, tags: Iterable[tuple[str, str]]) -> None:
        """Hash tags as a ``BTreeMap<String, String>``: count, then sorted pairs."""
        items = sorted(tags)
        self.write_u64(len(items))
        for key, value in items:
            self.write_str(key)
            self.write_str(value)

    def finish(self) -> int:
        """The 64-bit hash of everything written."""
        return _rotate_left(_folded_multiply(self._buffer, self._pad), self._buffer & 63)


def partition_hash(
    batching: str,
    project_key: str,
    timestamp: int,
    name: str,
    tags: Iterable[tuple[str, str]],
) -> int:
    """The 64-bit hash Relay assigns partitions by, for a ``flush_batching`` mode."""
    hasher = RelayHasher()
    if batching == "project":
        hasher.write_project_key(project_key)
    elif batching == "partition":
        hasher.write_project_key(project_key)
        hasher.write_str(name)
        hasher.write_tags(tags)
    else:
        # `bucket`: every field of Relay's BucketKey, in declaration order.
        hasher.write_project_key(project_key)
        hasher.write_u64(timestamp)
        hasher.write_str(name)
        hasher.write_tags(tags)
        hasher.write_u8(0)  # extracted_from_indexed: false
    return hasher.finish()


def partition_key(
    batching: str,
    partitions: int,
    project_key: str,
    timestamp: int,
    name: str,
    tags: Iterable[tuple[str, str]],
) -> int:
    """The partition (``0 <= key < partitions``) of a bucket; 0 for ``none`` batching."""
    if batching == "none" or partitions <= 1:
        return 0
    return partition_hash(batching, project_key, timestamp, name, tags) % partitions
