"""Relay keys, request signatures, registration tokens and credentials.

Wire-compatible with Relay's ``relay-auth`` crate:

* Keys are Ed25519. A public key travels as unpadded base64url of its 32 bytes; a secret key
  as unpadded base64url of the 32-byte seed (canonical) or of the 64-byte keypair
  (seed + public key). Both also parse from PKCS#8 / SPKI PEM, as Relay's do.
* A signature is ``base64url(ed25519 signature) + "." + base64url(header JSON)`` where the header
  is ``{"t": "<RFC 3339 UTC timestamp>"}`` (optionally with ``"a": "v0" | "v1"``). The signed
  message is ``header_json + b"\\x00" + data``; with ``"a": "v1"`` it is signed Ed25519ph
  (pre-hashed with SHA-512) instead. There is no header-less legacy form: Relay rejects it.
* A registration challenge token is ``base64url(state JSON) + ":" + base64url(HMAC-SHA512)``,
  created and checked only by the upstream with its own secret.
* ``credentials.json`` holds ``secret_key``, ``public_key`` and ``id``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NoReturn

import msgspec
import nacl.bindings
import nacl.exceptions
import nacl.signing

from relay.errors import ConfigError

__all__ = [
    "MAX_TIME_IN_FUTURE",
    "Credentials",
    "KeyDataError",
    "KeyEncodingError",
    "KeyParseError",
    "PublicKey",
    "RegisterState",
    "SecretKey",
    "SignatureAlgorithm",
    "SignatureError",
    "SignatureHeader",
    "TimestampError",
    "UnpackError",
    "b64url_decode",
    "b64url_encode",
    "generate_credentials",
    "generate_key_pair",
    "generate_relay_id",
    "load_credentials",
    "make_token",
    "save_credentials",
    "sign_register_state",
    "unpack_register_state",
]

#: How far a signature timestamp may lie in the future (clock skew between relays).
MAX_TIME_IN_FUTURE: Final = timedelta(seconds=15)

_SEED_SIZE: Final = 32
_PUBLIC_SIZE: Final = 32
_SIGNATURE_SIZE: Final = 64
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class KeyParseError(ValueError):
    """A string is not a valid Relay key."""


class KeyEncodingError(KeyParseError):
    """The key string is neither PEM nor unpadded base64url (Relay's ``BadEncoding``)."""


class KeyDataError(KeyParseError):
    """The key decodes, but its bytes are not a valid key (Relay's ``BadKey``)."""


class UnpackError(ValueError):
    """Signed data or a signed token could not be accepted."""


class SignatureError(UnpackError):
    """The signature is malformed or does not verify."""


class TimestampError(UnpackError):
    """The signed timestamp is too old or too far in the future."""


# --------------------------------------------------------------------------------------
# Encoding helpers
# --------------------------------------------------------------------------------------

_B64URL_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """Encode ``data`` as base64url without padding (Relay's ``BASE64URL_NOPAD``)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly, as Relay does; raise ``ValueError`` otherwise.

    Padding, whitespace, the standard alphabet (``+/``) and non-zero trailing bits are all
    rejected, so that each byte string has exactly one accepted text form.
    """
    if not _B64URL_ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # Python ignores leftover bits in the last character; Relay's decoder does not.
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url (trailing bits set)")
    return data


# --------------------------------------------------------------------------------------
# Key material checks
# --------------------------------------------------------------------------------------

_FIELD_P: Final = 2**255 - 19
_EDWARDS_D: Final = -121665 * pow(121666, _FIELD_P - 2, _FIELD_P) % _FIELD_P


def _is_curve_point(encoded: bytes) -> bool:
    """Whether 32 bytes decompress to a point on the Ed25519 curve.

    libsodium only checks public keys when verifying, but Relay rejects keys that do not
    decompress already when parsing. Like Relay, this accepts small-order points and
    non-canonical ``y`` (it is reduced modulo p): only "not on the curve" is an error.
    """
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    yy = y * y % _FIELD_P
    u = (yy - 1) % _FIELD_P
    v = (_EDWARDS_D * yy + 1) % _FIELD_P
    if u == 0:
        return True
    if v == 0:
        return False
    # x^2 = u / v has a solution iff u / v is a quadratic residue (Euler's criterion).
    ratio = u * pow(v, _FIELD_P - 2, _FIELD_P) % _FIELD_P
    return pow(ratio, (_FIELD_P - 1) // 2, _FIELD_P) == 1


# DER of the Ed25519 AlgorithmIdentifier's OID 1.3.101.112 (RFC 8410), a full TLV.
_ED25519_OID_TLV: Final = bytes.fromhex("06032b6570")


def _der_read(buf: bytes, pos: int) -> tuple[int, bytes, int]:
    """Read one DER TLV at ``pos``; return ``(tag, value, end)``. Raise ``ValueError``."""
    if pos + 2 > len(buf):
        raise ValueError("truncated DER")
    tag, length = buf[pos], buf[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        # Key structures are tiny; longer length fields mean garbage.
        if count == 0 or count > 2 or pos + count > len(buf):
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(buf):
        raise ValueError("truncated DER")
    return tag, buf[pos:end], end


_PEM_LINE_WIDTH: Final = 64


def _pem_der(text: str, label: str) -> bytes | None:
    """The DER body of a PEM block with ``label``, or ``None`` if ``text`` is not one.

    As strict as Relay's RFC 7468 decoder: only line breaks may surround the block, body
    lines carry no blanks and are exactly 64 characters except the last, padding is kept.
    """
    lines = re.split(r"\r\n|\n", text.strip("\r\n"))
    if len(lines) < 3:
        return None
    if lines[0] != f"-----BEGIN {label}-----" or lines[-1] != f"-----END {label}-----":
        return None
    body = lines[1:-1]
    if any(len(line) != _PEM_LINE_WIDTH for line in body[:-1]):
        return None
    if not 0 < len(body[-1]) <= _PEM_LINE_WIDTH:
        return None
    try:
        return base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        return None


def _public_from_seed(seed: bytes) -> bytes:
    return nacl.signing.SigningKey(seed).verify_key.encode()


def _pem_sequence(text: str, label: str) -> bytes | None:
    """The contents of the single outer DER SEQUENCE of a PEM block, or ``None``."""
    der = _pem_der(text, label)
    if der is None:
        return None
    try:
        tag, body, end = _der_read(der, 0)
    except ValueError:
        return None
    return body if tag == 0x30 and end == len(der) else None


def _seed_from_pkcs8_pem(text: str) -> bytes | None:
    """The Ed25519 seed of a PKCS#8 (RFC 5958) PEM private key, or ``None``."""
    body = _pem_sequence(text, "PRIVATE KEY")
    if body is None:
        return None
    try:
        tag, version, pos = _der_read(body, 0)
        if tag != 0x02 or version not in (b"\x00", b"\x01"):
            return None
        tag, algorithm, pos = _der_read(body, pos)
        if tag != 0x30 or algorithm != _ED25519_OID_TLV:
            return None
        tag, wrapped, pos = _der_read(body, pos)
        if tag != 0x04:
            return None
        tag, seed, inner_end = _der_read(wrapped, 0)
        if tag != 0x04 or inner_end != len(wrapped) or len(seed) != _SEED_SIZE:
            return None
        public = None
        while pos < len(body):
            tag, value, pos = _der_read(body, pos)
            if tag == 0xA0 and public is None:  # [0] attributes carry nothing we need
                continue
            if tag != 0x81 or public is not None:  # [1] IMPLICIT BIT STRING: public key
                return None
            public = value
        # Version 2 (RFC 5958) is exactly the variant that states the public key.
        if (version == b"\x01") != (public is not None):
            return None
        # A stated public key must match the seed, as ed25519-dalek insists.
        if public is not None and public != b"\x00" + _public_from_seed(seed):
            return None
    except ValueError:
        return None
    return seed


def _public_from_spki_pem(text: str) -> bytes | None:
    """The 32 Ed25519 public key bytes of an SPKI PEM public key, or ``None``."""
    body = _pem_sequence(text, "PUBLIC KEY")
    if body is None:
        return None
    try:
        tag, algorithm, pos = _der_read(body, 0)
        if tag != 0x30 or algorithm != _ED25519_OID_TLV:
            return None
        tag, bits, pos = _der_read(body, pos)
        if tag != 0x03 or pos != len(body) or len(bits) != 1 + _PUBLIC_SIZE or bits[0] != 0:
            return None
    except ValueError:
        return None
    raw = bits[1:]
    return raw if _is_curve_point(raw) else None


# --------------------------------------------------------------------------------------
# Signature header
# --------------------------------------------------------------------------------------


class SignatureAlgorithm(enum.StrEnum):
    """How the signed message is fed to Ed25519 (the header's ``"a"`` field)."""

    #: Plain Ed25519 over ``header + b"\\x00" + data``. Assumed when ``"a"`` is absent.
    REGULAR = "v0"
    #: Ed25519ph (RFC 8032, empty context) over the SHA-512 of the same message.
    PREHASHED = "v1"


@dataclass(frozen=True, slots=True)
class SignatureHeader:
    """The verified header of a signature: when it was made and with which algorithm."""

    timestamp: datetime
    algorithm: SignatureAlgorithm = SignatureAlgorithm.REGULAR


# Relay parses timestamps with chrono's relaxed RFC 3339 parser: it also takes a space or
# lower-case "t" as separator, unpadded fields, blanks between fields, "UTC" and offsets
# without a colon. This covers those forms; years outside 1..9999 (which Python cannot
# represent) are rejected.
_TIMESTAMP = re.compile(
    r"""
    \s* (?P<year>[0-9]{1,4}|\+[0-9]+)
    \s* - \s* (?P<month>[0-9]{1,2})
    \s* - \s* (?P<day>[0-9]{1,2})
    [Tt ]
    \s* (?P<hour>[0-9]{1,2})
    \s* : \s* (?P<minute>[0-9]{1,2})
    \s* : \s* (?P<second>[0-9]{1,2}) (?: \. (?P<fraction>[0-9]+) )?
    \s* (?:
        (?P<utc>[Zz]|[Uu][Tt][Cc])
        | (?P<sign>[+\-\u2212]) (?P<oh>[0-9]{2}) (?: : | \s* ) (?P<om>[0-9]{2})
    )
    \s*
    """,
    re.VERBOSE,
)


def _parse_timestamp(text: str) -> datetime | None:
    """Parse a signature timestamp into an aware UTC datetime, or ``None``."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    second = int(match["second"])
    fraction = match["fraction"] or ""
    micro = int((fraction + "000000")[:6])
    if second == 60:
        # A leap second; chrono keeps it, Python cannot, so it lands just before.
        second, micro = 59, 999_999
    if match["utc"]:
        offset = timedelta(0)
    else:
        offset = timedelta(hours=int(match["oh"]), minutes=int(match["om"]))
        if match["sign"] != "+":
            offset = -offset
    try:
        local = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            second,
            micro,
            tzinfo=UTC,
        )
        return local - offset
    except (ValueError, OverflowError):
        return None


def _format_timestamp(ts: datetime) -> str:
    """Format like chrono's serde for ``DateTime<Utc>``: 0, 3 or 6 fraction digits, ``Z``."""
    ts = ts.astimezone(UTC)
    text = (
        f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}"
    )
    if ts.microsecond == 0:
        return text + "Z"
    if ts.microsecond % 1000 == 0:
        return f"{text}.{ts.microsecond // 1000:03d}Z"
    return f"{text}.{ts.microsecond:06d}Z"


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON; serde_json refuses them anywhere in the header.
    raise ValueError(f"invalid JSON constant {name}")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # serde refuses a header that names one of its fields twice; json.loads would keep the
    # last one silently. Keys, unlike skipped values, must also be valid Unicode there.
    result: dict[str, Any] = {}
    for key, value in pairs:
        key.encode("utf-8")  # raises (a ValueError) for lone surrogates and invalid bytes
        if key in result and key in ("t", "a"):
            raise ValueError(f"duplicate field {key!r}")
        result[key] = value
    return result


def _parse_header(raw: bytes) -> SignatureHeader | None:
    """Parse the decoded header JSON; ``None`` if Relay would reject it."""
    try:
        # serde_json skips unknown fields without validating their UTF-8, so undecodable
        # bytes are only fatal where a field we read contains them (they never match).
        obj = json.loads(
            raw.decode("utf-8", errors="surrogateescape"),
            object_pairs_hook=_unique_pairs,
            parse_constant=_reject_constant,
        )
    except ValueError:  # JSONDecodeError and the hooks' errors
        return None
    if isinstance(obj, dict):
        stamp, algorithm = obj.get("t"), obj.get("a")
    elif isinstance(obj, list) and len(obj) == 2:
        # serde also deserializes a struct from a JSON array of its fields in order.
        stamp, algorithm = obj
    else:
        return None
    if not isinstance(stamp, str):
        return None
    timestamp = _parse_timestamp(stamp)
    if timestamp is None:
        return None
    if algorithm is None:
        return SignatureHeader(timestamp)
    if not isinstance(algorithm, str):
        return None
    try:
        return SignatureHeader(timestamp, SignatureAlgorithm(algorithm))
    except ValueError:
        return None


def _aware_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _check_time(timestamp: datetime, now: datetime, max_age: timedelta | None) -> None:
    """Relay's ``verify_time``; without ``max_age`` only the future bound applies."""
    age = now - timestamp
    if max_age is not None and age > max_age:
        raise TimestampError("the timestamp is too far in the past")
    if age < -MAX_TIME_IN_FUTURE:
        raise TimestampError("the timestamp is too far in the future")


def _signed_message(header: bytes, data: bytes) -> bytes:
    return header + b"\x00" + data


# --------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------


class PublicKey:
    """A relay's Ed25519 public key; verifies signatures made with its secret key."""

    __slots__ = ("_raw", "_verify_key")

    def __init__(self, raw: bytes) -> None:
        """Wrap 32 raw public key bytes; raise ``KeyDataError`` if they are not a key."""
        if len(raw) != _PUBLIC_SIZE or not _is_curve_point(raw):
            raise KeyDataError("bad key data: not an Ed25519 public key")
        self._raw = bytes(raw)
        self._verify_key = nacl.signing.VerifyKey(self._raw)

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """Parse Relay's public key string: unpadded base64url of 32 bytes, or SPKI PEM.

        Raises ``KeyEncodingError`` if ``text`` does not decode and ``KeyDataError`` if the
        decoded bytes are not an Ed25519 public key.
        """
        pem = _public_from_spki_pem(text)
        if pem is not None:
            return cls(pem)
        try:
            raw = b64url_decode(text)
        except ValueError:
            raise KeyEncodingError(
                "bad key encoding: public key is not unpadded base64url or PEM"
            ) from None
        if len(raw) != _PUBLIC_SIZE:
            raise KeyDataError(
                f"bad key data: public key has {len(raw)} bytes, expected {_PUBLIC_SIZE}"
            )
        return cls(raw)

    def __bytes__(self) -> bytes:
        return self._raw

    def __str__(self) -> str:
        return b64url_encode(self._raw)

    def __repr__(self) -> str:
        return f'PublicKey("{self}")'

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return self._raw == other._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def verify_or_raise(
        self,
        data: bytes,
        signature: str,
        max_age: timedelta | None = None,
        now: datetime | None = None,
    ) -> SignatureHeader:
        """Verify ``signature`` over ``data`` and return its header, or raise why not.

        Raises ``SignatureError`` for a malformed or non-matching signature and
        ``TimestampError`` if the signed time is older than ``max_age`` (when given) or more
        than ``MAX_TIME_IN_FUTURE`` ahead of ``now`` (always checked, as Relay does).
        """
        current = _aware_now(now)
        sig_text, dot, header_text = signature.partition(".")
        if not dot:
            raise SignatureError("invalid signature: missing header")
        try:
            sig = b64url_decode(sig_text)
            header_raw = b64url_decode(header_text)
        except ValueError:
            raise SignatureError("invalid signature: bad encoding") from None
        if len(sig) != _SIGNATURE_SIZE:
            raise SignatureError("invalid signature: wrong length")
        header = _parse_header(header_raw)
        if header is None:
            raise SignatureError("invalid signature: bad header")

        try:
            if header.algorithm is SignatureAlgorithm.PREHASHED:
                state = nacl.bindings.crypto_sign_ed25519ph_state()
                nacl.bindings.crypto_sign_ed25519ph_update(state, header_raw)
                nacl.bindings.crypto_sign_ed25519ph_update(state, b"\x00")
                nacl.bindings.crypto_sign_ed25519ph_update(state, data)
                nacl.bindings.crypto_sign_ed25519ph_final_verify(state, sig, self._raw)
            else:
                self._verify_key.verify(_signed_message(header_raw, data), sig)
        except nacl.exceptions.CryptoError:
            raise SignatureError("signature cannot be verified") from None

        _check_time(header.timestamp, current, max_age)
        return header

    def verify_meta(
        self,
        data: bytes,
        signature: str,
        max_age: timedelta | None = None,
        now: datetime | None = None,
    ) -> SignatureHeader | None:
        """Verify like :meth:`verify`; return the signature header, or ``None`` if invalid."""
        try:
            return self.verify_or_raise(data, signature, max_age, now)
        except UnpackError:
            return None

    def verify(
        self,
        data: bytes,
        signature: str,
        max_age: timedelta | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Whether ``signature`` is this key's valid, timely signature over ``data``.

        The timestamp must not be more than ``MAX_TIME_IN_FUTURE`` ahead of ``now``
        (default: the current time) and, if ``max_age`` is given, not older than that.
        """
        return self.verify_meta(data, signature, max_age, now) is not None

    def unpack(
        self,
        data: bytes,
        signature: str,
        max_age: timedelta | None = None,
        now: datetime | None = None,
    ) -> Any:
        """Verify ``signature`` over the JSON ``data`` and return the decoded JSON.

        Raises ``SignatureError`` / ``TimestampError`` as :meth:`verify_or_raise`, and
        ``UnpackError`` if the signed data is not JSON.
        """
        self.verify_or_raise(data, signature, max_age, now)
        try:
            return msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise UnpackError(f"could not deserialize payload: {exc}") from None


class SecretKey:
    """A relay's Ed25519 secret key; signs requests to the upstream."""

    __slots__ = ("_public", "_seed", "_signing_key")

    def __init__(self, seed: bytes) -> None:
        """Wrap a 32-byte Ed25519 seed."""
        if len(seed) != _SEED_SIZE:
            raise KeyDataError(f"bad key data: secret key seed must be {_SEED_SIZE} bytes")
        self._seed = bytes(seed)
        self._signing_key = nacl.signing.SigningKey(self._seed)
        self._public = PublicKey(self._signing_key.verify_key.encode())

    @classmethod
    def parse(cls, text: str) -> SecretKey:
        """Parse Relay's secret key string.

        Accepted, as by Relay: unpadded base64url of the 32-byte seed (the canonical form),
        of the 64-byte keypair (seed followed by its public key), or a PKCS#8 PEM block.
        Raises ``KeyEncodingError`` if ``text`` does not decode and ``KeyDataError`` if the
        bytes have the wrong length or the keypair's halves do not belong together.
        """
        pem = _seed_from_pkcs8_pem(text)
        if pem is not None:
            return cls(pem)
        try:
            raw = b64url_decode(text)
        except ValueError:
            raise KeyEncodingError(
                "bad key encoding: secret key is not unpadded base64url or PEM"
            ) from None
        if len(raw) == _SEED_SIZE + _PUBLIC_SIZE:
            key = cls(raw[:_SEED_SIZE])
            if not hmac.compare_digest(bytes(key._public), raw[_SEED_SIZE:]):
                raise KeyDataError("bad key data: keypair's public half does not match its seed")
            return key
        if len(raw) == _SEED_SIZE:
            return cls(raw)
        raise KeyDataError(
            f"bad key data: secret key has {len(raw)} bytes, "
            f"expected {_SEED_SIZE} (seed) or {_SEED_SIZE + _PUBLIC_SIZE} (keypair)"
        )

    @classmethod
    def generate(cls) -> SecretKey:
        """A new random secret key."""
        return cls(secrets.token_bytes(_SEED_SIZE))

    def __str__(self) -> str:
        """The canonical form Relay writes: unpadded base64url of the 32-byte seed."""
        return b64url_encode(self._seed)

    def to_keypair_string(self) -> str:
        """Relay's alternate form: unpadded base64url of seed + public key (64 bytes)."""
        return b64url_encode(self._seed + bytes(self._public))

    def __repr__(self) -> str:
        # Keep the secret out of logs and tracebacks; the public half identifies the key.
        return f'SecretKey(public_key="{self._public}")'

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self._seed, other._seed)

    def __hash__(self) -> int:
        return hash(self._public)

    def public_key(self) -> PublicKey:
        """The public key belonging to this secret key."""
        return self._public

    def sign(
        self,
        data: bytes,
        timestamp: datetime | None = None,
        algorithm: SignatureAlgorithm | None = None,
    ) -> str:
        """Sign ``data``; return Relay's signature string ``<sig>.<header>``.

        ``timestamp`` (aware; default now) goes into the header as ``"t"``. ``algorithm``
        is written as ``"a"`` only when given; Relay omits it for the default (``v0``).
        """
        if timestamp is None:
            timestamp = datetime.now(UTC)
        elif timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        fields: dict[str, str] = {"t": _format_timestamp(timestamp)}
        if algorithm is not None:
            fields["a"] = algorithm.value
        header = json.dumps(fields, separators=(",", ":")).encode()

        if algorithm is SignatureAlgorithm.PREHASHED:
            _, libsodium_secret = nacl.bindings.crypto_sign_seed_keypair(self._seed)
            state = nacl.bindings.crypto_sign_ed25519ph_state()
            nacl.bindings.crypto_sign_ed25519ph_update(state, header)
            nacl.bindings.crypto_sign_ed25519ph_update(state, b"\x00")
            nacl.bindings.crypto_sign_ed25519ph_update(state, data)
            sig = nacl.bindings.crypto_sign_ed25519ph_final_create(state, libsodium_secret)
        else:
            sig = self._signing_key.sign(_signed_message(header, data)).signature
        return f"{b64url_encode(sig)}.{b64url_encode(header)}"

    def pack(self, value: Any, timestamp: datetime | None = None) -> tuple[bytes, str]:
        """Serialize ``value`` to compact JSON and sign it; return ``(body, signature)``."""
        body = msgspec.json.encode(value)
        return body, self.sign(body, timestamp)


def generate_key_pair() -> tuple[SecretKey, PublicKey]:
    """A new random ``(secret key, public key)`` pair."""
    secret = SecretKey.generate()
    return secret, secret.public_key()


def generate_relay_id() -> str:
    """A new relay ID: a random UUID (v4) in its hyphenated lower-case form."""
    return str(uuid.uuid4())


# --------------------------------------------------------------------------------------
# Registration challenge
# --------------------------------------------------------------------------------------


def make_token() -> str:
    """A fresh random nonce for a register challenge (64 random bytes, base64url).

    This is the ``rand`` part of a :class:`RegisterState`: it makes every challenge token
    unique, so a signed challenge response cannot be replayed for another challenge.
    """
    return b64url_encode(secrets.token_bytes(64))


@dataclass(frozen=True, slots=True)
class RegisterState:
    """What the upstream remembers between register challenge and response.

    It is not stored: it travels inside the challenge token, protected by an HMAC over the
    upstream's secret, so the upstream stays stateless between the two requests.
    """

    timestamp: datetime
    relay_id: str
    public_key: PublicKey
    rand: str


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def _token_mac(secret: str | bytes, token: str) -> bytes:
    return hmac.new(_secret_bytes(secret), token.encode("utf-8"), hashlib.sha512).digest()


def sign_register_state(state: RegisterState, secret: str | bytes) -> str:
    """Encode and sign ``state`` into a challenge token ``<state>:<hmac>``, as Relay does."""
    seconds = (state.timestamp - _EPOCH) // timedelta(seconds=1)
    payload = {
        "timestamp": seconds,
        "relay_id": state.relay_id,
        "public_key": str(state.public_key),
        "rand": state.rand,
    }
    token = b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    return f"{token}:{b64url_encode(_token_mac(secret, token))}"


def unpack_register_state(
    token: str,
    secret: str | bytes,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> RegisterState:
    """Check a challenge token's HMAC and age; return the state inside it.

    Raises ``SignatureError`` if the token was not made with ``secret``, ``TimestampError``
    if it is older than ``max_age`` (or from the future), ``UnpackError`` otherwise.
    """
    current = _aware_now(now)
    encoded, _, mac_text = token.partition(":")
    try:
        mac = b64url_decode(mac_text)
    except ValueError:
        raise UnpackError("bad token encoding") from None
    if not hmac.compare_digest(mac, _token_mac(secret, encoded)):
        raise SignatureError("invalid signature on token")
    try:
        obj = json.loads(b64url_decode(encoded).decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:  # base64, UTF-8 and JSON errors alike
        raise UnpackError("bad token encoding") from None
    if not isinstance(obj, dict):
        raise UnpackError("could not deserialize register state")
    seconds, relay_id, public_key, rand = (
        obj.get("timestamp"),
        obj.get("relay_id"),
        obj.get("public_key"),
        obj.get("rand"),
    )
    if (
        not isinstance(seconds, int)
        or isinstance(seconds, bool)
        or not isinstance(relay_id, str)
        or not isinstance(public_key, str)
        or not isinstance(rand, str)
    ):
        raise UnpackError("could not deserialize register state")
    try:
        state = RegisterState(
            timestamp=_EPOCH + timedelta(seconds=seconds),
            relay_id=str(uuid.UUID(relay_id)),
            public_key=PublicKey.parse(public_key),
            rand=rand,
        )
    except (ValueError, OverflowError) as exc:
        raise UnpackError(f"could not deserialize register state: {exc}") from None
    _check_time(state.timestamp, current, max_age)
    return state


# --------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------


class Credentials(msgspec.Struct):
    """A relay's identity, as stored in ``credentials.json``."""

    secret_key: str
    public_key: str
    id: str

    def get_secret_key(self) -> SecretKey:
        """The parsed secret key."""
        return SecretKey.parse(self.secret_key)

    def get_public_key(self) -> PublicKey:
        """The parsed public key."""
        return PublicKey.parse(self.public_key)


def generate_credentials() -> Credentials:
    """New random credentials: a key pair and a relay ID."""
    secret, public = generate_key_pair()
    return Credentials(secret_key=str(secret), public_key=str(public), id=generate_relay_id())


def load_credentials(path: Path) -> Credentials | None:
    """Read ``credentials.json`` at ``path``; ``None`` if the file does not exist.

    Keys and ID are validated and returned in their canonical forms (the key strings Relay
    would print, the hyphenated lower-case UUID), since those are what go on the wire.
    Raises ``ConfigError`` if the file cannot be read or is not valid credentials.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"could not open credentials file {path}: {exc}") from None
    try:
        creds = msgspec.json.decode(raw, type=Credentials)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"invalid credentials file {path}: {exc}") from None
    try:
        secret = creds.get_secret_key()
        public = creds.get_public_key()
        relay_id = uuid.UUID(creds.id)
    except KeyParseError as exc:
        raise ConfigError(f"invalid credentials file {path}: {exc}") from None
    except ValueError:
        raise ConfigError(f"invalid credentials file {path}: id is not a UUID") from None
    return Credentials(secret_key=str(secret), public_key=str(public), id=str(relay_id))


def save_credentials(path: Path, creds: Credentials) -> None:
    """Write ``creds`` to ``path`` as Relay does: pretty JSON, owner-only permissions.

    The file is replaced atomically, so a crash never leaves half-written credentials.
    """
    text = json.dumps(msgspec.structs.asdict(creds), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp already creates the file 0600: only the owner may read the secret key.
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
