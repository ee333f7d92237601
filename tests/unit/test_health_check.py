"""Readiness probes: memory readings, watermarks, the probe loop and the ``health`` config."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from relay.config import HealthSection, config_from_dict
from relay.errors import ConfigError
from relay.server.health_check import (
    HealthCheck,
    Memory,
    MemoryChecker,
    MemoryStat,
    Probe,
    read_cgroup_memory,
    read_memory,
    read_system_memory,
    spool_health_probe,
    sync_probe,
    system_memory_probe,
)
from tests.polling import until

GIB = 1024**3
MEMINFO = """\
MemTotal:        4194304 kB
MemFree:          524288 kB
MemAvailable:    3145728 kB
Buffers:          102400 kB
Cached:           409600 kB
SwapCached:            0 kB
Shmem:             10240 kB
SReclaimable:      51200 kB
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def checker(
    used: int, total: int, max_percent: float = 0.95, max_bytes: int | None = None
) -> MemoryChecker:
    stat = MemoryStat(0, reader=lambda: Memory(used, total))
    return MemoryChecker(stat, max_percent, max_bytes)


# -- config ----------------------------------------------------------------------------------


def test_health_defaults_match_relay() -> None:
    health = config_from_dict({}).health
    assert health == HealthSection(
        refresh_interval_ms=3000,
        max_memory_bytes=None,
        max_memory_percent=0.95,
        probe_timeout_ms=900,
        memory_stat_refresh_frequency_ms=100,
    )


def test_health_section_parses_sizes() -> None:
    health = config_from_dict(
        {"health": {"max_memory_bytes": "1GiB", "max_memory_percent": 0.5, "probe_timeout_ms": 5}}
    ).health
    assert health.max_memory_bytes == GIB
    assert health.max_memory_percent == 0.5
    assert health.probe_timeout_ms == 5


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"refresh_interval_ms": -1}, "health.refresh_interval_ms"),
        ({"max_memory_percent": -0.5}, "health.max_memory_percent"),
        ({"max_memory_bytes": "lots"}, "health.max_memory_bytes"),
        ({"max_memroy_bytes": 1}, "health.max_memroy_bytes"),
    ],
)
def test_health_section_rejects_bad_values(section: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        config_from_dict({"health": section})


def test_sentry_section() -> None:
    sentry = config_from_dict(
        {"sentry": {"dsn": "http://key@127.0.0.1:1/666", "enabled": True, "environment": "prod"}}
    ).sentry
    assert sentry.enabled_dsn == "http://key@127.0.0.1:1/666"
    assert sentry.environment == "prod"
    assert config_from_dict({"sentry": {"dsn": "http://key@h/1"}}).sentry.enabled_dsn is None


def test_sentry_dsn_is_validated_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"sentry": {"dsn": "ftp://key:hunter2@h/1"}})
    assert "sentry" in str(info.value)
    assert "hunter2" not in str(info.value)


# -- memory readings -------------------------------------------------------------------------


def test_used_fraction_edge_cases() -> None:
    assert Memory(1, 4).used_fraction() == 0.25
    assert Memory(0, 0).used_fraction() == 1.0
    assert Memory(8, 4).used_fraction() == 1.0


def test_system_memory_from_meminfo(tmp_path: Path) -> None:
    write(tmp_path / "meminfo", MEMINFO)
    assert read_system_memory(tmp_path) == Memory(used=1 * GIB, total=4 * GIB)


def test_system_memory_without_memavailable(tmp_path: Path) -> None:
    # Old kernels: available = free + buffers + cached + reclaimable slab - shmem.
    write(tmp_path / "meminfo", MEMINFO.replace("MemAvailable:    3145728 kB\n", ""))
    available_kib = 524288 + 102400 + 409600 + 51200 - 10240
    assert read_system_memory(tmp_path) == Memory(
        used=(4194304 - available_kib) * 1024, total=4 * GIB
    )


def test_system_memory_unreadable(tmp_path: Path) -> None:
    assert read_system_memory(tmp_path) is None
    # Unknown memory reads as full rather than as plenty.
    assert read_memory(tmp_path, tmp_path).used_fraction() == 1.0


