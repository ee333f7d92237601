"""Redis clients from ``processing.redis``, in every form Relay's config accepts.

- ``redis://host:port``: one server;
- ``{server: "redis://...", <options>}``: one server with pool options;
- ``{cluster_nodes: ["redis://...", ...], <options>}``: a Redis Cluster, found from any of the
  given nodes (:class:`redis.asyncio.RedisCluster`);
- ``{project_configs: <one of the above>, quotas: <one of the above>}``: one client per use.

Options (Relay's names): ``max_connections``, ``create_timeout`` (seconds to connect) and
``response_timeout`` (seconds per command); ``idle_timeout``, ``recycle_timeout`` and
``wait_timeout`` are accepted and have no equivalent in redis-py's pools.

The quota script (relay.quotas.redis_limiter) hash-tags its keys, so it runs unchanged on a
cluster; the project-config cache reads its keys with per-slot ``MGET``s there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode

from relay.errors import ConfigError

__all__ = ["RedisClient", "RedisClients", "RedisTarget", "parse_redis_config"]

#: Either kind of client; both speak the commands the relay uses.
RedisClient: TypeAlias = Redis | RedisCluster

_SCHEMES = ("redis", "rediss", "unix")
_OPTIONS = frozenset({
    "max_connections", "idle_timeout", "create_timeout", "recycle_timeout", "wait_timeout",
    "response_timeout",
})  # fmt: skip
#: Relay's defaults (relay-config ``PartialRedisConfigOptions``).
_DEFAULT_CREATE_TIMEOUT = 3.0
_DEFAULT_RESPONSE_TIMEOUT = 30.0
_DEFAULT_CLUSTER_CONNECTIONS = 1024


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where one client connects: a single server or the seed nodes of a cluster."""

    nodes: tuple[str, ...]
    cluster: bool
    max_connections: int | None = None
    create_timeout: float | None = _DEFAULT_CREATE_TIMEOUT
    response_timeout: float | None = _DEFAULT_RESPONSE_TIMEOUT

    def connect(self) -> RedisClient:
        """A client for this target. Connections are opened lazily, on the first command."""
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": self.create_timeout,
            "socket_timeout": self.response_timeout,
        }
        if not self.cluster:
            if self.max_connections is not None:
                kwargs["max_connections"] = self.max_connections
            return Redis.from_url(self.nodes[0], **kwargs)
        seeds = []
        for url in self.nodes:
            parts = urlsplit(url)
            seeds.append(ClusterNode(parts.hostname or "127.0.0.1", parts.port or 6379))
        first = urlsplit(self.nodes[0])
        return RedisCluster(
            startup_nodes=seeds,
            username=first.username,
            password=first.password,
            ssl=first.scheme == "rediss",
            # Per node. The cluster client fails a command rather than wait for a free
            # connection, so the default leaves ample room over redis-py's 100.
            max_connections=self.max_connections or _DEFAULT_CLUSTER_CONNECTIONS,
            **kwargs,
        )


@dataclass(frozen=True, slots=True)
class RedisClients:
    """The clients of one relay: for project configs and for quotas (maybe the same)."""

    project_configs: RedisClient | None = None
    quotas: RedisClient | None = None
    _owned: tuple[RedisClient, ...] = field(default=())

    @classmethod
    def from_config(cls, value: object) -> RedisClients:
        """Clients for a ``processing.redis`` value (None or "": no clients).

        Raises :class:`~relay.errors.ConfigError` for a value of no known form.
        """
        parsed = parse_redis_config(value)
        if parsed is None:
            return cls()
        project_target, quota_target = parsed
        project_client = project_target.connect()
        quota_client = project_client if quota_target == project_target else quota_target.connect()
        owned: tuple[RedisClient, ...] = (project_client,)
        if quota_client is not project_client:
            owned += (quota_client,)
        return cls(project_client, quota_client, owned)

    async def aclose(self) -> None:
        """Close every client (once each)."""
        for client in self._owned:
            await client.aclose()


def parse_redis_config(value: object) -> tuple[RedisTarget, RedisTarget] | None:
    """The (project_configs, quotas) targets of a ``processing.redis`` value; None if unset."""
    if value is None or value == "":
        return None
    if isinstance(value, dict) and ("project_configs" in value or "quotas" in value):
        unknown = set(value) - {"project_configs", "quotas"}
        if unknown or "project_configs" not in value or "quotas" not in value:
            raise ConfigError(
                "processing.redis: per-use configs need exactly `project_configs` and `quotas`"
            )
        return (
            _target(value["project_configs"], "processing.redis.project_configs"),
            _target(value["quotas"], "processing.redis.quotas"),
        )
    target = _target(value, "processing.redis")
    return target, target


def _target(value: object, where: str) -> RedisTarget:
    if isinstance(value, str):
        return RedisTarget((_url(value, where),), cluster=False)
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a redis:// URL or a mapping")
    has_server = "server" in value
    has_nodes = "cluster_nodes" in value
    if has_server == has_nodes:
        raise ConfigError(f"{where}: expected exactly one of `server` and `cluster_nodes`")
    unknown = set(value) - _OPTIONS - {"server", "cluster_nodes"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    max_connections = _positive_int(value.get("max_connections"), where, "max_connections")
    create = _seconds(value.get("create_timeout", _DEFAULT_CREATE_TIMEOUT), where, "create_timeout")
    response = _seconds(
        value.get("response_timeout", _DEFAULT_RESPONSE_TIMEOUT), where, "response_timeout"
    )
    if has_server:
        server = value["server"]
        if not isinstance(server, str):
            raise ConfigError(f"{where}.server: expected a redis:// URL")
        urls: tuple[str, ...] = (_url(server, f"{where}.server"),)
        return RedisTarget(urls, False, max_connections, create, response)
    nodes = value["cluster_nodes"]
    if not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) for n in nodes):
        raise ConfigError(f"{where}.cluster_nodes: expected a non-empty list of redis:// URLs")
    urls = tuple(_url(node, f"{where}.cluster_nodes") for node in nodes)
    if any(urlsplit(url).scheme == "unix" for url in urls):
        raise ConfigError(f"{where}.cluster_nodes: cluster nodes need TCP (redis://) URLs")
    return RedisTarget(urls, True, max_connections, create, response)


def _url(url: str, where: str) -> str:
    if urlsplit(url).scheme not in _SCHEMES:
        raise ConfigError(f"{where}: expected a redis://, rediss:// or unix:// URL, got {url!r}")
    return url


def _positive_int(value: object, where: str, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}.{name}: expected a positive integer")
    return value


def _seconds(value: object, where: str, name: str) -> float | None:
    # Relay's options are optional u64 seconds: null switches the timeout off.
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}.{name}: expected seconds (a number >= 0)")
    return float(value)
