"""Readiness probes: memory watermarks and buffer capacity, evaluated in the background.

As Relay's ``HealthCheckService``, the probes run every ``health.refresh_interval_ms`` and the
``ready`` endpoint answers from the latest result, so a request never waits for a probe. A
result older than ``(refresh_interval + probe_timeout) * 1.1`` counts as unhealthy: a stuck
probe loop must not keep a relay "ready". Every failing probe is logged as an error (and so
reported to ``sentry.dsn``), with Relay's messages.

Memory is measured as Relay does (``sysinfo``): inside a memory-limited cgroup, the cgroup's
anonymous memory (``anon``, v2; ``total_rss``, v1) against the limit; otherwise the system's
used memory (``MemTotal - MemAvailable`` from ``/proc/meminfo``) against ``MemTotal``. A cgroup
whose limit is not below ``MemTotal`` limits nothing and is ignored, as in sysinfo >= 0.39
(Relay's 0.35 would compare the cgroup's RSS with the machine's total memory).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from relay.config import HealthSection

log = logging.getLogger(__name__)

PROC_ROOT = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")

#: The probe loop never runs more often than this, whatever ``refresh_interval_ms`` says.
MIN_REFRESH_INTERVAL_SECS = 0.01


@dataclass(frozen=True, slots=True)
class Memory:
    """A memory reading in bytes."""

    used: int
    total: int

    def used_fraction(self) -> float:
        """Used memory as a fraction in [0, 1]; 1 if the total is unknown (0)."""
        if self.total <= 0:
            return 1.0
        return min(max(self.used / self.total, 0.0), 1.0)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _read_table(path: Path) -> dict[str, int]:
    """``key value`` / ``key: value kB`` lines into a dict; lines that do not parse are skipped."""
    text = _read_text(path)
    table: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, sep, rest = line.replace(":", " ", 1).partition(" ")
        fields = rest.split()
        if sep and fields and fields[0].isdigit():
            table[key] = int(fields[0])
    return table


def read_system_memory(proc_root: Path = PROC_ROOT) -> Memory | None:
    """The system's used and total memory from ``meminfo``, or None if it cannot be read."""
    kib = _read_table(proc_root / "meminfo")
    total = kib.get("MemTotal")
    if not total:
        return None
    available = kib.get("MemAvailable")
    if available is None:
        # Kernels before 3.14 lack MemAvailable; estimate it as sysinfo does.
        available = max(
            kib.get("MemFree", 0) + kib.get("Buffers", 0) + kib.get("Cached", 0)
            + kib.get("SReclaimable", 0) - kib.get("Shmem", 0),
            0,
        )  # fmt: skip
    total_bytes = total * 1024
    return Memory(used=max(total_bytes - available * 1024, 0), total=total_bytes)


def read_cgroup_memory(system_total: int, cgroup_root: Path = CGROUP_ROOT) -> Memory | None:
    """The cgroup's memory if the cgroup limits it below ``system_total``, else None.

    Tries cgroup v1's memory controller (``memory/``) first, as hybrid hierarchies expose the
    effective limit there, then cgroup v2.
    """
    v1 = cgroup_root / "memory"
    limit = _read_int(v1 / "memory.limit_in_bytes")
    if limit is not None and limit < system_total:
        rss = _read_table(v1 / "memory.stat").get("total_rss")
        if rss is not None:
            return Memory(used=rss, total=limit)
    # v2: memory.max holds "max" when there is no limit, which _read_int reads as None.
    limit = _read_int(cgroup_root / "memory.max")
    if limit is not None and limit < system_total:
        anon = _read_table(cgroup_root / "memory.stat").get("anon")
        if anon is not None:
            return Memory(used=anon, total=limit)
    return None


def read_memory(proc_root: Path = PROC_ROOT, cgroup_root: Path = CGROUP_ROOT) -> Memory:
    """Current memory usage: the limiting cgroup's, else the system's.

    An unreadable ``meminfo`` gives ``Memory(0, 0)``, which reads as full: a relay that cannot
    see its memory should not claim to have room.
    """
    system = read_system_memory(proc_root)
    if system is None:
        return Memory(used=0, total=0)
    return read_cgroup_memory(system.total, cgroup_root) or system


