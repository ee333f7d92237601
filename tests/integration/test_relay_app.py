"""Tier 2: relays in-process on 127.0.0.1:0, with the real Redis and broker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from relay.config import config_from_dict
from relay.protocol.encoding import zstd_compress
from relay.protocol.keys import Credentials, generate_credentials
from relay.server.app import RelayApp
from tests.kafka_utils import by_event_id, collect

PUBLIC_KEY = uuid.uuid4().hex
PROJECT_ID = 4711
OTHER_KEY = "Sentry sentry_key=" + "0" * 32
AUTH = {"X-Sentry-Auth": f"Sentry sentry_key={PUBLIC_KEY}, sentry_version=7"}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def seeded_redis(redis_url: str) -> AsyncIterator[str]:
    """A project config written to Redis the way the configserver writes it."""
    state = {
        "projectId": PROJECT_ID,
        "organizationId": 3,
        "rev": "r1",
        "publicKeys": [{"publicKey": PUBLIC_KEY, "numericId": 9, "isEnabled": True}],
        "config": {"allowedDomains": ["*"]},
    }
    redis = Redis.from_url(redis_url)
    await redis.set(f"relayconfig:{PUBLIC_KEY}", zstd_compress(msgspec.json.encode(state)))
    yield redis_url
    await redis.delete(f"relayconfig:{PUBLIC_KEY}")
    await redis.aclose()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def pop_credentials() -> Credentials:
    return generate_credentials()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def processing(
    seeded_redis: str,
    kafka_bootstrap: str,
    pop_credentials: Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RelayApp]:
    spool = tmp_path_factory.mktemp("processing") / "spool.db"
    config = config_from_dict({
        "relay": {"mode": "proxy", "port": 0, "upstream": "http://127.0.0.1:9/"},
        "http": {"timeout": 1},
        # Outcomes are flushed a second after their slot closes, as the Relay suite runs.
        "aggregator": {"bucket_interval": 1, "initial_delay": 0},
        "processing": {
            "enabled": True,
            "redis": seeded_redis,
            "kafka_config": [{"name": "bootstrap.servers", "value": kafka_bootstrap}],
        },
        "auth": {"static_relays": {pop_credentials.id: {
            "public_key": pop_credentials.public_key, "internal": True}}},
        # A processing relay keeps envelopes waiting for their project config there.
        "spool": {"envelopes": {"path": str(spool)}},
    })  # fmt: skip
    app = RelayApp(config, None)
    await app.start()
    yield app
    await app.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def pop(processing: RelayApp, pop_credentials: Credentials) -> AsyncIterator[RelayApp]:
    config = config_from_dict({
        "relay": {"mode": "managed", "port": 0,
                  "upstream": f"http://127.0.0.1:{processing.ports[0]}/"},
    })  # fmt: skip
    app = RelayApp(config, pop_credentials)
    await app.start()
    yield app
    await app.stop()


def envelope(event_id: str, *items: tuple[dict[str, Any], bytes]) -> bytes:
    out = json.dumps({"event_id": event_id}).encode() + b"\n"
    for header, payload in items:
        out += json.dumps({**header, "length": len(payload)}).encode() + b"\n" + payload + b"\n"
    return out


async def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


@pytest.mark.asyncio(loop_scope="session")
async def test_processing_relay_writes_event(processing: RelayApp, kafka_bootstrap: str) -> None:
    event_id = uuid.uuid4().hex
    body = envelope(event_id, ({"type": "event"}, b'{"message": "in-process"}'))
    status, answer = await post(processing.ports[0], f"/api/{PROJECT_ID}/envelope/", body, AUTH)
    assert (status, answer) == (200, {"id": event_id})
    messages = await collect(
        kafka_bootstrap, "ingest-events", lambda ms: bool(by_event_id(ms, event_id))
    )
    [message] = by_event_id(messages, event_id)
    assert message["project_id"] == PROJECT_ID
    # Normalized as Relay does: the message becomes the formatted log entry.
    assert json.loads(message["payload"])["logentry"] == {"formatted": "in-process"}


@pytest.mark.asyncio(loop_scope="session")
async def test_processing_relay_opens_its_spool(processing: RelayApp) -> None:
    # No upstream queue here (that is a POP's): the file holds waiting envelopes only.
    assert processing.spool is None
    disk, ingestor = processing.disk, processing.ingestor
    assert disk is not None and ingestor is not None
    assert ingestor.pending.disk is disk
    assert disk.bytes > 0 and disk.waiting == 0  # open, its schema written


@pytest.mark.asyncio(loop_scope="session")
async def test_pop_forwards_to_processing(pop: RelayApp, kafka_bootstrap: str) -> None:
    event_id = uuid.uuid4().hex
    now = time.time()
    tx = {"type": "transaction", "transaction": "/pop", "start_timestamp": now - 1,
          "timestamp": now, "contexts": {"trace": {"trace_id": uuid.uuid4().hex,
                                                   "span_id": "a" * 16}}}  # fmt: skip
    body = envelope(event_id, ({"type": "transaction"}, json.dumps(tx).encode()))
    status, answer = await post(pop.ports[0], f"/api/{PROJECT_ID}/envelope/", body, AUTH)
    assert (status, answer) == (200, {"id": event_id})
    messages = await collect(
        kafka_bootstrap, "ingest-transactions", lambda ms: bool(by_event_id(ms, event_id))
    )
    [message] = by_event_id(messages, event_id)
    assert json.loads(message["payload"])["transaction"] == "/pop"


@pytest.mark.asyncio(loop_scope="session")
async def test_event_with_attachment_goes_to_attachments_topic(
    processing: RelayApp, kafka_bootstrap: str
) -> None:
    event_id = uuid.uuid4().hex
    body = envelope(
        event_id,
        ({"type": "event"}, b'{"message": "with attachment"}'),
        ({"type": "attachment", "filename": "a.txt", "content_type": "text/plain"}, b"hello"),
    )
    status, _ = await post(processing.ports[0], f"/api/{PROJECT_ID}/envelope/", body, AUTH)
    assert status == 200
    messages = await collect(
        kafka_bootstrap, "ingest-attachments",
        lambda ms: any(m["type"] == "event" for m in by_event_id(ms, event_id)),
    )  # fmt: skip
    mine = by_event_id(messages, event_id)
    assert [m["type"] for m in mine] == ["attachment_chunk", "event"]
    assert mine[0]["payload"] == b"hello"
    [ref] = mine[1]["attachments"]
    assert (ref["name"], ref["size"], ref["chunks"]) == ("a.txt", 5, 1)


@pytest.mark.asyncio(loop_scope="session")
async def test_client_report_becomes_outcome(processing: RelayApp, kafka_bootstrap: str) -> None:
    reason = f"test_{uuid.uuid4().hex[:8]}"
    report = {"discarded_events": [{"reason": reason, "category": "error", "quantity": 3}]}
    body = envelope(uuid.uuid4().hex, ({"type": "client_report"}, json.dumps(report).encode()))
    status, _ = await post(processing.ports[0], f"/api/{PROJECT_ID}/envelope/", body, AUTH)
    assert status == 200

    def found(ms: list[dict[str, Any]]) -> bool:
        return any(m.get("reason") == reason for m in ms)

    outcomes = await collect(kafka_bootstrap, "outcomes", found)
    [outcome] = [m for m in outcomes if m.get("reason") == reason]
    assert outcome["outcome"] == 5
    assert outcome["category"] == 1
    assert outcome["quantity"] == 3
    assert outcome["project_id"] == PROJECT_ID
    assert outcome["org_id"] == 3
    assert outcome["key_id"] == 9


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json\n", AUTH, 400),
        (b"{}\n", {}, 401),
    ],
    ids=["garbage", "no-auth"],
)  # fmt: skip
async def test_bad_requests(
    processing: RelayApp, body: bytes, headers: dict[str, str], status: int
) -> None:
    got, answer = await post(processing.ports[0], f"/api/{PROJECT_ID}/envelope/", body, headers)
    assert got == status
    assert answer["detail"]


@pytest.mark.asyncio(loop_scope="session")
async def test_health(pop: RelayApp) -> None:
    async with aiohttp.ClientSession() as session:
        for kind in ("live", "ready"):
            url = f"http://127.0.0.1:{pop.ports[0]}/api/relay/healthcheck/{kind}/"
            async with session.get(url) as resp:
                assert resp.status == 200


async def signed_post(port: int, path: str, payload: Any, creds: Credentials) -> tuple[int, Any]:
    """A relay-protocol request signed by Sentry Relay's own library (sentry_relay)."""
    from sentry_relay.auth import SecretKey

    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Sentry-Relay-Id": creds.id,
        "X-Sentry-Relay-Signature": SecretKey.parse(creds.secret_key).sign(body),  # type: ignore[no-untyped-call]
    }
    return await post(port, path, body, headers)


