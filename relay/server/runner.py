"""Process entry points: run a relay until SIGTERM/SIGINT, then shut down gracefully.

Signals are handled here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from relay.config import Config
from relay.protocol.keys import Credentials
from relay.server.app import RelayApp

log = logging.getLogger(__name__)


def install_event_loop() -> None:
    """Use uvloop when available (5-10% faster under aiohttp)."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def wait_for_signal() -> None:
    """Return on the first SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _serve(config: Config, credentials: Credentials | None) -> None:
    app = RelayApp(config, credentials)
    try:
        await app.start()
        await wait_for_signal()
        log.info("shutting down")
    finally:
        await app.stop()


def run_relay(config: Config, credentials: Credentials | None) -> int:
    """Run a relay in this process until it is told to stop."""
    install_event_loop()
    try:
        asyncio.run(_serve(config, credentials))
    except OSError as exc:
        log.error("relay failed: %s", exc)
        return 1
    return 0
