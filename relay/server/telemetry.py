"""The HTTP side of telemetry: request counting middleware, ``/metrics``, queue gauges.

``/metrics`` is served on the internal listener (``relay.internal_host``/``internal_port``)
when one is configured, else on the main listener, next to the health checks.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from relay.kafka.outcomes import OutcomeCode
from relay.protocol.items import DataCategory
from relay.telemetry.metrics import ITEMS_DROPPED, QUEUE_BYTES, QUEUE_OLDEST, REGISTRY, REQUESTS
from relay.telemetry.registry import CONTENT_TYPE, Registry
from relay.telemetry.shared import WorkerMetrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Label for requests that matched no route (404s): one series, whatever the path.
UNMATCHED = "unmatched"


def route_label(request: web.Request) -> str:
    """The route template that matched the request (``/api/{project_id}/envelope/``)."""
    match_info = request.match_info
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return UNMATCHED
    canonical: str = resource.canonical
    return canonical or UNMATCHED


@web.middleware
async def request_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every answered request by route template and status (outermost middleware)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        REQUESTS.inc(1, route_label(request), str(exc.status))
        raise
    except BaseException:
        REQUESTS.inc(1, route_label(request), "500")
        raise
    REQUESTS.inc(1, route_label(request), str(response.status))
    return response


def metrics_routes(
    shared: WorkerMetrics | None = None, registry: Registry = REGISTRY
) -> list[web.RouteDef]:
    """``GET /metrics`` in Prometheus' text format; under ``--workers``, all workers' sums."""

    async def metrics(_: web.Request) -> web.Response:
        text = registry.render() if shared is None else shared.render()
        body = text.encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return [web.get("/metrics", metrics)]


QueueSize = Callable[[], float]
QueueAge = Callable[[], float | None]


class QueueGauges:
    """Reads ``relay_queue_bytes`` and ``relay_queue_oldest_seconds`` from live queues.

    Each queue gives a byte count and the monotonic time its oldest entry was queued
    (None when empty). ``close`` unhooks them (so a stopped app is not read).
    """

    def __init__(self) -> None:
        self._names: list[str] = []

    def add(self, name: str, size: QueueSize, oldest: QueueAge | None = None) -> None:
        """Publish one queue under the ``queue`` label ``name``."""
        self._names.append(name)
        QUEUE_BYTES.set_function(lambda: float(size()), name)

        def age() -> float:
            since = oldest() if oldest is not None else None
            return max(0.0, time.monotonic() - since) if since is not None else 0.0

        QUEUE_OLDEST.set_function(age, name)

    def close(self) -> None:
        """Stop publishing the queues."""
        for name in self._names:
            QUEUE_BYTES.set_function(None, name)
            QUEUE_OLDEST.set_function(None, name)
        self._names.clear()


def oldest_of(times: Iterable[float]) -> float | None:
    """The smallest of monotonic timestamps, or None when there are none."""
    return min(times, default=None)


_REASON_RE = re.compile(r"^[A-Za-z0-9_.-]{1,48}$")


@functools.lru_cache(maxsize=1024)
def drop_labels(outcome: int, reason: str | None, category: int) -> tuple[str, str, str]:
    """Low-cardinality ``(outcome, reason, category)`` labels of ``relay_items_dropped_total``.

    Reasons are Relay's identifiers (``project_id``, ``release-version``, quota reason codes);
    anything else (a client's free text, ``Sampled:1,2``) is folded into a few values.
    """
    try:
        outcome_name = OutcomeCode(outcome).name.lower()
    except ValueError:
        outcome_name = str(outcome)
    try:
        category_name = DataCategory(category).name_str
    except (ValueError, KeyError):
        category_name = "unknown"
    if reason is None or reason == "":
        label = ""
    elif reason.startswith("Sampled:"):
        label = "sampled"
    elif _REASON_RE.match(reason):
        label = reason
    else:
        label = "other"
    return outcome_name, label, category_name


def count_drop(outcome: int, reason: str | None, category: int, quantity: int) -> None:
    """Count a tracked outcome in ``relay_items_dropped_total`` (accepted ones are not drops)."""
    if outcome != OutcomeCode.ACCEPTED:
        ITEMS_DROPPED.inc(quantity, *drop_labels(outcome, reason, category))
