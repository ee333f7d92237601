"""The client side of a hop: registration, signed requests, envelope forwarding.

One pooled aiohttp session per relay, with keep-alive, so a busy POP relay reuses a few
connections to its upstream instead of paying a TCP (and TLS) handshake per envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
import time
import zlib
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import aiohttp
import brotli
import msgspec
from multidict import CIMultiDict, CIMultiDictProxy

from relay import __version__
from relay.config import Config
from relay.protocol.encoding import zstd_compress
from relay.protocol.keys import Credentials, SecretKey
from relay.server.backoff import RetryBackoff
from relay.server.connection_monitor import ConnectionMonitor
from relay.server.http_pool import HttpPool, PoolError
from relay.telemetry.metrics import UPSTREAM_DURATION, upstream_route

log = logging.getLogger(__name__)

ENVELOPE_CONTENT_TYPE = "application/x-sentry-envelope"

#: Answers that mean the upstream was not reached (a proxy or load balancer answered).
NETWORK_ERROR_STATUSES = frozenset({502, 503, 504})
#: Retries of an envelope never follow each other faster than this, whatever
#: ``http.retry_delay`` says: a zero delay must not turn into a busy loop.
MIN_RETRY_DELAY_SECS = 0.05


class UpstreamError(Exception):
    """A request to the upstream failed; ``status`` is None for network errors."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
        rate_limits: str | None = None,
        relay_action: str | None = None,
        denied: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        #: ``X-Sentry-Rate-Limits`` of a 429 answer (all values joined by ", ").
        self.rate_limits = rate_limits
        #: The ``relay`` field of an error answer: what the upstream asks this relay to do
        #: (``"stop"``: it is rejected for good).
        self.relay_action = relay_action
        #: Not sent: the upstream has permanently rejected this relay (no use retrying).
        self.denied = denied

    @property
    def is_network_error(self) -> bool:
        """The upstream was not reached: no answer, or 502/503/504 from something in between."""
        return not self.denied and (self.status is None or self.status in NETWORK_ERROR_STATUSES)

    @property
    def is_permanent_rejection(self) -> bool:
        """The upstream rejects this relay for good (403 with ``"relay": "stop"``)."""
        return self.status == 403 and self.relay_action == "stop"

    @property
    def is_received(self) -> bool:
        """The upstream answered with a final verdict (any 4xx, 429 included): no retry.

        As in Relay, a rate-limited envelope counts as delivered: the upstream owns its
        outcome, and this relay caches the limits instead of retrying.
        """
        return self.status is not None and 400 <= self.status < 500


