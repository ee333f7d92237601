"""A POP holds what it forwards as the compressed wire bytes (relay.server.outgoing)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from relay.config import Config
from relay.protocol.encoding import zstd_decompress
from relay.protocol.envelope import Envelope, Item, parse_envelope
from relay.protocol.project_config import ProjectState
from relay.server.forwarder import Forwarder
from relay.server.outcomes import OutcomeSink
from relay.server.outgoing import Outgoing
from relay.server.request_meta import RequestMeta
from relay.server.upstream import UpstreamError

EVENT_ID = "9ec79c33ec9942ab8353589fcb2e04dc"


def _envelope() -> Envelope:
    payload = json.dumps({"message": "hello " * 400, "level": "error"}).encode()
    return Envelope({"event_id": EVENT_ID}, [Item.new("event", payload)])


def _meta() -> RequestMeta:
    return RequestMeta(public_key="a" * 32, project_id=42)


@pytest.mark.parametrize("encoding", ["zstd", "gzip", "deflate", "br", "identity"])
def test_round_trip_in_every_http_encoding(encoding: str) -> None:
    envelope = _envelope()
    body = envelope.serialize()
    held = Outgoing.encode(envelope, _meta(), body, encoding, heavy=False)
    assert held.body() == body
    assert held.event_id == EVENT_ID
    again = held.envelope()
    assert [(i.type, i.payload) for i in again.items] == [("event", envelope.items[0].payload)]
    if encoding == "identity":
        assert held.encoding is None and held.wire is body
    else:
        assert held.encoding == encoding and len(held.wire) < len(body) // 5


class _Upstream:
    """Records what the forwarder sends; fails when told to."""

    def __init__(self, fail: UpstreamError | None = None) -> None:
        self.sent: list[tuple[bytes, str | None, Mapping[str, str]]] = []
        self.fail = fail
        self.release = asyncio.Event()

    async def send_encoded(
        self, project_id: int | str, body: bytes, encoding: str | None,
        headers: Mapping[str, str], deadline: float,
    ) -> None:  # fmt: skip
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        self.sent.append((body, encoding, headers))


class _Outcomes(OutcomeSink):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.dropped: list[tuple[list[str], str]] = []

    def envelope_dropped(self, envelope: Envelope, *args: Any, **kwargs: Any) -> None:
        self.dropped.append(([i.type for i in envelope.items], args[-1]))


def _forwarder(upstream: _Upstream) -> tuple[Forwarder, _Outcomes]:
    config = Config()
    config.relay.mode = "proxy"
    outcomes = _Outcomes(config)
    return Forwarder(config, upstream, outcomes, 10**9), outcomes  # type: ignore[arg-type]


async def test_a_waiting_envelope_is_held_compressed_and_sent_as_held() -> None:
    upstream = _Upstream()
    forwarder, _ = _forwarder(upstream)
    envelope = _envelope()
    plain = envelope.serialize()
    task = await forwarder.accept(envelope, _meta(), ProjectState())
    assert task is not None
    await asyncio.sleep(0)
    # Waiting for the upstream: only the zstd bytes are counted (and held).
    assert 0 < forwarder.bytes_in_flight < len(plain) // 5
    assert forwarder.oldest_queued_at() is not None
    upstream.release.set()
    assert await task is True
    ((body, encoding, headers),) = upstream.sent
    assert encoding == "zstd"
    assert parse_envelope(zstd_decompress(body, 1 << 20)).event_id == EVENT_ID
    assert headers["X-Sentry-Auth"].startswith("Sentry sentry_key=" + "a" * 32)
    await asyncio.sleep(0)
    assert forwarder.bytes_in_flight == 0 and forwarder.oldest_queued_at() is None


async def test_a_failed_send_is_an_outcome_for_the_items_parsed_again() -> None:
    upstream = _Upstream(UpstreamError("upstream answered 502", 502))
    upstream.release.set()
    forwarder, outcomes = _forwarder(upstream)
    task = await forwarder.accept(_envelope(), _meta(), ProjectState())
    assert task is not None
    assert await task is False
    assert outcomes.dropped == [(["event"], "internal")]
