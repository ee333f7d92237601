"""``processing.redis`` in each of Relay's forms becomes the right client(s)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis, RedisCluster

from relay.errors import ConfigError
from relay.server.redis_clients import RedisClients, RedisTarget, parse_redis_config


def test_unset_means_no_clients() -> None:
    assert parse_redis_config(None) is None
    assert parse_redis_config("") is None
    clients = RedisClients.from_config(None)
    assert clients.project_configs is None and clients.quotas is None


def test_plain_url_is_one_server_for_both_uses() -> None:
    parsed = parse_redis_config("redis://127.0.0.1:6379/0")
    assert parsed is not None
    configs, quotas = parsed
    assert configs == quotas
    assert configs.nodes == ("redis://127.0.0.1:6379/0",) and not configs.cluster


def test_server_with_options() -> None:
    parsed = parse_redis_config(
        {"server": "redis://h:1", "max_connections": 7, "response_timeout": 5, "idle_timeout": 9}
    )
    assert parsed is not None
    target = parsed[0]
    assert target == RedisTarget(("redis://h:1",), False, 7, 3.0, 5.0)


def test_cluster_nodes() -> None:
    parsed = parse_redis_config({"cluster_nodes": ["redis://a:7000", "redis://b:7001"]})
    assert parsed is not None
    target = parsed[1]
    assert target.cluster and target.nodes == ("redis://a:7000", "redis://b:7001")


def test_individual_configs_per_use() -> None:
    parsed = parse_redis_config(
        {"project_configs": "redis://a:1", "quotas": {"cluster_nodes": ["redis://b:2"]}}
    )
    assert parsed is not None
    configs, quotas = parsed
    assert not configs.cluster and quotas.cluster


async def test_clients_are_built_and_shared_when_equal() -> None:
    shared = RedisClients.from_config("redis://127.0.0.1:1/0")
    assert isinstance(shared.project_configs, Redis)
    assert shared.quotas is shared.project_configs
    await shared.aclose()
    split = RedisClients.from_config(
        {"project_configs": "redis://127.0.0.1:1", "quotas": {"cluster_nodes": ["redis://h:2"]}}
    )
    assert isinstance(split.project_configs, Redis)
    assert isinstance(split.quotas, RedisCluster)
    await split.aclose()


@pytest.mark.parametrize(
    "value",
    [
        42,
        "http://redis:6379",
        {"server": "redis://a", "cluster_nodes": ["redis://b"]},
        {"max_connections": 3},
        {"cluster_nodes": []},
        {"cluster_nodes": "redis://a:1"},
        {"cluster_nodes": ["unix:///tmp/redis.sock"]},
        {"server": "redis://a", "max_connections": 0},
        {"server": "redis://a", "response_timeout": "soon"},
        {"server": "redis://a", "pool": 3},
        {"project_configs": "redis://a"},
        {"project_configs": "redis://a", "quotas": "redis://b", "misc": "redis://c"},
    ],
)
def test_bad_values_are_config_errors(value: object) -> None:
    with pytest.raises(ConfigError):
        parse_redis_config(value)