class UpstreamClient:
    """Talks to the next hop: another relay, the configserver, or Sentry."""

    def __init__(self, config: Config, credentials: Credentials | None) -> None:
        self.config = config
        self.base_url = config.relay.upstream.rstrip("/")
        self.credentials = credentials
        self._secret = SecretKey.parse(credentials.secret_key) if credentials else None
        #: Signature of the empty payload (every forwarded envelope) and until when it is reused.
        self._empty_signature: tuple[str, float] | None = None
        self._session: aiohttp.ClientSession | None = None
        #: The lean keep-alive pool envelopes are forwarded with (relay.server.http_pool).
        self._pool: HttpPool | None = None
        self.authenticated = asyncio.Event()
        #: The upstream rejected this relay permanently: no more requests, as in Relay.
        self.denied = False
        self._auth_task: asyncio.Task[None] | None = None
        self.connection = ConnectionMonitor(
            config.http.outage_grace_period, config.http.max_retry_interval, self._check_live
        )

    async def start(self) -> None:
        """Open the connection pool and, for managed relays, start registration."""
        connector = aiohttp.TCPConnector(
            limit=self.config.limits.max_concurrent_requests,
            keepalive_timeout=30,
            enable_cleanup_closed=True,
        )
        timeout = aiohttp.ClientTimeout(
            total=self.config.http.timeout, connect=self.config.http.connection_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": f"sentry-relay-py/{__version__}"},
            auto_decompress=True,
        )
        with contextlib.suppress(ValueError):  # other schemes: envelopes go through aiohttp
            self._pool = HttpPool(
                self.base_url,
                limit=self.config.limits.max_concurrent_requests,
                connect_timeout=self.config.http.connection_timeout,
                keepalive=30,
                default_headers={"User-Agent": f"sentry-relay-py/{__version__}"},
            )
        if self.config.relay.mode == "managed" and self._secret is not None:
            self._auth_task = asyncio.create_task(self._auth_loop(), name="upstream-auth")
        else:
            self.authenticated.set()

    async def stop(self) -> None:
        """Stop re-authenticating and close the pool."""
        if self._auth_task is not None:
            self._auth_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._auth_task
        await self.connection.stop()
        if self._session is not None:
            await self._session.close()
        if self._pool is not None:
            await self._pool.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "UpstreamClient.start() was not called"
        return self._session

    def _sign_headers(self, body: bytes) -> dict[str, str]:
        if self._secret is None or self.credentials is None:
            return {}
        if body:
            signature = self._secret.sign(body)
        else:
            # Envelopes sign an empty payload: the signature only proves who sent them and
            # when (to within auth.signature_max_age, minutes). Signing once per second instead
            # of per envelope saves an Ed25519 signature and a JSON header on the hot path.
            now = time.monotonic()
            cached = self._empty_signature
            if cached is None or now >= cached[1]:
                cached = self._empty_signature = (self._secret.sign(b""), now + 1.0)
            signature = cached[0]
        return {"X-Sentry-Relay-Id": self.credentials.id, "X-Sentry-Relay-Signature": signature}

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        signed: bool = True,
        sign_data: bytes | None = None,
        timeout: float | None = None,
        direct: bool = False,
        no_content_type: bool = False,
        pooled: bool = False,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """One HTTP request to the upstream; returns status, headers and body.

        ``pooled``: a POST whose answer is only looked at for its status and headers (the
        envelope hot path) goes through the lean keep-alive pool (relay.server.http_pool)
        instead of aiohttp; the answer body is not decompressed.

        ``no_content_type``: send no ``Content-Type`` (aiohttp adds one to every POST), for
        endpoints that refuse one, such as TUS creation.

        Signed requests sign ``sign_data`` (default: the body). Envelopes sign an empty
        payload, as Relay does: the signature proves which relay sent them, cheaply.

        During a network outage (relay.server.connection_monitor) the request waits for the
        upstream to come back, up to its timeout. ``direct`` requests (registration, the
        liveness probe) neither wait nor count towards outage detection, as in Relay.
        """
        if self.denied and not direct:
            raise UpstreamError("the upstream has permanently rejected this relay", denied=True)
        if not direct and self.connection.is_outage:
            wait = self.config.http.timeout if timeout is None else timeout
            if not await self.connection.wait_connected(wait):
                raise UpstreamError(f"{method} {path}: network outage, the upstream is unreachable")
        try:
            pool = self._pool if pooled and method == "POST" else None
            if pool is not None:
                result = await self._send_pooled(pool, path, body, headers, sign_data, timeout)
            else:
                result = await self._send(
                    method, path, body, headers, signed, sign_data, timeout, no_content_type
                )
        except UpstreamError:
            if not direct:
                self.connection.notify_error()
            raise
        if not direct:
            if result[0] in NETWORK_ERROR_STATUSES:
                self.connection.notify_error()
            else:
                self.connection.reset_error()
        return result

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None,
        signed: bool,
        sign_data: bytes | None,
        timeout: float | None,
        no_content_type: bool = False,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        all_headers = dict(headers or {})
        if signed:
            all_headers.update(self._sign_headers(body if sign_data is None else sign_data))
        url = f"{self.base_url}{path}"
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        if no_content_type:
            kwargs["skip_auto_headers"] = ("Content-Type",)
        started = time.monotonic()
        try:
            async with self.session.request(
                method, url, data=body or None, headers=all_headers, **kwargs
            ) as resp:
                data = await resp.read()
                UPSTREAM_DURATION.observe(
                    time.monotonic() - started, upstream_route(path), str(resp.status)
                )
                return resp.status, resp.headers, data
        except (aiohttp.ClientError, TimeoutError) as exc:
            UPSTREAM_DURATION.observe(time.monotonic() - started, upstream_route(path), "error")
            raise UpstreamError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc

    async def _send_pooled(
        self,
        pool: HttpPool,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None,
        sign_data: bytes | None,
        timeout: float | None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        all_headers = dict(headers or {})
        all_headers.update(self._sign_headers(body if sign_data is None else sign_data))
        started = time.monotonic()
        try:
            status, pairs, data = await pool.post(
                path, all_headers, body, self.config.http.timeout if timeout is None else timeout
            )
        except PoolError as exc:
            UPSTREAM_DURATION.observe(time.monotonic() - started, upstream_route(path), "error")
            raise UpstreamError(f"POST {self.base_url}{path}: {exc}") from exc
        UPSTREAM_DURATION.observe(time.monotonic() - started, upstream_route(path), str(status))
        return status, CIMultiDictProxy(CIMultiDict(pairs)), data

    async def request_json(
        self, path: str, payload: Any, *, signed: bool = True, direct: bool = False
    ) -> Any:
        """POST JSON, expect a 2xx JSON answer; raise UpstreamError otherwise."""
        body = msgspec.json.encode(payload)
        status, headers, data = await self.request(
            "POST", path, body=body, headers={"Content-Type": "application/json"},
            signed=signed, direct=direct,
        )  # fmt: skip
        if status >= 300:
            raise UpstreamError(
                response_error(status, data), status, _retry_after(headers),
                relay_action=_relay_action(data),
            )  # fmt: skip
        return msgspec.json.decode(data) if data else None

    async def _check_live(self) -> bool:
        """The outage probe: whether ``/api/0/relays/live/`` gets through (any answer but
        a network error counts, as in Relay)."""
        headers = {"X-Sentry-Relay-Id": self.credentials.id} if self.credentials else {}
        try:
            status, _, _ = await self.request(
                "GET", "/api/0/relays/live/", headers=headers, signed=False, direct=True
            )
        except UpstreamError:
            return False
        return status not in NETWORK_ERROR_STATUSES

    async def register(self) -> None:
        """Relay's two-step registration: challenge, then the signed token back."""
        assert self.credentials is not None and self._secret is not None
        challenge = await self.request_json(
            "/api/0/relays/register/challenge/",
            {
                "relay_id": self.credentials.id,
                "public_key": self.credentials.public_key,
                "version": self.config.relay.protocol_version,
            },
            direct=True,
        )
        await self.request_json(
            "/api/0/relays/register/response/",
            {
                "relay_id": self.credentials.id,
                "token": challenge["token"],
                "version": self.config.relay.protocol_version,
            },
            direct=True,
        )

    async def _auth_loop(self) -> None:
        # As Relay's AuthMonitor: register, then renew every `http.auth_interval`, except on
        # processing relays, which register once. Failures are retried with backoff; a
        # permanent rejection (403 "stop") ends all communication with the upstream.
        backoff = RetryBackoff(self.config.http.max_retry_interval)
        while True:
            try:
                await self.register()
            except (UpstreamError, KeyError, TypeError, msgspec.DecodeError) as exc:
                if isinstance(exc, UpstreamError) and exc.is_permanent_rejection:
                    log.error("the upstream %s permanently rejected this relay: %s",
                              self.base_url, exc)  # fmt: skip
                    self.denied = True
                    self.authenticated.clear()
                    return
                log.warning("registration with %s failed: %s", self.base_url, exc)
                # A renewal cut short by the network keeps the relay authenticated; any
                # other failure means the upstream no longer knows it.
                if not (isinstance(exc, UpstreamError) and exc.is_network_error):
                    self.authenticated.clear()
                await asyncio.sleep(backoff.next_backoff())
                continue
            log.info("registered with upstream %s", self.base_url)
            self.authenticated.set()
            backoff.reset()
            interval = self.config.http.auth_interval
            if self.config.processing.enabled or not interval:
                return
            await asyncio.sleep(interval)

    async def send_envelope(
        self,
        project_id: int | str,
        envelope: bytes,
        headers: Mapping[str, str],
        deadline: float,
    ) -> None:
        """Forward a serialized envelope, retrying until ``deadline``.

        The body is compressed as ``http.encoding`` says (zstd by default), as in Relay.
        Raises UpstreamError when the upstream rejects it (4xx) or the deadline passes.
        """
        body, content_encoding = encode_body(envelope, self.config.http.encoding)
        await self.send_encoded(project_id, body, content_encoding, headers, deadline)

    async def send_encoded(
        self,
        project_id: int | str,
        body: bytes,
        content_encoding: str | None,
        headers: Mapping[str, str],
        deadline: float,
    ) -> None:
        """:meth:`send_envelope` for a body already in ``content_encoding`` (None: plain)."""
        all_headers = {**headers, "Content-Type": ENVELOPE_CONTENT_TYPE}
        if content_encoding is not None:
            all_headers["Content-Encoding"] = content_encoding
        path = f"/api/{project_id}/envelope/"
        delay = self.config.http.retry_delay
        while True:
            try:
                status, resp_headers, data = await self.request(
                    "POST", path, body=body, headers=all_headers, sign_data=b"", pooled=True
                )
            except UpstreamError as exc:
                if exc.denied:
                    raise
                error = exc
            else:
                if status < 300:
                    return
                error = UpstreamError(
                    f"upstream answered {status}: {data[:200]!r}",
                    status,
                    _retry_after(resp_headers),
                    ", ".join(resp_headers.getall("X-Sentry-Rate-Limits", [])) or None,
                )
                if error.is_received:
                    raise error
            wait = error.retry_after or max(delay * (0.5 + random.random()), MIN_RETRY_DELAY_SECS)
            if time.monotonic() + wait > deadline:
                raise error
            log.debug("retrying envelope for project %s in %.2fs: %s", project_id, wait, error)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.config.http.max_retry_interval)


def encode_body(data: bytes, encoding: str) -> tuple[bytes, str | None]:
    """``data`` in the ``http.encoding`` of upstream requests, and its ``Content-Encoding``.

    ``identity`` (or anything unknown) sends the bytes as they are, with no header.
    """
    if encoding == "zstd":
        return zstd_compress(data), "zstd"
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=6), "gzip"
    if encoding == "deflate":
        # HTTP's ``deflate`` is the zlib format (header and checksum), as Relay sends it.
        return zlib.compress(data, 6), "deflate"
    if encoding == "br":
        return brotli.compress(data, quality=5), "br"
    return data, None


def response_error(status: int, body: bytes) -> str:
    """Relay's wording for an error answer, e.g. ``upstream request returned error 500
    Internal Server Error: no error details`` (the detail comes from a JSON ``detail``)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    detail = "no error details"
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("detail"), str):
        detail = decoded["detail"]
    return f"upstream request returned error {status} {phrase}".rstrip() + f": {detail}"


def _relay_action(body: bytes) -> str | None:
    """The ``relay`` field of a JSON error answer (``"stop"``), if any."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if isinstance(decoded, dict) and isinstance(decoded.get("relay"), str):
        return str(decoded["relay"])
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
