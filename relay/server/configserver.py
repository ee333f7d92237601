"""The top of a local chain: serves project configs from files and keeps Redis warm.

Each file in the projects folder (``*.yml``, ``*.yaml`` or ``*.json``) is one project
in the ``projectconfigs`` format (``projectId``, ``publicKeys``, ``config``, ...). The
configserver writes every key's config to Redis (``relayconfig:{public_key}``, zstd JSON,
plus ``.rev``) at start-up and whenever a file changes, instead of letting entries
expire: a relay that starts later finds its configs in Redis at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path
from typing import Any

import msgspec
import yaml
from aiohttp import web
from redis.asyncio import Redis

from relay.config import Config
from relay.protocol.encoding import zstd_compress
from relay.protocol.keys import Credentials
from relay.protocol.project_config import DISABLED, ProjectState
from relay.server.health import health_routes
from relay.server.http_errors import error_middleware
from relay.server.relay_api import RelayRegistry, relay_api_routes
from relay.server.runner import install_event_loop, wait_for_signal

log = logging.getLogger(__name__)

_SUFFIXES = (".yml", ".yaml", ".json")
POLL_INTERVAL = 1.0


def load_project_file(path: Path) -> list[tuple[str, ProjectState]]:
    """Read one project file; returns one state per public key (as Relay's v3 API does)."""
    raw = path.read_bytes()
    data: Any = yaml.safe_load(raw) if path.suffix != ".json" else msgspec.json.decode(raw)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    data.setdefault("rev", hashlib.sha1(raw).hexdigest())
    state = msgspec.convert(data, ProjectState)
    return [
        (key.public_key, msgspec.structs.replace(state, public_keys=[key]))
        for key in state.public_keys
    ]


def load_projects(folder: Path) -> dict[str, ProjectState]:
    """All project states in ``folder`` by public key; bad files are logged and skipped."""
    states: dict[str, ProjectState] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.suffix not in _SUFFIXES:
            continue
        try:
            states.update(load_project_file(path))
        except (OSError, ValueError, yaml.YAMLError, msgspec.MsgspecError) as exc:
            log.error("skipping project file %s: %s", path, exc)
    return states


def _snapshot(folder: Path) -> dict[str, float]:
    if not folder.is_dir():
        return {}
    return {str(p): p.stat().st_mtime for p in folder.iterdir() if p.suffix in _SUFFIXES}


class ConfigServer:
    """Project configs from files, served over ``projectconfigs`` and pushed into Redis."""

    def __init__(self, config: Config, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.states: dict[str, ProjectState] = {}
        self.redis: Redis | None = None
        url = config.processing.redis_url
        if url:
            self.redis = Redis.from_url(url)
        self._task: asyncio.Task[None] | None = None

    def lookup(self, public_key: str) -> ProjectState:
        return self.states.get(public_key, DISABLED)

    async def reload(self) -> None:
        """Re-read the folder and write what changed (and removals) to Redis."""
        new = load_projects(self.folder)
        old = self.states
        self.states = new
        if self.redis is None:
            return
        prefix = self.config.processing.projectconfig_cache_prefix
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, state in new.items():
                if old.get(key) != state:
                    pipe.set(f"{prefix}:{key}", zstd_compress(msgspec.json.encode(state)))
                    pipe.set(f"{prefix}:{key}.rev", state.rev or "")
            for key in old.keys() - new.keys():
                pipe.set(f"{prefix}:{key}", msgspec.json.encode(DISABLED))
                pipe.delete(f"{prefix}:{key}.rev")
            await pipe.execute()
        log.info("configserver: %d project keys loaded from %s", len(new), self.folder)

    async def _watch(self) -> None:
        seen = _snapshot(self.folder)
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            current = _snapshot(self.folder)
            if current != seen:
                seen = current
                try:
                    await self.reload()
                except Exception:
                    log.exception("configserver reload failed")

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._watch(), name="configserver-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.redis is not None:
            await self.redis.aclose()


def build_configserver_app(config: Config, server: ConfigServer) -> web.Application:
    """The HTTP app: registration, ``projectconfigs``, health."""
    registry = RelayRegistry(config, None)
    app = web.Application(middlewares=[error_middleware])
    app.add_routes(relay_api_routes(registry, server.lookup))
    app.add_routes(health_routes(lambda: True))
    return app


async def _serve(config: Config, folder: Path) -> None:
    server = ConfigServer(config, folder)
    await server.start()
    runner = web.AppRunner(build_configserver_app(config, server), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.relay.host, config.relay.port, reuse_address=True)
        await site.start()
        log.info("configserver listening on %s:%s", config.relay.host, config.relay.port)
        await wait_for_signal()
    finally:
        await runner.cleanup()
        await server.stop()


def run_configserver(config: Config, credentials: Credentials | None, folder: Path) -> int:
    """Run the configserver until SIGTERM/SIGINT."""
    del credentials  # the configserver is the top of the chain: it registers nowhere
    install_event_loop()
    asyncio.run(_serve(config, folder))
    return 0
