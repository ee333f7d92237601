"""bench/run.py's accounting and report: per-process RSS, CPU placement, workers ratios."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run_module() -> ModuleType:
    # run.py imports its sibling loadgen.py as a script would.
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up while the class is built.
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


run = _run_module()


def _row(target: str, rate: float, **extra: Any) -> dict[str, Any]:
    row = {
        "target": target, "mode": "max", "envelopes_per_s": rate, "requests": 100, "ok": 100,
        "failures": 0, "p50_ms": 1.0, "p99_ms": 2.0, "p999_ms": 3.0, "cpu_s_per_1k": 0.5,
        "infra_cpu_s_per_1k": 0.01, "loadgen_cpu_s_per_1k": 0.02, "loadgen_cpu_busy": 0.1,
        "relay_cores_busy": 0.9, "other_cores_busy": 0.0, "peak_rss_mb": 100.0,
        "rss_by_process_mb": {"worker": 100.0}, "notes": [],
    }  # fmt: skip
    row.update(extra)
    return row


def test_workers_ratio_compares_two_with_one_worker_of_the_same_run() -> None:
    rows = [
        _row("baseline", 8000.0),
        _row("pop-workers1", 1000.0, connections=16),
        _row("pop-workers2", 1700.0, relay_cores_busy=1.6, cpu_s_per_1k=0.625, connections=32),
        _row("pop-workers2", 1400.0, mode="fixed 80%"),
        _row("processing-error-event-workers2", 900.0),  # no workers1: no ratio
    ]
    [ratio] = run.workers_ratios(rows)
    assert ratio["target"] == "pop" and ratio["ratio"] == 1.7
    assert ratio["relay_cores"] == (0.9, 1.6)
    assert ratio["per_core_ratio"] == 0.8  # 0.5 / 0.625 s per 1k: the second worker costs more
    run.with_ratios(rows)
    text = run.markdown(rows, {
        "date": "d", "machine": "m", "corpus": "c", "seconds": 3.0, "concurrency": 16,
        "server_cpus": [0], "client_cpus": [1],
    })  # fmt: skip
    assert "| pop | max | 16 / 32 | 1000 | 1700 | 1.70x |" in text


def test_rss_is_per_process_not_a_sum() -> None:
    rss = run.rss_by_process([os.getpid(), os.getpid()])
    assert len(rss) == 1  # one process counted once
    [(label, mb)] = rss.items()
    assert mb > 1.0 and label
    assert run.rss_by_process([2**22 + 12345]) == {}  # gone processes are skipped


def test_pin_moves_every_thread_and_ignores_gone_processes() -> None:
    before = os.sched_getaffinity(0)
    cpu = min(before)
    try:
        run.pin([os.getpid(), 2**22 + 12345], {cpu})
        for task in Path(f"/proc/{os.getpid()}/task").iterdir():
            assert os.sched_getaffinity(int(task.name)) == {cpu}
    finally:
        run.pin([os.getpid()], before)


def test_batch_sets_every_thread_and_back() -> None:
    threads = [int(task.name) for task in Path(f"/proc/{os.getpid()}/task").iterdir()]
    try:
        run.batch([os.getpid(), 2**22 + 12345])
        assert {os.sched_getscheduler(tid) for tid in threads} == {os.SCHED_BATCH}
    finally:
        run.batch([os.getpid()], on=False)
    assert {os.sched_getscheduler(tid) for tid in threads} == {os.SCHED_OTHER}


def test_machine_busy_seconds_only_grows() -> None:
    first = run.machine_busy_seconds()
    sum(range(200_000))
    assert run.machine_busy_seconds() >= first > 0


def test_connections_per_target() -> None:
    # Processing relays are fed by POPs (many connections); workers get one process' share each.
    assert run.connections_of("pop", 16, 64) == 16
    assert run.connections_of("chain", 16, 64) == 16
    assert run.connections_of("pop-workers2", 16, 64) == 32
    assert run.connections_of("processing-error-event", 16, 64) == 64
    assert run.connections_of("processing-error-event-workers2", 16, 64) == 128


def test_workers_ratio_is_the_median_of_alternating_rounds() -> None:
    def rounds(*rates: float) -> list[dict[str, float]]:
        return [{"envelopes_per_s": r, "cpu_s_per_1k": 1000 / r} for r in rates]

    rows = [
        # The median rounds' values are the rows' own (1000 and 1900).
        _row("pop-workers1", 1000.0, rounds=rounds(1000.0, 800.0, 1100.0)),
        _row("pop-workers2", 1900.0, rounds=rounds(1900.0, 1700.0, 2000.0)),
    ]
    [ratio] = run.workers_ratios(rows)
    # Round by round: 1.9, 2.125, 1.818...; the median, not the ratio of the medians (1.9).
    assert ratio["round_ratios"] == [1.9, 2.125, 1.818]
    assert ratio["ratio"] == 1.9
    assert ratio["per_core_ratio"] == 1.9  # CPU per envelope scales with 1/rate here
    text = "\n".join(run.workers_table(rows))
    assert "| pop | max | 0 / 0 | 1000 | 1900 | 1.90x | 1.90, 2.12, 1.82 |" in text


def test_workers_pairs_run_together_in_the_order_asked() -> None:
    names = ["baseline", "pop", "pop-workers1", "processing-error-event-workers2", "pop-workers2"]
    assert run._pairs(names) == [
        ["baseline"], ["pop"], ["pop-workers1", "pop-workers2"],
        ["processing-error-event-workers2"],
    ]  # fmt: skip
