"""Conservation through a real chain: every item sent is in Kafka or in an outcome, exactly.

A few hundred envelopes of mixed types go through the POP of a chain of its own (a project
made for this run, so other tests' messages in the same broker are not counted). Some of
their items are filtered (release and error-message inbound filters), some invalid (bad
JSON events, invalid transactions, check-ins, profiles, user reports) and some too large
(the whole envelope is refused with 413, and Relay still emits ``invalid`` outcomes for its
items). Then, for every data category::

    accepted in Kafka (counted as Sentry's consumers count) + dropped in outcomes == sent

Outcomes are read from ``outcomes`` and ``outcomes-billing``; ``accepted`` (0) outcomes are
not drops, and ``client_discard`` (5) outcomes are what SDKs report, not relay drops. The
POP sends all its outcomes upstream (``outcomes.emit_outcomes: true``), and both relays
flush aggregated outcomes every second, so the test is quick.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgpack
import msgspec
import pytest
from aiokafka import ConsumerRecord

from relay.dev.chain import LocalChain
from relay.dev.services import Service
from relay.protocol.items import DataCategory as C
from tests.e2e.projects import projects_with
from tests.kafka_utils import consume, decode_validated

#: Envelopes sent; each picks one of the shapes below.
ENVELOPES = 300
#: The POP's limit on attachments, so that an oversized one is cheap to build.
MAX_ATTACHMENT_SIZE = 64 * 1024
#: Relay's default ``limits.max_check_in_size``.
MAX_CHECK_IN_SIZE = 100 * 1024
#: Envelopes sent with a second key whose errors are over a quota after the first few.
LIMITED_ENVELOPES = 30
LIMITED_QUOTA = 10
LIMITED_KEY_ID = 78
LIMITED_ATTACHMENT_SIZE = 100

DATA_TOPICS = (
    "ingest-events",
    "ingest-attachments",
    "ingest-transactions",
    "ingest-monitors",
    "profiles",
    "ingest-feedback-events",
)
OUTCOME_TOPICS = ("outcomes", "outcomes-billing")
ACCEPTED, RATE_LIMITED, CLIENT_DISCARD = 0, 2, 5

Counts = collections.Counter[int]


@dataclass
class Run:
    """What identifies this run's data, and the chain that serves it."""

    chain: LocalChain
    project_id: int
    public_key: str
    release: str
    #: A second key of the project, with a quota on errors.
    limited_key: str

    @property
    def url(self) -> str:
        return f"{self.chain.pop.url}/api/{self.project_id}/envelope/"

    def auth(self, key: str | None = None) -> str:
        key = key or self.public_key
        return f"Sentry sentry_key={key}, sentry_version=7, sentry_client=cons/1.0"


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, redis_server: Service, kafka_server: Service
) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("conservation")
    project_id = random.randrange(10_000_000, 2**31 - 1)
    public_key = uuid.uuid4().hex
    limited_key = uuid.uuid4().hex
    release = f"cons-{uuid.uuid4().hex[:12]}"
    projects = projects_with(workdir, {
        "projectId": project_id,
        "organizationId": 7,
        "slug": "conservation",
        "publicKeys": [
            {"publicKey": public_key, "numericId": 77, "isEnabled": True},
            {"publicKey": limited_key, "numericId": LIMITED_KEY_ID, "isEnabled": True},
        ],
        "config": {
            "allowedDomains": ["*"],
            "trustedRelays": [],
            "eventRetention": 90,
            "filterSettings": {
                "releases": {"releases": [f"{release}-filtered*"]},
                "errorMessages": {"patterns": ["*conservation-drop*"]},
            },
            # Counted in Redis by the processing relay; over it, the processing relay and
            # then (from its 429s) the POP drop errors with their attachments. The window
            # is long, so that the run never straddles two windows.
            "quotas": [{
                "id": "cons-errors", "categories": ["error"], "scope": "key",
                "scopeId": str(LIMITED_KEY_ID), "limit": LIMITED_QUOTA, "window": 2**30,
                "reasonCode": "cons_quota",
            }],
        },
    })  # fmt: skip
    fast_outcomes = {"aggregator": {"bucket_interval": 1, "initial_delay": 0}}
    chain = LocalChain(
        workdir / "chain",
        projects_dir=projects,
        log_level="debug",
        processing_config=fast_outcomes,
        pop_config={
            **fast_outcomes,
            "outcomes": {"emit_outcomes": True},
            "limits": {"max_attachment_size": MAX_ATTACHMENT_SIZE},
        },
    )
    chain.start(redis=redis_server, kafka=kafka_server)
    try:
        yield Run(chain, project_id, public_key, release, limited_key)
    finally:
        chain.stop()


