"""Session aggregation through a real chain: exact sums in Kafka, even across a SIGTERM.

100,000 session updates for 50 releases go through the POP of a chain of its own (a
project made for this run, with ``sessionMetrics`` so the POP aggregates them at the
edge): most as ``sessions`` aggregate items, some as individual ``session`` items with
users and errors. Halfway through, the POP is stopped with SIGTERM (it flushes its
aggregator upstream on shutdown) and started again; envelopes not answered 200 are sent
again, so each update is accepted exactly once. The POP's bucket interval is long (10 s),
so what it accepted before the SIGTERM reaches Kafka through its shutdown flush: before
the restart, Kafka must already hold exactly those updates.

The processing relay writes the buckets to ``ingest-metrics``. Summed per release and
status, the ``c:sessions/session@none`` counters must equal what was sent, exactly; the
``s:sessions/user@none`` and ``s:sessions/error@none`` sets must hold exactly the users
and errored sessions sent. And the number of messages is bounded by aggregation: each
bucket key (name, tags, timestamp) reaches Kafka at most once per bucket interval.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec
import pytest
from aiokafka import ConsumerRecord
from sentry_kafka_schemas import get_codec

from relay.dev.chain import LocalChain
from relay.dev.services import Service
from relay.metrics.bucket import hash_set_value
from relay.metrics.sessions import ERROR_METRIC, SESSION_METRIC, USER_METRIC
from tests.e2e.projects import projects_with
from tests.kafka_utils import consume

RELEASES = 50
ENVIRONMENT = "production"
SDK = "agg-test/1.0"
#: Envelopes of individual ``session`` items, and items in each.
ITEM_ENVELOPES = 200
ITEMS_PER_ENVELOPE = 50
#: Envelopes of ``sessions`` aggregates: one item per release for RELEASES_PER_ENVELOPE
#: releases, one aggregate entry per started second, SESSIONS_PER_ENTRY sessions each.
AGGREGATE_ENVELOPES = 250
RELEASES_PER_ENVELOPE = 10
SESSIONS_PER_ENTRY = 12
#: Distinct ``started`` seconds (in the past, so buckets are due as soon as they exist).
STARTED_SECONDS = 3
TOTAL_UPDATES = 100_000
#: Distinct users of individual sessions.
USERS = 300
#: The processing relay's bucket interval, which bounds the messages in Kafka.
BUCKET_INTERVAL = 1
#: The POP's: long, so that it still holds most buckets when it is stopped.
POP_BUCKET_INTERVAL = 10
METRICS_TOPIC = "ingest-metrics"
AGGREGATE_STATUSES = ("exited", "errored", "abnormal", "unhandled", "crashed")
UPDATE_STATUSES = ("exited", "ok", "errored", "abnormal", "unhandled", "crashed")

#: (release, session.status) -> sessions counted.
Counts = collections.Counter[tuple[str, str]]
#: (metric name, release, session.status or "") -> set members.
Members = dict[tuple[str, str, str], set[int]]


@dataclass
class Run:
    chain: LocalChain
    project_id: int
    public_key: str

    @property
    def url(self) -> str:
        return f"{self.chain.pop.url}/api/{self.project_id}/envelope/"

    @property
    def auth(self) -> str:
        return f"Sentry sentry_key={self.public_key}, sentry_version=7, sentry_client={SDK}"


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, redis_server: Service, kafka_server: Service
) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("session-aggregation")
    project_id = random.randrange(10_000_000, 2**31 - 1)
    public_key = uuid.uuid4().hex
    projects = projects_with(workdir, {
        "projectId": project_id,
        "organizationId": 9,
        "slug": "session-aggregation",
        "publicKeys": [{"publicKey": public_key, "numericId": 91, "isEnabled": True}],
        "config": {
            "allowedDomains": ["*"],
            "trustedRelays": [],
            "eventRetention": 90,
            # The POP extracts session metrics itself and forwards buckets, not items.
            "sessionMetrics": {"version": 1},
        },
    })  # fmt: skip
    processing = {"aggregator": {"bucket_interval": BUCKET_INTERVAL, "initial_delay": 0}}
    pop = {"aggregator": {"bucket_interval": POP_BUCKET_INTERVAL, "initial_delay": 0}}
    chain = LocalChain(
        workdir / "chain", projects_dir=projects, processing_config=processing, pop_config=pop
    )
    chain.start(redis=redis_server, kafka=kafka_server)
    try:
        yield Run(chain, project_id, public_key)
    finally:
        chain.stop()


# --- what is sent -------------------------------------------------------------------


@dataclass
class Expected:
    """What the updates sent must add up to in Kafka."""

    sessions: Counts = field(default_factory=collections.Counter)
    members: Members = field(default_factory=dict)
    #: Bucket keys (name, sorted tags, timestamp) the updates produce.
    keys: set[tuple[str, tuple[tuple[str, str], ...], int]] = field(default_factory=set)
    updates: int = 0

    def count(self, release: str, status: str, started: int, quantity: int) -> None:
        if quantity:
            self.sessions[(release, status)] += quantity
            self._key(SESSION_METRIC, release, status, started)

    def member(self, name: str, release: str, status: str, started: int, value: str) -> None:
        self.members.setdefault((name, release, status), set()).add(hash_set_value(value))
        self._key(name, release, status, started)

    def _key(self, name: str, release: str, status: str, started: int) -> None:
        tags = {"release": release, "environment": ENVIRONMENT, "sdk": SDK}
        if status:
            tags["session.status"] = status
        # Each aggregator rounds timestamps down to its bucket interval; the POP's is the
        # coarsest and a multiple of the processing relay's.
        timestamp = started - started % POP_BUCKET_INTERVAL
        self.keys.add((name, tuple(sorted(tags.items())), timestamp))


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _item(item_type: str, payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode()
    return json.dumps({"type": item_type, "length": len(body)}).encode() + b"\n" + body + b"\n"


def _envelope(items: list[bytes]) -> bytes:
    return json.dumps({"sent_at": datetime.now(UTC).isoformat()}).encode() + b"\n" + b"".join(items)


@dataclass
class Sent:
    """One envelope and the session updates in it (each counts once as ``init``)."""

    body: bytes
    updates: int


class Builder:
    """Builds the envelopes and, alongside, what they must add up to."""

    def __init__(self, seed: int, release_prefix: str) -> None:
        self.rng = random.Random(seed)
        self.releases = [f"{release_prefix}@1.{n}.0" for n in range(RELEASES)]
        base = int(time.time()) - 30
        self.started = [base - 60 * n for n in range(STARTED_SECONDS)]
        self.expected = Expected()

    def aggregates_envelope(self, index: int) -> Sent:
        items = []
        before = self.expected.updates
        for offset in range(RELEASES_PER_ENVELOPE):
            release = self.releases[(index * RELEASES_PER_ENVELOPE + offset) % RELEASES]
            entries = []
            for started in self.started:
                split = collections.Counter(
                    self.rng.choices(
                        AGGREGATE_STATUSES, weights=[70, 15, 5, 5, 5], k=SESSIONS_PER_ENTRY
                    )
                )
                entries.append({"started": _iso(started), **split})
                self._expect_aggregate(release, started, split)
            attrs = {"release": release, "environment": ENVIRONMENT}
            items.append(_item("sessions", {"aggregates": entries, "attrs": attrs}))
        return Sent(_envelope(items), self.expected.updates - before)

    def _expect_aggregate(
        self, release: str, started: int, split: collections.Counter[str]
    ) -> None:
        total = sum(split.values())
        self.expected.updates += total
        self.expected.count(release, "init", started, total)
        self.expected.count(release, "errored_preaggr", started, total - split["exited"])
        for status in ("abnormal", "unhandled", "crashed"):
            self.expected.count(release, status, started, split[status])

    def items_envelope(self) -> Sent:
        items = []
        before = self.expected.updates
        for _ in range(ITEMS_PER_ENVELOPE):
            release = self.rng.choice(self.releases)
            started = self.rng.choice(self.started)
            status = self.rng.choices(UPDATE_STATUSES, weights=[50, 20, 12, 6, 6, 6])[0]
            sid = str(uuid.UUID(int=self.rng.getrandbits(128)))
            did = f"user-{self.rng.randrange(USERS)}"
            errors = 1 if status == "errored" else 0
            update = {
                "sid": sid, "did": did, "init": True, "seq": 0, "status": status,
                "errors": errors, "started": _iso(started), "timestamp": _iso(started + 5),
                "attrs": {"release": release, "environment": ENVIRONMENT},
            }  # fmt: skip
            items.append(_item("session", update))
            self._expect_update(release, started, status, sid, did)
        return Sent(_envelope(items), self.expected.updates - before)

    def _expect_update(self, release: str, started: int, status: str, sid: str, did: str) -> None:
        exp = self.expected
        exp.updates += 1
        exp.count(release, "init", started, 1)
        errored = status not in ("ok", "exited")
        if errored:
            exp.member(ERROR_METRIC, release, "", started, sid)
        exp.member(USER_METRIC, release, "errored" if errored else "", started, did)
        if status in ("abnormal", "unhandled", "crashed"):
            exp.count(release, status, started, 1)
            exp.member(USER_METRIC, release, status, started, did)


# --- what Kafka holds ---------------------------------------------------------------


@dataclass
class Received:
    sessions: Counts = field(default_factory=collections.Counter)
    members: Members = field(default_factory=dict)
    messages: int = 0
    #: Messages per bucket key, to show how often a key was flushed.
    per_key: collections.Counter[tuple[str, tuple[tuple[str, str], ...], int]] = field(
        default_factory=collections.Counter
    )
    unexpected: list[dict[str, Any]] = field(default_factory=list)

    def add(self, message: dict[str, Any]) -> None:
        self.messages += 1
        name, tags = message["name"], message["tags"]
        self.per_key[(name, tuple(sorted(tags.items())), message["timestamp"])] += 1
        if tags.get("environment") != ENVIRONMENT or tags.get("sdk") != SDK:
            self.unexpected.append(message)
        release, status = tags["release"], tags.get("session.status", "")
        if name == SESSION_METRIC and message["type"] == "c":
            self.sessions[(release, status)] += round(message["value"])
        elif name in (USER_METRIC, ERROR_METRIC) and message["type"] == "s":
            self.members.setdefault((name, release, status), set()).update(message["value"])
        else:
            self.unexpected.append(message)


def _this_run(
    project_id: int, received: Received
) -> Callable[[ConsumerRecord[bytes, bytes]], None]:
    """Adds this run's ``ingest-metrics`` messages (schema-validated) to ``received``."""
    codec = get_codec(METRICS_TOPIC)

    def add(record: ConsumerRecord[bytes, bytes]) -> None:
        assert record.value is not None
        message: dict[str, Any] = msgspec.json.decode(record.value)
        if message.get("project_id") != project_id:
            return
        codec.decode(record.value, validate=True)
        received.add(message)

    return add


