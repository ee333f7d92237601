"""On shutdown, envelopes waiting for their project config get the shutdown budget for it
(relay.server.pending), as in Relay's envelope buffer."""

from __future__ import annotations

import asyncio

from relay.config import config_from_dict
from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState
from relay.server.pending import PendingQueues
from relay.server.request_meta import RequestMeta

KEY = "a" * 32


def event() -> Envelope:
    return Envelope({"event_id": "0" * 32}, [Item.new("event", b"{}")])


def queues() -> tuple[PendingQueues, list[str], list[str]]:
    released: list[str] = []
    expired: list[str] = []

    async def release(envelope: Envelope, meta: RequestMeta, state: ProjectState) -> None:
        released.append(meta.public_key)

    def expire(envelope: Envelope, meta: RequestMeta) -> None:
        expired.append(meta.public_key)

    return PendingQueues(config_from_dict({}), release, expire), released, expired


async def test_shutdown_waits_for_a_config_on_its_way() -> None:
    pending, released, expired = queues()
    await pending.start()
    pending.push(event(), RequestMeta(public_key=KEY, project_id=42))
    stopping = asyncio.create_task(pending.stop(5.0))
    await asyncio.sleep(0.05)
    assert not stopping.done()
    pending.on_project_ready(KEY, ProjectState())
    await asyncio.wait_for(stopping, 1.0)
    assert (released, expired) == ([KEY], [])


async def test_shutdown_drops_what_still_waits_after_the_budget() -> None:
    pending, released, expired = queues()
    await pending.start()
    pending.push(event(), RequestMeta(public_key=KEY, project_id=42))
    await pending.stop(0.05)
    assert (released, expired) == ([], [KEY])
    assert len(pending) == 0


async def test_shutdown_without_waiting_envelopes_is_immediate() -> None:
    pending, _, _ = queues()
    await pending.start()
    await asyncio.wait_for(pending.stop(60.0), 0.5)
