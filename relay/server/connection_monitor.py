"""Network outage detection for the connection to the upstream, as Relay's ConnectionMonitor.

Every request to the upstream reports whether it got through. Network errors (no answer, or
502/503/504) start a grace period (``http.outage_grace_period``); an error after it puts the
connection in *outage*: requests are held instead of sent, and a background task polls the
upstream's ``/api/0/relays/live/`` with backoff until it answers. Any answer that got
through ends the outage, as does any request that reached the upstream meanwhile.

The states, as in Relay:

- connected: no recent network error;
- interrupted: network errors since ``first_error``, still within the grace period, so
  requests keep going out;
- reconnecting: in outage, the probe task runs and requests wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from relay.server.backoff import RetryBackoff

log = logging.getLogger(__name__)

#: Answers one liveness probe of the upstream: True when it got through (any answer that
#: is not a network error), False on a network error.
LivenessProbe = Callable[[], Awaitable[bool]]


class ConnectionMonitor:
    """The outage state of one upstream connection; see the module docstring."""

    def __init__(
        self,
        grace_period: float,
        max_retry_interval: float,
        probe: LivenessProbe,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grace_period = grace_period
        self.max_retry_interval = max_retry_interval
        self._probe = probe
        self._clock = clock
        #: When the first network error of the current interruption happened (None: connected).
        self._first_error: float | None = None
        #: The reconnection task while in outage.
        self._reconnect: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._connected.set()

    @property
    def is_outage(self) -> bool:
        """Whether requests should be held: the upstream is unreachable and being probed."""
        return self._reconnect is not None

    def notify_error(self) -> None:
        """A request failed with a network error: start or continue the grace period.

        Once the grace period is over, the next error starts the outage and the probe task.
        """
        if self._reconnect is not None:
            return
        now = self._clock()
        if self._first_error is None:
            self._first_error = now
        if self._first_error + self.grace_period <= now:
            log.warning("network outage: holding upstream requests until the upstream answers")
            self._connected.clear()
            self._reconnect = asyncio.create_task(self._reconnect_loop(), name="upstream-outage")

    def reset_error(self) -> None:
        """A request reached the upstream: the connection is healthy again."""
        task, self._reconnect = self._reconnect, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._first_error = None
        self._connected.set()

    async def wait_connected(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) for the outage to end; True if it did."""
        if self._connected.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self._connected.is_set()

    async def _reconnect_loop(self) -> None:
        backoff = RetryBackoff(self.max_retry_interval)
        while True:
            delay = backoff.next_backoff()
            if delay:
                log.warning("network outage, next check of the upstream in %.1fs", delay)
            await asyncio.sleep(delay)
            try:
                reachable = await self._probe()
            except Exception:
                log.exception("network outage: the liveness probe failed")
                reachable = False
            if reachable:
                log.info("network outage over: the upstream answers again")
                self.reset_error()
                return

    async def stop(self) -> None:
        """Stop probing (shutdown); waiting requests are released."""
        task, self._reconnect = self._reconnect, None
        self._connected.set()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
