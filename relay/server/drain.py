"""The drain gate: after SIGTERM, health and metrics keep answering, nothing else is taken.

Relay closes its listener on SIGTERM. Then the orchestrator's liveness probe cannot connect
either, and it kills the relay in the middle of its drain (Kubernetes restarts a container
whose liveness probe fails, terminating or not). So this relay keeps listening until the
drain is over, and the gate decides per request instead:

- ``/api/relay/healthcheck/live/`` (and ``/api/0/relays/live/``) keep answering 200: the
  process is alive and busy draining;
- ``/api/relay/healthcheck/ready/`` answers 503 (the health check is stopped), so load
  balancers take the relay out of rotation;
- ``/metrics`` keeps answering, so the drain can be watched, and so does
  ``/api/relay/autoscaling/`` (with ``relay_up 0``);
- every other request is refused with ``503``, ``Retry-After`` and ``Connection: close``,
  so that the client retries, on another connection, somewhere else.

Requests that started before the gate closed (a body still arriving) are not affected.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

#: Seconds a refused client is asked to wait; another relay usually takes it at once.
RETRY_AFTER_SECS = 1

#: Paths served while draining (after slash folding they still start with these).
_OPEN_PREFIXES = (
    "/api/relay/healthcheck/",
    "/api/relay/autoscaling",
    "/api/0/relays/live",
    "/metrics",
)


def served_while_draining(path: str) -> bool:
    """Whether a request for ``path`` is still served while the relay drains."""
    folded = "/" + "/".join(part for part in path.split("/") if part)
    return any(folded.startswith(prefix) for prefix in _OPEN_PREFIXES)


class DrainGate:
    """Refuses new work once :meth:`close` was called; see the module docstring."""

    def __init__(self) -> None:
        self.closed = False
        #: When the gate closed (monotonic).
        self.closed_at = 0.0
        #: Requests refused since the gate closed.
        self.refused = 0

    def close(self) -> None:
        """Refuse new work from now on (idempotent)."""
        if not self.closed:
            self.closed = True
            self.closed_at = time.monotonic()
            log.info("draining: refusing new requests, health checks keep answering")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The aiohttp middleware; install it outermost, before any request accounting."""
        if not self.closed or served_while_draining(request.path):
            return await handler(request)
        # aiohttp runs middlewares once the head is in, the front door (relay.server.front)
        # once the body is: a front-door request whose head came first is in flight.
        if getattr(request, "head_at", self.closed_at) < self.closed_at:
            return await handler(request)
        self.refused += 1
        return web.json_response(
            {"detail": "relay is shutting down"},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECS), "Connection": "close"},
        )
