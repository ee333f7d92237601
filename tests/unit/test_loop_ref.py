"""LoopRef: the running loop, looked up once, and again once that loop is closed."""

from __future__ import annotations

import asyncio

import pytest

from relay.server.loop_ref import LoopRef


def test_remembers_the_running_loop_and_follows_a_new_one() -> None:
    ref = LoopRef()

    async def running() -> asyncio.AbstractEventLoop:
        assert ref.get() is ref.get() is asyncio.get_running_loop()
        return asyncio.get_running_loop()

    first = asyncio.run(running())
    # asyncio.run closed the first loop: the second run must not get it back.
    second_loop = asyncio.new_event_loop()
    try:
        second = second_loop.run_until_complete(running())
    finally:
        second_loop.close()
    assert first is not second


def test_outside_a_loop_it_raises() -> None:
    with pytest.raises(RuntimeError):
        LoopRef().get()