async def read_metrics(bootstrap: str, project_id: int, expected: Expected) -> Received:
    """Read ``ingest-metrics`` until this run's sums match, then a little longer."""
    received = Received()
    add = _this_run(project_id, received)

    def done() -> bool:
        return received.sessions == expected.sessions and received.members == expected.members

    # The linger catches late duplicates, which would break the sums.
    await consume(bootstrap, [METRICS_TOPIC], add, done, timeout=60, linger=3)
    return received


async def sessions_in_kafka(bootstrap: str, project_id: int, wanted: int) -> int:
    """Sessions (``init``) of this run in Kafka, once ``wanted`` or time is up."""
    received = Received()

    def total() -> int:
        return sum(v for (_, status), v in received.sessions.items() if status == "init")

    add = _this_run(project_id, received)
    await consume(bootstrap, [METRICS_TOPIC], add, lambda: total() >= wanted, 30, linger=1.5)
    return total()


# --- sending ------------------------------------------------------------------------


@dataclass
class SendResult:
    posts: int = 0
    #: Updates in envelopes the first POP answered 200 before it was stopped.
    before_stop: int = 0
    #: Of those, the ones in Kafka before the POP was started again.
    in_kafka_before_restart: int = 0


async def send_all(run: Run, envelopes: list[Sent]) -> SendResult:
    """Post every envelope until answered 200, restarting the POP halfway."""
    limit = asyncio.Semaphore(8)
    result = SendResult()
    answered = 0
    accepted_updates = 0
    halfway = asyncio.Event()

    async def post(session: aiohttp.ClientSession, sent: Sent) -> None:
        nonlocal answered, accepted_updates
        headers = {"X-Sentry-Auth": run.auth, "Content-Type": "application/x-sentry-envelope"}
        for _ in range(400):
            result.posts += 1
            try:
                async with limit, session.post(run.url, data=sent.body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError):
                status = 0  # refused or cut off while the POP restarts: not accepted
            if status == 200:
                answered += 1
                accepted_updates += sent.updates
                if answered >= len(envelopes) // 2:
                    halfway.set()
                return
            assert status in (0, 429, 503), f"envelope refused with {status}"
            await asyncio.sleep(0.25)
        raise AssertionError("the POP never accepted an envelope")

    async def restart_midway() -> None:
        await halfway.wait()
        # SIGTERM while requests are in flight. The POP holds its buckets for a long
        # interval: what it accepted reaches Kafka only through its flush on shutdown.
        await asyncio.to_thread(run.chain.pop.stop)
        result.before_stop = accepted_updates
        result.in_kafka_before_restart = await sessions_in_kafka(
            run.chain.kafka_bootstrap, run.project_id, accepted_updates
        )
        await asyncio.to_thread(run.chain.restart, run.chain.pop)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        restarter = asyncio.create_task(restart_midway())
        await asyncio.gather(*(post(session, sent) for sent in envelopes))
        await restarter
    return result


