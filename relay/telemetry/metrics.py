"""The relay's own metrics, in one process-wide registry (see relay.telemetry.registry).

Modules increment them with one line, e.g. ``ENVELOPES_ACCEPTED.inc()``. Labels are kept
low-cardinality on purpose: route templates instead of paths, outcome reasons and data
category names (bounded sets), topic names, never project ids or keys.

``STATSD_NAMES`` gives each metric the name Sentry Relay uses for it in statsd, where Relay
has one, so dashboards built on Relay's statsd metrics keep working (relay.server.statsd).
"""

from __future__ import annotations

from relay import __version__
from relay.telemetry.registry import Registry

REGISTRY = Registry()

REQUESTS = REGISTRY.counter(
    "relay_requests_total",
    "HTTP requests answered, by route template and status code.",
    ("endpoint", "status"),
)
ENVELOPES_ACCEPTED = REGISTRY.counter(
    "relay_envelopes_accepted_total",
    "Envelopes accepted for forwarding or processing (after project checks).",
)
ITEMS_DROPPED = REGISTRY.counter(
    "relay_items_dropped_total",
    "Quantities dropped with an outcome, by outcome, reason and data category.",
    ("outcome", "reason", "category"),
)
QUEUE_BYTES = REGISTRY.gauge(
    "relay_queue_bytes",
    "Bytes held in a queue: pending (waiting for a project config), forward (compressed, "
    "as they go upstream), kafka.",
    ("queue",),
)
QUEUE_OLDEST = REGISTRY.gauge(
    "relay_queue_oldest_seconds",
    "Age of the oldest entry of a queue, in seconds (0 when empty).",
    ("queue",),
    aggregation="max",
)
UPSTREAM_DURATION = REGISTRY.histogram(
    "relay_upstream_request_duration_seconds",
    "Duration of requests to the upstream, by route and result (status code or error).",
    ("route", "result"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
KAFKA_PRODUCE = REGISTRY.counter(
    "relay_kafka_produce_total",
    "Kafka messages produced, by topic and result (ok, error, rejected, budget).",
    ("topic", "result"),
)
PROJECT_CACHE = REGISTRY.counter(
    "relay_project_cache_total",
    "Project config lookups, by result: hit (fresh), stale (refreshing), miss (pending).",
    ("result",),
)
BUILD_INFO = REGISTRY.gauge(
    "relay_build_info",
    "Always 1; the version label says which relay runs.",
    ("version",),
    aggregation="max",
)
BUILD_INFO.set(1, __version__)

#: Relay's statsd metric (and tag) names for ours.
STATSD_NAMES: dict[str, tuple[str, dict[str, str]]] = {
    "relay_requests_total": (
        "responses.status_codes", {"endpoint": "route", "status": "status_code"}
    ),
    "relay_envelopes_accepted_total": ("event.accepted", {}),
    "relay_items_dropped_total": ("events.outcomes", {}),
    "relay_queue_bytes": ("buffer.bytes", {}),
    "relay_queue_oldest_seconds": ("buffer.oldest_secs", {}),
    "relay_upstream_request_duration_seconds": ("upstream.requests.duration", {}),
    "relay_kafka_produce_total": ("processing.produce", {}),
    "relay_project_cache_total": ("project_cache.lookup", {}),
    "relay_build_info": ("build_info", {}),
}  # fmt: skip


_KNOWN_UPSTREAM_ROUTES = frozenset(
    {
        "/api/{project_id}/envelope/",
        "/api/0/relays/register/challenge/",
        "/api/0/relays/register/response/",
        "/api/0/relays/projectconfigs/",
        "/api/0/relays/publickeys/",
        "/api/0/relays/metrics/",
        "/api/0/relays/outcomes/",
        "/api/0/relays/live/",
    }
)


def upstream_route(path: str) -> str:
    """A low-cardinality label for an upstream request path (no ids, no query)."""
    path = path.split("?", 1)[0]
    if path.startswith("/api/") and path.endswith("/envelope/"):
        middle = path[len("/api/") : -len("/envelope/")]
        if middle.isdigit():
            return "/api/{project_id}/envelope/"
    return path if path in _KNOWN_UPSTREAM_ROUTES else "other"
