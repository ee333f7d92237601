"""``relay run --workers N``: one supervisor process and N relay worker processes.

Each worker is a whole relay (uvloop, its own services) started with the ``spawn`` method, so
it shares no interpreter state with the supervisor. All workers bind the same port with
``SO_REUSEPORT``; the kernel spreads new connections over them.

State: what must be shared lives in Redis (quotas, project configs on processing relays) or
upstream; the rest is per worker (cached rate limits, project cache, metric buckets and
outcomes, which the next hop or Kafka consumers merge anyway).

Metrics: ``/metrics`` answers for all workers whichever worker a scrape lands on
(relay.telemetry.shared). Statsd counters and timers from several workers add up in the
statsd server, but a gauge (``buffer.bytes``, ...) sent by each worker under the same tags
would be overwritten by whichever worker flushed last; so each worker tags its statsd
metrics with ``worker:<index>`` (:data:`WORKER_TAG`, unless the config sets that tag
itself) and dashboards sum or max a gauge over that tag. Health checks are answered by the
worker a probe lands on, for itself (as one Relay process answers for itself).

The supervisor handles SIGTERM/SIGINT and nothing else does here: it passes SIGTERM on to every
worker, which drains as a single relay does (``limits.shutdown_timeout``), waits for them
within that timeout plus a margin, kills what is left and exits. A worker that exits while
the supervisor is not stopping is restarted after a backoff that grows with each crash in a
row (reset once the worker has stayed up for ``STABLE_SECS``). Workers that keep failing right
at startup (port taken, broker down, ...) end the supervisor with exit code 1 after
``MAX_QUICK_FAILURES`` attempts in a row, so a broken config is not retried forever.

Workers stop by themselves when the supervisor disappears (they watch their parent pid).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import msgspec

from relay.config import Config
from relay.protocol.keys import Credentials

log = logging.getLogger(__name__)

#: First restart delay after a crash, then doubled per crash in a row, up to MAX_BACKOFF_SECS.
INITIAL_BACKOFF_SECS = 0.5
MAX_BACKOFF_SECS = 30.0
#: A worker that stayed up this long counts as healthy: its next crash starts a new backoff.
STABLE_SECS = 30.0
#: Consecutive failures, each within STABLE_SECS of the start, after which the supervisor gives up.
MAX_QUICK_FAILURES = 5
#: Extra time, beyond ``limits.shutdown_timeout``, that workers get before they are killed.
KILL_MARGIN_SECS = 5.0

WorkerTarget = Callable[..., Any]

#: The statsd tag that tells workers apart (see the module docstring).
WORKER_TAG = "worker"


def default_workers() -> int:
    """The number of CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Backoff:
    """Restart delays for one worker slot: doubles per crash, reset when the worker was stable."""

    initial: float = INITIAL_BACKOFF_SECS
    maximum: float = MAX_BACKOFF_SECS
    stable_after: float = STABLE_SECS
    failures: int = 0

    def on_exit(self, uptime: float) -> float:
        """Record an unexpected exit after ``uptime`` seconds; return the restart delay."""
        if uptime >= self.stable_after:
            self.failures = 0
        self.failures += 1
        return float(min(self.maximum, self.initial * 2 ** (self.failures - 1)))


@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=Backoff)