# --- building envelopes ---------------------------------------------------------------


@dataclass
class Sent:
    """One envelope: its body, what it counts for, and the status Relay should answer."""

    body: bytes
    #: The public key the envelope is sent with (``None``: the run's main key).
    key: str | None = None
    counts: Counts = field(default_factory=collections.Counter)
    #: The part of ``counts`` that Relay should drop (outcomes), the rest being accepted.
    drops: Counts = field(default_factory=collections.Counter)
    status: int = 200

    def add(self, category: C, quantity: int, dropped: bool) -> None:
        self.counts[category] += quantity
        if dropped:
            self.drops[category] += quantity


def _item(headers: dict[str, Any], payload: bytes) -> bytes:
    return json.dumps({**headers, "length": len(payload)}).encode() + b"\n" + payload + b"\n"


def _envelope(event_id: str | None, items: list[bytes]) -> bytes:
    header = {"event_id": event_id} if event_id else {}
    return json.dumps(header).encode() + b"\n" + b"".join(items)


class Builder:
    """Builds random envelopes of many shapes, and what each counts for."""

    def __init__(self, run: Run, seed: int) -> None:
        self.run = run
        self.rng = random.Random(seed)
        self.now = time.time()

    def _event(self, **extra: Any) -> dict[str, Any]:
        return {
            "platform": "python",
            "timestamp": self.now,
            "release": self.run.release,
            "environment": "conservation",
            **extra,
        }

    def error(self, sent: Sent, kind: str, dropped: bool = False) -> bytes:
        sent.add(C.ERROR, 1, dropped or kind != "ok")
        if kind == "invalid":
            return _item({"type": "event"}, b'{"message": "unterminated')
        if kind == "filtered_release":
            event = self._event(message="kept message", release=f"{self.run.release}-filtered")
        elif kind == "filtered_message":
            event = self._event(message="please conservation-drop this one")
        else:
            event = self._event(message=f"conservation error {self.rng.random()}")
        return _item({"type": "event"}, json.dumps(event).encode())

    def attachment(self, sent: Sent, dropped: bool, size: int | None = None) -> bytes:
        size = self.rng.randrange(1, 4000) if size is None else size
        sent.add(C.ATTACHMENT, size, dropped)
        sent.add(C.ATTACHMENT_ITEM, 1, dropped)
        payload = bytes(self.rng.getrandbits(8) for _ in range(64)) * (size // 64 + 1)
        return _item(
            {"type": "attachment", "filename": "a.bin", "content_type": "application/octet-stream"},
            payload[:size],
        )

    def transaction(self, sent: Sent, valid: bool = True) -> bytes:
        spans = []
        for _ in range(self.rng.randrange(0, 5)):
            span: dict[str, Any] = {
                "span_id": uuid.uuid4().hex[:16],
                "trace_id": uuid.uuid4().hex,
                "op": "db",
                "start_timestamp": self.now - 1,
                "timestamp": self.now,
            }
            spans.append(span)
        if not valid:
            # A span without its id: Relay refuses the whole transaction.
            spans.append({"trace_id": uuid.uuid4().hex, "start_timestamp": self.now - 1})
        event = self._event(
            type="transaction",
            transaction=f"/cons/{self.rng.randrange(5)}",
            start_timestamp=self.now - 2,
            contexts={
                "trace": {
                    "trace_id": uuid.uuid4().hex,
                    "span_id": uuid.uuid4().hex[:16],
                    "op": "http.server",
                }
            },
            spans=spans,
        )
        sent.add(C.TRANSACTION, 1, not valid)
        sent.add(C.TRANSACTION_INDEXED, 1, not valid)
        sent.add(C.SPAN, 1 + len(spans), not valid)
        sent.add(C.SPAN_INDEXED, 1 + len(spans), not valid)
        return _item({"type": "transaction"}, json.dumps(event).encode())

    def profile(self, sent: Sent, valid: bool, dropped: bool) -> bytes:
        for category in (C.PROFILE, C.PROFILE_INDEXED, C.PROFILE_BACKEND):
            sent.add(category, 1, dropped or not valid)
        profile = {
            "version": "1",
            "platform": "python",
            "event_id": uuid.uuid4().hex,
            "timestamp": "2024-01-01T00:00:00Z",
            "profile": {"samples": [], "stacks": [], "frames": []},
        }
        payload = json.dumps(profile).encode() if valid else b"{not a profile"
        return _item({"type": "profile", "platform": "python"}, payload)

    def check_in(self, sent: Sent, kind: str = "ok") -> bytes:
        sent.add(C.MONITOR, 1, kind != "ok")
        check_in: dict[str, Any] = {
            "check_in_id": uuid.uuid4().hex,
            "monitor_slug": f"cons-{self.rng.randrange(3)}",
            "status": "ok",
            "environment": "conservation",
        }
        if kind == "invalid":
            del check_in["status"]
        elif kind == "too_large":
            check_in["contexts"] = {"pad": {"value": "x" * (MAX_CHECK_IN_SIZE + 10)}}
        return _item({"type": "check_in"}, json.dumps(check_in).encode())

    def user_report(self, sent: Sent, event_id: str, valid: bool = True) -> bytes:
        sent.add(C.USER_REPORT_V2, 1, not valid)
        report = {
            "event_id": event_id,
            "name": "Jane",
            "email": "jane@example.com",
            "comments": "it broke",
        }
        payload = json.dumps(report).encode() if valid else b'{"event_id": '
        return _item({"type": "user_report"}, payload)

    def client_report(self) -> bytes:
        # Only SDK discards: they become client_discard outcomes, which are not relay drops.
        report = {
            "timestamp": self.now,
            "discarded_events": [{"reason": "queue_overflow", "category": "error", "quantity": 3}],
        }
        return _item({"type": "client_report"}, json.dumps(report).encode())

    def limited(self) -> Sent:
        """An error with one attachment, for the rate-limited key (drops settled later)."""
        sent = Sent(b"", key=self.run.limited_key)
        items = [
            self.error(sent, "ok"),
            self.attachment(sent, dropped=False, size=LIMITED_ATTACHMENT_SIZE),
        ]
        sent.body = _envelope(uuid.uuid4().hex, items)
        return sent

    def build(self) -> Sent:
        """One envelope of a random shape."""
        sent = Sent(b"")
        event_id = uuid.uuid4().hex
        items: list[bytes] = []
        shape = self.rng.choices(
            [
                "error", "error_filtered_release", "error_filtered_message", "error_invalid",
                "error_attachments", "filtered_attachments", "invalid_attachments",
                "transaction", "transaction_invalid", "transaction_attachment",
                "check_in", "check_in_invalid", "check_in_too_large", "attachment_too_large",
                "user_report", "user_report_invalid", "error_user_report", "client_report",
            ],
            weights=[10, 4, 4, 4, 6, 3, 3, 10, 4, 3, 8, 3, 2, 2, 3, 2, 3, 3],
        )[0]  # fmt: skip
        if shape.startswith("error") or shape.endswith("_attachments"):
            kind = {
                "error_filtered_release": "filtered_release",
                "error_filtered_message": "filtered_message",
                "error_invalid": "invalid",
                "filtered_attachments": "filtered_release",
                "invalid_attachments": "invalid",
            }.get(shape, "ok")
            items.append(self.error(sent, kind))
            if shape.endswith("_attachments"):
                # A filtered or invalid event takes its attachments with it.
                dropped = kind != "ok"
                items.extend(
                    self.attachment(sent, dropped) for _ in range(self.rng.randrange(1, 4))
                )
            if shape == "error_user_report":
                items.append(self.user_report(sent, event_id))
        elif shape.startswith("transaction"):
            valid = shape != "transaction_invalid"
            items.append(self.transaction(sent, valid=valid))
            # An invalid transaction takes its profile and attachments with it.
            if self.rng.random() < 0.5:
                items.append(self.profile(sent, self.rng.random() < 0.7, dropped=not valid))
            if shape == "transaction_attachment" or (not valid and self.rng.random() < 0.5):
                items.append(self.attachment(sent, dropped=not valid))
        elif shape.startswith("check_in"):
            kind = shape.removeprefix("check_in").strip("_") or "ok"
            items.append(self.check_in(sent, kind))
            if kind == "too_large":
                sent.status = 413
        elif shape == "attachment_too_large":
            # The whole envelope is refused (413), and its items become outcomes.
            items.append(self.error(sent, "ok", dropped=True))
            items.append(self.attachment(sent, dropped=True, size=MAX_ATTACHMENT_SIZE + 1))
            sent.status = 413
        elif shape.startswith("user_report"):
            items.append(self.user_report(sent, event_id, valid=shape == "user_report"))
        else:
            items.append(self.client_report())
        if self.rng.random() < 0.1 and shape != "client_report":
            items.append(self.client_report())
        sent.body = _envelope(event_id, items)
        return sent


# --- reading Kafka ----------------------------------------------------------------------


def _payload(message: dict[str, Any]) -> dict[str, Any]:
    raw = message.get("payload")
    data = msgspec.json.decode(raw) if isinstance(raw, bytes | str) else None
    return data if isinstance(data, dict) else {}


def accepted_counts(topic: str, message: dict[str, Any]) -> Counts:
    """What one message counts for, as Sentry's consumers count it."""
    counts: Counts = collections.Counter()
    kind = message.get("type")
    if topic in ("ingest-events", "ingest-attachments") and kind == "event":
        counts[C.ERROR] += 1
        for attachment in message.get("attachments") or []:
            counts[C.ATTACHMENT] += attachment["size"]
            counts[C.ATTACHMENT_ITEM] += 1
    elif topic == "ingest-attachments" and kind == "attachment":
        counts[C.ATTACHMENT] += message["attachment"]["size"]
        counts[C.ATTACHMENT_ITEM] += 1
    elif topic == "ingest-attachments" and kind == "user_report":
        counts[C.USER_REPORT_V2] += 1
    elif topic == "ingest-transactions":
        spans = _payload(message).get("spans") or []
        counts[C.TRANSACTION] += 1
        counts[C.TRANSACTION_INDEXED] += 1
        counts[C.SPAN] += 1 + len(spans)
        counts[C.SPAN_INDEXED] += 1 + len(spans)
    elif topic == "ingest-monitors":
        counts[C.MONITOR] += 1
    elif topic == "profiles" and kind == "profile":
        counts[C.PROFILE] += 1
        counts[C.PROFILE_INDEXED] += 1
        counts[C.PROFILE_BACKEND] += 1
    elif topic == "ingest-feedback-events":
        counts[C.USER_REPORT_V2] += 1
    return counts


def _decode(topic: str, value: bytes) -> dict[str, Any]:
    """Decode and validate; ``user_report`` messages are outside the attachments schema.

    Relay writes them to ``ingest-attachments`` without an ``event_id`` (Sentry's consumer
    reads it from the payload), which that topic's schema does not describe.
    """
    if topic == "ingest-attachments":
        data: dict[str, Any] = msgpack.unpackb(value, raw=False)
        if data.get("type") == "user_report":
            return data
    return decode_validated(topic, value)


@dataclass
class Ledger:
    """What Kafka holds for this run: accepted items and dropped quantities per category."""

    accepted: Counts = field(default_factory=collections.Counter)
    dropped: Counts = field(default_factory=collections.Counter)
    #: (outcome, reason, category) -> quantity, for the failure message.
    outcomes: collections.Counter[tuple[int, str | None, int]] = field(
        default_factory=collections.Counter
    )

    def add(self, topic: str, message: dict[str, Any], project_id: int) -> None:
        if message.get("project_id") != project_id:
            return
        if topic in OUTCOME_TOPICS:
            outcome, category = message["outcome"], message.get("category", C.DEFAULT)
            quantity = message.get("quantity", 1)
            self.outcomes[(outcome, message.get("reason"), category)] += quantity
            if outcome not in (ACCEPTED, CLIENT_DISCARD):
                self.dropped[category] += quantity
        else:
            self.accepted.update(accepted_counts(topic, message))

    def total(self) -> Counts:
        out: Counts = collections.Counter()
        out.update(self.accepted)
        out.update(self.dropped)
        return out


async def read_ledger(bootstrap: str, project_id: int, expected: Counts, timeout: float) -> Ledger:
    """Read the data and outcome topics until the totals match ``expected`` (or time is up).

    Once they match, reads a little longer: a late duplicate would break the balance.
    """
    ledger = Ledger()

    def add(record: ConsumerRecord[bytes, bytes]) -> None:
        assert record.value is not None
        ledger.add(record.topic, _decode(record.topic, record.value), project_id)

    await consume(
        bootstrap, [*DATA_TOPICS, *OUTCOME_TOPICS], add,
        lambda: +ledger.total() == +expected, timeout, linger=2.5,
    )  # fmt: skip
    return ledger


# --- the test ---------------------------------------------------------------------------


async def _post_all(run: Run, envelopes: list[Sent]) -> list[int]:
    limit = asyncio.Semaphore(16)

    async def post(session: aiohttp.ClientSession, sent: Sent) -> int:
        headers = {
            "X-Sentry-Auth": run.auth(sent.key),
            "Content-Type": "application/x-sentry-envelope",
        }
        for _ in range(100):
            async with limit, session.post(run.url, data=sent.body, headers=headers) as resp:
                await resp.read()
                # Refused for lack of memory (503, or 429 without rate limits): not accepted,
                # no outcome; the client tries again, as SDKs do after Retry-After.
                busy = resp.status == 503 or (
                    resp.status == 429 and "X-Sentry-Rate-Limits" not in resp.headers
                )
                if not busy:
                    return resp.status
            await asyncio.sleep(0.1)
        raise AssertionError("the relay stayed busy")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        return list(await asyncio.gather(*(post(session, s) for s in envelopes)))


@pytest.mark.e2e
async def test_every_item_is_in_kafka_or_an_outcome(run: Run) -> None:
    builder = Builder(run, seed=run.project_id)
    envelopes = [builder.build() for _ in range(ENVELOPES)]
    limited = [builder.limited() for _ in range(LIMITED_ENVELOPES)]
    # The project config reaches the POP first, so no envelope waits in a pending queue.
    warm = Sent(_envelope(None, [builder.client_report()]))
    assert await _post_all(run, [warm]) == [200]

    statuses = await _post_all(run, envelopes + limited)
    assert statuses[: len(envelopes)] == [s.status for s in envelopes]
    # Once the processing relay knows the key is over quota, it answers 429 (the POP
    # learns the limit from it and answers 429 itself): those envelopes count too.
    assert set(statuses[len(envelopes) :]) <= {200, 429}
    over = LIMITED_ENVELOPES - LIMITED_QUOTA
    for limited_sent in limited[:over]:
        # Which envelopes are over the quota depends on timing; how many does not.
        limited_sent.drops.update(limited_sent.counts)

    expected: Counts = collections.Counter()
    expected_drops: Counts = collections.Counter()
    for sent in envelopes + limited:
        expected.update(sent.counts)
        expected_drops.update(sent.drops)
    ledger = await read_ledger(run.chain.kafka_bootstrap, run.project_id, expected, timeout=40)

    report = {
        C(category).name_str: {
            "sent": expected[category],
            "kafka": ledger.accepted[category],
            "outcomes": ledger.dropped[category],
            "expected_outcomes": expected_drops[category],
        }
        for category in sorted(set(expected) | set(ledger.total()))
    }
    outcomes = {
        f"{outcome}/{reason}/{C(category).name_str}": qty
        for (outcome, reason, category), qty in sorted(
            ledger.outcomes.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])
        )
    }
    print(json.dumps({"categories": report, "outcomes": outcomes}, indent=1))
    unbalanced = {
        name: row for name, row in report.items() if row["kafka"] + row["outcomes"] != row["sent"]
    }
    assert not unbalanced, json.dumps({"unbalanced": unbalanced, "outcomes": outcomes}, indent=1)
    # And what was dropped is what should have been: filtered or invalid events take their
    # attachments and profiles along, instead of those being stored on their own.
    misplaced = {
        name: row for name, row in report.items() if row["outcomes"] != row["expected_outcomes"]
    }
    assert not misplaced, json.dumps({"misplaced": misplaced, "outcomes": outcomes}, indent=1)
    # Every shape was exercised: something was accepted and something dropped.
    assert ledger.accepted[C.ERROR] and ledger.dropped[C.ERROR]
    assert ledger.accepted[C.TRANSACTION] and ledger.dropped[C.TRANSACTION]
    assert ledger.accepted[C.MONITOR] and ledger.dropped[C.MONITOR]
    assert ledger.accepted[C.ATTACHMENT_ITEM] and ledger.dropped[C.ATTACHMENT_ITEM]
    rate_limited = {
        C(category).name_str: qty
        for (outcome, reason, category), qty in ledger.outcomes.items()
        if outcome == RATE_LIMITED
    }
    assert rate_limited == {
        "error": over,
        "attachment": over * LIMITED_ATTACHMENT_SIZE,
        "attachment_item": over,
    }
    # Relay's own accepted outcomes (billing) match what is in Kafka, no more, no less.
    for category in (C.TRANSACTION, C.SPAN):
        assert ledger.outcomes[(ACCEPTED, None, category)] == ledger.accepted[category]
    # The SDKs' own discards arrived too, but were not counted as drops.
    assert any(outcome == CLIENT_DISCARD for outcome, _, _ in ledger.outcomes)
