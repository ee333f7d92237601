"""Quotas and session metrics wired into a processing relay (tier 2: real Redis and Kafka)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from relay.config import config_from_dict
from relay.protocol.encoding import zstd_compress
from relay.server.app import RelayApp
from tests.kafka_utils import by_event_id, collect

PROJECT_ID = 4712
LIMITED_KEY = uuid.uuid4().hex
BLOCKED_KEY = uuid.uuid4().hex
REASON = f"quota_{uuid.uuid4().hex[:6]}"


def project(public_key: str, quotas: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "projectId": PROJECT_ID,
        "organizationId": 5,
        "rev": "r1",
        "publicKeys": [{"publicKey": public_key, "numericId": 11, "isEnabled": True}],
        "config": {"allowedDomains": ["*"], "quotas": quotas},
    }


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def relay(redis_url: str, kafka_bootstrap: str) -> AsyncIterator[RelayApp]:
    redis = Redis.from_url(redis_url)
    one_per_hour = [{"id": f"q-{uuid.uuid4().hex[:8]}", "categories": ["error"], "scope": "project",
                     "limit": 1, "window": 3600, "reasonCode": REASON}]  # fmt: skip
    blocked = [{"id": "zero", "categories": ["error"], "scope": "project", "limit": 0,
                "reasonCode": "blocked"}]  # fmt: skip
    for key, quotas in ((LIMITED_KEY, one_per_hour), (BLOCKED_KEY, blocked)):
        state = msgspec.json.encode(project(key, quotas))
        await redis.set(f"relayconfig:{key}", zstd_compress(state))
    config = config_from_dict({
        "relay": {"mode": "proxy", "port": 0, "upstream": "http://127.0.0.1:9/"},
        "processing": {
            "enabled": True,
            "redis": redis_url,
            "kafka_config": [{"name": "bootstrap.servers", "value": kafka_bootstrap}],
        },
        "aggregator": {"bucket_interval": 1, "initial_delay": 0},
    })  # fmt: skip
    app = RelayApp(config, None)
    await app.start()
    yield app
    await app.stop()
    await redis.aclose()


async def send(app: RelayApp, key: str, body: bytes) -> tuple[int, dict[str, str], Any]:
    url = f"http://127.0.0.1:{app.ports[0]}/api/{PROJECT_ID}/envelope/"
    headers = {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"}
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            async with session.post(url, data=body, headers=headers) as resp:
                answer = await resp.json(content_type=None)
                if resp.status != 503:
                    return resp.status, dict(resp.headers), answer
            await asyncio.sleep(0.05)  # the project config is still being fetched
    raise AssertionError("project config never became available")


def event_envelope(event_id: str) -> bytes:
    payload = json.dumps({"message": "quota test"}).encode()
    return (json.dumps({"event_id": event_id}).encode() + b"\n"
            + json.dumps({"type": "event", "length": len(payload)}).encode() + b"\n"
            + payload + b"\n")  # fmt: skip


@pytest.mark.asyncio(loop_scope="session")
async def test_redis_quota_admits_exactly_the_limit(relay: RelayApp, kafka_bootstrap: str) -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    assert (await send(relay, LIMITED_KEY, event_envelope(first)))[0] == 200
    assert (await send(relay, LIMITED_KEY, event_envelope(second)))[0] == 200
    events = await collect(kafka_bootstrap, "ingest-events",
                           lambda ms: bool(by_event_id(ms, first)))  # fmt: skip
    assert by_event_id(events, first)
    assert not by_event_id(events, second)
    outcomes = await collect(kafka_bootstrap, "outcomes-billing",
                             lambda ms: any(m.get("reason") == REASON for m in ms))  # fmt: skip
    [outcome] = [m for m in outcomes if m.get("reason") == REASON]
    assert (outcome["outcome"], outcome["category"], outcome["quantity"]) == (2, 1, 1)
    # The limit is now cached: the next envelope is refused at the door.
    status, headers, answer = await send(relay, LIMITED_KEY, event_envelope(uuid.uuid4().hex))
    assert status == 429
    assert REASON in headers["X-Sentry-Rate-Limits"]
    assert int(headers["Retry-After"]) > 0
    assert answer["detail"]


@pytest.mark.asyncio(loop_scope="session")
async def test_zero_quota_answers_429(relay: RelayApp) -> None:
    # The very first envelope may wait for the project config (accepted, then dropped with
    # an outcome, as in Relay); once the config is known the relay answers 429 itself.
    await send(relay, BLOCKED_KEY, event_envelope(uuid.uuid4().hex))
    await asyncio.sleep(0.5)
    status, headers, _ = await send(relay, BLOCKED_KEY, event_envelope(uuid.uuid4().hex))
    assert status == 429
    assert headers["X-Sentry-Rate-Limits"].startswith("60:error")


@pytest.mark.asyncio(loop_scope="session")
async def test_sessions_become_aggregated_metrics(relay: RelayApp, kafka_bootstrap: str) -> None:
    release = f"wiring@{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC).isoformat()
    items = b""
    for _ in range(20):
        session = json.dumps(
            {
                "sid": uuid.uuid4().hex,
                "did": "user-1",
                "init": True,
                "started": now,
                "timestamp": now,
                "status": "ok",
                "attrs": {"release": release, "environment": "test"},
            }
        ).encode()
        items += json.dumps({"type": "session", "length": len(session)}).encode() + b"\n"
        items += session + b"\n"  # fmt: skip
    status, _, _ = await send(relay, LIMITED_KEY, b"{}\n" + items)
    assert status == 200

    def mine(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in ms if m.get("tags", {}).get("release") == release]

    metrics = await collect(kafka_bootstrap, "ingest-metrics",
                            lambda ms: len(mine(ms)) >= 2, timeout=30)  # fmt: skip
    by_name = {m["name"]: m for m in mine(metrics)}
    # 20 sessions of one user: one counter bucket of 20, one set bucket with one member.
    assert by_name["c:sessions/session@none"]["value"] == 20
    assert len(by_name["s:sessions/user@none"]["value"]) == 1
    assert all(m["project_id"] == PROJECT_ID and m["org_id"] == 5 for m in mine(metrics))