class Supervisor:
    """Starts, watches and stops the worker processes; see the module docstring."""

    def __init__(
        self,
        workers: int,
        target: WorkerTarget,
        args: tuple[Any, ...] = (),
        *,
        shutdown_timeout: float = 10.0,
        backoff: Callable[[], Backoff] = Backoff,
        max_quick_failures: int = MAX_QUICK_FAILURES,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.target = target
        self.args = args
        self.shutdown_timeout = shutdown_timeout
        self.max_quick_failures = max_quick_failures
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i, backoff=backoff()) for i in range(workers)]
        self._stopping = False
        self._failed = False
        #: Worker starts, including the first ones (for tests and logs).
        self.starts = 0

    @property
    def pids(self) -> list[int]:
        """The pids of the workers alive right now."""
        return [
            s.process.pid
            for s in self._slots
            if s.process is not None and s.process.pid is not None and s.process.is_alive()
        ]

    def _start(self, slot: _Slot) -> None:
        process = self._ctx.Process(
            target=self.target, args=(*self.args, slot.index), name=f"relay-worker-{slot.index}"
        )
        process.start()
        slot.process = process
        slot.started_at = time.monotonic()
        slot.restart_at = None
        self.starts += 1
        log.info("worker %d started (pid %s)", slot.index, process.pid)

    def request_stop(self) -> None:
        """Begin the graceful shutdown (safe to call from a signal handler)."""
        self._stopping = True

    def _pass_on_usr1(self) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.process.pid is not None:
                _signal(slot.process.pid, signal.SIGUSR1)

    def run(self) -> int:
        """Run until told to stop (SIGTERM/SIGINT) or until workers keep failing.

        Returns the exit code: 0 after a requested stop, 1 if the workers could not be kept up.
        """
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        previous_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        previous = {
            sig: signal.signal(sig, lambda *_: self.request_stop())
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        # Relay's SIGUSR1 (pause or resume processing) is each worker's to act on.
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda *_: self._pass_on_usr1())
        try:
            for slot in self._slots:
                self._start(slot)
            self._watch(wake_r)
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            wake_r.close()
            wake_w.close()
        return 1 if self._failed else 0

    def _watch(self, wake: socket.socket) -> None:
        while not self._stopping:
            now = time.monotonic()
            sentinels: list[Any] = [wake]
            timeout: float | None = None
            for slot in self._slots:
                if slot.process is not None:
                    sentinels.append(slot.process.sentinel)
                elif slot.restart_at is not None:
                    left = max(0.0, slot.restart_at - now)
                    timeout = left if timeout is None else min(timeout, left)
            ready = multiprocessing.connection.wait(sentinels, timeout)
            if wake in ready:
                try:
                    while wake.recv(512):
                        pass
                except BlockingIOError:
                    pass
            if self._stopping:
                return
            self._reap()
            if self._failed:
                return
            now = time.monotonic()
            for slot in self._slots:
                if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._start(slot)

    def _reap(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            process = slot.process
            if process is None or process.is_alive():
                continue
            process.join()
            uptime = now - slot.started_at
            delay = slot.backoff.on_exit(uptime)
            slot.process = None
            log.error(
                "worker %d (pid %s) exited with %s after %.1fs; restarting in %.1fs",
                slot.index, process.pid, process.exitcode, uptime, delay,
            )  # fmt: skip
            if slot.backoff.failures >= self.max_quick_failures:
                log.error("worker %d failed %d times in a row; giving up", slot.index,
                          slot.backoff.failures)  # fmt: skip
                self._failed = True
                return
            slot.restart_at = now + delay

    def _shutdown(self) -> None:
        alive = [s.process for s in self._slots if s.process is not None]
        for process in alive:
            if process.is_alive() and process.pid is not None:
                # The same signal for SIGINT and SIGTERM: the worker drains either way.
                _signal(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout + KILL_MARGIN_SECS
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
            elif process.exitcode not in (0, None):
                log.warning("worker pid %s exited with %s", process.pid, process.exitcode)
        for slot in self._slots:
            slot.process = None


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def worker_config(config: Config, index: int) -> Config:
    """``config`` for worker ``index``: its statsd metrics tagged with the worker."""
    tags = config.metrics.default_tags
    if WORKER_TAG in tags:
        return config
    metrics = msgspec.structs.replace(config.metrics, default_tags={**tags, WORKER_TAG: str(index)})
    return msgspec.structs.replace(config, metrics=metrics)


def worker_main(
    config: Config, credentials: Credentials | None, metrics_dir: str, index: int
) -> None:
    """Entry point of one worker process (spawned: nothing is inherited but the arguments)."""
    # SIGUSR1 (pause/resume, passed on by the supervisor) must not kill a starting worker:
    # ignored until its event loop handles it (relay.server.runner).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    from relay.logs import setup_logging
    from relay.server.runner import run_relay
    from relay.telemetry.shared import WorkerMetrics

    setup_logging(config.logging.level, config.logging.format)
    logging.getLogger(__name__).debug("worker %d running in pid %d", index, os.getpid())
    metrics = WorkerMetrics(Path(metrics_dir), index)
    config = worker_config(config, index)
    raise SystemExit(
        run_relay(config, credentials, reuse_port=True, parent_pid=os.getppid(), metrics=metrics)
    )


def run_supervised(config: Config, credentials: Credentials | None, workers: int) -> int:
    """Run ``workers`` relay processes on one port until SIGTERM/SIGINT."""
    if not hasattr(socket, "SO_REUSEPORT"):
        log.error("--workers needs SO_REUSEPORT, which this platform lacks")
        return 1
    if config.relay.port == 0:
        log.error("--workers needs a fixed relay.port: with port 0 each worker gets its own")
        return 1
    log.info("starting %d relay workers on %s:%s", workers, config.relay.host, config.relay.port)
    # Where the workers publish their metrics, so that any of them answers /metrics for all.
    with tempfile.TemporaryDirectory(prefix="relay-metrics-") as metrics_dir:
        supervisor = Supervisor(
            workers, worker_main, (config, credentials, metrics_dir),
            shutdown_timeout=config.limits.shutdown_timeout,
        )  # fmt: skip
        return supervisor.run()
