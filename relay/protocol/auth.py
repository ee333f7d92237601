"""Sentry authentication: the ``X-Sentry-Auth`` header, query parameters, and DSNs.

These mirror Relay's ``RequestMeta`` extraction (``relay-server/src/extractors/request_meta.rs``)
and the ``Auth``/``Dsn`` types it uses from the ``sentry-types`` crate. Deciding *which* source
to use (and rejecting requests that carry several) is up to the endpoint; this module only parses.

Status codes follow Relay: malformed or missing auth is 401, but a protocol version above 7 and a
malformed public key are 400. Those two raise subclasses of :class:`AuthError` whose ``status`` is
400, so callers can catch every auth problem as ``AuthError`` and still answer like Relay.
"""

from __future__ import annotations

import binascii
import functools
import re
from base64 import b64decode
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

import msgspec

from relay.errors import AuthError

__all__ = [
    "DEFAULT_PROTOCOL_VERSION",
    "MAX_PROTOCOL_VERSION",
    "Auth",
    "Dsn",
    "InvalidPublicKey",
    "UnsupportedProtocolVersion",
    "auth_from_query",
    "check_public_key",
    "parse_auth_header",
    "parse_basic_auth",
    "parse_dsn",
    "parse_public_key",
    "validate_auth",
]

#: The newest protocol version Relay speaks; requests declaring a higher one are rejected.
MAX_PROTOCOL_VERSION: Final = 7
#: The protocol version assumed when a client does not declare one.
DEFAULT_PROTOCOL_VERSION: Final = 7


class UnsupportedProtocolVersion(AuthError):
    """The client declared a ``sentry_version`` above :data:`MAX_PROTOCOL_VERSION`."""

    # Relay answers 400 here (BadEventMeta::UnsupportedProtocolVersion), not 401.
    status = 400


class InvalidPublicKey(AuthError):
    """The public key is not a valid project key (32 ASCII characters)."""

    # Relay answers 400 here (BadEventMeta::BadPublicKey), not 401.
    status = 400


class Auth(msgspec.Struct, frozen=True):
    """Authentication a client presented with a request."""

    public_key: str
    secret_key: str | None = None
    #: ``sentry_version`` as declared; ``None`` when the client did not send one.
    version: int | None = None
    #: ``sentry_client``, e.g. "sentry.python/2.75.0".
    client: str | None = None

    @property
    def protocol_version(self) -> int:
        """The declared protocol version, defaulting to 7 as Relay does."""
        return DEFAULT_PROTOCOL_VERSION if self.version is None else self.version

    def to_header(self) -> str:
        """Format as an ``X-Sentry-Auth`` value, the way Relay sends it upstream."""
        value = f"Sentry sentry_key={self.public_key}, sentry_version={self.protocol_version}"
        if self.client is not None:
            value += f", sentry_client={self.client}"
        if self.secret_key is not None:
            value += f", sentry_secret={self.secret_key}"
        return value


# Rust's `u16::from_str` accepts an optional leading "+" and nothing but digits.
_VERSION_RE: Final = re.compile(r"\+?[0-9]+")


def _parse_version(value: str) -> int:
    # Clients send "7" but also "7.0" or "2.0.0": only the part before the first dot counts.
    major = value.split(".", 1)[0]
    if _VERSION_RE.fullmatch(major) is None or int(major) > 0xFFFF:
        raise AuthError(f"invalid value for sentry_version: {value!r}")
    return int(major)


def _auth_from_pairs(pairs: Mapping[str, str]) -> Auth:
    key = pairs.get("sentry_key", "")
    version = pairs.get("sentry_version")
    if not key:
        raise AuthError("missing public key in auth header")
    return Auth(
        public_key=key,
        secret_key=pairs.get("sentry_secret"),
        version=None if version is None else _parse_version(version),
        client=pairs.get("sentry_client"),
    )


def parse_auth_header(value: str) -> Auth:
    """Parse an ``X-Sentry-Auth`` or ``Authorization: Sentry ...`` header value.

    The format is ``Sentry sentry_key=<key>, sentry_version=7, sentry_client=<sdk>``. The
    "Sentry" prefix is case-insensitive and, unlike Relay, optional. Pairs are split on "," and
    "=" and trimmed; values are not percent-decoded; the last duplicate wins; pairs without "="
    and unknown keys are ignored. Raises :class:`AuthError` without a non-empty ``sentry_key`` or
    with a non-numeric ``sentry_version``, or for another auth scheme ("Basic ...").
    """
    value = value.strip()
    prefix, _, rest = value.partition(" ")
    if prefix.lower() == "sentry":
        value = rest
    elif "=" not in prefix:
        # Some other scheme ("Bearer x", "Basic x"), not a bare pair list.
        raise AuthError("non sentry auth")
    pairs: dict[str, str] = {}
    for part in value.split(","):
        fields = part.split("=", 2)
        if len(fields) >= 2:
            # Like Relay, "a=b=c" yields ("a", "b"): only the first two fields are read.
            pairs[fields[0].strip()] = fields[1].strip()
    return _auth_from_pairs(pairs)