class MemoryStat:
    """Memory readings shared by all users, refreshed at most every ``refresh_frequency``."""

    def __init__(
        self,
        refresh_frequency_ms: int,
        reader: Callable[[], Memory] = read_memory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refresh_secs = refresh_frequency_ms / 1000
        self._reader = reader
        self._clock = clock
        self._memory = reader()
        self._read_at = clock()

    def memory(self) -> Memory:
        """The latest reading, re-read if it is older than the refresh frequency."""
        now = self._clock()
        if now - self._read_at >= self._refresh_secs:
            self._memory = self._reader()
            self._read_at = now
        return self._memory


@dataclass(frozen=True, slots=True)
class MemoryCheck:
    """The outcome of a memory check and the reading it was made with."""

    ok: bool
    memory: Memory


class MemoryChecker:
    """Compares memory readings with the ``health`` watermarks."""

    def __init__(self, stat: MemoryStat, max_percent: float, max_bytes: int | None) -> None:
        self.stat = stat
        self.max_percent = max_percent
        #: None means no absolute watermark (Relay's u64::MAX).
        self.max_bytes = max_bytes

    @classmethod
    def from_config(cls, health: HealthSection, stat: MemoryStat | None = None) -> MemoryChecker:
        """A checker with the configured watermarks, reading ``stat`` (or a new one)."""
        if stat is None:
            stat = MemoryStat(health.memory_stat_refresh_frequency_ms)
        return cls(stat, health.max_memory_percent, health.max_memory_bytes)

    def check_percent(self) -> MemoryCheck:
        """Whether the used fraction is below ``max_memory_percent``."""
        memory = self.stat.memory()
        return MemoryCheck(memory.used_fraction() < self.max_percent, memory)

    def check_bytes(self) -> MemoryCheck:
        """Whether the used bytes are below ``max_memory_bytes``."""
        memory = self.stat.memory()
        return MemoryCheck(self.max_bytes is None or memory.used < self.max_bytes, memory)

    def check(self) -> MemoryCheck:
        """Whether memory is below both watermarks: the check for "is there room for more"."""
        memory = self.stat.memory()
        ok = memory.used_fraction() < self.max_percent and (
            self.max_bytes is None or memory.used < self.max_bytes
        )
        return MemoryCheck(ok, memory)


def system_memory_probe(checker: MemoryChecker) -> bool:
    """Relay's "system memory" probe: False, with an error naming the watermark, when exceeded."""
    check = checker.check_percent()
    if not check.ok:
        memory = check.memory
        log.error(
            "Not enough memory, %d / %d (%.2f%% >= %.2f%%)",
            memory.used, memory.total,
            memory.used_fraction() * 100, checker.max_percent * 100,
        )  # fmt: skip
        return False
    check = checker.check_bytes()
    if not check.ok:
        memory = check.memory
        log.error(
            "Not enough memory, %d / %d (%d >= %d)",
            memory.used, memory.total, memory.used, checker.max_bytes,
        )  # fmt: skip
        return False
    return True


class DiskSpool(Protocol):
    """What the spool probe reads of a disk spool (relay.server.spool.Spool)."""

    @property
    def full(self) -> bool:
        """Whether it refuses envelopes for want of room (``spool.envelopes.max_disk_size``)."""

    @property
    def bytes(self) -> int:
        """Bytes in use (database pages, as Relay counts them)."""

    @property
    def max_bytes(self) -> int:
        """The cap."""


def spool_health_probe(checker: MemoryChecker, disk: DiskSpool | None = None) -> bool:
    """Relay's "spool health" probe: whether the envelope buffer has room for more.

    Without a disk spool, envelopes waiting in this relay (for a project config, for the
    upstream) are held in memory, so there is room while memory is below both watermarks,
    as Relay's in-memory envelope buffer decides. With one (``disk``), also while that has
    room under its ``max_disk_size``: a full spool turns what it is given into outcomes, or
    keeps in memory what waits for a project config, so a load balancer should send traffic
    elsewhere, as Relay's buffer does when its disk is full.
    """
    if not checker.check().ok:
        return False
    if disk is not None and disk.full:
        log.error("Spool is full: %d of %d bytes", disk.bytes, disk.max_bytes)
        return False
    return True


ProbeFn = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Probe:
    """A named readiness condition; its function returns False (or raises) when unhealthy."""

    name: str
    check: ProbeFn


def sync_probe(name: str, check: Callable[[], bool]) -> Probe:
    """Wrap a quick synchronous check as a probe."""

    async def run() -> bool:
        return check()

    return Probe(name, run)


class HealthCheck:
    """Runs the probes periodically and answers readiness from the latest result."""

    def __init__(self, health: HealthSection, probes: Sequence[Probe]) -> None:
        self.probes = tuple(probes)
        self.interval = max(health.refresh_interval_ms / 1000, MIN_REFRESH_INTERVAL_SECS)
        self.probe_timeout = health.probe_timeout_ms / 1000
        # 10% on top of the loop's own budget, so a slow round is not mistaken for a stuck one.
        self.status_timeout = (self.interval + self.probe_timeout) * 1.1
        self._healthy = False
        self._updated_at = float("-inf")
        self._task: asyncio.Task[None] | None = None

    async def _probe(self, probe: Probe) -> bool:
        try:
            async with asyncio.timeout(self.probe_timeout):
                healthy = await probe.check()
        except TimeoutError:
            log.error("Health check probe '%s' timed out", probe.name)
            return False
        except Exception:
            log.error("Health check probe '%s' failed", probe.name, exc_info=True)
            return False
        if not healthy:
            log.error("Health check probe '%s' failed", probe.name)
        return healthy

    async def check_readiness(self) -> bool:
        """Run every probe once (concurrently), record and return whether all passed."""
        results = await asyncio.gather(*(self._probe(probe) for probe in self.probes))
        self._healthy = all(results)
        self._updated_at = time.monotonic()
        return self._healthy

    def is_healthy(self) -> bool:
        """The latest result; False before the first round, after stop, or when it is stale."""
        if time.monotonic() - self._updated_at >= self.status_timeout:
            return False
        return self._healthy

    async def start(self) -> None:
        """Run a first round now, so readiness is known before listening; then keep running."""
        if self._task is not None:
            return
        await self.check_readiness()
        self._task = asyncio.create_task(self._run(), name="health-check")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_readiness()
            except Exception:
                # _probe handles probe errors; this is a bug in the loop itself. Keep going:
                # the stale status turns readiness off meanwhile.
                log.exception("health check round failed")

    async def stop(self) -> None:
        """Stop probing; readiness is False from now on, as on Relay's shutdown."""
        self._healthy = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # wait() does not raise the task's CancelledError, so a cancelled stop() still can.
            await asyncio.wait([task])
