"""Who sent a request and how: auth, client, addresses. Travels in envelope headers."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import time
from collections.abc import Callable

import msgspec
from aiohttp import web

from relay.errors import AuthError, BadRequest
from relay.protocol.auth import (
    Auth,
    auth_from_query,
    parse_auth_header,
    parse_basic_auth,
    parse_dsn,
    validate_auth,
)
from relay.protocol.envelope import Envelope


class RequestMeta(msgspec.Struct, kw_only=True):
    """What the relay knows about a request besides its body."""

    public_key: str
    project_id: int
    version: int = 7
    client: str | None = None
    origin: str | None = None
    remote_addr: str | None = None
    forwarded_for: str = ""
    user_agent: str | None = None
    received_at: float = msgspec.field(default_factory=time.time)
    #: Set when the request came from an internal relay whose headers we trust.
    from_relay: bool = False
    #: ``X-Sentry-Relay-Signature`` as sent; checked against the project's trustedRelays.
    relay_signature: str | None = None
    #: ``X-Sentry-Relay-Id`` of the sending relay, if any (outcome buckets are accepted only
    #: from relays configured as internal in ``auth.static_relays``).
    relay_id: str | None = None

    @property
    def client_ip(self) -> str | None:
        """The original client's IP: first ``X-Forwarded-For`` hop, else the peer."""
        first = self.forwarded_for.split(",", 1)[0].strip()
        return first or self.remote_addr

    def auth_header(self) -> str:
        """``X-Sentry-Auth`` for the next hop, as Relay writes it."""
        auth = f"Sentry sentry_key={self.public_key}, sentry_version={self.version}"
        if self.client:
            auth += f", sentry_client={self.client}"
        return auth


_MULTIPLE = "multiple authorization payloads detected"


class MissingAuth(AuthError):
    """No credentials anywhere in the request (401)."""

    def __init__(self) -> None:
        super().__init__("missing authorization information")


def _sentry_header(request: web.Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value if value is not None and value[:7].lower() == "sentry " else None


def request_auth(
    request: web.Request, envelope: Envelope | None, path_key: str | None = None
) -> Auth:
    """The client's credentials, from exactly one place, as Relay reads them.

    Sources: ``X-Sentry-Auth``, ``Authorization: Sentry ...``, ``Authorization: Basic``,
    ``sentry_*`` query parameters and the key in the path. More than one is rejected
    (401). With none, an envelope's ``dsn`` header is used.
    """
    found: list[Auth] = []
    header = _sentry_header(request, "X-Sentry-Auth")
    if header is not None:
        found.append(_sentry_auth(header))
    authorization = _sentry_header(request, "Authorization")
    if authorization is not None:
        found.append(_sentry_auth(authorization))
    basic = request.headers.get("Authorization", "")
    if basic[:6].lower() == "basic ":
        with contextlib.suppress(AuthError):
            # Relay ignores a Basic header it cannot decode rather than failing.
            found.append(parse_basic_auth(basic))
    if "sentry_" in request.query_string:
        query_auth = auth_from_query(request.query)
        if query_auth is None:
            raise AuthError("bad x-sentry-auth header")
        found.append(query_auth)
    if path_key is not None:
        found.append(Auth(public_key=path_key))
    if len(found) > 1:
        raise AuthError(_MULTIPLE)
    auth = found[0] if found else None
    if auth is None and envelope is not None and envelope.dsn:
        auth = Auth(public_key=parse_dsn(envelope.dsn).public_key)
    if auth is None:
        raise MissingAuth()
    validate_auth(auth)
    return auth


#: Longest auth header value whose parse is cached (longer ones are parsed every time).
_CACHED_AUTH_CHARS = 512


def _sentry_auth(value: str) -> Auth:
    """A ``Sentry ...`` auth header, parsed; an SDK sends the same value with every request."""
    if len(value) > _CACHED_AUTH_CHARS:
        return _bad_auth(parse_auth_header, value)
    return _cached_sentry_auth(value)


@functools.lru_cache(maxsize=1024)
def _cached_sentry_auth(value: str) -> Auth:
    # Auth is frozen, so one instance can serve every request; errors are not cached.
    return _bad_auth(parse_auth_header, value)


def _bad_auth(parse: Callable[[str], Auth], value: str) -> Auth:
    try:
        return parse(value)
    except AuthError:
        raise AuthError("bad x-sentry-auth header") from None


def parse_project_id(raw: str | None) -> int | None:
    """The numeric project id from a path segment, or None if the path has none."""
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise BadRequest(f"invalid project id {raw!r}")
    return int(raw)


def build_meta(
    request: web.Request,
    auth: Auth,
    project_id: int,
    envelope: Envelope | None,
    trusted_relay: bool = False,
) -> RequestMeta:
    """Collect the request's meta; the client IP comes from X-Forwarded-For, else the peer."""
    peer = request.remote
    forwarded = request.headers.get("X-Forwarded-For", "")
    if peer:
        forwarded = f"{forwarded}, {peer}" if forwarded else peer
    meta = RequestMeta(
        public_key=auth.public_key,
        project_id=project_id,
        version=auth.version or 7,
        client=auth.client or request.headers.get("X-Sentry-Client"),
        origin=request_origin(request),
        remote_addr=peer,
        forwarded_for=forwarded,
        user_agent=request.headers.get("User-Agent"),
        relay_id=request.headers.get("X-Sentry-Relay-Id"),
        relay_signature=relay_signature(request),
    )
    if envelope is not None and trusted_relay:
        # A trusted downstream relay already recorded the original client.
        headers = envelope.headers
        meta.from_relay = True
        remote = headers.get("remote_addr")
        if isinstance(remote, str) and _is_ip(remote):
            meta.remote_addr = remote
        fwd = headers.get("forwarded_for")
        if isinstance(fwd, str):
            meta.forwarded_for = fwd
        for name in ("client", "origin", "user_agent"):
            value = headers.get(name)
            if isinstance(value, str):
                setattr(meta, name, value)
    return meta


def relay_signature(request: web.Request) -> str | None:
    """``X-Sentry-Relay-Signature``; a value that is not valid UTF-8 is a 400, as in Relay."""
    value = request.headers.get("X-Sentry-Relay-Signature")
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # aiohttp keeps undecodable header bytes as surrogates.
        raise BadRequest("bad x-sentry-relay-signature header") from None
    if not value.isascii():
        raise BadRequest("bad x-sentry-relay-signature header")
    return value


def request_origin(request: web.Request) -> str | None:
    """``Origin``, else ``Referer``, if it is an http(s) URL (what Relay checks CORS on)."""
    for name in ("Origin", "Referer"):
        value = request.headers.get(name)
        if (value and value[:7].lower() == "http://") or (
            value and value[:8].lower() == "https://"
        ):
            return value
    return None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
