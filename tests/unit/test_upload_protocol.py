"""TUS headers, signed upload locations and attachment placeholders (relay.protocol.upload)."""

from __future__ import annotations

import base64
import importlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import RelayError
from relay.protocol.keys import SecretKey
from relay.protocol.upload import (
    Location,
    TusContentTypeError,
    TusHeaderError,
    TusVersionError,
    decode_placeholder,
    encode_placeholder,
    metadata_header,
    new_upload_key,
    parse_location,
    parse_metadata,
    parse_patch_headers,
    parse_post_headers,
    sign_location,
    verify_location,
)

# sentry_relay carries no annotations: the oracle is typed as Any.
oracle_auth: Any = importlib.import_module("sentry_relay.auth")
NOW = datetime(2026, 3, 11, 10, 48, 13, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_post_headers_take_a_length_or_a_deferred_one() -> None:
    assert parse_post_headers({"Tus-Resumable": "1.0.0", "Upload-Length": "11"}).upload_length == 11
    deferred = parse_post_headers({"Tus-Resumable": "1.0.0", "Upload-Defer-Length": "1"})
    assert deferred.upload_length is None
    for bad in ({}, {"Upload-Length": "1", "Upload-Defer-Length": "1"},
                {"Upload-Defer-Length": "2"}, {"Upload-Length": "-1"},
                {"Upload-Length": "\u00b2"}):  # fmt: skip
        with pytest.raises(TusHeaderError):
            parse_post_headers({"Tus-Resumable": "1.0.0", **bad})


def test_post_headers_refuse_other_versions_and_bodies() -> None:
    with pytest.raises(TusVersionError) as error:
        parse_post_headers({"Upload-Length": "1"})
    assert error.value.status == 412
    assert error.value.headers == {"Tus-Version": "1.0.0"}
    assert "(missing)" in error.value.detail
    with pytest.raises(TusContentTypeError):
        parse_post_headers({"Tus-Resumable": "1.0.0", "Upload-Length": "1",
                            "Content-Type": "text/plain"})  # fmt: skip


def test_patch_headers() -> None:
    headers = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    parsed = parse_patch_headers({**headers, "Upload-Offset": "5", "X-Decoded-Content-Length": "3"})
    assert (parsed.upload_offset, parsed.decoded_content_length) == (5, 3)
    with pytest.raises(TusHeaderError, match="expected Upload-Offset >= 0"):
        parse_patch_headers(headers)
    with pytest.raises(TusContentTypeError) as error:
        parse_patch_headers({**headers, "Content-Type": "application/octet-stream",
                             "Upload-Offset": "0"})  # fmt: skip
    assert error.value.detail == (
        "expected Content-Type: application/offset+octet-stream, got: application/octet-stream"
    )


def test_metadata_round_trip_and_sdk_form() -> None:
    assert parse_metadata(metadata_header("event.minidump")) == "event.minidump"
    # As an SDK writes it (spaces in the JSON), among other TUS metadata pairs.
    sdk = "filename ZC5kbXA=,sentry eyJhdHRhY2htZW50X3R5cGUiOiAiZXZlbnQubWluaWR1bXAifQ=="
    assert parse_metadata(sdk) == "event.minidump"
    assert parse_metadata("filename ZC5kbXA=") is None
    with pytest.raises(TusHeaderError):
        parse_metadata("sentry !!!")
    with pytest.raises(TusHeaderError):
        parse_metadata("sentry " + base64.b64encode(b"[1]").decode())


def test_location_uri_round_trip() -> None:
    location = Location(42, "abc", 11, None, (("upload_extra", "x y"),))
    key = SecretKey.generate()
    signed = sign_location(location, key, NOW)
    parsed = parse_location(signed.uri() + "&sentry_key=ignored")
    assert parsed == signed
    assert parsed is not None and parsed.location.is_final
    assert signed.uri().startswith("/api/42/upload/abc/?upload_length=11&upload_extra=x+y&")


def test_parse_location_refuses_foreign_shapes() -> None:
    assert parse_location("/api/42/upload/abc/") is None  # unsigned
    assert parse_location("/api/42/upload/abc/?upload_signature=s&upload_id=x") is None
    assert parse_location("/api/0/upload/abc/?upload_signature=s") is None
    assert parse_location("/api/42/envelope/?upload_signature=s") is None
    assert parse_location("/api/42/upload/abc/?upload_length=x&upload_signature=s") is None
    assert parse_location("/api/42/upload/abc/?upload_length=\u00b2&upload_signature=s") is None
    provisional = parse_location("/api/42/upload/abc/?upload_signature=s")
    assert provisional is not None and not provisional.location.is_final


def test_signatures_bind_the_location_and_expire() -> None:
    key = SecretKey.generate()
    signed = sign_location(Location(42, "abc", 11), key, NOW)
    public = key.public_key()
    assert verify_location(signed, public, HOUR, NOW + timedelta(minutes=5)) == signed.location
    assert verify_location(signed, public, HOUR, NOW + 2 * HOUR) is None
    tampered = parse_location(signed.uri().replace("upload_length=11", "upload_length=99"))
    assert tampered is not None
    assert verify_location(tampered, public, HOUR, NOW) is None
    assert verify_location(signed, SecretKey.generate().public_key(), HOUR, NOW) is None


def test_signature_is_relays_format() -> None:
    # Relay's own library verifies a location we signed, over the same bytes.
    key = SecretKey.generate()
    signed = sign_location(Location(42, "abc", 11), key)
    oracle = oracle_auth.PublicKey.parse(str(key.public_key()))
    assert oracle.verify(signed.location.uri().encode(), signed.signature)


def test_placeholder_payload() -> None:
    assert encode_placeholder("/loc", None) == b'{"location":"/loc"}'
    payload = encode_placeholder("/loc", "application/x-dmp")
    decoded = decode_placeholder(payload)
    assert decoded is not None and decoded.content_type == "application/x-dmp"
    assert decode_placeholder(b"MDMP") is None
    assert decode_placeholder(b'{"content_type": "x"}') is None


def test_upload_keys_are_uuid7() -> None:
    key = new_upload_key()
    parsed = uuid.UUID(key)
    assert parsed.version == 7 and len(key) == 32
    assert new_upload_key() != key


_HEADER_VALUES = st.one_of(st.none(), st.text(max_size=40), st.integers(-5, 10**12).map(str))


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from([None, "1.0.0", "0.2.2", ""]),
    length=_HEADER_VALUES,
    defer=_HEADER_VALUES,
    offset=_HEADER_VALUES,
    metadata=st.one_of(st.none(), st.text(max_size=60)),
    content_type=st.one_of(st.none(), st.just("application/offset+octet-stream"), st.text()),
)
def test_header_parsing_never_crashes(
    version: str | None,
    length: str | None,
    defer: str | None,
    offset: str | None,
    metadata: str | None,
    content_type: str | None,
) -> None:
    values = {"Tus-Resumable": version, "Upload-Length": length, "Upload-Defer-Length": defer,
              "Upload-Offset": offset, "Upload-Metadata": metadata,
              "Content-Type": content_type}  # fmt: skip
    headers = {name: value for name, value in values.items() if value is not None}
    for parse in (parse_post_headers, parse_patch_headers):
        try:
            parse(headers)
        except RelayError as error:
            assert 400 <= error.status < 500 and error.detail


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_location_parsing_never_crashes(uri: str) -> None:
    signed = parse_location(uri)
    if signed is not None:
        assert parse_location(signed.uri()) == signed
