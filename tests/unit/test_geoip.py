"""The MaxMind DB reader (relay.normalize.geoip) and ``user.geo`` in normalization."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relay.config import Config
from relay.normalize import normalize_for_relay
from relay.normalize.geoip import GeoIpError, GeoIpLookup
from relay.server.geoip import open_geoip
from tests.paths import REPO

NOW = 1795694700.0
EID = "a" * 32
#: Relay's own test database (MaxMind's GeoIP2 Enterprise test data; see tests/data).
SUITE_DB = REPO / "tests" / "data" / "GeoIP2-Enterprise-Test.mmdb"


# --- a tiny MaxMind DB writer, enough for the tests ---------------------------------------


def _ctrl(kind: int, size: int) -> bytes:
    assert size < 29
    if kind <= 7:
        return bytes([(kind << 5) | size])
    return bytes([size, kind - 7])  # extended type


def _encode(value: Any) -> bytes:
    if isinstance(value, str):
        raw = value.encode()
        return _ctrl(2, len(raw)) + raw
    if isinstance(value, bool):
        return _ctrl(14, int(value))
    if isinstance(value, int):
        raw = value.to_bytes(4, "big").lstrip(b"\x00")
        return _ctrl(6, len(raw)) + raw
    if isinstance(value, dict):
        return _ctrl(7, len(value)) + b"".join(_encode(k) + _encode(v) for k, v in value.items())
    if isinstance(value, list):
        return _ctrl(11, len(value)) + b"".join(_encode(v) for v in value)
    raise TypeError(value)


def _pointer(offset: int) -> bytes:
    assert offset < 2048
    return bytes([(1 << 5) | (offset >> 8), offset & 0xFF])


def build_db(prefix: int, prefix_len: int, record: bytes, ip_version: int = 4) -> bytes:
    """An IPv4 (or IPv6) database whose only network is ``prefix/prefix_len`` (24-bit records)."""
    total_bits = 32 if ip_version == 4 else 128
    node_count = prefix_len
    tree = b""
    for i in range(prefix_len):
        bit = (prefix >> (total_bits - 1 - i)) & 1
        nxt = i + 1 if i + 1 < prefix_len else node_count + 16  # data at offset 0
        left, right = (nxt, node_count) if bit == 0 else (node_count, nxt)
        tree += left.to_bytes(3, "big") + right.to_bytes(3, "big")
    metadata = {"node_count": node_count, "record_size": 24, "ip_version": ip_version}
    return tree + b"\x00" * 16 + record + b"\xab\xcd\xefMaxMind.com" + _encode(metadata)


CITY = {
    "city": {"names": {"en": "Boxford"}},
    "country": {"iso_code": "GB", "names": {"en": "United Kingdom", "de": "Großbritannien"}},
    "subdivisions": [{"names": {"en": "England"}}, {"names": {"en": "Oxfordshire"}}],
    "location": {"latitude": 1, "in_eu": True},
}


def test_lookup_finds_the_network_and_decodes_its_record() -> None:
    db = GeoIpLookup(build_db(0x02000000, 8, _encode(CITY)))
    assert db.lookup("2.125.160.216") == CITY
    assert db.geo("2.125.160.216") == {
        "country_code": "GB",
        "city": "Boxford",
        "subdivision": "England",
        "region": "United Kingdom",
    }
    assert db.lookup("3.0.0.1") is None
    assert db.lookup("::1") is None  # IPv6 address, IPv4-only database
    assert db.lookup("not an ip") is None


def test_pointers_are_followed() -> None:
    # The record's city name points back at the string at offset 0 of the data section.
    name = _encode("Shared")
    record = _ctrl(7, 1) + _encode("city") + _ctrl(7, 1) + _encode("names")
    record += _ctrl(7, 1) + _encode("en") + _pointer(0)
    data = build_db(0x0A000000, 8, name + record)
    # The tree must point at the record, which starts after the shared string.
    tree_end = 8 * 6
    patched = bytearray(data)
    last = tree_end - 6
    patched[last : last + 3] = (8 + 16 + len(name)).to_bytes(3, "big")
    db = GeoIpLookup(bytes(patched))
    assert db.lookup("10.1.2.3") == {"city": {"names": {"en": "Shared"}}}


def test_ipv4_addresses_in_an_ipv6_tree() -> None:
    # ::2.0.0.0/104 is where IPv4 2.0.0.0/8 lives in an IPv6 database.
    db = GeoIpLookup(build_db(0x02000000, 104, _encode(CITY), ip_version=6))
    assert db.geo("2.1.1.1") is not None
    assert db.geo("3.1.1.1") is None


def test_garbage_is_rejected_with_a_clear_error() -> None:
    with pytest.raises(GeoIpError):
        GeoIpLookup(b"not a database")
    truncated = build_db(0x02000000, 8, _encode(CITY))[:20] + b"\xab\xcd\xefMaxMind.com"
    with pytest.raises(GeoIpError):
        GeoIpLookup(truncated + _encode({"node_count": 8, "record_size": 24, "ip_version": 4}))


def test_corrupt_record_gives_no_geo() -> None:
    db = GeoIpLookup(build_db(0x02000000, 8, b"\xff"))
    assert db.geo("2.0.0.1") is None


def test_relay_test_database() -> None:
    db = GeoIpLookup(SUITE_DB.read_bytes())
    assert db.geo("2.125.160.216") == {
        "country_code": "GB",
        "city": "Boxford",
        "subdivision": "England",
        "region": "United Kingdom",
    }


# --- normalization -------------------------------------------------------------------------


DB = GeoIpLookup(build_db(0x02000000, 8, _encode(CITY)))


def test_geo_from_the_client_ip_even_when_ips_are_scrubbed() -> None:
    out = normalize_for_relay(
        {"user": {"ip_address": "{{auto}}"}},
        processing=True,
        event_id=EID,
        received_at=NOW,
        client_ip="2.125.160.216",
        scrub_ip_addresses=True,
        geoip=DB,
    )
    assert out["user"]["geo"]["city"] == "Boxford"
    # Not inferred (scrubbing removes the placeholder later), yet located.
    assert out["user"]["ip_address"] == "{{auto}}"


def test_geo_from_the_user_ip_first_and_never_overwritten() -> None:
    out = normalize_for_relay(
        {"user": {"ip_address": "2.1.1.1"}},
        processing=True,
        event_id=EID,
        received_at=NOW,
        client_ip="9.9.9.9",
        geoip=DB,
    )
    assert out["user"]["geo"]["country_code"] == "GB"
    out = normalize_for_relay(
        {"user": {"ip_address": "2.1.1.1", "geo": {"city": "Elsewhere"}}},
        processing=True,
        event_id=EID,
        received_at=NOW,
        geoip=DB,
    )
    assert out["user"]["geo"] == {"city": "Elsewhere"}


def test_no_user_is_created_without_a_match() -> None:
    out = normalize_for_relay(
        {"message": "hi"},
        processing=True,
        event_id=EID,
        received_at=NOW,
        client_ip="9.9.9.9",
        geoip=DB,
    )
    assert "user" not in out or out["user"] is None


def test_open_geoip_from_config(tmp_path: Path) -> None:
    path = tmp_path / "city.mmdb"
    path.write_bytes(build_db(0x02000000, 8, _encode(CITY)))
    config = Config()
    assert open_geoip(config) is None
    config.geoip.path = str(path)
    lookup = open_geoip(config)
    assert lookup is not None and lookup.geo("2.0.0.1") is not None
    # The legacy key counts too; an unreadable file means no lookups, not a crash.
    config.geoip.path = None
    config.processing.geoip_path = str(tmp_path / "missing.mmdb")
    assert open_geoip(config) is None
