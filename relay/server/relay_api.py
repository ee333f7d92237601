"""The server side of the relay-to-relay protocol: registration, ``publickeys`` and
``projectconfigs``.

Every relay serves these to its downstream relays. Registration is passed through to the
upstream (as Relay does: only the top of the chain decides who may register); the top of a
chain (the configserver, which has no upstream) answers it itself with Relay's stateless
challenge token. Signed requests are checked against :class:`RelayCache`, which knows
static relays, relays registered here, and asks the upstream about all others.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from relay import RELAY_PROTOCOL_VERSION
from relay.config import Config
from relay.errors import AuthError, BadRequest, Forbidden, ServiceUnavailable
from relay.protocol.keys import (
    KeyParseError,
    PublicKey,
    RegisterState,
    UnpackError,
    make_token,
    sign_register_state,
    unpack_register_state,
)
from relay.protocol.project_config import (
    ProjectConfigsRequest,
    ProjectState,
    outgoing_state,
)
from relay.server.relays import RelayCache, RelayInfo, parse_relay_id
from relay.server.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)

_MAX_JSON = 20 * 1024 * 1024
#: How long a register challenge token stays valid.
_CHALLENGE_MAX_AGE = timedelta(seconds=60)

#: Looks up a state for ``projectconfigs``; None means "not known yet, answer pending".
StateLookup = Callable[[str], ProjectState | None]
#: The global config to hand out; None while it is not fetched yet.
GlobalLookup = Callable[[], dict[str, Any] | None]


class RegisterRequest(msgspec.Struct):
    relay_id: str
    public_key: str
    version: str | None = None


class RegisterResponse(msgspec.Struct):
    relay_id: str
    token: str
    version: str | None = None


class RelayIds(msgspec.Struct):
    relay_ids: list[str]


class SignedRequests:
    """Checks ``X-Sentry-Relay-Id``/``X-Sentry-Relay-Signature`` as Relay's ``SignedJson``."""

    def __init__(self, config: Config, relays: RelayCache) -> None:
        self.config = config
        self.relays = relays

    async def verify(self, request: web.Request, body: bytes) -> RelayInfo:
        """The signing relay; raise 401 (unknown relay, bad signature) or 503."""
        raw_id = request.headers.get("X-Sentry-Relay-Id")
        if raw_id is None:
            raise AuthError("missing header: x-sentry-relay-id")
        relay_id = parse_relay_id(raw_id)
        if relay_id is None:
            raise AuthError("malformed header: x-sentry-relay-id")
        try:
            relay = await self.relays.get(relay_id, self.config.http.timeout)
        except TimeoutError:
            raise ServiceUnavailable("internal system is overloaded", retry_after=1) from None
        if relay is None:
            raise AuthError("unknown relay id")
        signature = request.headers.get("X-Sentry-Relay-Signature")
        if signature is None:
            raise AuthError("missing header: x-sentry-relay-signature")
        max_age = timedelta(seconds=self.config.auth.signature_max_age)
        if not relay.public_key.verify(body, signature, max_age=max_age):
            raise AuthError("invalid relay signature")
        return relay


