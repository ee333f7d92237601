"""Tier 3: ``relay run --workers 2`` in front of the chain's processing relay.

Traffic spread over both workers reaches Kafka; ``/metrics`` counts both workers whichever
answers; a killed worker is replaced; SIGTERM drains and the supervisor exits 0 with no
worker left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import msgspec
import pytest
import yaml

from relay.dev.chain import DEMO_PROJECT_ID, DEMO_PUBLIC_KEY, LocalChain
from relay.dev.services import free_port
from relay.protocol.keys import save_credentials
from relay.telemetry.shared import PUBLISH_SECS
from tests.kafka_utils import collect
from tests.workers import ready, wait_until

AUTH = f"Sentry sentry_key={DEMO_PUBLIC_KEY}, sentry_version=7, sentry_client=workers/1.0"


def children(pid: int) -> set[int]:
    """Worker processes (spawned) whose parent is ``pid``, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def send_event(port: int) -> str:
    """One error event in its own connection (so SO_REUSEPORT may pick any worker)."""
    event_id = uuid.uuid4().hex
    event = msgspec.json.encode({"message": "workers", "level": "error", "platform": "python"})
    header = msgspec.json.encode({"event_id": event_id})
    item = msgspec.json.encode({"type": "event", "length": len(event)})
    body = b"\n".join([header, item, event])
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/{DEMO_PROJECT_ID}/envelope/",
        data=body,
        headers={"X-Sentry-Auth": AUTH, "Content-Type": "application/x-sentry-envelope"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=15) as resp:
        assert resp.status == 200
    return event_id


@pytest.mark.e2e
async def test_workers_serve_restart_and_drain(chain: LocalChain, tmp_path: Path) -> None:
    port = free_port()
    config_dir = tmp_path / "pop-workers"
    config_dir.mkdir()
    (config_dir / "config.yml").write_text(yaml.safe_dump({
        "relay": {"host": "127.0.0.1", "port": port, "upstream": chain.processing.url},
        "limits": {"shutdown_timeout": 5},
        "logging": {"level": "info"},
    }))  # fmt: skip
    # The chain's processing relay trusts the edge POP's credentials as an internal relay.
    edge = chain.pops[0].credentials
    assert edge is not None
    save_credentials(config_dir / "credentials.json", edge)
    log_path = tmp_path / "workers.log"
    proc = start_workers(config_dir, log_path)
    try:
        wait_until(lambda: ready(port, 1) and len(children(proc.pid)) == 2, 30)
        first = children(proc.pid)
        # Accepted envelopes are forwarded in the background: wait for them to land before
        # killing a worker, since SIGKILL loses what a worker still holds.
        await expect_in_kafka(chain, [send_event(port) for _ in range(20)])
        # Whichever worker a scrape lands on, /metrics counts the requests of both.
        await asyncio.sleep(PUBLISH_SECS * 1.5)
        assert scraped_envelopes(port) == [20] * 6

        # A crashed worker is replaced, and the port keeps answering meanwhile.
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(children(proc.pid) - {victim}) == 2, 30)
        assert victim not in children(proc.pid)
        wait_until(lambda: ready(port, 1), 30)
        await expect_in_kafka(chain, [send_event(port) for _ in range(10)])
        # The replacement carries on from its predecessor's counts: counters never go down.
        await asyncio.sleep(PUBLISH_SECS * 1.5)
        assert scraped_envelopes(port) == [30] * 6

        # SIGTERM drains: what was accepted right before it still reaches Kafka.
        workers = children(proc.pid)
        last = [send_event(port) for _ in range(10)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        await expect_in_kafka(chain, last)
        for pid in workers:
            assert gone(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log_text = log_path.read_text(errors="replace")
    assert "restarting in" in log_text, log_text


async def expect_in_kafka(chain: LocalChain, sent: list[str]) -> None:
    wanted = set(sent)
    events = await collect(
        chain.kafka_bootstrap,
        "ingest-events",
        lambda ms: wanted <= {m.get("event_id") for m in ms},
        timeout=30,
    )
    assert wanted <= {m.get("event_id") for m in events}


def scraped_envelopes(port: int, scrapes: int = 6) -> list[int]:
    """``relay_requests_total`` of 200-answered envelopes, per scrape (a new connection each)."""
    found = []
    for _ in range(scrapes):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        total = 0
        for line in text.splitlines():
            ours = line.startswith("relay_requests_total{") and "/envelope/" in line
            if ours and 'status="200"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        found.append(total)
    return found


def start_workers(config_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "-c", str(config_dir), "run", "--workers", "2"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


def gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie waiting for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
