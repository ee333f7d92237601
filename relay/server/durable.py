"""Durable acknowledgement (``relay.ack: durable``): a 200 only for data that is safe.

In the default mode a 200 means "accepted into this relay's memory": the envelope passed
the checks this relay could make, is counted against its budgets, and is on its way. On a
processing relay its messages are normally in Kafka already (the answer waits for the
producer), except while its project config is still being fetched: then it waits in memory
and a crash loses it. On a POP it is forwarded in the background (retried, then spooled if
a spool is configured); a crash (SIGKILL, OOM) loses what is in memory.

In durable mode the answer waits until the envelope is safe:

- processing relay: every Kafka message of the envelope is acknowledged by the broker;
- POP relay: the upstream answered for it, or it is in the disk spool, fsynced.

Nothing waits in memory after a 200: an envelope whose project config is not known yet is
held (not parked) until the config arrives. If that, or the delivery, takes longer than
:data:`DURABLE_WAIT_SECS`, the answer is 503 + Retry-After. The envelope may still arrive
later, so a sender's retry can add a copy: durable mode is at least once, and consumers
deduplicate on the event id, as they do for Relay's own retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from relay.errors import ServiceUnavailable
from relay.protocol.project_config import ProjectState
from relay.server.project_cache import ProjectCache

#: How long a durable answer may wait, in all. Below the usual client timeouts (30 s), so
#: that the client gets the 503 rather than giving up on its own.
DURABLE_WAIT_SECS = 20.0
#: Seconds a refused sender is asked to wait before it retries.
RETRY_AFTER_SECS = 5.0
#: How often the global config is looked for (it arrives once, at start-up).
GLOBAL_POLL_SECS = 0.05


class Deadline:
    """The time left for one durable answer."""

    def __init__(self, seconds: float | None = None) -> None:
        self.at = time.monotonic() + (DURABLE_WAIT_SECS if seconds is None else seconds)

    def left(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())


def _not_stored(what: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"envelope not stored durably: {what}", retry_after=RETRY_AFTER_SECS)


async def project_state(
    projects: ProjectCache, public_key: str, deadline: Deadline
) -> ProjectState:
    """The key's project state, waiting for its fetch; 503 if it does not come in time."""
    try:
        return await projects.get(public_key, deadline.left())
    except TimeoutError:
        raise _not_stored("project config not available") from None


async def global_config(projects: ProjectCache, deadline: Deadline) -> None:
    """Wait until the upstream's global config is in; 503 if it does not come in time."""
    while not projects.global_ready:
        if deadline.left() <= 0:
            raise _not_stored("global config not available")
        await asyncio.sleep(min(GLOBAL_POLL_SECS, deadline.left()))


async def stored(sends: Sequence[asyncio.Future[Any]], deadline: Deadline) -> None:
    """Wait for the sink's background sends; 503 unless every one ended safely.

    A send's result ``False`` means it ended as an outcome (dropped) instead of stored.
    The sends are shielded: a 503 for a slow send does not cancel it.
    """
    if not sends:
        return
    done, pending = await asyncio.wait([asyncio.shield(s) for s in sends], timeout=deadline.left())
    if pending:
        raise _not_stored("delivery still in progress")
    for fut in done:
        if fut.cancelled():
            raise _not_stored("delivery cancelled")
        if fut.exception() is not None:
            raise _not_stored("delivery failed")
        if fut.result() is False:
            raise _not_stored("delivery failed")
