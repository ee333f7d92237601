"""Partition keys and partitioners, as Relay and librdkafka choose partitions.

Relay keys an event, its attachment chunks, standalone attachments and user reports by
the event id, so that Sentry's ingest consumer sees the chunks of an event in the same
partition as (and before) the event that references them. Other messages are unkeyed.
"""

from __future__ import annotations

import random
import uuid
import zlib
from collections.abc import Callable, Sequence

from aiokafka.partitioner import murmur2

from relay.errors import ConfigError

#: ``partitioner(key, all_partitions, available_partitions) -> partition``, as aiokafka calls it.
Partitioner = Callable[[bytes | None, Sequence[int], Sequence[int]], int]


def event_uuid(event_id: str | uuid.UUID) -> uuid.UUID:
    """Parse an event id in any UUID spelling (hex, hyphenated, braced, ``urn:uuid:``)."""
    return event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(event_id)


def partition_key_for(event_id: str | uuid.UUID, org_id: int) -> bytes | None:
    """The 16-byte Kafka key Relay uses for messages that belong to an event.

    The event id's bytes with the organization id (big-endian u64) XORed into the first
    eight: Relay mixes in the org so that colliding ids of different orgs (an SDK bug or
    an attack) do not all land in one partition. A nil event id gives ``None`` (unkeyed).
    """
    value = event_uuid(event_id).int
    if value == 0:
        return None
    # The id as a 128-bit big-endian integer: its first eight bytes are the high 64 bits.
    return (value ^ ((org_id & 0xFFFF_FFFF_FFFF_FFFF) << 64)).to_bytes(16, "big")


def _random_partition(all_partitions: Sequence[int], available: Sequence[int]) -> int:
    # Not security relevant: only spreads unkeyed messages over partitions.
    return random.choice(available or all_partitions)


def _consistent(key: bytes | None, all_partitions: Sequence[int], _: Sequence[int]) -> int:
    return all_partitions[zlib.crc32(key or b"") % len(all_partitions)]


def _consistent_random(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    if not key:
        return _random_partition(all_partitions, available)
    return _consistent(key, all_partitions, available)


def _murmur2(key: bytes | None, all_partitions: Sequence[int], _: Sequence[int]) -> int:
    index: int = murmur2(key or b"") & 0x7FFF_FFFF
    return all_partitions[index % len(all_partitions)]


def _murmur2_random(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    if key is None:
        return _random_partition(all_partitions, available)
    return _murmur2(key, all_partitions, available)


def _random(_: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    return _random_partition(all_partitions, available)


_PARTITIONERS: dict[str, Partitioner] = {
    "consistent": _consistent,
    "consistent_random": _consistent_random,
    "murmur2": _murmur2,
    "murmur2_random": _murmur2_random,
    "random": _random,
}

#: librdkafka's default, which Relay runs with: CRC32 of the key, random when unkeyed.
DEFAULT_PARTITIONER = "consistent_random"


def partitioner(name: str = DEFAULT_PARTITIONER) -> Partitioner:
    """The librdkafka partitioner called ``name`` (librdkafka's ``partitioner`` setting)."""
    try:
        return _PARTITIONERS[name]
    except KeyError:
        known = ", ".join(sorted(_PARTITIONERS))
        raise ConfigError(f"unsupported kafka partitioner {name!r} (known: {known})") from None
