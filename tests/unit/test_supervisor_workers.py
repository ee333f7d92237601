"""Issue 11's ``--workers`` items that tests/unit/test_supervisor.py does not cover.

Spawned (not forked) workers, and statsd metrics that stay right across workers. The
process-level checks (SO_REUSEPORT, drain, restart) are in
tests/integration/test_workers_supervisor.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from relay.config import config_from_dict
from relay.server.statsd import StatsdSink
from relay.server.supervisor import WORKER_TAG, Supervisor, worker_config

#: Changed by the test before the workers start: a forked worker would see the change.
MARK = "module default"


def report_mark(folder: str, index: int) -> None:
    """Worker target: write what this process sees of MARK, then wait for SIGTERM."""
    Path(folder, f"{index}.txt").write_text(MARK)
    while True:
        time.sleep(60)


def test_workers_are_spawned_fresh_interpreters(tmp_path: Path) -> None:
    global MARK
    MARK = "set in the supervisor"
    supervisor = Supervisor(2, report_mark, (str(tmp_path),), shutdown_timeout=5.0)

    def stop_when_reported() -> None:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("*.txt"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=stop_when_reported, daemon=True)
    thread.start()
    try:
        assert supervisor.run() == 0
    finally:
        MARK = "module default"
    thread.join()
    # Each worker imported this module anew: nothing of the supervisor's memory came along.
    assert sorted(p.read_text() for p in tmp_path.glob("*.txt")) == ["module default"] * 2


def test_each_worker_tags_its_statsd_metrics() -> None:
    config = config_from_dict({"metrics": {"statsd": "127.0.0.1:8125",
                                           "default_tags": {"region": "eu"}}})  # fmt: skip
    one = worker_config(config, 1)
    assert one.metrics.default_tags == {"region": "eu", WORKER_TAG: "1"}
    assert config.metrics.default_tags == {"region": "eu"}  # the original is left alone
    assert one.relay == config.relay
    sink = StatsdSink(one.metrics)
    assert sink.base_tags == ["region:eu", "worker:1"]


def test_a_configured_worker_tag_wins() -> None:
    config = config_from_dict({"metrics": {"default_tags": {WORKER_TAG: "edge"}}})
    assert worker_config(config, 3).metrics.default_tags == {WORKER_TAG: "edge"}
