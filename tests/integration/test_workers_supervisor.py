"""``relay run --workers 2`` as a whole: spawned workers, one port, graceful drain, restarts.

A POP relay under the supervisor forwards to a fake upstream (bench/servers.py's bare
protocol, run in a thread of this process so that it can record every envelope it receives).
Checked from the outside, through /proc and the network:

* the workers are started with the ``spawn`` method (a fresh interpreter, not a fork);
* every worker has its own listening socket on the one port (only ``SO_REUSEPORT`` allows
  that), and the supervisor has none;
* SIGTERM during load: the supervisor exits 0, no worker is left, and every envelope that was
  answered 200 reached the upstream (none accepted and then lost);
* a killed worker is replaced while the port keeps answering.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from relay.dev.services import free_port
from relay.protocol.keys import generate_credentials, save_credentials
from tests.workers import ready, wait_until

KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
AUTH = f"Sentry sentry_key={KEY}, sentry_version=7, sentry_client=workers-test/1.0"
WORKERS = 2


def _servers() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "servers.py"
    spec = importlib.util.spec_from_file_location("bench_servers_it", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingUpstream:
    """The bench upstream in a thread, recording the event id of every envelope it receives."""

    def __init__(self) -> None:
        servers = _servers()
        received = self.received = set[str]()

        class Recorder(servers.Upstream):  # type: ignore[name-defined,misc]
            def answer(self, method: str, path: str, body: bytes) -> bytes:
                if "/envelope/" in path:
                    # The relay is configured to forward uncompressed (http.encoding: identity).
                    header = json.loads(body.split(b"\n", 1)[0] or b"{}")
                    if isinstance(header.get("event_id"), str):
                        received.add(header["event_id"].replace("-", ""))
                return bytes(super().answer(method, path, body))

        self._servers = servers
        self._recorder = Recorder(KEY)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        upstream = self._recorder
        protocol = self._servers.UpstreamProtocol

        async def start() -> None:
            await self._loop.create_server(
                lambda: protocol(upstream), "127.0.0.1", self.port, reuse_address=True
            )

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    server = RecordingUpstream()
    server.start()
    yield server
    server.stop()


def start_supervisor(tmp_path: Path, upstream_port: int, port: int) -> subprocess.Popen[bytes]:
    config_dir = tmp_path / "relay"
    config_dir.mkdir()
    (config_dir / "config.yml").write_text(yaml.safe_dump({
        "relay": {"host": "127.0.0.1", "port": port,
                  "upstream": f"http://127.0.0.1:{upstream_port}/"},
        "http": {"encoding": "identity"},
        "limits": {"shutdown_timeout": 10},
        "logging": {"level": "info"},
    }))  # fmt: skip
    save_credentials(config_dir / "credentials.json", generate_credentials())
    with (tmp_path / "relay.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "-c", str(config_dir), "run",
             "--workers", str(WORKERS)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def workers_of(pid: int) -> dict[int, list[str]]:
    """The supervisor's worker processes and their command lines (its other helpers left out)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _ppid(int(entry.name)) == pid:
            try:
                args = (entry / "cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if not any("resource_tracker" in a for a in args):
                found[int(entry.name)] = args
    return found


def listening_sockets(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on ``port`` (state 0A in /proc/net/tcp*)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(int(fields[9]))
    return inodes


def sockets_of(pid: int) -> set[int]:
    """Inodes of the sockets ``pid`` holds open."""
    out: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def send_event(port: int) -> tuple[str, int | None]:
    """One error event on a new connection: (event id, status or None if not answered)."""
    event_id = uuid.uuid4().hex
    event = json.dumps({"message": "drain", "level": "error", "platform": "python"}).encode()
    item = json.dumps({"type": "event", "length": len(event)}).encode()
    body = b"\n".join([json.dumps({"event_id": event_id}).encode(), item, event])
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/42/envelope/", data=body, method="POST",
        headers={"X-Sentry-Auth": AUTH, "Content-Type": "application/x-sentry-envelope"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return event_id, resp.status
    except urllib.error.HTTPError as exc:
        return event_id, exc.code
    except OSError:
        return event_id, None


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.e2e
def test_spawned_workers_share_the_port_and_sigterm_loses_nothing(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    port = free_port()
    proc = start_supervisor(tmp_path, upstream.port, port)
    try:
        # Ready once every worker has started listening (each binds when it is up).
        wait_until(
            lambda: (
                len(workers_of(proc.pid)) == WORKERS
                and len(listening_sockets(port)) == WORKERS
                and ready(port)
            )
        )
        workers = workers_of(proc.pid)
        # spawn: each worker is a fresh interpreter running multiprocessing's spawn entry point
        # (a forked worker would have the supervisor's command line).
        for args in workers.values():
            assert any("multiprocessing.spawn" in a and "spawn_main" in a for a in args), args
        # One listening socket per worker on the same port: only SO_REUSEPORT allows that.
        listening = listening_sockets(port)
        assert len(listening) == WORKERS
        for pid in workers:
            assert len(sockets_of(pid) & listening) == 1
        assert not sockets_of(proc.pid) & listening

        accepted: list[str] = []
        refused = 0
        stop_load = threading.Event()

        def load() -> None:
            nonlocal refused
            while not stop_load.is_set():
                event_id, status = send_event(port)
                if status == 200:
                    accepted.append(event_id)
                else:
                    refused += 1
                    time.sleep(0.01)

        threads = [threading.Thread(target=load) for _ in range(6)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(accepted) >= 100)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        stop_load.set()
        for thread in threads:
            thread.join(30)
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or _ppid(pid) != proc.pid
        # Every envelope answered 200 was forwarded before its worker exited.
        # The load overlapped the drain: requests after SIGTERM were refused (503 or reset).
        assert refused > 0
        missing = set(accepted) - upstream.received
        assert not missing, f"{len(missing)} of {len(accepted)} accepted envelopes lost"
        log = (tmp_path / "relay.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
    finally:
        stop(proc)


@pytest.mark.e2e
def test_a_killed_worker_is_replaced(tmp_path: Path, upstream: RecordingUpstream) -> None:
    port = free_port()
    proc = start_supervisor(tmp_path, upstream.port, port)
    try:
        wait_until(lambda: ready(port) and len(workers_of(proc.pid)) == WORKERS)
        victim = min(workers_of(proc.pid))
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in workers_of(proc.pid))
        wait_until(lambda: len(workers_of(proc.pid)) == WORKERS and ready(port))
        # The replacement listens on the port too.
        wait_until(lambda: len(listening_sockets(port)) == WORKERS)
        event_id, status = send_event(port)
        assert status == 200
        wait_until(lambda: event_id in upstream.received, 30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        log = (tmp_path / "relay.log").read_text(errors="replace")
        assert "restarting in" in log
    finally:
        stop(proc)


@pytest.mark.e2e
def test_sigusr1_pauses_and_resumes_every_worker(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    # Relay's SIGUSR1: processing stops (envelopes are held, answered 200), the next one
    # resumes it. Sent to the supervisor, it reaches every worker.
    port = free_port()
    proc = start_supervisor(tmp_path, upstream.port, port)
    log_path = tmp_path / "relay.log"
    try:
        wait_until(lambda: ready(port) and len(listening_sockets(port)) == WORKERS)
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: log_path.read_text().count("dequeue=False") == WORKERS)
        held = [send_event(port) for _ in range(20)]
        assert {status for _, status in held} == {200}
        time.sleep(1.0)
        assert not {event_id for event_id, _ in held} & upstream.received
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: {event_id for event_id, _ in held} <= upstream.received, 30)
        assert log_path.read_text().count("dequeue=True") == WORKERS
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
    finally:
        stop(proc)
