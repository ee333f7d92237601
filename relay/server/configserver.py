"""The top of a local chain: serves project configs from files and keeps Redis warm.

Each file in the projects folder (``*.yml``, ``*.yaml`` or ``*.json``) is one project in the
``projectconfigs`` format (``projectId``, ``publicKeys``, ``config``, ...). Every key's
config is written to Redis (``{prefix}:{public_key}``, zstd JSON, plus ``.rev``) *proactively*:
at start-up, whenever a file changes (the folder is watched), and on ``relay configserver
push``. Entries never expire, so a relay started later finds its configs in Redis at once.

Files are validated before anything is written. An invalid file is reported (logged, and
``push`` exits non-zero) and its last good version stays in force, in memory and in Redis.

A file named ``global`` (``global.yml``, ...) is not a project: it is the *global config*
served to every relay (Sentry's ``options`` such as ``relay.endpoint-fetch-config.enabled``,
global ``measurements`` and ``filters``). Without it relays get an empty global config.

The configserver is also the registration authority of the chain: relays listed in its
``auth.static_relays`` may register (Relay's challenge/response) and fetch configs.
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
from redis.asyncio import Redis, RedisCluster

from relay.config import Config
from relay.protocol.encoding import zstd_compress
from relay.protocol.keys import Credentials
from relay.protocol.project_config import DISABLED, ProjectState, is_valid_project_key
from relay.server.health import health_routes
from relay.server.http_errors import error_middleware
from relay.server.redis_clients import RedisClients
from relay.server.relay_api import relay_api_routes
from relay.server.relays import RelayCache
from relay.server.runner import install_event_loop, wait_for_signal

log = logging.getLogger(__name__)

_SUFFIXES = (".yml", ".yaml", ".json")
POLL_INTERVAL = 1.0
#: The stem of the file holding the global config.
GLOBAL_STEM = "global"


class InvalidProjectFile(ValueError):
    """A project file that must not be served."""


def _read_mapping(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        raw = path.read_bytes()
        data: Any = yaml.safe_load(raw) if path.suffix != ".json" else msgspec.json.decode(raw)
    except (OSError, yaml.YAMLError, msgspec.DecodeError) as exc:
        raise InvalidProjectFile(f"{path}: cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidProjectFile(f"{path}: expected a mapping")
    return raw, data


def load_global_file(path: Path) -> dict[str, Any]:
    """Read and check the global config file; raises :class:`InvalidProjectFile`."""
    _, data = _read_mapping(path)
    for name in ("options", "measurements", "filters"):
        if name in data and not isinstance(data[name], dict):
            raise InvalidProjectFile(f"{path}: {name} must be a mapping")
    return data


def load_project_file(path: Path) -> list[tuple[str, ProjectState]]:
    """Read and validate one project file; one state per public key (as the v3 API serves).

    Raises :class:`InvalidProjectFile` naming the file and the problem.
    """
    raw, data = _read_mapping(path)
    # The revision changes with the content, so relays holding it get ``unchanged``.
    data.setdefault("rev", hashlib.sha1(raw).hexdigest())
    try:
        state = msgspec.convert(data, ProjectState)
    except msgspec.ValidationError as exc:
        raise InvalidProjectFile(f"{path}: {exc}") from None
    if state.project_id is None:
        raise InvalidProjectFile(f"{path}: projectId is required")
    if not state.public_keys:
        raise InvalidProjectFile(f"{path}: publicKeys is empty")
    for key in state.public_keys:
        if not is_valid_project_key(key.public_key):
            raise InvalidProjectFile(
                f"{path}: invalid public key {key.public_key!r} (expected 32 hex characters)"
            )
    for name in ("allowedDomains", "trustedRelays"):
        value = state.config.get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise InvalidProjectFile(f"{path}: config.{name} must be a list of strings")
    return [
        (key.public_key, msgspec.structs.replace(state, public_keys=[key]))
        for key in state.public_keys
    ]


class ProjectFiles:
    """The folder's projects, file by file, keeping each file's last good version."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._good: dict[Path, list[tuple[str, ProjectState]]] = {}
        #: Files that failed validation in the last scan, with the reason.
        self.errors: dict[Path, str] = {}
        #: The global config file's content (its last good version); empty without one.
        self.global_config: dict[str, Any] = {}

    def _scan_global(self, paths: list[Path]) -> None:
        found = [p for p in paths if p.stem == GLOBAL_STEM]
        if not found:
            self.global_config = {}
            return
        try:
            self.global_config = load_global_file(found[0])
        except InvalidProjectFile as exc:
            self.errors[found[0]] = str(exc)
            log.error("invalid global config file, keeping its last good version: %s", exc)

    def scan(self) -> dict[str, ProjectState]:
        """Re-read the folder; an invalid file keeps its last good states."""
        paths = sorted(p for p in self._paths())
        self.errors = {}
        self._scan_global(paths)
        present = [p for p in paths if p.stem != GLOBAL_STEM]
        for path in present:
            try:
                self._good[path] = load_project_file(path)
            except InvalidProjectFile as exc:
                self.errors[path] = str(exc)
                if path in self._good:
                    log.error("invalid project file, keeping its last good version: %s", exc)
                else:
                    log.error("invalid project file, not served: %s", exc)
        for gone in set(self._good) - set(present):
            del self._good[gone]
        states: dict[str, ProjectState] = {}
        for path in present:
            for key, state in self._good.get(path, ()):
                if key in states:
                    log.warning("public key %s is defined twice; %s wins", key, path)
                states[key] = state
        return states

    def _paths(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if p.suffix in _SUFFIXES and p.is_file()]

    def snapshot(self) -> dict[str, float]:
        """Modification times, to notice changes cheaply."""
        out = {}
        for path in self._paths():
            with contextlib.suppress(OSError):
                out[str(path)] = path.stat().st_mtime
        return out


