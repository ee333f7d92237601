"""Inbound filters: µs per ``should_filter`` call with a Sentry-like full project setup.

Settings are what Sentry sends for a JavaScript project with every inbound filter on, plus
the health-check transaction patterns and one generic filter. Events are a browser error (the
common case: every filter runs and none matches) and a health-check transaction (dropped).
The user-agent parse is cached per UA string; the first (uncached) parse is reported apart.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relay.filters import compile_filters, init_user_agent_parser  # noqa: E402
from relay.filters.useragent import _parse_uncached  # noqa: E402

UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SETTINGS: dict[str, Any] = {
    "browserExtensions": {"isEnabled": True},
    "localhost": {"isEnabled": True},
    "webCrawlers": {"isEnabled": True},
    "legacyBrowsers": {"isEnabled": True, "options": ["ie", "safari", "opera", "edge_pre_79"]},
    "errorMessages": {"patterns": ["*ResizeObserver loop*", "ChunkLoadError: *"]},
    "releases": {"releases": ["0.*", "*-dev"]},
    "clientIps": {"blacklistedIps": ["10.0.0.0/8", "192.168.0.1"]},
    "csp": {"disallowedSources": ["chrome-extension://*", "*.superfish.com"]},
    "ignoreTransactions": {
        "isEnabled": True,
        "patterns": ["*healthcheck*", "*healthy*", "*/health{/,}", "*/healthz", "*/ping"],
    },
    "generic": {
        "version": 1,
        "filters": [
            {
                "id": "hydrationError",
                "isEnabled": True,
                "condition": {
                    "op": "any",
                    "name": "event.exception.values",
                    "inner": {"op": "glob", "name": "value", "value": ["*Hydration failed*"]},
                },
            }
        ],
    },
}
ERROR: dict[str, Any] = {
    "type": "error",
    "release": "frontend@2.3.1",
    "user": {"ip_address": "81.41.165.209"},
    "request": {
        "url": "https://app.example.com/settings",
        "headers": [["Host", "app.example.com"], ["User-Agent", UA]],
    },
    "logentry": {"formatted": "TypeError: Cannot read properties of undefined"},
    "exception": {
        "values": [
            {
                "type": "TypeError",
                "value": "Cannot read properties of undefined (reading 'id')",
                "stacktrace": {
                    "frames": [
                        {"abs_path": "https://app.example.com/static/js/main.abc.js"},
                        {"abs_path": "https://app.example.com/static/js/vendor.def.js"},
                    ]
                },
            }
        ]
    },
}
HEALTH: dict[str, Any] = {"type": "transaction", "transaction": "/api/healthz", "release": "2"}


def per_call(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Median µs per call over repeated timed batches."""
    fn()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(200):
            fn()
        samples.append((time.perf_counter() - start) / 200 * 1e6)
    return statistics.median(samples)


def main() -> None:
    """Print the measurements."""
    init_user_agent_parser()
    filters = compile_filters(SETTINGS)
    assert filters.should_filter(ERROR, client_ip="81.41.165.209") is None
    assert filters.should_filter(HEALTH, client_ip="81.41.165.209") == "filtered-transaction"
    compile_us = per_call(lambda: compile_filters(SETTINGS), 0.5)
    error_us = per_call(lambda: filters.should_filter(ERROR, client_ip="81.41.165.209"))
    health_us = per_call(lambda: filters.should_filter(HEALTH, client_ip="81.41.165.209"))
    empty = compile_filters({})
    empty_us = per_call(lambda: empty.should_filter(ERROR, client_ip="81.41.165.209"))
    ua_us = per_call(lambda: _parse_uncached(UA), 0.5)
    print(f"filters compile (per project config revision): {compile_us:8.1f} µs")
    print(f"filters error event, all filters, kept:        {error_us:8.2f} µs")
    print(f"filters health-check transaction, dropped:     {health_us:8.2f} µs")
    print(f"filters no filters configured:                 {empty_us:8.2f} µs")
    print(f"filters uncached user-agent parse:             {ua_us:8.2f} µs")


if __name__ == "__main__":
    main()
