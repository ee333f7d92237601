"""Differential tests of relay.protocol.keys against Relay's own library (sentry_relay)."""

from __future__ import annotations

import base64
import importlib
import json
import os
import stat
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from relay.errors import ConfigError
from relay.protocol.keys import (
    MAX_TIME_IN_FUTURE,
    Credentials,
    KeyDataError,
    KeyEncodingError,
    KeyParseError,
    PublicKey,
    RegisterState,
    SecretKey,
    SignatureAlgorithm,
    SignatureError,
    SignatureHeader,
    TimestampError,
    UnpackError,
    b64url_decode,
    b64url_encode,
    generate_credentials,
    generate_key_pair,
    generate_relay_id,
    load_credentials,
    make_token,
    save_credentials,
    sign_register_state,
    unpack_register_state,
)

# sentry_relay's functions carry no annotations; typing the module as Any keeps the oracle
# usable under mypy --strict.
sr: Any = importlib.import_module("sentry_relay")

# Vectors from relay-auth's own unit tests.
RUST_KEYPAIR = (
    "OvXFVm1tIUi8xDTuyHX1SSqdMc8nCt2qU9IUaH5p7oUk5pHZsdnfXNiMWiMLtSE86J3N9Peo5CBP1YQHDUkApQ"
)
RUST_SEED = "OvXFVm1tIUi8xDTuyHX1SSqdMc8nCt2qU9IUaH5p7oU"
RUST_PUBLIC = "JOaR2bHZ31zYjFojC7UhPOidzfT3qOQgT9WEBw1JAKU"
PRIVATE_PEM = """-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIPBFGz4q5QW27KNimPqb3dr9/pO4o6XR7QIKE1rxGAIK
-----END PRIVATE KEY-----"""
PRIVATE_PEM_SEED = "8EUbPirlBbbso2KY-pvd2v3-k7ijpdHtAgoTWvEYAgo"
PUBLIC_PEM = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEATQCO/kpf2pyVjQyTuzr2qhi8IBxmBm2apZrUjJALYeA=
-----END PUBLIC KEY-----"""
PUBLIC_PEM_KEY = "TQCO_kpf2pyVjQyTuzr2qhi8IBxmBm2apZrUjJALYeA"

DATA = b'{"relay_id":"x","payload":[1,2,3]}'


def sr_parse_outcome(cls: Any, text: str) -> str:
    """How sentry_relay classifies ``text``: "ok", "encoding" or "key"."""
    try:
        cls.parse(text)
    except sr.KeyParseErrorBadEncoding:
        return "encoding"
    except sr.KeyParseErrorBadKey:
        return "key"
    return "ok"


def our_parse_outcome(cls: type[PublicKey] | type[SecretKey], text: str) -> str:
    """How we classify ``text``: "ok", "encoding" or "key"."""
    try:
        cls.parse(text)
    except KeyEncodingError:
        return "encoding"
    except KeyDataError:
        return "key"
    return "ok"


def raw_signature(secret: SecretKey, header: bytes, data: bytes) -> str:
    """A v0 signature over an arbitrary header, to probe header parsing."""
    signing = nacl.signing.SigningKey(b64url_decode(str(secret)))
    sig = signing.sign(header + b"\x00" + data).signature
    return f"{b64url_encode(sig)}.{b64url_encode(header)}"


# --------------------------------------------------------------------------------------
# Key formats
# --------------------------------------------------------------------------------------


def test_rust_vectors() -> None:
    secret = SecretKey.parse(RUST_KEYPAIR)
    assert str(secret) == RUST_SEED
    assert secret.to_keypair_string() == RUST_KEYPAIR
    assert str(secret.public_key()) == RUST_PUBLIC
    assert SecretKey.parse(RUST_SEED) == secret
    assert str(PublicKey.parse(RUST_PUBLIC)) == RUST_PUBLIC
    assert str(SecretKey.parse(PRIVATE_PEM)) == PRIVATE_PEM_SEED
    assert str(PublicKey.parse(PUBLIC_PEM)) == PUBLIC_PEM_KEY


def test_rust_error_vectors() -> None:
    for cls in (SecretKey, PublicKey):
        with pytest.raises(KeyEncodingError, match="bad key encoding"):
            cls.parse("bad data")
        with pytest.raises(KeyDataError, match="bad key data"):
            cls.parse("OvXF")
    assert issubclass(KeyParseError, ValueError)


def test_sentry_relay_keys_parse_in_ours() -> None:
    for _ in range(20):
        sk, pk = sr.generate_key_pair()
        ours = SecretKey.parse(str(sk))
        assert str(ours) == str(sk)
        assert len(str(ours)) == 43
        assert ours.public_key() == PublicKey.parse(str(pk))
        assert str(PublicKey.parse(str(pk))) == str(pk)
        # The 64-byte keypair form parses in both and means the same key.
        keypair = ours.to_keypair_string()
        assert str(sr.SecretKey.parse(keypair)) == str(sk)
        assert SecretKey.parse(keypair) == ours


def test_our_keys_parse_in_sentry_relay() -> None:
    for _ in range(20):
        secret, public = generate_key_pair()
        assert secret.public_key() == public
        assert str(sr.SecretKey.parse(str(secret))) == str(secret)
        assert str(sr.PublicKey.parse(str(public))) == str(public)


def test_pem_keys_agree_with_sentry_relay() -> None:
    assert str(sr.SecretKey.parse(PRIVATE_PEM)) == str(SecretKey.parse(PRIVATE_PEM))
    assert str(sr.PublicKey.parse(PUBLIC_PEM)) == str(PublicKey.parse(PUBLIC_PEM))
    # A PEM block that is not a valid key falls through to base64 and fails there.
    broken = PUBLIC_PEM.replace("MCow", "MCox")
    assert sr_parse_outcome(sr.PublicKey, broken) == "encoding"
    assert our_parse_outcome(PublicKey, broken) == "encoding"


_SEED = bytes(range(32))
_SEED_PUBLIC = nacl.signing.SigningKey(_SEED).verify_key.encode()
_PKCS8_HEAD = "300506032b657004220420"


def _pem(label: str, der: bytes, width: int = 64) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + width] for i in range(0, len(body), width)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def _pkcs8(version: int, tail: bytes = b"") -> bytes:
    inner = bytes.fromhex(f"02010{version}{_PKCS8_HEAD}") + _SEED + tail
    return bytes([0x30, len(inner)]) + inner


_PK_FIELD = bytes.fromhex("812100") + _SEED_PUBLIC
_SPKI_HEAD = bytes.fromhex("302a300506032b6570032100")


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("secret", PRIVATE_PEM + "\n"),
        ("secret", "\n" + PRIVATE_PEM),
        ("secret", PRIVATE_PEM.replace("\n", "\r\n")),
        ("secret", "  " + PRIVATE_PEM),
        ("secret", PRIVATE_PEM + " "),
        ("secret", PRIVATE_PEM.replace("\n", "\n ")),
        ("secret", _pem("PRIVATE KEY", _pkcs8(0))),
        ("secret", _pem("PRIVATE KEY", _pkcs8(0), width=20)),
        ("secret", _pem("PRIVATE KEY", _pkcs8(1, _PK_FIELD))),  # v2 with its public key
        ("secret", _pem("PRIVATE KEY", _pkcs8(1, _PK_FIELD[:3] + bytes(32)))),  # wrong one
        ("secret", _pem("PRIVATE KEY", _pkcs8(0, _PK_FIELD))),  # v1 may not carry it
        ("secret", _pem("PRIVATE KEY", _pkcs8(1))),  # v2 must carry it
        ("secret", _pem("PRIVATE KEY", _pkcs8(2))),
        ("secret", _pem("PRIVATE KEY", _pkcs8(0, b"\xa0\x00"))),  # empty attributes
        ("secret", _pem("EC PRIVATE KEY", _pkcs8(0))),
        ("secret", PUBLIC_PEM),
        ("public", PUBLIC_PEM + "\n"),
        ("public", PUBLIC_PEM.replace("=\n", "\n")),  # padding dropped
        ("public", _pem("PUBLIC KEY", _SPKI_HEAD + _SEED_PUBLIC)),
        ("public", _pem("PUBLIC KEY", _SPKI_HEAD + _SEED_PUBLIC, width=10)),
        ("public", _pem("PUBLIC KEY", _SPKI_HEAD + b"\x02" + bytes(31))),  # not on the curve
        ("public", _pem("PUBLIC KEY", _SPKI_HEAD + b"\xff" * 32)),  # non-canonical, accepted
        ("public", _pem("PUBLIC KEY", _SPKI_HEAD + _SEED_PUBLIC + b"\x00")),
        ("public", PRIVATE_PEM),
    ],
)
def test_pem_variants_match_sentry_relay(kind: str, text: str) -> None:
    if kind == "secret":
        ours = our_parse_outcome(SecretKey, text)
        assert ours == sr_parse_outcome(sr.SecretKey, text)
        if ours == "ok":
            assert str(SecretKey.parse(text)) == str(sr.SecretKey.parse(text))
    else:
        ours = our_parse_outcome(PublicKey, text)
        assert ours == sr_parse_outcome(sr.PublicKey, text)
        if ours == "ok":
            assert str(PublicKey.parse(text)) == str(sr.PublicKey.parse(text))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A",
        RUST_PUBLIC + "=",  # padding
        RUST_PUBLIC[:-1] + "V",  # non-zero trailing bits
        RUST_PUBLIC.replace("_", "/"),  # wrong alphabet
        " " + RUST_PUBLIC,
        RUST_PUBLIC + "\n",
        RUST_PUBLIC + "AA",  # 33 bytes
        RUST_PUBLIC[:-3],  # 30 bytes
        RUST_KEYPAIR,  # 64 bytes is not a public key
        "é" * 43,
    ],
)
def test_public_key_errors_match_sentry_relay(text: str) -> None:
    assert our_parse_outcome(PublicKey, text) == sr_parse_outcome(sr.PublicKey, text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        RUST_SEED + "=",
        RUST_SEED[:-1] + "V",
        RUST_SEED.replace("_", "/"),
        RUST_SEED + "AA",
        RUST_KEYPAIR[:-2] + "AQ",  # keypair whose public half does not match
        RUST_KEYPAIR + "AA",
        RUST_SEED + RUST_SEED[:3],
    ],
)
def test_secret_key_errors_match_sentry_relay(text: str) -> None:
    assert our_parse_outcome(SecretKey, text) == sr_parse_outcome(sr.SecretKey, text)


def test_random_public_key_bytes_match_sentry_relay() -> None:
    # About half of all 32-byte strings are not curve points; both must agree which.
    outcomes = set()
    for _ in range(300):
        text = b64url_encode(os.urandom(32))
        outcome = our_parse_outcome(PublicKey, text)
        assert outcome == sr_parse_outcome(sr.PublicKey, text), text
        outcomes.add(outcome)
    assert outcomes == {"ok", "key"}


def test_secret_key_repr_hides_secret() -> None:
    secret, public = generate_key_pair()
    assert str(secret) not in repr(secret)
    assert str(public) in repr(secret)


# --------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm", [None, SignatureAlgorithm.REGULAR, SignatureAlgorithm.PREHASHED]
)
def test_our_signatures_verify_in_sentry_relay(algorithm: SignatureAlgorithm | None) -> None:
    secret, _ = generate_key_pair()
    theirs = sr.PublicKey.parse(str(secret.public_key()))
    for data in (b"", DATA, os.urandom(1000)):
        signature = secret.sign(data, algorithm=algorithm)
        assert theirs.verify(data, signature)
        assert theirs.verify(data, signature, 60)
        assert not theirs.verify(data + b"x", signature)


def test_sentry_relay_signatures_verify_in_ours() -> None:
    sk, pk = sr.generate_key_pair()
    ours = PublicKey.parse(str(pk))
    for data in (b"", DATA, os.urandom(1000)):
        signature = sk.sign(data)
        header = ours.verify_meta(data, signature, timedelta(seconds=60))
        assert header is not None
        assert header.algorithm is SignatureAlgorithm.REGULAR
        assert abs(datetime.now(UTC) - header.timestamp) < timedelta(seconds=10)
        assert ours.verify(data, signature)
        assert not ours.verify(data + b"x", signature)


def test_sentry_relay_signs_with_our_secret_key() -> None:
    secret, public = generate_key_pair()
    signature = sr.SecretKey.parse(str(secret)).sign(DATA)
    assert public.verify(DATA, signature, timedelta(seconds=60))


def test_signature_format() -> None:
    secret, public = generate_key_pair()
    when = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    sig_text, header_text = secret.sign(DATA, timestamp=when).split(".")
    assert len(b64url_decode(sig_text)) == 64
    assert b64url_decode(header_text) == b'{"t":"2024-05-06T07:08:09.123Z"}'
    header = b64url_decode(secret.sign(DATA, when, SignatureAlgorithm.PREHASHED).split(".")[1])
    assert header == b'{"t":"2024-05-06T07:08:09.123Z","a":"v1"}'
    header = b64url_decode(secret.sign(DATA, when.replace(microsecond=0)).split(".")[1])
    assert header == b'{"t":"2024-05-06T07:08:09Z"}'
    header = b64url_decode(secret.sign(DATA, when.replace(microsecond=5)).split(".")[1])
    assert header == b'{"t":"2024-05-06T07:08:09.000005Z"}'
    # Signatures are deterministic for a given timestamp, so they compare with Relay's.
    assert public.verify_meta(DATA, secret.sign(DATA, when)) == SignatureHeader(when)


@pytest.mark.parametrize("age", [0, 30, 59])
def test_fresh_signatures_accepted(age: int) -> None:
    secret, public = generate_key_pair()
    theirs = sr.PublicKey.parse(str(public))
    signature = secret.sign(DATA, datetime.now(UTC) - timedelta(seconds=age))
    assert public.verify(DATA, signature, timedelta(seconds=60))
    assert theirs.verify(DATA, signature, 60)


@pytest.mark.parametrize("age", [65, 3600, 365 * 86400])
def test_expired_signatures_rejected(age: int) -> None:
    secret, public = generate_key_pair()
    theirs = sr.PublicKey.parse(str(public))
    signature = secret.sign(DATA, datetime.now(UTC) - timedelta(seconds=age))
    assert not public.verify(DATA, signature, timedelta(seconds=60))
    assert not theirs.verify(DATA, signature, 60)
    with pytest.raises(TimestampError, match="past"):
        public.verify_or_raise(DATA, signature, timedelta(seconds=60))
    # Without a maximum age, old signatures stay valid (Relay's ``Duration::MAX``).
    assert public.verify(DATA, signature)
    assert theirs.verify(DATA, signature)


@pytest.mark.parametrize(("ahead", "valid"), [(5, True), (10, True), (25, False), (3600, False)])
def test_future_signatures(ahead: int, valid: bool) -> None:
    secret, public = generate_key_pair()
    theirs = sr.PublicKey.parse(str(public))
    signature = secret.sign(DATA, datetime.now(UTC) + timedelta(seconds=ahead))
    # The future bound applies with and without max_age, in Relay as here.
    assert public.verify(DATA, signature) is valid
    assert public.verify(DATA, signature, timedelta(seconds=60)) is valid
    assert theirs.verify(DATA, signature) is valid
    assert theirs.verify(DATA, signature, 60) is valid


def test_time_window_edges() -> None:
    secret, public = generate_key_pair()
    now = datetime(2024, 1, 1, tzinfo=UTC)
    signature = secret.sign(DATA, now)
    minute = timedelta(minutes=1)
    assert public.verify(DATA, signature, minute, now=now + minute)
    assert not public.verify(DATA, signature, minute, now=now + minute + timedelta(microseconds=1))
    assert public.verify(DATA, signature, minute, now=now - MAX_TIME_IN_FUTURE)
    early = now - MAX_TIME_IN_FUTURE - timedelta(microseconds=1)
    assert not public.verify(DATA, signature, minute, now=early)
    with pytest.raises(TimestampError, match="future"):
        public.verify_or_raise(DATA, signature, now=early)
    with pytest.raises(ValueError, match="aware"):
        public.verify(DATA, signature, now=datetime(2024, 1, 1))


def test_tampered_signatures_rejected() -> None:
    secret, public = generate_key_pair()
    theirs = sr.PublicKey.parse(str(public))
    signature = secret.sign(DATA)
    sig_text, header_text = signature.split(".")
    sig = bytearray(b64url_decode(sig_text))
    sig[10] ^= 1
    other_header = b64url_encode(b'{"t":"' + datetime.now(UTC).isoformat().encode() + b'"}')
    other_key = generate_key_pair()[0]
    tampered = [
        f"{b64url_encode(bytes(sig))}.{header_text}",  # flipped signature bit
        f"{sig_text}.{other_header}",  # swapped header
        sig_text,  # legacy header-less form: Relay rejects it too
        f"{sig_text}.",
        f".{header_text}",
        f"{sig_text}.{header_text}.",
        f"{sig_text}={header_text}",
        f"{sig_text[:-2]}.{header_text}",  # truncated signature
        other_key.sign(DATA),  # someone else's key
        "",
        "garbage",
    ]
    for candidate in tampered:
        assert not public.verify(DATA, candidate), candidate
        assert not theirs.verify(DATA, candidate), candidate
        with pytest.raises(SignatureError):
            public.verify_or_raise(DATA, candidate)
    # Right signature, wrong data.
    assert not public.verify(DATA[:-1], signature)
    assert not theirs.verify(DATA[:-1], signature)
    # A v0 signature relabelled as v1 (and vice versa) does not verify.
    when = datetime.now(UTC)
    v0_sig = secret.sign(DATA, when).split(".")[0]
    v1_header = secret.sign(DATA, when, SignatureAlgorithm.PREHASHED).split(".")[1]
    assert not public.verify(DATA, f"{v0_sig}.{v1_header}")
    assert not theirs.verify(DATA, f"{v0_sig}.{v1_header}")


def test_small_order_key_forgery_rejected() -> None:
    # Deliberate deviation: Relay's cofactorless verification accepts the all-trivial
    # signature (R = identity, S = 0) for the identity public key on any data. libsodium
    # refuses small-order keys, so such "signatures" never verify here.
    identity = b"\x01" + bytes(31)
    key = b64url_encode(identity)
    stamp = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S}Z"
    header = json.dumps({"t": stamp}, separators=(",", ":")).encode()
    forged = f"{b64url_encode(identity + bytes(32))}.{b64url_encode(header)}"
    assert sr.PublicKey.parse(key).verify(DATA, forged)
    assert str(PublicKey.parse(key)) == key  # parsing still agrees
    assert not PublicKey.parse(key).verify(DATA, forged)


def _header_cases(now: datetime) -> list[str]:
    stamp = f"{now:%Y-%m-%dT%H:%M:%S}"
    plus_one = f"{now + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}"
    return [
        f'{{"t":"{stamp}Z"}}',
        f'{{"t":"{stamp}.123456789Z"}}',
        f'{{"t":"{stamp}.1234567891234Z"}}',
        f'{{"t":"{stamp}.5z"}}',
        f'{{"t":"{stamp.replace("T", "t")}Z"}}',
        f'{{"t":"{stamp.replace("T", " ")}Z"}}',
        f'{{"t":"{stamp}+00:00"}}',
        f'{{"t":"{plus_one}+01:00"}}',
        f'{{"t":"{plus_one}+0100"}}',
        f'{{"t":"{plus_one} +01:00"}}',
        f'{{"t":"{plus_one}+01"}}',
        f'{{"t":"{stamp} UTC"}}',
        f'{{"t":"{stamp}utc"}}',
        f'{{"t":" {stamp}Z "}}',
        f'{{"t":"{stamp}"}}',
        f'{{"t":"{stamp}.Z"}}',
        f'{{"t":"{stamp}Zx"}}',
        f'{{"t":"{now:%Y-%m-%d}"}}',
        '{"t":"2020-1-2T3:4:5Z"}',
        '{"t":"2020 - 01 - 02T03: 04 :05Z"}',
        '{"t":"+2020-01-02T03:04:05Z"}',
        '{"t":"2020-01-02T03:04:05-05:30"}',
        '{"t":"2020-01-02T03:04:60Z"}',
        '{"t":"2020-01-02T03:04:05\\u221205:00"}',
        '{"t":"2020-01-02T03:04:05+05 00"}',
        '{"t":"2020-01-02T03:04:05+01:00:00"}',
        '{"t":"2020-01-02\\t03:04:05Z"}',
        '{"t":"2020-01-02T\\t03:04:05Z"}',
        '{"t":"2020-01-02T03:04:05.123 Z"}',
        '{"t":"02020-01-02T03:04:05Z"}',
        '{"t":"2020-001-02T03:04:05Z"}',
        '{"t":"2020-13-02T03:04:05Z"}',
        '{"t":"2020-02-30T03:04:05Z"}',
        '{"t":"2020-01-02T24:04:05Z"}',
        '{"t":"2999-01-02T03:04:05Z"}',
        '{"t":"20200102T030405Z"}',
        '{"t":1577934245}',
        '{"t":null}',
        "{}",
        "[]",
        '"x"',
        f' {{"t":"{stamp}Z"}} ',
        f'{{"t":"{stamp}Z"}}x',
        f'{{"t":"{stamp}Z","a":null}}',
        f'{{"t":"{stamp}Z","a":"v0"}}',
        f'{{"t":"{stamp}Z","a":"v2"}}',
        f'{{"t":"{stamp}Z","a":1}}',
        f'{{"t":"{stamp}Z","x":[1,{{"y":2}}]}}',
        f'{{"t":"{stamp}Z","x":NaN}}',
        f'{{"t":"{stamp}Z","t":"{stamp}Z"}}',
        f'{{"t":"{stamp}Z","x":1,"x":2}}',
        f'{{"a":"v0","t":"{stamp}Z"}}',
        f'["{stamp}Z"]',
        f'["{stamp}Z",null]',
        f'["{stamp}Z","v0"]',
        f'["{stamp}Z","v2"]',
        f'["{stamp}Z",null,1]',
    ]


def test_header_parsing_matches_sentry_relay() -> None:
    secret, public = generate_key_pair()
    theirs = sr.PublicKey.parse(str(public))
    for header in _header_cases(datetime.now(UTC)):
        signature = raw_signature(secret, header.encode(), DATA)
        expected = theirs.verify(DATA, signature)
        assert public.verify(DATA, signature) is expected, header


@pytest.mark.parametrize(
    "extra",
    [
        b'"x":"\xff"',  # undecodable bytes in a field nobody reads
        b'"\xff":1',
        b'"x":"\\ud800"',  # lone surrogate escape
        b'"\\ud800":1',
        b'"a":"v\xff"',
        b'"x":"\x00"',  # raw control character
    ],
)
def test_header_bytes_match_sentry_relay(extra: bytes) -> None:
    secret, public = generate_key_pair()
    theirs = sr.PublicKey.parse(str(public))
    stamp = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S}Z"
    header = b'{"t":"' + stamp.encode() + b'",' + extra + b"}"
    signature = raw_signature(secret, header, DATA)
    assert public.verify(DATA, signature) is theirs.verify(DATA, signature)


def test_pack_unpack() -> None:
    secret, public = generate_key_pair()
    body, signature = secret.pack({"relay_id": "abc", "n": [1, 2]})
    assert body == b'{"relay_id":"abc","n":[1,2]}'
    assert public.unpack(body, signature, timedelta(seconds=60)) == {"relay_id": "abc", "n": [1, 2]}
    assert sr.PublicKey.parse(str(public)).unpack(body, signature, 60) == json.loads(body)
    with pytest.raises(SignatureError):
        public.unpack(body + b" ", signature)
    not_json = b"not json"
    with pytest.raises(UnpackError, match="deserialize"):
        public.unpack(not_json, secret.sign(not_json))
    sk = sr.SecretKey.parse(str(secret))
    body, signature = sk.pack({"a": 1})
    assert public.unpack(body, signature, timedelta(seconds=60)) == {"a": 1}


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------


def test_generate_relay_id() -> None:
    relay_id = generate_relay_id()
    assert uuid.UUID(relay_id).version == 4
    assert str(uuid.UUID(relay_id)) == relay_id
    assert generate_relay_id() != relay_id


def test_make_token() -> None:
    token = make_token()
    assert len(b64url_decode(token)) == 64
    assert make_token() != token


def _register_request(relay_id: str, public: PublicKey) -> bytes:
    return json.dumps(
        {"relay_id": relay_id, "public_key": str(public), "version": "25.1.0"}
    ).encode()


def test_sentry_relay_challenge_token_unpacks_in_ours() -> None:
    secret, public = generate_key_pair()
    relay_id = generate_relay_id()
    body = _register_request(relay_id, public)
    challenge = sr.create_register_challenge(body, secret.sign(body), "upstream-secret")
    assert str(challenge["relay_id"]) == relay_id
    state = unpack_register_state(challenge["token"], "upstream-secret", timedelta(seconds=60))
    assert state.relay_id == relay_id
    assert state.public_key == public
    assert abs(datetime.now(UTC) - state.timestamp) < timedelta(seconds=10)
    with pytest.raises(SignatureError):
        unpack_register_state(challenge["token"], "other-secret")
    with pytest.raises(TimestampError):
        unpack_register_state(
            challenge["token"],
            b"upstream-secret",
            timedelta(seconds=60),
            now=state.timestamp + timedelta(hours=1),
        )


def test_our_challenge_token_validates_in_sentry_relay() -> None:
    secret, public = generate_key_pair()
    relay_id = generate_relay_id()
    state = RegisterState(datetime.now(UTC), relay_id, public, make_token())
    token = sign_register_state(state, "upstream-secret")
    assert unpack_register_state(token, "upstream-secret") == state.__class__(
        state.timestamp.replace(microsecond=0), relay_id, public, state.rand
    )
    body = json.dumps({"relay_id": relay_id, "token": token, "version": "25.1.0"}).encode()
    result = sr.validate_register_response(body, secret.sign(body), "upstream-secret")
    assert str(result["relay_id"]) == relay_id
    assert result["public_key"] == str(public)
    assert result["token"] == token
    with pytest.raises(sr.UnpackErrorBadSignature):
        sr.validate_register_response(body, secret.sign(body), "other-secret")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "x",
        lambda t: t.replace(":", ""),
        lambda t: "A" + t,
        lambda t: t.split(":")[0] + ":" + t.split(":")[1][:-4],
        lambda t: "",
    ],
)
def test_mangled_tokens_rejected(mangle: Callable[[str], str]) -> None:
    _, public = generate_key_pair()
    state = RegisterState(datetime.now(UTC), generate_relay_id(), public, make_token())
    token = mangle(sign_register_state(state, "s"))
    with pytest.raises(UnpackError):
        unpack_register_state(token, "s")


# --------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------


def test_credentials_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    creds = generate_credentials()
    save_credentials(path, creds)
    assert load_credentials(path) == creds
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text()
    assert list(json.loads(written)) == ["secret_key", "public_key", "id"]
    assert written.startswith('{\n  "secret_key": "') and written.endswith("\n}\n")
    assert creds.get_secret_key().public_key() == creds.get_public_key()
    # The keys are usable by Relay's library as written.
    sk = sr.SecretKey.parse(creds.secret_key)
    assert str(sr.PublicKey.parse(creds.public_key)) == creds.public_key
    assert creds.get_public_key().verify(DATA, sk.sign(DATA))
    # Saving again replaces the file.
    other = generate_credentials()
    save_credentials(path, other)
    assert load_credentials(path) == other
    assert [p.name for p in tmp_path.iterdir()] == ["credentials.json"]


def test_load_credentials_missing(tmp_path: Path) -> None:
    assert load_credentials(tmp_path / "credentials.json") is None


def test_load_credentials_normalizes(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    relay_id = uuid.uuid4()
    path.write_text(
        json.dumps(
            {
                "secret_key": RUST_KEYPAIR,
                "public_key": RUST_PUBLIC,
                "id": str(relay_id).upper(),
                "unknown": True,
            }
        )
    )
    assert load_credentials(path) == Credentials(RUST_SEED, RUST_PUBLIC, str(relay_id))


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"secret_key": "x"}',
        json.dumps({"secret_key": "bad data", "public_key": RUST_PUBLIC, "id": str(uuid.uuid4())}),
        json.dumps({"secret_key": RUST_SEED, "public_key": "OvXF", "id": str(uuid.uuid4())}),
        json.dumps({"secret_key": RUST_SEED, "public_key": RUST_PUBLIC, "id": "nope"}),
        json.dumps({"secret_key": RUST_SEED, "public_key": RUST_PUBLIC, "id": 5}),
    ],
)
def test_load_credentials_invalid(tmp_path: Path, content: str) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="credentials"):
        load_credentials(path)


def test_b64url_round_trip() -> None:
    for size in range(70):
        data = os.urandom(size)
        text = b64url_encode(data)
        assert "=" not in text
        assert b64url_decode(text) == data
        assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) == data
