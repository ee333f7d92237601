"""Who the downstream relays are: their public keys and whether they are internal.

A relay is known from ``auth.static_relays`` (always, never expiring), from a registration
completed here (only at the top of a chain, where there is no upstream to ask), or from the
upstream's ``publickeys`` endpoint. Upstream answers are cached for ``cache.relay_expiry``,
unknown relays for ``cache.miss_expiry``; lookups of relays not cached are batched every
``cache.downstream_relays_batch_interval`` and retried with backoff while the upstream fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import msgspec

from relay.config import Config
from relay.protocol.keys import KeyParseError, PublicKey
from relay.server.backoff import RetryBackoff
from relay.server.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)


class RelayInfo(msgspec.Struct, frozen=True):
    """A relay's public key and trust level."""

    public_key: PublicKey
    internal: bool = False

    def to_wire(self) -> dict[str, Any]:
        """As ``publickeys`` answers carry it."""
        return {"publicKey": str(self.public_key), "internal": self.internal}


def parse_relay_id(text: str | None) -> str | None:
    """The canonical (lower-case, hyphenated) form of a relay id, or None if not a UUID."""
    if not text:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _relay_info(raw: Any) -> RelayInfo | None:
    if isinstance(raw, dict):
        key = raw.get("publicKey") or raw.get("public_key")
        internal = raw.get("internal") is True
    elif isinstance(raw, str):
        key, internal = raw, False
    else:
        return None
    if not isinstance(key, str):
        return None
    try:
        return RelayInfo(PublicKey.parse(key), internal)
    except KeyParseError:
        return None


class RelayCache:
    """Resolves relay ids to :class:`RelayInfo`, asking the upstream for unknown ones."""

    def __init__(self, config: Config, upstream: UpstreamClient | None) -> None:
        self.config = config
        self.upstream = upstream
        self.static: dict[str, RelayInfo] = {}
        for relay_id, info in config.auth.static_relays.items():
            canonical = parse_relay_id(relay_id) or relay_id
            self.static[canonical] = RelayInfo(PublicKey.parse(info.public_key), info.internal)
        #: Relays that registered with us (top of chain only).
        self.registered: dict[str, RelayInfo] = {}
        self._cached: dict[str, tuple[RelayInfo | None, float]] = {}
        self._waiting: dict[str, list[asyncio.Future[RelayInfo | None]]] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = RetryBackoff(config.http.max_retry_interval)

    async def start(self) -> None:
        """Start the background fetcher (only needed with an upstream)."""
        if self.upstream is not None and self.upstream.credentials is not None:
            self._task = asyncio.create_task(self._fetch_loop(), name="relay-cache")

    async def stop(self) -> None:
        """Stop fetching; waiting lookups answer None."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for futures in self._waiting.values():
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)
        self._waiting.clear()

    def known(self, relay_id: str) -> RelayInfo | None:
        """What we know without asking anyone (static, registered, or cached and valid)."""
        info = self.static.get(relay_id) or self.registered.get(relay_id)
        if info is not None:
            return info
        cached = self._cached.get(relay_id)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        return None

    def is_internal(self, relay_id: str | None) -> bool:
        """Whether the id names a statically configured internal relay (Relay's trust rule)."""
        if relay_id is None:
            return False
        info = self.static.get(parse_relay_id(relay_id) or relay_id)
        return info is not None and info.internal

    async def get(self, relay_id: str, timeout: float) -> RelayInfo | None:
        """The relay's info; None if unknown. Raises TimeoutError if the upstream is slow."""
        info = self.static.get(relay_id) or self.registered.get(relay_id)
        if info is not None:
            return info
        cached = self._cached.get(relay_id)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        if self._task is None:
            # Top of the chain (or no credentials): nobody else to ask.
            return None
        fut: asyncio.Future[RelayInfo | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(relay_id, []).append(fut)
        self._wakeup.set()
        return await asyncio.wait_for(fut, timeout)

    async def _fetch_loop(self) -> None:
        assert self.upstream is not None
        interval = self.config.cache.downstream_relays_batch_interval / 1000.0
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(interval + self._backoff.next_backoff())
            ids = [i for i, futs in self._waiting.items() if any(not f.done() for f in futs)]
            if not ids:
                self._waiting.clear()
                self._backoff.reset()
                continue
            try:
                answer = await self.upstream.request_json(
                    "/api/0/relays/publickeys/", {"relay_ids": ids}
                )
            except (UpstreamError, msgspec.DecodeError) as exc:
                log.warning("error fetching public keys: %s", exc)
                self._wakeup.set()
                continue
            self._backoff.reset()
            relays: dict[str, Any] = {}
            if isinstance(answer, dict):
                relays = answer.get("relays") or {}
                legacy = answer.get("public_keys") or {}
                if not relays and isinstance(legacy, dict):
                    relays = legacy
            now = time.monotonic()
            for relay_id in ids:
                info = _relay_info(relays.get(relay_id)) if isinstance(relays, dict) else None
                ttl = self.config.cache.relay_expiry if info else self.config.cache.miss_expiry
                self._cached[relay_id] = (info, now + ttl)
                for fut in self._waiting.pop(relay_id, []):
                    if not fut.done():
                        fut.set_result(info)
