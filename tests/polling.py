"""Waiting, in async tests, for something another task does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(check: Callable[[], object], timeout: float = 10.0, every: float = 0.02) -> None:
    """Poll ``check`` every ``every`` seconds; fail the test if it is not true in ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(every)
