"""Per-request shortcuts of the POP's hot path give what the general code gives.

``json_id`` writes the usual hex id without msgspec; the ``Sentry ...`` auth header of a
request is parsed once per distinct value (an SDK sends the same one every time); the
forwarder keeps its in-flight books with one done-callback.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from relay.errors import AuthError
from relay.protocol.auth import parse_auth_header
from relay.server.endpoints.common import json_id
from relay.server.request_meta import request_auth

HEADER = "Sentry sentry_key=a1b2c3d4e5f60718293a4b5c6d7e8f90, sentry_version=7, sentry_client=x/1"


@pytest.mark.parametrize(
    "event_id", [None, "", "9ec79c33ec9942ab8353589fcb2e04dc", 'a"b\\c', "é1", "a b", "\n"]
)
def test_json_id_is_what_msgspec_writes(event_id: str | None) -> None:
    response = json_id(event_id)
    assert response.body == msgspec.json.encode({"id": event_id} if event_id else {})
    assert response.content_type == "application/json"
    assert response.status == 200


def request(**headers: str) -> object:
    return make_mocked_request("POST", "/api/42/envelope/", headers=CIMultiDict(headers))


def test_cached_auth_equals_a_fresh_parse() -> None:
    first = request_auth(request(**{"X-Sentry-Auth": HEADER}), None)  # type: ignore[arg-type]
    again = request_auth(request(**{"X-Sentry-Auth": HEADER}), None)  # type: ignore[arg-type]
    assert first == again == parse_auth_header(HEADER)


def test_bad_auth_headers_fail_every_time() -> None:
    for _ in range(2):
        with pytest.raises(AuthError, match="bad x-sentry-auth header"):
            request_auth(request(**{"X-Sentry-Auth": "Sentry sentry_version=7"}), None)  # type: ignore[arg-type]


def test_long_auth_headers_are_parsed_uncached() -> None:
    long = HEADER + ", sentry_padding=" + "x" * 600
    auth = request_auth(request(**{"X-Sentry-Auth": long}), None)  # type: ignore[arg-type]
    assert auth == parse_auth_header(long)


def test_two_auth_sources_are_still_refused() -> None:
    with pytest.raises(AuthError, match="multiple authorization payloads"):
        request_auth(
            request(**{"X-Sentry-Auth": HEADER, "Authorization": HEADER}),  # type: ignore[arg-type]
            None,
        )


async def test_forwarder_forgets_finished_sends() -> None:
    from relay.config import Config
    from relay.server.forwarder import Forwarder
    from relay.server.outcomes import OutcomeSink
    from relay.server.outgoing import Outgoing
    from relay.server.request_meta import RequestMeta

    config = Config()
    forwarder = Forwarder(config, None, OutcomeSink(config), 1024)  # type: ignore[arg-type]

    async def done() -> bool:
        return True

    task = asyncio.create_task(done())
    forwarder._inflight[task] = Outgoing(RequestMeta(public_key="k", project_id=1), b"abc",
                                         None, heavy=False, event_id=None)  # fmt: skip
    forwarder.bytes_in_flight = 3
    task.add_done_callback(forwarder._forget)
    await task
    await asyncio.sleep(0)
    assert not forwarder._inflight and forwarder.bytes_in_flight == 0
    assert forwarder.oldest_queued_at() is None
