"""Tier 3: four processing relays share one Redis and admit no more than the quota.

Four ``relay run`` processes (processing, configs from Redis) take 20,000 error events for
one project, sent concurrently over all of them, against a quota of 1,000 per 60 s window. What
reaches Kafka's ``ingest-events`` must be between 1,000 and 1,000 + 4 (Relay's bound: one
relay's in-flight overshoot each); the ``rate_limited`` outcomes make up the rest, so that
all 20,000 are accounted for. The same runs against a 3-master Redis Cluster.

The project's organization id is chosen so that its quota window starts when the load does
(slots are offset by ``org_id % window``): the whole run falls in one window.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import msgspec
import pytest
import yaml
from aiokafka import ConsumerRecord

from relay.dev.chain import RelayProcess
from relay.dev.redis_cluster import RedisClusterService, start_redis_cluster
from relay.dev.services import Service, free_port
from relay.protocol.encoding import zstd_compress
from relay.server.redis_clients import RedisClients
from tests.kafka_utils import consume

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

RELAYS = 4
EVENTS = 20_000
LIMIT = 1_000
WINDOW = 60
#: Requests in flight at once, over all relays.
IN_FLIGHT = 96
REASON = "concurrency_quota"
RATE_LIMITED = 2
ERROR_CATEGORY = 1


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterService]:
    cluster = start_redis_cluster(3, tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.mark.parametrize("backend", ["single", "cluster"])
async def test_relays_sharing_redis_admit_exactly_the_quota(
    backend: str,
    request: pytest.FixtureRequest,
    redis_server: Service,
    kafka_server: Service,
    tmp_path: Path,
) -> None:
    if backend == "single":
        redis_config: Any = f"redis://{redis_server.address}/0"
    else:
        cluster: RedisClusterService = request.getfixturevalue("redis_cluster")
        redis_config = {"cluster_nodes": cluster.urls}
    relays = [
        start_processing_relay(tmp_path / f"relay{n}", redis_config, kafka_server.address)
        for n in range(RELAYS)
    ]
    try:
        for relay in relays:
            relay.wait_ready()
        project_id = 700_000 + uuid.uuid4().int % 100_000
        public_key = uuid.uuid4().hex
        # The window of this org starts now: (now - org % WINDOW) % WINDOW == 0.
        started = int(time.time())
        org_id = 1_000 * WINDOW + started % WINDOW
        await seed_project(redis_config, project_id, org_id, public_key)

        statuses = await send_load(relays, project_id, public_key)
        elapsed = time.time() - started
        assert elapsed < WINDOW - 2, f"the load took {elapsed:.0f}s: it left its quota window"
        assert set(statuses) <= {200, 429}, statuses

        stored = await count_events(kafka_server.address, project_id, minimum=LIMIT)
        limited = await count_rate_limited(kafka_server.address, project_id, EVENTS - stored)
    finally:
        for relay in relays:
            relay.stop()
    logs = "\n".join(relay.log_tail() for relay in relays)
    assert LIMIT <= stored <= LIMIT + RELAYS, (stored, statuses, logs)
    assert limited == {REASON: EVENTS - stored}, (stored, limited, statuses)


# -- relays --------------------------------------------------------------------------------


def start_processing_relay(config_dir: Path, redis: Any, kafka: str) -> RelayProcess:
    """A processing relay reading project configs from Redis only (proxy mode)."""
    port = free_port()
    config_dir.mkdir(parents=True)
    (config_dir / "config.yml").write_text(yaml.safe_dump({
        "relay": {"mode": "proxy", "host": "127.0.0.1", "port": port,
                  "upstream": "http://127.0.0.1:9/"},
        "processing": {
            "enabled": True,
            "redis": redis,
            "kafka_config": [{"name": "bootstrap.servers", "value": kafka}],
        },
        # Outcomes leave a second after their slot closes instead of after a minute.
        "aggregator": {"bucket_interval": 1, "initial_delay": 0},
        "logging": {"level": "warn"},
    }))  # fmt: skip
    relay = RelayProcess(config_dir.name, port, config_dir)
    with (config_dir / "relay.log").open("wb") as log:
        relay.proc = subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "-c", str(config_dir), "run"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return relay


async def seed_project(redis: Any, project_id: int, org_id: int, public_key: str) -> None:
    """The project config, written where the configserver writes it."""
    state = {
        "projectId": project_id,
        "organizationId": org_id,
        "publicKeys": [{"publicKey": public_key, "numericId": 1, "isEnabled": True}],
        "config": {
            "allowedDomains": ["*"],
            "quotas": [{
                "id": f"q{uuid.uuid4().hex[:10]}", "categories": ["error"], "scope": "project",
                "limit": LIMIT, "window": WINDOW, "reasonCode": REASON,
            }],
        },
    }  # fmt: skip
    clients = RedisClients.from_config(redis)
    assert clients.project_configs is not None
    try:
        await clients.project_configs.set(
            f"relayconfig:{public_key}", zstd_compress(msgspec.json.encode(state))
        )
    finally:
        await clients.aclose()


# -- load ----------------------------------------------------------------------------------


def envelope(n: int) -> bytes:
    event_id = uuid.uuid4().hex
    event = json.dumps({
        "event_id": event_id, "level": "error", "platform": "python",
        "exception": {"values": [{"type": "ValueError", "value": f"spike {n}"}]},
    }).encode()  # fmt: skip
    item = json.dumps({"type": "event", "length": len(event)}).encode()
    return json.dumps({"event_id": event_id}).encode() + b"\n" + item + b"\n" + event + b"\n"


async def send_load(relays: list[RelayProcess], project_id: int, public_key: str) -> Counter[int]:
    """Send every event once, round-robin over the relays; return the status counts."""
    headers = {
        "X-Sentry-Auth": f"Sentry sentry_key={public_key}, sentry_version=7",
        "Content-Type": "application/x-sentry-envelope",
    }
    urls = [f"{relay.url}/api/{project_id}/envelope/" for relay in relays]
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(EVENTS):
        queue.put_nowait(n)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                async with session.post(
                    urls[n % len(urls)], data=envelope(n), headers=headers
                ) as r:
                    await r.read()
                    statuses[r.status] += 1

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return statuses


# -- kafka ---------------------------------------------------------------------------------


async def count_events(bootstrap: str, project_id: int, minimum: int) -> int:
    """Messages of the project in ``ingest-events``: read until ``minimum`` and quiet for 2 s."""
    found = 0

    def add(record: ConsumerRecord[bytes, bytes]) -> None:
        nonlocal found
        if msgpack.unpackb(record.value or b"", raw=False).get("project_id") == project_id:
            found += 1

    # Reading on for 2 s shows more messages than expected, if there are any.
    await consume(bootstrap, ["ingest-events"], add, lambda: found >= minimum, linger=2.0)
    return found


async def count_rate_limited(bootstrap: str, project_id: int, expected: int) -> dict[str, int]:
    """Summed ``rate_limited`` error quantities of the project, by reason."""
    reasons: Counter[str] = Counter()

    def add(record: ConsumerRecord[bytes, bytes]) -> None:
        outcome = json.loads(record.value or b"{}")
        ours = outcome.get("project_id") == project_id and outcome.get("outcome") == RATE_LIMITED
        if ours and outcome.get("category") == ERROR_CATEGORY:
            reasons[outcome.get("reason")] += outcome.get("quantity", 1)

    # Rate-limited outcomes are billing outcomes; both topics are read to see any stray one.
    await consume(
        bootstrap, ["outcomes", "outcomes-billing"], add, lambda: reasons.total() >= expected,
        linger=2.0,
    )  # fmt: skip
    return dict(reasons)