def load_projects(folder: Path) -> dict[str, ProjectState]:
    """All valid project states in ``folder`` by public key; bad files are logged and skipped."""
    return ProjectFiles(folder).scan()


async def write_states(
    redis: Redis | RedisCluster,
    prefix: str,
    new: dict[str, ProjectState],
    old: dict[str, ProjectState] | None = None,
) -> int:
    """Write what changed between ``old`` and ``new`` (everything without ``old``) to Redis.

    The config is written before its ``.rev`` key: a relay that sees the new revision always
    finds the matching config. Removed keys become ``{"disabled": true}``. Returns the number
    of keys written.
    """
    old = old or {}
    written = 0
    async with redis.pipeline(transaction=False) as pipe:
        for key, state in new.items():
            if old.get(key) != state:
                pipe.set(f"{prefix}:{key}", zstd_compress(msgspec.json.encode(state)))
                pipe.set(f"{prefix}:{key}.rev", state.rev or "")
                written += 1
        for key in old.keys() - new.keys():
            pipe.set(f"{prefix}:{key}", msgspec.json.encode(DISABLED))
            pipe.delete(f"{prefix}:{key}.rev")
            written += 1
        await pipe.execute()
    return written


class ConfigServer:
    """Project configs from files, served over ``projectconfigs`` and pushed into Redis."""

    def __init__(self, config: Config, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.files = ProjectFiles(folder)
        self.states: dict[str, ProjectState] = {}
        # ``processing.redis`` in any form (a cluster too): configs go where relays read them.
        self.redis = RedisClients.from_config(config.processing.redis).project_configs
        self._task: asyncio.Task[None] | None = None

    def lookup(self, public_key: str) -> ProjectState:
        """The state for a key (disabled if unknown): the configserver never answers pending."""
        return self.states.get(public_key, DISABLED)

    async def reload(self) -> None:
        """Re-read the folder and write what changed (and removals) to Redis."""
        new = self.files.scan()
        old = self.states
        self.states = new
        if self.redis is not None:
            prefix = self.config.processing.projectconfig_cache_prefix
            await write_states(self.redis, prefix, new, old)
        log.info("configserver: %d project keys loaded from %s", len(new), self.folder)

    async def _watch(self) -> None:
        seen = self.files.snapshot()
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            current = self.files.snapshot()
            if current != seen:
                seen = current
                try:
                    await self.reload()
                except Exception as exc:
                    # Redis may be briefly away: the next change (or restart) writes again.
                    log.warning("configserver reload failed: %s", exc)
                    seen = {}

    async def start(self) -> None:
        """Load, write everything to Redis, then watch the folder."""
        self.states = self.files.scan()
        if self.redis is not None:
            prefix = self.config.processing.projectconfig_cache_prefix
            await write_states(self.redis, prefix, self.states)
        log.info("configserver: %d project keys loaded from %s", len(self.states), self.folder)
        self._task = asyncio.create_task(self._watch(), name="configserver-watch")

    async def stop(self) -> None:
        """Stop watching and close Redis."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.redis is not None:
            await self.redis.aclose()


def build_configserver_app(config: Config, server: ConfigServer) -> web.Application:
    """The HTTP app: registration, ``publickeys``, ``projectconfigs``, health."""
    relays = RelayCache(config, None)
    app = web.Application(middlewares=[error_middleware])
    app.add_routes(
        relay_api_routes(config, relays, server.lookup, lambda: server.files.global_config, None)
    )
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


async def _push(config: Config, folder: Path) -> int:
    files = ProjectFiles(folder)
    states = files.scan()
    for error in sorted(files.errors.values()):
        print(f"invalid: {error}")
    redis = RedisClients.from_config(config.processing.redis).project_configs
    if redis is None:
        print("error: processing.redis is not configured (or pass --redis-url)")
        return 2
    try:
        written = await write_states(redis, config.processing.projectconfig_cache_prefix, states)
    finally:
        await redis.aclose()
    print(f"pushed {written} project keys to Redis" + (f", {len(files.errors)} invalid files"
          if files.errors else ""))  # fmt: skip
    return 1 if files.errors else 0


def push_configs(config: Config, folder: Path) -> int:
    """``relay configserver push``: validate the folder, write its valid configs to Redis.

    Invalid files are listed and not written, so Redis keeps their last good version.
    Exit code 1 if any file was invalid.
    """
    return asyncio.run(_push(config, folder))
