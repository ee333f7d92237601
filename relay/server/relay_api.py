"""The server side of the relay-to-relay protocol: registration and ``projectconfigs``.

Used by every relay (for its downstream relays) and by the configserver. A relay is
known when it is listed in ``auth.static_relays`` or has completed registration here (or,
for relays we do not know, at our upstream: the registration is passed through).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

import msgspec
from aiohttp import web

from relay.config import Config
from relay.errors import AuthError, BadRequest, Forbidden
from relay.protocol.keys import PublicKey, make_token
from relay.protocol.project_config import ProjectConfigsRequest, ProjectState
from relay.server.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)

_CHALLENGE_TTL = 60.0
_MAX_JSON = 256 * 1024

#: Looks up a state for ``projectconfigs``; None means "not known yet, answer pending".
StateLookup = Callable[[str], ProjectState | None]


class RegisterRequest(msgspec.Struct):
    relay_id: str
    public_key: str
    version: str | None = None


class ChallengeResponse(msgspec.Struct):
    relay_id: str
    token: str


class KnownRelay(msgspec.Struct):
    public_key: PublicKey
    internal: bool


class RelayRegistry:
    """Relays allowed to talk to us, with their keys."""

    def __init__(self, config: Config, upstream: UpstreamClient | None) -> None:
        self.config = config
        self.upstream = upstream
        self._relays: dict[str, KnownRelay] = {}
        for relay_id, info in config.auth.static_relays.items():
            self._relays[relay_id] = KnownRelay(PublicKey.parse(info.public_key), info.internal)
        self._challenges: dict[str, tuple[str, PublicKey, float]] = {}

    def get(self, relay_id: str) -> KnownRelay | None:
        return self._relays.get(relay_id)

    def start_challenge(self, relay_id: str, key: PublicKey, token: str) -> None:
        """Remember an issued challenge until its response arrives (or it expires)."""
        self._challenges[relay_id] = (token, key, time.monotonic() + _CHALLENGE_TTL)

    def complete_challenge(self, relay_id: str, token: str | None) -> PublicKey | None:
        """Finish a registration; ``token=None`` trusts the upstream's verdict."""
        pending = self._challenges.get(relay_id)
        if pending is None:
            return None
        expected, key, expires = pending
        if time.monotonic() > expires or (token is not None and token != expected):
            return None
        del self._challenges[relay_id]
        known = self._relays.get(relay_id)
        self._relays[relay_id] = KnownRelay(key, known.internal if known else False)
        return key

    def has_challenge(self, relay_id: str) -> bool:
        return relay_id in self._challenges

    def pending_key(self, relay_id: str) -> PublicKey | None:
        pending = self._challenges.get(relay_id)
        return pending[1] if pending else None

    def verify(self, request: web.Request, body: bytes) -> KnownRelay:
        """Check ``X-Sentry-Relay-Id``/``-Signature`` of a request from a known relay."""
        relay_id = request.headers.get("X-Sentry-Relay-Id")
        signature = request.headers.get("X-Sentry-Relay-Signature")
        if not relay_id or not signature:
            raise AuthError("missing relay signature")
        relay = self._relays.get(relay_id)
        if relay is None:
            raise Forbidden("relay not registered")
        max_age = timedelta(seconds=self.config.auth.signature_max_age)
        if not relay.public_key.verify(body, signature, max_age=max_age):
            raise AuthError("invalid relay signature")
        return relay

    def is_trusted(self, request: web.Request, body: bytes) -> bool:
        """Whether a request carries a valid signature of a known relay (optional signing)."""
        if "X-Sentry-Relay-Signature" not in request.headers:
            return False
        try:
            self.verify(request, body)
        except (AuthError, Forbidden):
            return False
        return True