def test_cgroup_v1_with_limit(tmp_path: Path) -> None:
    write(tmp_path / "memory/memory.limit_in_bytes", f"{GIB}\n")
    write(tmp_path / "memory/memory.stat", "cache 100\nrss 5\ntotal_cache 200\ntotal_rss 1234\n")
    assert read_cgroup_memory(4 * GIB, tmp_path) == Memory(used=1234, total=GIB)


def test_cgroup_v1_without_limit_is_ignored(tmp_path: Path) -> None:
    # An unlimited v1 cgroup reports a huge page-aligned number, not "max".
    write(tmp_path / "memory/memory.limit_in_bytes", "9223372036854771712\n")
    write(tmp_path / "memory/memory.stat", "total_rss 1234\n")
    assert read_cgroup_memory(4 * GIB, tmp_path) is None


def test_cgroup_v2_with_limit(tmp_path: Path) -> None:
    write(tmp_path / "memory.max", f"{2 * GIB}\n")
    write(tmp_path / "memory.stat", "anon 4096\nfile 8192\nanon_thp 0\n")
    assert read_cgroup_memory(4 * GIB, tmp_path) == Memory(used=4096, total=2 * GIB)


@pytest.mark.parametrize("limit", ["max\n", f"{8 * GIB}\n"])
def test_cgroup_v2_without_effective_limit_is_ignored(tmp_path: Path, limit: str) -> None:
    write(tmp_path / "memory.max", limit)
    write(tmp_path / "memory.stat", "anon 4096\n")
    assert read_cgroup_memory(4 * GIB, tmp_path) is None


def test_cgroup_without_stat_is_ignored(tmp_path: Path) -> None:
    write(tmp_path / "memory.max", f"{GIB}\n")
    assert read_cgroup_memory(4 * GIB, tmp_path) is None


