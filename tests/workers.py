"""Helpers for tests that run ``relay run --workers N`` as a real process tree."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``check`` every 0.1 s; fail the test if it is not true within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def ready(port: int, timeout: float = 2.0) -> bool:
    """Whether the relay (whichever worker answers) on ``port`` reports itself ready."""
    try:
        url = f"http://127.0.0.1:{port}/api/relay/healthcheck/ready/"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