class Registrar:
    """Registration at the top of a chain: Relay's challenge/response with a signed token.

    The token carries the relay's id and key, HMAC-signed with a secret of this process, so
    nothing is stored between challenge and response. Only relays listed in
    ``auth.static_relays`` may register.
    """

    def __init__(self, config: Config, relays: RelayCache, secret: bytes | None = None) -> None:
        self.config = config
        self.relays = relays
        self.secret = secret or secrets.token_bytes(32)

    def is_static(self, body: bytes) -> bool:
        """Whether a challenge request comes from one of our static relays (with its key)."""
        try:
            req = msgspec.json.decode(body, type=RegisterRequest)
            key = PublicKey.parse(req.public_key)
        except (msgspec.DecodeError, msgspec.ValidationError, KeyParseError):
            return False
        known = self.relays.static.get(parse_relay_id(req.relay_id) or "")
        return known is not None and known.public_key == key

    def owns_token(self, body: bytes) -> bool:
        """Whether a challenge response carries a token we issued."""
        try:
            req = msgspec.json.decode(body, type=RegisterResponse)
            unpack_register_state(req.token, self.secret)
        except (msgspec.DecodeError, msgspec.ValidationError, UnpackError):
            return False
        return True

    def challenge(self, body: bytes, signature: str | None, relay_id_header: str | None) -> bytes:
        """Answer ``register/challenge`` (JSON bytes) or raise."""
        try:
            req = msgspec.json.decode(body, type=RegisterRequest)
            key = PublicKey.parse(req.public_key)
        except (msgspec.DecodeError, msgspec.ValidationError, KeyParseError) as exc:
            raise BadRequest(f"invalid JSON data: {exc}") from None
        relay_id = parse_relay_id(req.relay_id)
        if relay_id is None or parse_relay_id(relay_id_header) != relay_id:
            raise BadRequest("relay id mismatch")
        max_age = timedelta(seconds=self.config.auth.signature_max_age)
        if signature is None or not key.verify(body, signature, max_age=max_age):
            raise AuthError("invalid relay signature")
        known = self.relays.static.get(relay_id)
        if known is None or known.public_key != key:
            raise Forbidden("unknown relay")
        state = RegisterState(
            timestamp=datetime.now(UTC), relay_id=relay_id, public_key=key, rand=make_token()
        )
        token = sign_register_state(state, self.secret)
        return msgspec.json.encode({"relay_id": relay_id, "token": token})

    def response(self, body: bytes, signature: str | None, relay_id_header: str | None) -> bytes:
        """Answer ``register/response`` (JSON bytes) or raise; registers the relay."""
        try:
            req = msgspec.json.decode(body, type=RegisterResponse)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadRequest(f"invalid JSON data: {exc}") from None
        try:
            state = unpack_register_state(req.token, self.secret, max_age=_CHALLENGE_MAX_AGE)
        except UnpackError as exc:
            raise AuthError(f"invalid challenge token: {exc}") from None
        max_age = timedelta(seconds=self.config.auth.signature_max_age)
        if signature is None or not state.public_key.verify(body, signature, max_age=max_age):
            raise AuthError("invalid relay signature")
        if parse_relay_id(req.relay_id) != state.relay_id or (
            parse_relay_id(relay_id_header) != state.relay_id
        ):
            raise BadRequest("relay id mismatch")
        known = self.relays.static.get(state.relay_id)
        internal = known.internal if known is not None else False
        self.relays.registered[state.relay_id] = RelayInfo(state.public_key, internal)
        log.info("relay %s registered (version %s)", state.relay_id, req.version or "unknown")
        return msgspec.json.encode({"relay_id": state.relay_id})


