"""Process entry points: run a relay until SIGTERM/SIGINT, then shut down gracefully.

Signals are handled here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal

from relay.config import Config
from relay.protocol.keys import Credentials
from relay.server.app import RelayApp
from relay.telemetry.shared import PUBLISH_SECS, WorkerMetrics

log = logging.getLogger(__name__)

#: How often a worker checks that its supervisor is still there.
PARENT_CHECK_SECS = 1.0
#: Allocations between young collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def install_event_loop() -> None:
    """Use uvloop when available (5-10% faster under aiohttp)."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def wait_for_signal(parent_pid: int | None = None) -> None:
    """Return on the first SIGTERM or SIGINT (or once ``parent_pid`` is no longer our parent)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = None
    if parent_pid is not None:
        watcher = asyncio.create_task(_watch_parent(parent_pid, stop), name="parent-watch")
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    # A worker whose supervisor died (SIGKILL, OOM) is re-parented: then it drains and exits.
    while True:
        await asyncio.sleep(PARENT_CHECK_SECS)
        if os.getppid() != parent_pid:
            break
    log.error("supervisor (pid %d) is gone; shutting down", parent_pid)
    stop.set()


async def _serve(
    config: Config,
    credentials: Credentials | None,
    reuse_port: bool = False,
    parent_pid: int | None = None,
    metrics: WorkerMetrics | None = None,
) -> None:
    app = RelayApp(config, credentials)
    app.reuse_port = reuse_port
    app.worker_metrics = metrics
    publisher = None
    if metrics is not None:
        publisher = asyncio.create_task(_publish_metrics(metrics), name="metrics-publish")
    # As Relay: SIGUSR1 pauses processing (envelopes are held, answered 200), the next one
    # resumes it. Handled from before the start, so that one sent while starting is kept.
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, app.toggle_hold)
    try:
        await app.start()
        _settle_heap()
        await wait_for_signal(parent_pid)
        log.info("shutting down")
    finally:
        await app.stop()
        if metrics is not None and publisher is not None:
            publisher.cancel()
            # What the drain counted stays in the sums after this worker is gone.
            metrics.publish()


def _settle_heap() -> None:
    """Keep the cyclic collector off what lives as long as the process.

    Startup leaves many long-lived objects (configs, compiled regexes, the user-agent
    parser): frozen, full collections no longer walk them. Requests allocate many small
    containers that die young, so young collections run less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def _publish_metrics(metrics: WorkerMetrics) -> None:
    while True:
        metrics.publish()
        await asyncio.sleep(PUBLISH_SECS)


def run_relay(
    config: Config,
    credentials: Credentials | None,
    *,
    reuse_port: bool = False,
    parent_pid: int | None = None,
    metrics: WorkerMetrics | None = None,
) -> int:
    """Run a relay in this process until it is told to stop.

    ``reuse_port``, ``parent_pid`` and ``metrics`` are for worker processes
    (relay.server.supervisor).
    """
    install_event_loop()
    try:
        asyncio.run(_serve(config, credentials, reuse_port, parent_pid, metrics))
    except OSError as exc:
        log.error("relay failed: %s", exc)
        return 1
    return 0


def run(config: Config, credentials: Credentials | None, workers: int | None) -> int:
    """``relay run``: in this process without ``workers``, else under a supervisor."""
    if workers is None:
        return run_relay(config, credentials)
    from relay.server.supervisor import run_supervised

    return run_supervised(config, credentials, workers)
