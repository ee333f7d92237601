"""Admission control by bytes (relay.server.admission): budgets, classes, release, gauges."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay.config import config_from_dict
from relay.errors import RateLimited, ServiceUnavailable
from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState
from relay.server.admission import OVERHEAD_BYTES, Admission, envelope_memory, is_heavy
from relay.server.ingest import Ingestor
from relay.server.request_meta import RequestMeta
from tests.unit.ingest_fakes import NoInternalRelays, StaticProjects

KEY = "a" * 32


def event(size: int = 100) -> Envelope:
    return Envelope({"event_id": "0" * 32}, [Item.new("event", b"x" * size)])


def attachment(size: int = 100) -> Envelope:
    return Envelope({}, [Item.new("attachment", b"x" * size, filename="a.bin")])


def small_budget(**kwargs: Any) -> Admission:
    return Admission(10_000, 4_000, heavy_threshold=2_000, **kwargs)


def test_size_and_classes() -> None:
    assert envelope_memory(event(100)) == 100 + OVERHEAD_BYTES
    assert not is_heavy(event(100), 612, 1000)
    assert is_heavy(event(2000), 2512, 1000)  # by size
    assert is_heavy(attachment(10), 522, 1000)  # by item type
    replay = Envelope({}, [Item.new("replay_recording", b"{}")])
    assert is_heavy(replay, 600, 1000)


def test_project_budget_is_429_and_release_frees_it() -> None:
    budget = small_budget()
    first = budget.acquire(event(3000), 1)
    with pytest.raises(RateLimited) as refused:
        budget.acquire(event(1000), 1)
    assert refused.value.status == 429 and refused.value.retry_after > 0
    # Other projects are unaffected.
    other = budget.acquire(event(1000), 2)
    assert budget.project_bytes(1) == 3000 + OVERHEAD_BYTES
    first.release()
    first.release()  # idempotent
    assert budget.project_bytes(1) == 0
    budget.acquire(event(1000), 1)
    other.release()
    assert budget.refused["project"] == 1


def test_downstream_relays_get_503_instead_of_429() -> None:
    budget = small_budget()
    budget.acquire(event(3000), 1)
    with pytest.raises(ServiceUnavailable) as refused:
        budget.acquire(event(1000), 1, from_relay=True)
    assert refused.value.status == 503 and refused.value.retry_after > 0


def test_global_budget_is_503() -> None:
    budget = Admission(10_000, 4_000, heavy_threshold=5_000)
    tickets = [budget.acquire(event(2500), project) for project in range(3)]
    with pytest.raises(ServiceUnavailable) as refused:
        budget.acquire(event(1500), 9)
    assert refused.value.status == 503 and refused.value.retry_after > 0
    assert budget.refused["global"] == 1
    for ticket in tickets:
        ticket.release()
    assert budget.bytes_in_use == 0 and len(budget) == 0


def test_oversized_envelope_admitted_when_budget_is_idle() -> None:
    budget = small_budget()
    ticket = budget.acquire(event(50_000), 1)  # bigger than every budget
    assert budget.bytes_in_use > budget.max_bytes
    with pytest.raises(RateLimited):
        budget.acquire(event(10), 1)
    ticket.release()


def test_heavy_envelopes_leave_room_for_cheap_ones() -> None:
    budget = Admission(10_000, 10_000, max_heavy_bytes=7_000, heavy_threshold=2_000)
    heavy = [budget.acquire(attachment(2500), p) for p in range(2)]
    with pytest.raises(ServiceUnavailable):
        budget.acquire(attachment(2500), 3)  # heavy bytes exhausted
    assert budget.refused["heavy"] == 1
    # Cheap envelopes still get the rest of the global budget.
    cheap = [budget.acquire(event(500), 4) for _ in range(3)]
    assert budget.heavy_bytes == 2 * (2500 + OVERHEAD_BYTES)
    for ticket in (*heavy, *cheap):
        ticket.release()
    assert budget.heavy_bytes == 0 and budget.large_count == 0 and budget.bytes_in_use == 0


def test_large_envelope_concurrency_budget() -> None:
    budget = Admission(1 << 30, 1 << 30, heavy_threshold=1_000, max_concurrent_heavy=2)
    held = [budget.acquire(attachment(2_000), p) for p in range(2)]
    with pytest.raises(ServiceUnavailable, match="too many large envelopes"):
        budget.acquire(attachment(2_000), 3)
    with pytest.raises(ServiceUnavailable):
        budget.acquire(event(2_000), 3)  # large by size alone
    budget.acquire(event(10), 3).release()  # cheap ones are not counted
    held[0].release()
    budget.acquire(attachment(2_000), 3)


def test_small_attachments_count_by_bytes_only() -> None:
    # Heavy by type but small: limited by the heavy byte budget, not by their number (a
    # client sending screenshots faster than the upstream takes them is not turned away).
    budget = Admission(1 << 30, 1 << 30, heavy_threshold=1_000, max_concurrent_heavy=2)
    held = [budget.acquire(attachment(300), p) for p in range(50)]
    assert budget.large_count == 0 and budget.heavy_bytes == 50 * (300 + OVERHEAD_BYTES)
    # They do not take the slots of large ones either.
    budget.acquire(attachment(2_000), 51)
    for ticket in held:
        ticket.release()
    assert budget.heavy_bytes == 2_000 + OVERHEAD_BYTES


def test_oldest_admitted_at_follows_releases() -> None:
    budget = small_budget()
    assert budget.oldest_admitted_at() is None
    a = budget.acquire(event(10), 1)
    b = budget.acquire(attachment(10), 2)
    assert budget.oldest_admitted_at() == a.admitted_at
    assert budget.oldest_heavy_admitted_at() == b.admitted_at
    a.release()
    assert budget.oldest_admitted_at() == b.admitted_at
    b.release()
    assert budget.oldest_admitted_at() is None and budget.oldest_heavy_admitted_at() is None


def test_from_config_defaults_and_overrides() -> None:
    default = Admission.from_config(config_from_dict({}))
    assert default.max_bytes == 512 * 1024**2
    assert default.max_heavy_bytes == default.max_bytes * 3 // 4
    custom = Admission.from_config(
        config_from_dict(
            {
                "limits": {
                    "max_memory_bytes": "10MiB",
                    "max_project_memory_bytes": "2MiB",
                    "max_heavy_memory_bytes": "5MiB",
                    "heavy_envelope_size": "100KiB",
                    "max_concurrent_heavy": 3,
                }
            }
        )
    )
    assert (custom.max_bytes, custom.max_project_bytes) == (10 * 1024**2, 2 * 1024**2)
    assert (custom.max_heavy_bytes, custom.heavy_threshold) == (5 * 1024**2, 100 * 1024)
    assert custom.max_concurrent_heavy == 3


# --- the ingestor holds the ticket until the sink is done -----------------------------


class _Sink:
    def __init__(self) -> None:
        self.pending: asyncio.Future[None] | None = None
        self.fail = False

    async def accept(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> asyncio.Future[None] | None:
        if self.fail:
            raise ServiceUnavailable("kafka down", retry_after=1)
        return self.pending


async def test_ingestor_releases_when_the_sink_is_done() -> None:
    config = config_from_dict({"relay": {"mode": "proxy"}})
    sink = _Sink()
    admission = Admission(1 << 20, 1 << 20)
    ingestor = Ingestor(
        config, StaticProjects(), NoInternalRelays(), sink, None, admission=admission,  # type: ignore[arg-type]
    )  # fmt: skip
    meta = RequestMeta(public_key=KEY, project_id=42)
    # Synchronous sink (processing): released when accept returns.
    await ingestor.submit(event(), meta)
    assert admission.bytes_in_use == 0
    # Background sink (POP forwarding): held until the send completes.
    sink.pending = asyncio.get_running_loop().create_future()
    await ingestor.submit(event(), meta)
    assert admission.bytes_in_use == 100 + OVERHEAD_BYTES
    assert admission.project_bytes(42) == admission.bytes_in_use
    sink.pending.set_result(None)
    await asyncio.sleep(0)
    assert admission.bytes_in_use == 0
    # A sink that refuses: released at once, the error reaches the client.
    sink.fail = True
    with pytest.raises(ServiceUnavailable):
        await ingestor.submit(event(), meta)
    assert admission.bytes_in_use == 0