def parse_basic_auth(value: str) -> Auth:
    """Parse ``Authorization: Basic base64(public_key:secret)`` (the prefix is optional).

    Like Relay, only the public key is used: the secret part is ignored. Raises
    :class:`AuthError` if the value is not valid base64 of UTF-8 text containing ":" with a
    non-empty key before it (Relay then treats the request as unauthenticated).
    """
    value = value.strip()
    if value[:6].lower() == "basic ":
        value = value[6:].strip()
    try:
        decoded = b64decode(value.encode("ascii"), validate=True).decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError) as exc:
        raise AuthError("invalid basic auth") from exc
    public_key, sep, _secret = decoded.partition(":")
    if not sep or not public_key:
        raise AuthError("invalid basic auth")
    return Auth(public_key=public_key)


def auth_from_query(query: Mapping[str, str]) -> Auth | None:
    """Extract auth from decoded query parameters (``?sentry_key=...&sentry_version=7``).

    Returns ``None`` if no parameter mentions "sentry_" (the query carries no auth). Relay tries
    query auth as soon as the raw query string contains "sentry_", so such a query without a
    ``sentry_key`` raises :class:`AuthError`.
    """
    for name, value in query.items():
        if "sentry_" in name or "sentry_" in value:
            return _auth_from_pairs(query)
    return None


def check_public_key(key: str) -> bool:
    """Return whether ``key`` is a valid project key: exactly 32 ASCII characters.

    Relay's ``ProjectKey::parse`` requires nothing more (not even hex digits).
    """
    return len(key) == 32 and key.isascii()


def parse_public_key(key: str) -> tuple[str, tuple[str, ...]]:
    """Split a ``sentry_key`` into the project key and its flags.

    Relay accepts flags after the key, separated by dots ("<key>.no-cache"). Raises
    :class:`InvalidPublicKey` (status 400) if the key part is not a valid project key.
    """
    public_key, *flags = key.split(".")
    if not check_public_key(public_key):
        raise InvalidPublicKey("bad sentry DSN public key")
    return public_key, tuple(flags)


def validate_auth(auth: Auth) -> None:
    """Check an ``Auth`` as Relay does before accepting a request.

    Raises :class:`UnsupportedProtocolVersion` for a version above 7 and
    :class:`InvalidPublicKey` for a malformed public key (both status 400, like Relay).
    """
    if auth.protocol_version > MAX_PROTOCOL_VERSION:
        raise UnsupportedProtocolVersion(f"unsupported protocol version ({auth.version})")
    parse_public_key(auth.public_key)


class Dsn(msgspec.Struct, frozen=True):
    """A parsed Sentry DSN, ``{scheme}://{public_key}:{secret_key}@{host}:{port}{path}{project_id}``."""

    scheme: str
    public_key: str
    secret_key: str | None
    host: str
    #: The explicit port, or ``None`` if the DSN has none (see :attr:`effective_port`).
    port: int | None
    #: Path before the project id; always starts and ends with "/".
    path: str
    project_id: str

    @property
    def effective_port(self) -> int:
        """The port, defaulting to 80 or 443 by scheme."""
        if self.port is not None:
            return self.port
        return 443 if self.scheme == "https" else 80

    def __str__(self) -> str:
        secret = self.secret_key or ""
        # Hosts given as IPv6 literals need their brackets back.
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return (
            f"{self.scheme}://{self.public_key}:{secret}@{host}{port}{self.path}{self.project_id}"
        )

    @property
    def numeric_project_id(self) -> int | None:
        """The project id as a number, or ``None`` if it is not a u64 (Relay requires one)."""
        pid = self.project_id
        if pid.isascii() and pid.isdigit() and int(pid) < 1 << 64:
            return int(pid)
        return None

    def api_url(self, endpoint: str) -> str:
        """Return an API URL such as ``https://host/api/42/envelope/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}api/{self.project_id}/{endpoint}/"


@functools.lru_cache(maxsize=1024)
def parse_dsn(dsn: str) -> Dsn:
    """Parse a DSN the way ``sentry-types`` does; raises :class:`AuthError` if it is invalid.

    The scheme must be http or https, the public key (username) non-empty, the host present and
    the last path segment a non-empty project id; earlier segments form ``path``. Results are
    cached because the same few DSNs arrive over and over in envelope headers.
    """
    try:
        url = urlsplit(dsn.strip())
        port = url.port
        username = url.username
        password = url.password
        host = url.hostname
    except ValueError as exc:
        raise AuthError(f"invalid DSN: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise AuthError("invalid DSN: no valid scheme")
    if not host:
        raise AuthError("invalid DSN: no host")
    if not username:
        raise AuthError("invalid DSN: username is empty")
    path = url.path.strip("/")
    if not path:
        raise AuthError("invalid DSN: empty path")
    prefix, _, project_id = path.rpartition("/")
    if not project_id:
        raise AuthError("invalid DSN: invalid project id")
    if port == (443 if url.scheme == "https" else 80):
        # Like the `url` crate, an explicit default port is no port at all.
        port = None
    return Dsn(
        scheme=url.scheme,
        public_key=username,
        # "key:@host" has an empty password; keep None so str() round-trips the canonical form.
        secret_key=password or None,
        host=host,
        port=port,
        path=f"/{prefix}/" if prefix else "/",
        project_id=project_id,
    )
