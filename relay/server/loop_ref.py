"""The event loop of an object that lives on one loop, looked up once instead of per call."""

from __future__ import annotations

import asyncio


class LoopRef:
    """``get()`` is the running loop, remembered after the first call.

    ``asyncio.get_running_loop()`` (and so ``asyncio.create_task`` and a bare
    ``asyncio.Future()``) makes a ``getpid()`` system call every time: CPython checks that
    the loop was not inherited through ``fork``. On the POP's hot path that was ~5 calls per
    forwarded envelope, 2.4% of its CPU on a VM where system calls are dear. Objects that
    live on one loop (a connection pool, the forwarder) ask once. A closed loop (tests run
    one loop after another) is looked up again.
    """

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        """The loop; must first be called from a coroutine or callback running on it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop
