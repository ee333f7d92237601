"""Envelopes are refused (503) while memory is over the ``health`` watermarks
(relay.server.ingest)."""

from __future__ import annotations

import asyncio

import pytest

from relay.config import config_from_dict
from relay.errors import ServiceUnavailable
from relay.kafka.outcomes import OutcomeCode
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory
from relay.protocol.project_config import ProjectState
from relay.server.health_check import Memory, MemoryChecker, MemoryStat
from relay.server.ingest import Ingestor
from relay.server.outcomes import OutcomeSink
from relay.server.request_meta import RequestMeta
from tests.unit.ingest_fakes import NoInternalRelays, StaticProjects

KEY = "a" * 32
META = RequestMeta(public_key=KEY, project_id=42)


class _Sink:
    def __init__(self) -> None:
        self.accepted = 0

    async def accept(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> asyncio.Future[None] | None:
        self.accepted += 1
        return None


def checker(used: int, total: int = 1000, max_bytes: int | None = None) -> MemoryChecker:
    stat = MemoryStat(0, reader=lambda: Memory(used=used, total=total))
    return MemoryChecker(stat, 0.95, max_bytes)


def ingestor(memory: MemoryChecker, sink: _Sink, outcomes: OutcomeSink) -> Ingestor:
    config = config_from_dict({"relay": {"mode": "proxy"}})
    return Ingestor(
        config, StaticProjects(), NoInternalRelays(), sink, None, outcomes,  # type: ignore[arg-type]
        memory=memory,
    )  # fmt: skip


def event() -> Envelope:
    return Envelope({"event_id": "0" * 32}, [Item.new("event", b"{}")])


async def test_envelopes_pass_below_the_watermarks() -> None:
    sink = _Sink()
    outcomes = OutcomeSink(config_from_dict({}))
    await ingestor(checker(used=500), sink, outcomes).submit(event(), META)
    assert sink.accepted == 1


@pytest.mark.parametrize("memory", [checker(used=990), checker(used=500, max_bytes=400)])
async def test_over_a_watermark_envelopes_get_503(memory: MemoryChecker) -> None:
    sink = _Sink()
    outcomes = OutcomeSink(config_from_dict({}))
    with pytest.raises(ServiceUnavailable) as exc:
        await ingestor(memory, sink, outcomes).submit(event(), META)
    assert exc.value.status == 503
    assert sink.accepted == 0
    # The data gets an outcome: invalid (internal), as in Relay.
    assert outcomes.totals[(int(OutcomeCode.INVALID), int(DataCategory.ERROR))] == 1
