"""GeoIP lookups in a MaxMind DB (``.mmdb``) file, for ``user.geo``.

A small reader of the MaxMind DB format (a binary search tree over the address bits,
followed by a data section of typed values), enough for the GeoIP2/GeoLite2 City
databases Relay's ``geoip.path`` points to. The caller reads the file; this module does
no I/O. Lookups return Relay's ``Geo`` fields: ``country_code``, ``city``, ``subdivision``
and ``region`` (the country's English name).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, Final

__all__ = ["GeoIpError", "GeoIpLookup", "lookup_geo"]

_METADATA_MARKER: Final = b"\xab\xcd\xefMaxMind.com"
#: The metadata is in the last 128 KiB of the file (format specification).
_METADATA_MAX_SIZE: Final = 128 * 1024
#: Null bytes between the search tree and the data section.
_DATA_SEPARATOR: Final = 16

# Data field types of the format (the control byte's top three bits, then extended).
_POINTER: Final = 1
_STRING: Final = 2
_DOUBLE: Final = 3
_BYTES: Final = 4
_UINT16: Final = 5
_UINT32: Final = 6
_MAP: Final = 7
_INT32: Final = 8
_UINT64: Final = 9
_UINT128: Final = 10
_ARRAY: Final = 11
_CONTAINER: Final = 12
_END_MARKER: Final = 13
_BOOLEAN: Final = 14
_FLOAT: Final = 15

#: Nesting bound for maps and arrays: a corrupt file must not exhaust the stack.
_MAX_DEPTH: Final = 64


class GeoIpError(ValueError):
    """The database is not a readable MaxMind DB file."""


class _Decoder:
    """Decodes values of the data section (or of the metadata block)."""

    __slots__ = ("_base", "_buf")

    def __init__(self, buf: bytes, base: int) -> None:
        self._buf = buf
        #: Where offsets of pointers count from (the start of the section).
        self._base = base

    def decode(self, offset: int, depth: int = 0) -> tuple[Any, int]:
        """The value at ``offset`` (absolute) and the offset just after it."""
        if depth > _MAX_DEPTH:
            raise GeoIpError("data nested too deeply")
        buf = self._buf
        if offset >= len(buf):
            raise GeoIpError("data offset outside of the file")
        ctrl = buf[offset]
        offset += 1
        kind = ctrl >> 5
        if kind == _POINTER:
            target, offset = self._pointer(ctrl, offset)
            value, _ = self.decode(self._base + target, depth + 1)
            return value, offset
        if kind == 0:
            kind = 7 + self._byte(offset)
            offset += 1
        size, offset = self._size(ctrl & 0x1F, offset)
        return self._value(kind, size, offset, depth)

    def _byte(self, offset: int) -> int:
        if offset >= len(self._buf):
            raise GeoIpError("truncated data")
        return self._buf[offset]

    def _take(self, offset: int, size: int) -> bytes:
        end = offset + size
        if end > len(self._buf):
            raise GeoIpError("truncated data")
        return self._buf[offset:end]

    def _pointer(self, ctrl: int, offset: int) -> tuple[int, int]:
        length = ((ctrl >> 3) & 0x3) + 1
        raw = int.from_bytes(self._take(offset, length), "big")
        low = ctrl & 0x7
        if length == 1:
            target = (low << 8) | raw
        elif length == 2:
            target = ((low << 16) | raw) + 2048
        elif length == 3:
            target = ((low << 24) | raw) + 526336
        else:
            target = raw
        return target, offset + length

    def _size(self, size: int, offset: int) -> tuple[int, int]:
        if size < 29:
            return size, offset
        extra = size - 28
        raw = int.from_bytes(self._take(offset, extra), "big")
        return (29, 285, 65821)[extra - 1] + raw, offset + extra

    def _value(self, kind: int, size: int, offset: int, depth: int) -> tuple[Any, int]:
        if kind == _MAP:
            out: dict[str, Any] = {}
            for _ in range(size):
                key, offset = self.decode(offset, depth + 1)
                value, offset = self.decode(offset, depth + 1)
                out[str(key)] = value
            return out, offset
        if kind == _ARRAY:
            items: list[Any] = []
            for _ in range(size):
                value, offset = self.decode(offset, depth + 1)
                items.append(value)
            return items, offset
        if kind == _BOOLEAN:
            return size != 0, offset
        raw = self._take(offset, size)
        end = offset + size
        if kind == _STRING:
            return raw.decode("utf-8", "replace"), end
        if kind == _DOUBLE:
            if size != 8:
                raise GeoIpError("invalid double size")
            return struct.unpack(">d", raw)[0], end
        if kind == _FLOAT:
            if size != 4:
                raise GeoIpError("invalid float size")
            return struct.unpack(">f", raw)[0], end
        if kind in (_UINT16, _UINT32, _UINT64, _UINT128):
            return int.from_bytes(raw, "big"), end
        if kind == _INT32:
            return int.from_bytes(raw.rjust(4, b"\x00"), "big", signed=True), end
        if kind == _BYTES:
            return raw, end
        if kind in (_CONTAINER, _END_MARKER):
            return None, end
        raise GeoIpError(f"unknown data type {kind}")


class GeoIpLookup:
    """A loaded MaxMind DB; :meth:`lookup` finds the record of an IP address."""

    __slots__ = ("_buf", "_data", "_ip_version", "_node_count", "_record_size", "_tree_size")

    def __init__(self, data: bytes) -> None:
        """Parse the database's metadata; raises GeoIpError if it is not a MaxMind DB."""
        start = data.rfind(_METADATA_MARKER, max(0, len(data) - _METADATA_MAX_SIZE))
        if start < 0:
            raise GeoIpError("no MaxMind DB metadata found")
        meta_start = start + len(_METADATA_MARKER)
        metadata, _ = _Decoder(data, meta_start).decode(meta_start)
        if not isinstance(metadata, dict):
            raise GeoIpError("invalid MaxMind DB metadata")
        node_count = metadata.get("node_count")
        record_size = metadata.get("record_size")
        ip_version = metadata.get("ip_version")
        if not isinstance(node_count, int) or record_size not in (24, 28, 32):
            raise GeoIpError("unsupported MaxMind DB search tree")
        if ip_version not in (4, 6):
            raise GeoIpError("unsupported MaxMind DB ip_version")
        self._buf = data
        self._node_count = node_count
        self._record_size: int = record_size
        self._ip_version: int = ip_version
        self._tree_size = record_size * 2 // 8 * node_count
        if self._tree_size + _DATA_SEPARATOR > start:
            raise GeoIpError("search tree larger than the file")
        self._data = _Decoder(data, self._tree_size + _DATA_SEPARATOR)

    def lookup(self, ip: str) -> dict[str, Any] | None:
        """The database record of ``ip`` (a map), or None if absent or not an IP address."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if address.version == 6 and self._ip_version == 4:
            return None
        packed = address.packed
        bits = len(packed) * 8
        node = 0
        if address.version == 4 and self._ip_version == 6:
            # IPv4 addresses live in the IPv6 tree under ::/96.
            for _ in range(96):
                if node >= self._node_count:
                    break
                node = self._record(node, 0)
        for i in range(bits):
            if node >= self._node_count:
                break
            bit = (packed[i >> 3] >> (7 - (i & 7))) & 1
            node = self._record(node, bit)
        if node <= self._node_count:
            return None  # == node_count: no data for this address
        offset = node - self._node_count - _DATA_SEPARATOR
        value, _ = self._data.decode(self._tree_size + _DATA_SEPARATOR + offset)
        return value if isinstance(value, dict) else None

    def _record(self, node: int, bit: int) -> int:
        buf = self._buf
        size = self._record_size
        base = node * size * 2 // 8
        if base + size * 2 // 8 > len(buf):
            raise GeoIpError("search tree node outside of the file")
        if size == 24:
            at = base + 3 * bit
            return int.from_bytes(buf[at : at + 3], "big")
        if size == 32:
            at = base + 4 * bit
            return int.from_bytes(buf[at : at + 4], "big")
        # 28 bits: the middle byte holds the high nibbles of both records.
        middle = buf[base + 3]
        if bit == 0:
            return ((middle & 0xF0) << 20) | int.from_bytes(buf[base : base + 3], "big")
        return ((middle & 0x0F) << 24) | int.from_bytes(buf[base + 4 : base + 7], "big")

    def geo(self, ip: str) -> dict[str, str] | None:
        """Relay's ``Geo`` of ``ip`` (only the fields the record has), or None."""
        try:
            record = self.lookup(ip)
        except GeoIpError:
            return None  # a corrupt record is no geo, as in Relay
        return None if record is None else _geo_from_record(record)


def _english_name(entry: Any) -> str | None:
    names = entry.get("names") if isinstance(entry, dict) else None
    name = names.get("en") if isinstance(names, dict) else None
    return name if isinstance(name, str) else None


def _geo_from_record(record: dict[str, Any]) -> dict[str, str] | None:
    country = record.get("country")
    geo: dict[str, str] = {}
    code = country.get("iso_code") if isinstance(country, dict) else None
    if isinstance(code, str):
        geo["country_code"] = code
    city = _english_name(record.get("city"))
    if city is not None:
        geo["city"] = city
    subdivisions = record.get("subdivisions")
    if isinstance(subdivisions, list) and subdivisions:
        subdivision = _english_name(subdivisions[0])
        if subdivision is not None:
            geo["subdivision"] = subdivision
    region = _english_name(country)
    if region is not None:
        geo["region"] = region
    return geo


def lookup_geo(lookup: GeoIpLookup | None, ip: str | None) -> dict[str, str] | None:
    """``lookup.geo(ip)``, or None without a database or address."""
    if lookup is None or ip is None:
        return None
    return lookup.geo(ip)