def relay_api_routes(registry: RelayRegistry, lookup: StateLookup) -> list[web.RouteDef]:
    """Routes under ``/api/0/relays/`` for downstream relays."""

    async def challenge(request: web.Request) -> web.Response:
        body = await _read_json_body(request)
        try:
            req = msgspec.json.decode(body, type=RegisterRequest)
            key = PublicKey.parse(req.public_key)
        except (msgspec.DecodeError, ValueError) as exc:
            raise BadRequest(f"invalid register request: {exc}") from None
        signature = request.headers.get("X-Sentry-Relay-Signature", "")
        if request.headers.get("X-Sentry-Relay-Id") != req.relay_id or not key.verify(
            body, signature, max_age=timedelta(seconds=registry.config.auth.signature_max_age)
        ):
            raise AuthError("invalid relay signature")
        known = registry.get(req.relay_id)
        if known is None or str(known.public_key) != str(key):
            if registry.upstream is None:
                raise Forbidden("unknown relay")
            return await _pass_through(registry.upstream, request, body, req.relay_id, key)
        token = make_token()
        registry.start_challenge(req.relay_id, key, token)
        return web.json_response({"relay_id": req.relay_id, "token": token})

    async def response(request: web.Request) -> web.Response:
        body = await _read_json_body(request)
        try:
            req = msgspec.json.decode(body, type=ChallengeResponse)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"invalid register response: {exc}") from None
        if not registry.has_challenge(req.relay_id):
            if registry.upstream is None:
                raise Forbidden("no registration in progress")
            return await _pass_through(registry.upstream, request, body, req.relay_id, None)
        signature = request.headers.get("X-Sentry-Relay-Signature", "")
        key = registry.pending_key(req.relay_id)
        if key is None or not key.verify(body, signature):
            raise AuthError("invalid challenge response")
        if registry.complete_challenge(req.relay_id, req.token) is None:
            raise AuthError("invalid challenge response")
        return web.json_response({"relay_id": req.relay_id})

    async def _pass_through(
        upstream: UpstreamClient, request: web.Request, body: bytes, relay_id: str,
        key: PublicKey | None,
    ) -> web.Response:  # fmt: skip
        # Unknown to us: our upstream may know the relay. The downstream's own signature
        # travels with the body, so the upstream verifies the downstream, not us.
        headers = {
            "Content-Type": "application/json",
            "X-Sentry-Relay-Id": request.headers.get("X-Sentry-Relay-Id", ""),
            "X-Sentry-Relay-Signature": request.headers.get("X-Sentry-Relay-Signature", ""),
        }
        try:
            status, _, data = await upstream.request(
                "POST", request.path, body=body, headers=headers, signed=False
            )
        except UpstreamError as exc:
            return web.json_response({"detail": f"upstream unavailable: {exc}"}, status=502)
        if status < 300:
            # Remember the upstream's verdict so the downstream may use our API afterwards.
            if key is not None:
                registry.start_challenge(relay_id, key, "")
            else:
                registry.complete_challenge(relay_id, None)
        return web.Response(status=status, body=data, content_type="application/json")

    async def projectconfigs(request: web.Request) -> web.Response:
        body = await _read_json_body(request)
        registry.verify(request, body)
        try:
            req = msgspec.json.decode(body, type=ProjectConfigsRequest)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"invalid projectconfigs request: {exc}") from None
        configs: dict[str, ProjectState] = {}
        pending: list[str] = []
        unchanged: list[str] = []
        for index, key in enumerate(req.public_keys):
            state = lookup(key)
            if state is None:
                pending.append(key)
                continue
            revision = req.revisions[index] if index < len(req.revisions) else None
            if revision is not None and state.rev == revision:
                unchanged.append(key)
            else:
                configs[key] = state
        answer: dict[str, object] = {"configs": configs}
        if pending:
            answer["pending"] = pending
        if unchanged:
            answer["unchanged"] = unchanged
        if req.global_:
            answer["global"] = {}
            answer["globalStatus"] = "ready"
        return web.Response(body=msgspec.json.encode(answer), content_type="application/json")

    async def publickeys(request: web.Request) -> web.Response:
        body = await _read_json_body(request)
        registry.verify(request, body)
        try:
            ids = msgspec.json.decode(body, type=dict[str, list[str]]).get("relay_ids", [])
        except msgspec.DecodeError as exc:
            raise BadRequest(f"invalid publickeys request: {exc}") from None
        keys: dict[str, str | None] = {}
        relays: dict[str, dict[str, object] | None] = {}
        for relay_id in ids:
            known = registry.get(relay_id)
            keys[relay_id] = str(known.public_key) if known else None
            relays[relay_id] = (
                {"publicKey": str(known.public_key), "internal": known.internal} if known else None
            )
        return web.json_response({"public_keys": keys, "relays": relays})

    return [
        web.post("/api/0/relays/register/challenge/", challenge),
        web.post("/api/0/relays/register/response/", response),
        web.post("/api/0/relays/projectconfigs/", projectconfigs),
        web.post("/api/0/relays/publickeys/", publickeys),
    ]


async def _read_json_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > _MAX_JSON:
        raise BadRequest("request body too large")
    return await request.read()
