"""No planted secret reaches Kafka: PII scrubbing through a real POP -> processing chain.

A project of its own has datascrubbingSettings on (defaults, IP addresses, a sensitive
field) and a piiConfig as a Sentry user writes one (pattern rules on every string, and on
span descriptions and tags, which `pii = maybe` keeps from default rules, as in Relay).
Errors, transactions with spans, standalone V1 spans, V2 span containers and log
containers carry run-unique secrets: passwords, auth tokens, bearer tokens, credit card
numbers, emails and IP addresses, in many kinds of fields (messages, exception values,
frame variables, extra, tags, breadcrumbs, request headers/cookies/query/body, user, span
data, log bodies and attributes). Every message that reaches any topic during the run is
then searched, as raw bytes, for each secret.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiokafka import ConsumerRecord

from relay.dev.chain import LocalChain
from relay.dev.services import Service
from tests.e2e.projects import projects_with
from tests.kafka_utils import consume

#: Every topic a processing relay writes to.
TOPICS = (
    "ingest-events",
    "ingest-transactions",
    "ingest-attachments",
    "ingest-spans",
    "snuba-items",
    "ingest-feedback-events",
    "outcomes",
    "outcomes-billing",
)

PII_CONFIG: dict[str, Any] = {
    "applications": {
        "$string": ["@email:replace", "@creditcard:replace", "@ip:replace", "@bearer:replace"],
        # Span descriptions and tags are `pii = maybe`: only named selectors reach them.
        "$span.description": ["@email:replace", "@creditcard:replace", "@ip:replace"],
        "tags.*": ["@email:replace", "@ip:replace"],
        # The same for the description of standalone spans (an attribute there).
        "attributes.'sentry.description'.value": ["@email:replace", "@creditcard:replace"],
    }
}
DATASCRUBBING: dict[str, Any] = {
    "scrubData": True,
    "scrubDefaults": True,
    "scrubIpAddresses": True,
    "sensitiveFields": ["internal_note"],
}


def _luhn_card(rng: random.Random) -> str:
    """A random Visa-like number that passes the Luhn check, as 4 dash-separated groups."""
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        doubled = d * 2 if i % 2 == 0 else d
        total += doubled - 9 if doubled > 9 else doubled
    digits.append((10 - total % 10) % 10)
    text = "".join(map(str, digits))
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


@dataclass
class Secrets:
    """Run-unique secrets: any trace of them in Kafka is a leak."""

    password: str
    api_key: str
    token: str
    card: str
    email: str
    ip: str
    note: str

    @classmethod
    def make(cls) -> Secrets:
        rng = random.Random()
        tag = uuid.uuid4().hex
        return cls(
            password=f"pw-{tag[:12]}",
            api_key=f"ak{tag[12:28]}",
            token=f"tk{uuid.uuid4().hex}",
            card=_luhn_card(rng),
            email=f"leak.{tag[:10]}@example.com",
            ip=".".join(str(rng.randrange(11, 250)) for _ in range(4)),
            note=f"note-{tag[20:]}",
        )

    def needles(self) -> dict[str, bytes]:
        """What must not appear: each secret, and the card number without separators."""
        found = {k: str(v).encode() for k, v in vars(self).items()}
        found["card digits"] = self.card.replace("-", "").encode()
        return found


@dataclass
class Run:
    chain: LocalChain
    project_id: int
    public_key: str
    secrets: Secrets
    marker: str

    @property
    def url(self) -> str:
        return f"{self.chain.pop.url}/api/{self.project_id}/envelope/"


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, redis_server: Service, kafka_server: Service
) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("pii")
    project_id = random.randrange(10_000_000, 2**31 - 1)
    public_key = uuid.uuid4().hex
    projects = projects_with(workdir, {
        "projectId": project_id,
        "organizationId": 9,
        "slug": "pii",
        "publicKeys": [{"publicKey": public_key, "numericId": 91, "isEnabled": True}],
        "config": {
            "allowedDomains": ["*"],
            "trustedRelays": [],
            "eventRetention": 90,
            "features": ["organizations:ourlogs-ingestion"],
            "piiConfig": PII_CONFIG,
            "datascrubbingSettings": DATASCRUBBING,
        },
    })  # fmt: skip
    chain = LocalChain(workdir / "chain", projects_dir=projects, log_level="debug")
    chain.start(redis=redis_server, kafka=kafka_server)
    try:
        yield Run(chain, project_id, public_key, Secrets.make(), f"pii-{uuid.uuid4().hex}")
    finally:
        chain.stop()


# --- payloads -------------------------------------------------------------------------


def _item(headers: dict[str, Any], payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    return json.dumps({**headers, "length": len(body)}).encode() + b"\n" + body + b"\n"


def _envelope(event_id: str | None, *items: bytes) -> bytes:
    header = {"event_id": event_id} if event_id else {}
    return json.dumps(header).encode() + b"\n" + b"".join(items)


def _request(s: Secrets) -> dict[str, Any]:
    return {
        "url": "https://shop.example.com/checkout",
        "method": "POST",
        "query_string": [["api_key", s.api_key], ["next", "/done"]],
        "headers": [
            ["Authorization", f"Bearer {s.token}"],
            ["X-Forwarded-For", s.ip],
            ["Cookie", f"sessionid={s.token}; theme=dark"],
        ],
        "data": {"password": s.password, "card": s.card, "contact": s.email},
        "env": {"REMOTE_ADDR": s.ip},
    }


def error_event(run: Run, event_id: str) -> dict[str, Any]:
    s = run.secrets
    return {
        "event_id": event_id,
        "timestamp": time.time(),
        "platform": "python",
        "level": "error",
        "message": f"{run.marker} payment by {s.email} with {s.card} from {s.ip}",
        "exception": {
            "values": [
                {
                    "type": "AuthError",
                    "value": f"bad token Bearer {s.token} for {s.email} at {s.ip}",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "charge",
                                "filename": "shop/pay.py",
                                "lineno": 10,
                                "vars": {
                                    "password": s.password,
                                    "card_number": s.card,
                                    "customer": {"email": s.email, "api_key": s.api_key},
                                },
                            }
                        ]
                    },
                }
            ]
        },
        "extra": {
            "password": s.password,
            "db": {"api_key": s.api_key, "auth_token": s.token},
            "internal_note": s.note,
            "contact": f"mail {s.email}",
        },
        "tags": {"customer.email": s.email, "client_ip": s.ip},
        "breadcrumbs": {
            "values": [
                {
                    "message": f"user {s.email} paid with {s.card}",
                    "category": "payment",
                    "data": {"auth_token": s.token, "password": s.password},
                }
            ]
        },
        "request": _request(s),
        "user": {"email": s.email, "ip_address": s.ip, "username": "bob"},
    }


def transaction_event(run: Run, event_id: str, trace_id: str) -> dict[str, Any]:
    s = run.secrets
    now = time.time()
    return {
        "event_id": event_id,
        "type": "transaction",
        "transaction": "/checkout",
        "timestamp": now,
        "start_timestamp": now - 1,
        "platform": "python",
        "contexts": {
            "trace": {"trace_id": trace_id, "span_id": "fa90fdead5f74051", "op": "http.server"}
        },
        "spans": [
            {
                "span_id": "fa90fdead5f74052",
                "parent_span_id": "fa90fdead5f74051",
                "trace_id": trace_id,
                "op": "db",
                "description": f"SELECT * FROM users WHERE email = '{s.email}' -- {s.card}",
                "start_timestamp": now - 0.5,
                "timestamp": now - 0.2,
                "data": {
                    "db.password": s.password,
                    "http.request.header.authorization": f"Bearer {s.token}",
                    "customer": s.email,
                    "client.address": s.ip,
                },
            }
        ],
        "extra": {"password": s.password, "internal_note": s.note},
        "tags": {"customer.email": s.email},
        "request": _request(s),
        "user": {"email": s.email, "ip_address": s.ip},
    }


def v1_span(run: Run, trace_id: str, span_id: str) -> dict[str, Any]:
    s = run.secrets
    now = time.time()
    return {
        "span_id": span_id,
        "trace_id": trace_id,
        "op": "http.client",
        "description": f"GET https://api.example.com/?mail={s.email}",
        "start_timestamp": now - 1,
        "timestamp": now,
        "data": {"password": s.password, "token": s.token, "client.address": s.ip},
        "tags": {"customer.email": s.email},
    }


def v2_spans(run: Run, trace_id: str, span_id: str) -> dict[str, Any]:
    s = run.secrets
    now = time.time()

    def attr(value: str) -> dict[str, str]:
        return {"type": "string", "value": value}

    return {
        "items": [
            {
                "trace_id": trace_id,
                "span_id": span_id,
                "name": "checkout",
                "status": "ok",
                "is_segment": True,
                "start_timestamp": now - 1,
                "end_timestamp": now,
                "attributes": {
                    "db.password": attr(s.password),
                    "http.request.header.authorization": attr(f"Bearer {s.token}"),
                    "api_key": attr(s.api_key),
                    "customer": attr(f"{s.email} / {s.card}"),
                    "client.address": attr(s.ip),
                    "internal_note": attr(s.note),
                    "cards": {"type": "array", "value": ["none", s.card]},
                },
            }
        ]
    }


def logs(run: Run, trace_id: str) -> dict[str, Any]:
    s = run.secrets

    def attr(value: str) -> dict[str, str]:
        return {"type": "string", "value": value}

    return {
        "items": [
            {
                "timestamp": time.time(),
                "trace_id": trace_id,
                "level": "warn",
                "body": f"{run.marker} charge for {s.email} card {s.card} Bearer {s.token}",
                "attributes": {
                    "password": attr(s.password),
                    "api_key": attr(s.api_key),
                    "client.address": attr(s.ip),
                    "customer": attr(f"mail {s.email} from {s.ip}"),
                    "internal_note": attr(s.note),
                },
            }
        ]
    }


# --- reading Kafka ----------------------------------------------------------------------


async def _read_all(
    bootstrap: str, wanted: list[bytes], timeout: float = 45.0
) -> list[tuple[str, bytes]]:
    """(topic, raw value) of every message on every topic, once all `wanted` were seen."""
    values: list[tuple[str, bytes]] = []
    missing = set(wanted)

    def add(record: ConsumerRecord[bytes, bytes]) -> None:
        nonlocal missing
        value = record.value or b""
        values.append((record.topic, value))
        missing = {m for m in missing if m not in value}

    # A last read after the markers, for what follows them (outcomes, later chunks).
    await consume(bootstrap, TOPICS, add, lambda: not missing, timeout, linger=1.5)
    assert not missing, f"never reached Kafka: {sorted(m.decode() for m in missing)}"
    return values


def _around(value: bytes, needle: bytes, width: int = 80) -> str:
    at = value.find(needle)
    return value[max(0, at - width) : at + len(needle) + width].decode(errors="replace")


@pytest.mark.e2e
async def test_no_planted_secret_reaches_kafka(run: Run) -> None:
    error_id, tx_id = uuid.uuid4().hex, uuid.uuid4().hex
    trace_id = uuid.uuid4().hex
    v1_id, v2_id = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    span_container = {
        "type": "span",
        "item_count": 1,
        "content_type": "application/vnd.sentry.items.span.v2+json",
    }
    log_container = {
        "type": "log",
        "item_count": 1,
        "content_type": "application/vnd.sentry.items.log+json",
    }
    envelopes = [
        _envelope(error_id, _item({"type": "event"}, error_event(run, error_id))),
        _envelope(tx_id, _item({"type": "transaction"}, transaction_event(run, tx_id, trace_id))),
        _envelope(None, _item({"type": "span"}, v1_span(run, trace_id, v1_id))),
        _envelope(None, _item(span_container, v2_spans(run, trace_id, v2_id))),
        _envelope(None, _item(log_container, logs(run, trace_id))),
    ]
    headers = {
        "X-Sentry-Auth": f"Sentry sentry_key={run.public_key}, sentry_version=7, "
        "sentry_client=pii-e2e/1.0",
        "Content-Type": "application/x-sentry-envelope",
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for body in envelopes:
            async with session.post(run.url, data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()

    # Every item must arrive (a dropped item would make the check below vacuous).
    wanted = [error_id.encode(), tx_id.encode(), v1_id.encode(), v2_id.encode()]
    wanted.append(run.marker.encode())  # the log (its body) and the error's message
    values = await _read_all(run.chain.kafka_bootstrap, wanted)
    ours = [v for _, v in values if any(w in v for w in wanted) or trace_id.encode() in v]
    assert len(ours) >= 5

    leaks = [
        f"{name} in {topic}: ...{_around(value, needle)}..."
        for name, needle in run.secrets.needles().items()
        for topic, value in values
        if needle in value
    ]
    assert not leaks, "\n".join(leaks)
    # Scrubbing did run (the checks above would also pass if nothing was sent at all).
    joined = b"\n".join(ours)
    assert b"[Filtered]" in joined
    assert b"[email]" in joined
    assert b"[creditcard]" in joined