@pytest.mark.e2e
async def test_session_sums_are_exact_across_a_sigterm(run: Run) -> None:
    builder = Builder(seed=run.project_id, release_prefix=f"agg-{uuid.uuid4().hex[:8]}")
    envelopes = [builder.aggregates_envelope(i) for i in range(AGGREGATE_ENVELOPES)]
    envelopes += [builder.items_envelope() for _ in range(ITEM_ENVELOPES)]
    random.Random(run.project_id).shuffle(envelopes)
    expected = builder.expected
    assert expected.updates == TOTAL_UPDATES

    began = time.monotonic()
    result = await send_all(run, envelopes)
    sent_in = time.monotonic() - began
    received = await read_metrics(run.chain.kafka_bootstrap, run.project_id, expected)
    elapsed = time.monotonic() - began

    # Each key is flushed at most once per bucket interval by the processing relay, plus
    # once more at most for the interval in progress.
    intervals = math.ceil(elapsed / BUCKET_INTERVAL) + 1
    bound = len(expected.keys) * intervals
    report = {
        "updates": expected.updates,
        "envelopes": len(envelopes),
        "posts": result.posts,
        "updates_accepted_before_sigterm": result.before_stop,
        "of_those_in_kafka_before_restart": result.in_kafka_before_restart,
        "send_seconds": round(sent_in, 1),
        "elapsed_seconds": round(elapsed, 1),
        "init_sessions_sent": sum(v for (_, s), v in expected.sessions.items() if s == "init"),
        "init_sessions_kafka": sum(v for (_, s), v in received.sessions.items() if s == "init"),
        "kafka_messages": received.messages,
        "bucket_keys": len(expected.keys),
        "max_messages_per_key": max(received.per_key.values(), default=0),
        "bound": bound,
    }
    print(json.dumps(report, indent=1))
    assert not received.unexpected, received.unexpected[:5]
    # Nothing the stopped POP had accepted was lost with it, nor counted twice.
    assert result.in_kafka_before_restart == result.before_stop
    wrong = {
        f"{release}/{status}": (expected.sessions[(release, status)], received.sessions[key])
        for key in set(received.sessions) | set(expected.sessions)
        for release, status in [key]
        if received.sessions[key] != expected.sessions[key]
    }
    assert not wrong, f"(sent, kafka) per release/status: {wrong}"
    assert received.members == expected.members
    assert set(received.per_key) == expected.keys
    assert received.messages <= bound, report
