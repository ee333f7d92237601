"""Tier 2: after its upstream's first ``429``, a POP relay stops a project's data itself.

A real POP :class:`RelayApp` forwards to a small in-process upstream (registration,
projectconfigs, envelopes) that answers every envelope of project A with ``429``,
``X-Sentry-Rate-Limits`` and ``Retry-After`` until the limit expires. After the first one, the
POP answers A's envelopes with its own ``429`` and the upstream sees none of them until the
limit has expired; then data flows again. Project B, which is not limited, flows throughout.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from relay.config import config_from_dict
from relay.protocol.encoding import decode_body
from relay.protocol.keys import generate_credentials
from relay.server.app import RelayApp
from tests.fake_upstream import FakeUpstream

KEY_A = uuid.uuid4().hex
KEY_B = uuid.uuid4().hex
PROJECTS = {KEY_A: 31, KEY_B: 32}
#: Seconds the upstream's limit on project A lasts.
RETRY_SECS = 2
REASON = "edge_test"

pytestmark = pytest.mark.timeout(60)


class LimitingUpstream(FakeUpstream):
    """Registration and configs for both projects; envelopes of A limited for a while."""

    def __init__(self) -> None:
        #: Envelopes that carried data (not only client reports), by project id.
        self.data_envelopes: Counter[int] = Counter()
        #: The answers given to those envelopes, as (project id, status).
        self.answers: list[tuple[int, int]] = []
        #: Monotonic time until which project A is limited (set by the first envelope).
        self.limited_until: float | None = None

    async def projectconfigs(self, request: web.Request) -> web.Response:
        body = await request.json()
        configs = {
            key: {
                "projectId": PROJECTS[key], "organizationId": 5, "rev": "1", "disabled": False,
                "publicKeys": [{"publicKey": key, "numericId": 1}],
                "config": {"allowedDomains": ["*"]},
            }
            for key in body.get("publicKeys", []) if key in PROJECTS
        }  # fmt: skip
        answer: dict[str, object] = {"configs": configs}
        if body.get("global"):
            answer["global"] = {}
        return web.json_response(answer)

    async def envelope(self, request: web.Request) -> web.Response:
        project = int(request.match_info["project"])
        raw = decode_body(await request.read(), request.headers.get("Content-Encoding"), 10 << 20)
        types = {
            json.loads(line).get("type")
            for line in raw.split(b"\n")[1:]
            if line.startswith(b"{") and b'"type"' in line
        }
        if types <= {"client_report"}:
            # The POP's own outcome reports: accounting, not the limited data.
            return web.json_response({})
        self.data_envelopes[project] += 1
        now = time.monotonic()
        if project == PROJECTS[KEY_A]:
            if self.limited_until is None:
                self.limited_until = now + RETRY_SECS
            if now < self.limited_until:
                self.answers.append((project, 429))
                left = max(1, round(self.limited_until - now))
                return web.json_response(
                    {"detail": "rate limited"},
                    status=429,
                    headers={
                        "Retry-After": str(left),
                        "X-Sentry-Rate-Limits": f"{left}:error;default:project:{REASON}",
                    },
                )
        self.answers.append((project, 200))
        return web.json_response({})


@dataclass
class Edge:
    app: RelayApp
    upstream: LimitingUpstream

    @property
    def port(self) -> int:
        return self.app.ports[0]


@pytest_asyncio.fixture(loop_scope="session")
async def edge() -> AsyncIterator[Edge]:
    upstream = LimitingUpstream()
    async with upstream.serving() as url:
        config = config_from_dict({
            "relay": {"mode": "managed", "port": 0, "upstream": url},
            "cache": {"batch_interval": 10},
        })  # fmt: skip
        app = RelayApp(config, generate_credentials())
        await app.start()
        yield Edge(app, upstream)
        await app.stop()


async def send(session: aiohttp.ClientSession, port: int, key: str) -> aiohttp.ClientResponse:
    event_id = uuid.uuid4().hex
    payload = json.dumps({"message": "spike", "level": "error"}).encode()
    body = (
        json.dumps({"event_id": event_id}).encode() + b"\n"
        + json.dumps({"type": "event", "length": len(payload)}).encode() + b"\n" + payload
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/{PROJECTS[key]}/envelope/"
    headers = {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"}
    async with session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio(loop_scope="session")
async def test_pop_stops_a_limited_project_after_the_first_429(edge: Edge) -> None:
    upstream = edge.upstream
    project_a, project_b = PROJECTS[KEY_A], PROJECTS[KEY_B]
    async with aiohttp.ClientSession() as session:
        # The first envelope is accepted (nothing is known yet) and answered 429 upstream.
        first = await send(session, edge.port, KEY_A)
        assert first.status == 200
        await wait_for(lambda: upstream.answers == [(project_a, 429)])
        rate_limits = edge.app.rate_limits
        assert rate_limits is not None
        await wait_for(lambda: rate_limits.cache_for(KEY_A).is_limited())

        # From here on the POP answers A's envelopes itself; B is not affected.
        answers = []
        for _ in range(20):
            resp = await send(session, edge.port, KEY_A)
            answers.append(resp.status)
            assert f":{REASON}" in resp.headers.get("X-Sentry-Rate-Limits", "")
            assert 0 < int(resp.headers["Retry-After"]) <= RETRY_SECS
            assert (await send(session, edge.port, KEY_B)).status == 200
        assert answers == [429] * 20
        await wait_for(lambda: upstream.data_envelopes[project_b] == 20)
        assert upstream.data_envelopes[project_a] == 1

        # Once the limit has expired, A's data goes upstream again (and is accepted there).
        assert upstream.limited_until is not None
        await asyncio.sleep(max(0.0, upstream.limited_until - time.monotonic()) + 0.2)
        resp = await send(session, edge.port, KEY_A)
        assert resp.status == 200
        await wait_for(lambda: upstream.data_envelopes[project_a] == 2)
    answered_a = [status for project, status in upstream.answers if project == project_a]
    assert answered_a == [429, 200]
