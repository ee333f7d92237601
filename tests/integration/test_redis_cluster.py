"""The relay's Redis uses on a real 3-master Redis Cluster on loopback.

Project configs are written by the configserver and read back in one lookup across slots;
the quota script counts exactly under concurrent, pipelined calls whose keys live on
different masters.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from relay.config import config_from_dict
from relay.dev.redis_cluster import RedisClusterService, start_redis_cluster
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.protocol.project_config import ProjectState
from relay.quotas import Quota, Scoping
from relay.quotas.redis_limiter import RedisRateLimiter
from relay.server.configserver import write_states
from relay.server.project_source import RedisSource
from relay.server.redis_clients import RedisClient, RedisClients


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterService]:
    service = start_redis_cluster(3, Path(tmp_path_factory.mktemp("cluster")))
    yield service
    service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client(cluster: RedisClusterService) -> AsyncIterator[RedisClient]:
    clients = RedisClients.from_config({"cluster_nodes": cluster.urls})
    assert clients.quotas is not None
    yield clients.quotas
    await clients.aclose()


def state(key: str, project_id: int) -> ProjectState:
    return msgspec.convert(
        {
            "projectId": project_id,
            "organizationId": 1,
            "rev": f"r{project_id}",
            "publicKeys": [{"publicKey": key, "numericId": 1}],
            "config": {},
        },
        ProjectState,
    )


async def test_project_configs_across_slots(client: RedisClient) -> None:
    config = config_from_dict({})
    prefix = config.processing.projectconfig_cache_prefix
    keys = [uuid.uuid4().hex for _ in range(12)]
    states = {key: state(key, n + 1) for n, key in enumerate(keys)}
    assert await write_states(client, prefix, states) == len(keys)
    missing = uuid.uuid4().hex
    found = await RedisSource(config, client).fetch([(k, None) for k in [*keys, missing]])
    assert missing not in found
    for n, key in enumerate(keys):
        got = found[key]
        assert isinstance(got, ProjectState) and got.project_id == n + 1
    # With known revisions only the `.rev` keys are read: nothing changed.
    again = await RedisSource(config, client).fetch([(k, f"r{n + 1}") for n, k in enumerate(keys)])
    assert {str(v) for v in again.values()} == {"NOT_MODIFIED"}


async def test_quota_is_exact_under_concurrency(client: RedisClient) -> None:
    limiter = RedisRateLimiter(client)
    quota = msgspec.convert(
        {"id": f"c{uuid.uuid4().hex[:8]}", "categories": ["error"], "limit": 50, "window": 3600},
        Quota,
    )

    async def one(org: int) -> bool:
        envelope = Envelope({}, [Item.new(ItemType.EVENT, b"{}")])
        scoping = Scoping(organization_id=org, project_id=org, project_key="k" * 32, key_id=1)
        return not (await limiter.check_envelope(envelope, scoping, [quota])).event.active

    # Several organizations: their keys (hash-tagged by org) spread over the masters, and
    # the calls of one pipeline are split by slot.
    orgs = [11, 12, 13, 14]
    admitted = await asyncio.gather(*(one(orgs[n % len(orgs)]) for n in range(600)))
    per_org = {org: sum(a for n, a in enumerate(admitted) if n % len(orgs) == i)
               for i, org in enumerate(orgs)}  # fmt: skip
    assert per_org == dict.fromkeys(orgs, 50)
    await limiter.close()
