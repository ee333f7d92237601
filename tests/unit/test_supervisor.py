"""The worker supervisor: restart policy, giving up, graceful stop, and the --workers flag."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from relay.cli import _workers
from relay.errors import ConfigError
from relay.server.supervisor import Backoff, Supervisor, default_workers


def exit_at_once(code: int, index: int) -> None:
    """Worker target that fails right away (runs in a spawned process)."""
    del index
    sys.exit(code)


def sleep_forever(index: int) -> None:
    """Worker target that runs until signalled (default SIGTERM action: terminate)."""
    del index
    while True:
        time.sleep(60)


def test_backoff_doubles_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0, stable_after=30.0)
    assert [backoff.on_exit(1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.failures == 5
    # A worker that ran long enough starts a new series.
    assert backoff.on_exit(45.0) == 0.5
    assert backoff.failures == 1


def test_workers_flag_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_WORKERS", raising=False)
    assert _workers(None) is None  # no flag: one process, no supervisor
    assert _workers(3) == 3
    assert _workers(0) == default_workers()  # bare --workers: one per CPU
    monkeypatch.setenv("RELAY_WORKERS", "2")
    assert _workers(None) == 2
    assert _workers(4) == 4  # the flag wins
    monkeypatch.setenv("RELAY_WORKERS", "many")
    with pytest.raises(ConfigError):
        _workers(None)
    with pytest.raises(ConfigError):
        _workers(-1)


def test_default_workers_is_the_cpu_count() -> None:
    assert default_workers() == len(os.sched_getaffinity(0))


def test_supervisor_restarts_crashed_workers_then_gives_up() -> None:
    supervisor = Supervisor(
        1, exit_at_once, (3,),
        backoff=lambda: Backoff(initial=0.01, maximum=0.02), max_quick_failures=3,
    )  # fmt: skip
    assert supervisor.run() == 1
    assert supervisor.starts == 3
    assert supervisor.pids == []


def test_supervisor_stops_workers_on_sigterm() -> None:
    supervisor = Supervisor(2, sleep_forever, shutdown_timeout=5.0)

    def stop_when_started() -> None:
        deadline = time.monotonic() + 60
        while len(supervisor.pids) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=stop_when_started, daemon=True)
    thread.start()
    assert supervisor.run() == 0
    thread.join()
    assert supervisor.starts == 2
    assert supervisor.pids == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_supervisor_needs_a_worker() -> None:
    with pytest.raises(ValueError):
        Supervisor(0, sleep_forever)