@pytest.mark.asyncio(loop_scope="session")
async def test_registration_and_projectconfigs_with_relay_signatures(
    processing: RelayApp, pop_credentials: Credentials
) -> None:
    port = processing.ports[0]
    status, challenge = await signed_post(
        port,
        "/api/0/relays/register/challenge/",
        {"relay_id": pop_credentials.id, "public_key": pop_credentials.public_key,
         "version": "26.9.0"},
        pop_credentials,
    )  # fmt: skip
    assert status == 200, challenge
    status, answer = await signed_post(
        port,
        "/api/0/relays/register/response/",
        {"relay_id": pop_credentials.id, "token": challenge["token"]},
        pop_credentials,
    )
    assert (status, answer) == (200, {"relay_id": pop_credentials.id})

    query = {"publicKeys": [PUBLIC_KEY], "revisions": [None], "fullConfig": True}
    path = "/api/0/relays/projectconfigs/?version=3"
    for _ in range(100):
        # v3: a key not in memory yet is answered ``pending`` while it is fetched.
        status, answer = await signed_post(port, path, query, pop_credentials)
        assert status == 200, answer
        if answer["configs"]:
            break
        assert answer["pending"] == [PUBLIC_KEY]
        await asyncio.sleep(0.05)
    assert answer["configs"][PUBLIC_KEY]["projectId"] == PROJECT_ID
    query["revisions"] = ["r1"]
    status, answer = await signed_post(port, path, query, pop_credentials)
    assert answer == {"configs": {}, "unchanged": [PUBLIC_KEY]}

    stranger = generate_credentials()
    status, answer = await signed_post(port, path, query, stranger)
    assert status == 401
    assert answer["detail"] == "unknown relay id"