def relay_api_routes(
    config: Config,
    relays: RelayCache,
    lookup: StateLookup,
    global_config: GlobalLookup,
    upstream: UpstreamClient | None,
) -> list[web.RouteDef]:
    """Routes under ``/api/0/relays/`` for downstream relays.

    With ``upstream=None`` (top of a chain) registration is answered here.
    """
    signed = SignedRequests(config, relays)
    registrar = Registrar(config, relays)
    advertised = config.relay.advertised_upstream

    async def register(request: web.Request) -> web.Response:
        body = await _read_json_body(request)
        signature = request.headers.get("X-Sentry-Relay-Signature")
        relay_id = request.headers.get("X-Sentry-Relay-Id")
        challenge = request.path.endswith("/challenge/")
        # Relays of our own auth.static_relays register here: we already trust them, and the
        # upstream need not know them. Everyone else is the upstream's decision, as in Relay.
        local = registrar.is_static(body) if challenge else registrar.owns_token(body)
        if upstream is not None and not local:
            return await _forward(upstream, request, body)
        if challenge:
            answer = registrar.challenge(body, signature, relay_id)
        else:
            answer = registrar.response(body, signature, relay_id)
        return web.Response(body=answer, content_type="application/json")

    async def projectconfigs(request: web.Request) -> web.StreamResponse:
        version = request.query.get("version", "0")
        number = int(version) if version.isdigit() else 0
        if number < 3:
            raise BadRequest(
                "This API version is no longer supported, upgrade your Relay or Client"
            )
        body = await _read_json_body(request)
        if number > 3:
            if upstream is None:
                raise BadRequest(f"unsupported version: {version}")
            return await _forward(upstream, request, body)
        relay = await signed.verify(request, body)
        try:
            req = msgspec.json.decode(body, type=ProjectConfigsRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadRequest(f"invalid JSON data: {exc}") from None
        public_key = str(relay.public_key)
        full = relay.internal and req.full_config
        configs: dict[str, Any] = {}
        pending: list[str] = []
        unchanged: list[str] = []
        for key, revision in req.valid_keys():
            state = lookup(key)
            if state is None:
                pending.append(key)
                continue
            if state.disabled or (state.project_id is None and not state.public_keys):
                # Disabled or unknown (or a proxy's dummy): the downstream treats it as disabled.
                continue
            if revision is not None and state.rev == revision:
                unchanged.append(key)
                continue
            if relay.internal or public_key in state.trusted_relays:
                configs[key] = outgoing_state(state, full=full, upstream=advertised)
            else:
                log.debug("relay %s has no access to project key %s", public_key, key)
        answer: dict[str, Any] = {"configs": configs}
        if pending:
            answer["pending"] = pending
        if unchanged:
            answer["unchanged"] = unchanged
        if req.global_:
            current = global_config()
            answer["global"] = current if current is not None else {}
            answer["globalStatus"] = "ready" if current is not None else "pending"
        response = web.Response(body=msgspec.json.encode(answer), content_type="application/json")
        # Relay compresses these answers when the client accepts it; they can be large.
        response.enable_compression()
        return response

    async def publickeys(request: web.Request) -> web.Response:
        body = await _read_json_body(request)
        await signed.verify(request, body)
        try:
            req = msgspec.json.decode(body, type=RelayIds)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadRequest(f"invalid JSON data: {exc}") from None
        answer: dict[str, dict[str, Any] | None] = {}
        for raw_id in req.relay_ids:
            relay_id = parse_relay_id(raw_id)
            info = None
            if relay_id is not None:
                try:
                    info = await relays.get(relay_id, config.http.timeout)
                except TimeoutError:
                    raise ServiceUnavailable(
                        "internal system is overloaded", retry_after=1
                    ) from None
            answer[raw_id] = info.to_wire() if info is not None else None
        return web.Response(
            body=msgspec.json.encode({"relays": answer}), content_type="application/json"
        )

    return [
        web.post("/api/0/relays/register/challenge/", register),
        web.post("/api/0/relays/register/response/", register),
        web.post("/api/0/relays/projectconfigs/", projectconfigs),
        web.post("/api/0/relays/publickeys/", publickeys),
    ]


async def _forward(upstream: UpstreamClient, request: web.Request, body: bytes) -> web.Response:
    """Pass a request through to the upstream verbatim (the downstream's own signature)."""
    headers = {
        name: value
        for name in ("Content-Type", "X-Sentry-Relay-Id", "X-Sentry-Relay-Signature")
        if (value := request.headers.get(name)) is not None
    }
    try:
        status, resp_headers, data = await upstream.request(
            "POST", request.path_qs, body=body, headers=headers, signed=False
        )
    except UpstreamError as exc:
        return web.json_response({"detail": f"upstream unavailable: {exc}"}, status=502)
    content_type = resp_headers.get("Content-Type", "application/json").split(";")[0]
    return web.Response(status=status, body=data, content_type=content_type)


async def _read_json_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > _MAX_JSON:
        raise BadRequest("request body too large")
    return await request.read()


__all__ = ["RELAY_PROTOCOL_VERSION", "Registrar", "SignedRequests", "relay_api_routes"]