def test_read_memory_prefers_a_limiting_cgroup(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    write(proc / "meminfo", MEMINFO)
    assert read_memory(proc, cgroup) == Memory(used=GIB, total=4 * GIB)
    write(cgroup / "memory.max", f"{GIB}\n")
    write(cgroup / "memory.stat", "anon 1024\n")
    assert read_memory(proc, cgroup) == Memory(used=1024, total=GIB)


def test_read_memory_on_this_machine() -> None:
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo")
    memory = read_memory()
    assert 0 < memory.used <= memory.total


def test_memory_stat_refreshes_at_most_every_interval() -> None:
    now = [0.0]
    readings = iter([Memory(1, 10), Memory(2, 10), Memory(3, 10)])
    stat = MemoryStat(100, reader=lambda: next(readings), clock=lambda: now[0])
    assert stat.memory() == Memory(1, 10)
    now[0] = 0.099
    assert stat.memory() == Memory(1, 10)
    now[0] = 0.1
    assert stat.memory() == Memory(2, 10)
    now[0] = 0.15
    assert stat.memory() == Memory(2, 10)


# -- watermarks and probes -------------------------------------------------------------------


def test_checks_against_watermarks() -> None:
    assert checker(50, 100, max_percent=0.5).check_percent().ok is False
    assert checker(49, 100, max_percent=0.5).check_percent().ok is True
    assert checker(42, 100, max_bytes=42).check_bytes().ok is False
    assert checker(41, 100, max_bytes=42).check_bytes().ok is True
    assert checker(99, 100, max_bytes=None).check_bytes().ok is True
    assert checker(41, 100, max_percent=0.5, max_bytes=42).check().ok is True
    assert checker(42, 100, max_percent=0.5, max_bytes=42).check().ok is False
    assert checker(41, 100, max_percent=0.4, max_bytes=42).check().ok is False


def test_checker_from_config() -> None:
    health = config_from_dict({"health": {"max_memory_bytes": 42, "max_memory_percent": 0.01}})
    memory = MemoryChecker.from_config(health.health)
    assert (memory.max_bytes, memory.max_percent) == (42, 0.01)


def test_system_memory_probe_percent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert system_memory_probe(checker(20, 100, max_percent=0.01)) is False
    assert caplog.messages == ["Not enough memory, 20 / 100 (20.00% >= 1.00%)"]


def test_system_memory_probe_bytes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert system_memory_probe(checker(100, 1000, max_bytes=42)) is False
    assert caplog.messages == ["Not enough memory, 100 / 1000 (100 >= 42)"]


def test_system_memory_probe_healthy(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert system_memory_probe(checker(10, 100, max_bytes=42)) is True
    assert caplog.records == []


def test_spool_health_probe_uses_both_watermarks() -> None:
    assert spool_health_probe(checker(10, 100, max_bytes=42)) is True
    assert spool_health_probe(checker(50, 100, max_bytes=42)) is False
    assert spool_health_probe(checker(96, 100)) is False


@dataclass
class FakeSpool:
    full: bool
    bytes: int = 90
    max_bytes: int = 100


def test_spool_health_probe_fails_on_a_full_disk_spool(caplog: pytest.LogCaptureFixture) -> None:
    assert spool_health_probe(checker(10, 100), FakeSpool(full=False)) is True
    with caplog.at_level(logging.ERROR):
        assert spool_health_probe(checker(10, 100), FakeSpool(full=True)) is False
    assert "Spool is full: 90 of 100 bytes" in caplog.text
    # Memory first: a full memory fails the probe whatever the disk.
    assert spool_health_probe(checker(96, 100), FakeSpool(full=False)) is False


# -- the probe loop --------------------------------------------------------------------------


def health(**values: int) -> HealthSection:
    return config_from_dict({"health": values}).health


async def test_all_probes_must_pass(caplog: pytest.LogCaptureFixture) -> None:
    check = HealthCheck(
        health(), [sync_probe("good", lambda: True), sync_probe("bad", lambda: False)]
    )
    assert check.is_healthy() is False  # nothing known yet
    with caplog.at_level(logging.ERROR):
        assert await check.check_readiness() is False
    assert caplog.messages == ["Health check probe 'bad' failed"]
    assert check.is_healthy() is False


async def test_no_probes_is_healthy() -> None:
    check = HealthCheck(health(), [])
    assert await check.check_readiness() is True
    assert check.is_healthy() is True


async def test_probe_timeout_and_error(caplog: pytest.LogCaptureFixture) -> None:
    async def slow() -> bool:
        await asyncio.sleep(10)
        return True

    def broken() -> bool:
        raise RuntimeError("probe bug")

    check = HealthCheck(
        health(probe_timeout_ms=20), [Probe("slow", slow), sync_probe("broken", broken)]
    )
    with caplog.at_level(logging.ERROR):
        assert await check.check_readiness() is False
    assert sorted(caplog.messages) == [
        "Health check probe 'broken' failed",
        "Health check probe 'slow' timed out",
    ]
    broken_record = next(r for r in caplog.records if "broken" in r.getMessage())
    assert broken_record.exc_info is not None


async def test_loop_follows_probe_results_and_stop_ends_readiness() -> None:
    state = {"healthy": True}
    check = HealthCheck(
        health(refresh_interval_ms=10), [sync_probe("flag", lambda: state["healthy"])]
    )
    await check.start()
    try:
        assert check.is_healthy() is True  # the first round ran before start() returned
        state["healthy"] = False
        await _until(lambda: not check.is_healthy())
        state["healthy"] = True
        await _until(check.is_healthy)
    finally:
        await check.stop()
    assert check.is_healthy() is False
    await check.stop()  # idempotent


async def test_stale_result_is_unhealthy() -> None:
    check = HealthCheck(health(refresh_interval_ms=10, probe_timeout_ms=10), [])
    await check.check_readiness()  # a round, but no loop keeps it fresh
    assert check.is_healthy() is True
    await asyncio.sleep(check.status_timeout + 0.01)
    assert check.is_healthy() is False


async def _until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    await until(condition, timeout, every=0.005)
