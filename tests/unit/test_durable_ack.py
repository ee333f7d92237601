"""Durable acknowledgement (``relay.ack: durable``, relay.server.durable): the answer waits
until the envelope is safe, and is a 503 when it cannot be made safe in time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay.config import config_from_dict
from relay.errors import ServiceUnavailable
from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState
from relay.server import durable
from relay.server.ingest import Ingestor
from relay.server.outcomes import OutcomeSink
from relay.server.project_cache import DUMMY
from relay.server.request_meta import RequestMeta
from tests.unit.ingest_fakes import NoInternalRelays

KEY = "b" * 32


class LateProjects:
    """A project cache whose config for every key arrives when the test says so."""

    def __init__(self, global_ready: bool = True) -> None:
        self.global_ready = global_ready
        self.state: ProjectState | None = None
        self._arrived = asyncio.Event()

    def arrive(self) -> None:
        self.state = DUMMY
        self._arrived.set()

    def get_state(self, public_key: str) -> ProjectState | None:
        return self.state

    def cached(self, public_key: str) -> ProjectState | None:
        return self.state

    async def get(self, public_key: str, timeout: float) -> ProjectState:
        await asyncio.wait_for(self._arrived.wait(), timeout)
        assert self.state is not None
        return self.state

    def subscribe(self, listener: Any) -> None:
        pass

    def subscribe_global(self, listener: Any) -> None:
        pass


class Sink:
    """Accepts envelopes; each send ends when the test resolves its future."""

    def __init__(self, background: bool = False) -> None:
        self.background = background
        self.sends: list[asyncio.Future[bool]] = []

    async def accept(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> asyncio.Future[bool] | None:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.sends.append(fut)
        return fut if self.background else None


def ingestor(projects: LateProjects, sink: Sink, ack: str) -> Ingestor:
    config = config_from_dict({"relay": {"mode": "managed", "ack": ack}})
    return Ingestor(
        config, projects, NoInternalRelays(), sink, None,  # type: ignore[arg-type]
        OutcomeSink(config),
    )  # fmt: skip


def event() -> Envelope:
    return Envelope({"event_id": "1" * 32}, [Item.new("event", b"{}")])


def meta() -> RequestMeta:
    return RequestMeta(public_key=KEY, project_id=42)


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durable, "DURABLE_WAIT_SECS", 0.2)


def test_the_config_names_the_mode() -> None:
    assert config_from_dict({}).relay.ack == "default"
    assert config_from_dict({"relay": {"ack": "durable"}}).relay.ack == "durable"
    with pytest.raises(Exception, match="ack"):
        config_from_dict({"relay": {"ack": "sometimes"}})


async def test_default_mode_answers_before_the_config_is_known() -> None:
    projects, sink = LateProjects(), Sink()
    await ingestor(projects, sink, "default").submit(event(), meta())
    # Parked in memory: answered, not yet handed on.
    assert sink.sends == []


async def test_durable_mode_waits_for_the_config_and_the_sink() -> None:
    projects, sink = LateProjects(), Sink(background=True)
    answer = asyncio.create_task(ingestor(projects, sink, "durable").submit(event(), meta()))
    await asyncio.sleep(0.05)
    assert not answer.done() and sink.sends == []
    projects.arrive()
    await asyncio.sleep(0.05)
    # Handed to the sink, but the send is not done: still no answer.
    assert len(sink.sends) == 1 and not answer.done()
    sink.sends[0].set_result(True)
    await asyncio.wait_for(answer, 1)


async def test_durable_mode_waits_for_the_global_config() -> None:
    projects, sink = LateProjects(global_ready=False), Sink()
    projects.arrive()
    answer = asyncio.create_task(ingestor(projects, sink, "durable").submit(event(), meta()))
    await asyncio.sleep(0.1)
    assert not answer.done() and sink.sends == []
    projects.global_ready = True
    await asyncio.wait_for(answer, 1)
    assert len(sink.sends) == 1


@pytest.mark.usefixtures("short_wait")
async def test_no_config_in_time_is_a_503_and_nothing_is_kept() -> None:
    projects, sink = LateProjects(), Sink()
    with pytest.raises(ServiceUnavailable, match="project config") as exc:
        await ingestor(projects, sink, "durable").submit(event(), meta())
    assert exc.value.retry_after == durable.RETRY_AFTER_SECS
    assert sink.sends == []


@pytest.mark.usefixtures("short_wait")
async def test_a_send_that_is_too_slow_is_a_503_but_goes_on() -> None:
    projects, sink = LateProjects(), Sink(background=True)
    projects.arrive()
    with pytest.raises(ServiceUnavailable, match="in progress"):
        await ingestor(projects, sink, "durable").submit(event(), meta())
    # Not cancelled: it may still be delivered (durable mode is at least once).
    assert not sink.sends[0].cancelled()


@pytest.mark.parametrize("outcome", ["dropped", "failed", "cancelled"])
async def test_a_send_that_ends_unsafe_is_a_503(outcome: str) -> None:
    projects, sink = LateProjects(), Sink(background=True)
    projects.arrive()
    answer = asyncio.create_task(ingestor(projects, sink, "durable").submit(event(), meta()))
    await asyncio.sleep(0.05)
    send = sink.sends[0]
    if outcome == "dropped":
        send.set_result(False)
    elif outcome == "failed":
        send.set_exception(RuntimeError("spool disk gone"))
    else:
        send.cancel()
    with pytest.raises(ServiceUnavailable, match="delivery"):
        await asyncio.wait_for(answer, 1)


async def test_stored_accepts_sends_that_are_done_already() -> None:
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    done.set_result(True)
    await durable.stored([done], durable.Deadline(1))
    await durable.stored([], durable.Deadline(0))
