"""The disk tier of the pending queues (relay.server.pending) on a real SQLite spool file:
moves to disk, releases racing a move, a full spool, expiry on disk."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from relay.config import config_from_dict
from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState
from relay.server.pending import PendingQueues
from relay.server.request_meta import RequestMeta
from relay.server.spool import Spool

KEY = "a" * 32


def event(n: int, size: int = 10) -> Envelope:
    payload = b'{"message": "' + str(n).encode() + b"x" * size + b'"}'
    return Envelope({"event_id": f"{n:032x}"}, [Item.new("event", payload)])


class Recorder:
    def __init__(self) -> None:
        self.released: list[str] = []
        self.expired: list[str] = []
        self.metas: list[RequestMeta] = []

    async def release(self, envelope: Envelope, meta: RequestMeta, state: ProjectState) -> None:
        assert envelope.event_id is not None
        self.released.append(envelope.event_id)
        self.metas.append(meta)

    def expire(self, envelope: Envelope, meta: RequestMeta) -> None:
        assert envelope.event_id is not None
        self.expired.append(envelope.event_id)


async def open_spool(path: Path, max_bytes: int = 1 << 24) -> Spool:
    spool = Spool(path, max_bytes)
    await spool.open()
    return spool


def queues(spool: Spool, batch_size_bytes: int = 1) -> tuple[PendingQueues, Recorder]:
    recorder = Recorder()
    config = config_from_dict({"spool": {"envelopes": {"batch_size_bytes": batch_size_bytes}}})
    return PendingQueues(config, recorder.release, recorder.expire, disk=spool), recorder


def meta(n: int = 0) -> RequestMeta:
    return RequestMeta(public_key=KEY, project_id=42, remote_addr=f"10.0.0.{n}")


def ids(*numbers: int) -> list[str]:
    return [f"{n:032x}" for n in numbers]


async def settle(pending: PendingQueues) -> None:
    """Until no move to disk and no release is under way."""
    while pending._tasks or pending._spill_tasks:
        await asyncio.wait(pending._tasks | pending._spill_tasks)


async def test_moves_to_disk_and_releases_in_order(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "spool.db")
    pending, recorder = queues(spool)
    await pending.start()
    for n in range(5):
        pending.push(event(n), meta(n))
    await settle(pending)
    assert spool.waiting == 5 and pending.bytes_queued == 0 and len(pending) == 5
    assert pending.waiting_keys() == [KEY]
    pending.on_project_ready(KEY, ProjectState())
    await settle(pending)
    assert recorder.released == ids(0, 1, 2, 3, 4)
    # The request's metadata came back from disk as it was.
    assert [m.remote_addr for m in recorder.metas] == [f"10.0.0.{n}" for n in range(5)]
    assert spool.waiting == 0 and len(pending) == 0
    await pending.stop(0.1)
    await spool.close()


async def test_release_while_the_move_is_being_written(tmp_path: Path) -> None:
    # The config arrives before the move to disk has finished: every envelope is released
    # once, in order, whatever was written by then.
    spool = await open_spool(tmp_path / "spool.db")
    pending, recorder = queues(spool)
    await pending.start()
    pending.push(event(0), meta())
    pending.push(event(1), meta())  # the first move is under way: this one stays in memory
    pending.on_project_ready(KEY, ProjectState())
    await settle(pending)
    assert recorder.released == ids(0, 1)
    assert spool.waiting == 0 and len(pending) == 0
    # Nothing is left to wait for: the finished move did not mark the key again.
    assert pending.waiting_keys() == []
    await pending.stop(0.1)
    await spool.close()


async def test_full_spool_keeps_them_in_memory(tmp_path: Path) -> None:
    fresh = await open_spool(tmp_path / "fresh.db")
    await fresh.close()
    # Room for nothing beyond the schema: the move fails and the envelopes wait in memory.
    spool = await open_spool(tmp_path / "spool.db", max_bytes=fresh.bytes + 1)
    pending, recorder = queues(spool)
    await pending.start()
    pending.push(event(0, 4000), meta())
    await settle(pending)
    assert spool.full and spool.waiting == 0
    assert len(pending) == 1 and pending.bytes_queued > 0
    # While full, pushing does not try (and serialize everything) again.
    pending.push(event(1, 4000), meta())
    assert not pending._spill_tasks
    pending.on_project_ready(KEY, ProjectState())
    await settle(pending)
    assert recorder.released == ids(0, 1)
    await pending.stop(0.1)
    await spool.close()


async def test_expiry_reaches_the_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = await open_spool(tmp_path / "spool.db")
    pending, recorder = queues(spool)
    await pending.start()
    pending.push(event(0), meta())
    await settle(pending)
    assert spool.waiting == 1
    # An hour later, with the default envelope_expiry (10 minutes).
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    await pending._expire_disk(pending.config.cache.envelope_expiry)
    assert recorder.expired == ids(0)
    assert spool.waiting == 0 and len(pending) == 0
    assert pending.waiting_keys() == []
    await pending.stop(0.1)
    await spool.close()


async def test_shutdown_moves_memory_to_disk_and_start_takes_it_up(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = await open_spool(path)
    pending, recorder = queues(spool, batch_size_bytes=1 << 20)  # nothing moves early
    await pending.start()
    for n in range(3):
        pending.push(event(n), meta(n))
    assert spool.waiting == 0
    await pending.stop(0.05)
    assert recorder.expired == [] and spool.waiting == 3
    await spool.close()

    spool = await open_spool(path)
    pending, recorder = queues(spool)
    await pending.start()
    assert pending.waiting_keys() == [KEY] and len(pending) == 3
    pending.on_project_ready(KEY, ProjectState())
    await settle(pending)
    assert recorder.released == ids(0, 1, 2)
    await pending.stop(0.1)
    await spool.close()
