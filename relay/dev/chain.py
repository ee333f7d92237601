"""A whole local chain as real processes: Redis, broker, configserver, processing, POP.

Used by ``relay dev`` (``make run``) and by the process-level tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from relay.dev.services import Service, free_port, start_kafka, start_redis, stop_process
from relay.protocol.keys import Credentials, generate_credentials, save_credentials

DEMO_PUBLIC_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
DEMO_PROJECT_ID = 42


@dataclass
class RelayProcess:
    """One relay (or configserver) child process."""

    name: str
    port: int
    config_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    credentials: Credentials | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout)

    def log_tail(self) -> str:
        """The end of the process's log (``relay.log`` in its config folder)."""
        path = self.config_dir / "relay.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the readiness probe answers 200; raise if it exits or never does."""
        deadline = time.monotonic() + timeout
        url = f"{self.url}/api/relay/healthcheck/ready/"
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")


@dataclass
class LocalChain:
    """Start with :meth:`start`, stop with :meth:`stop` (reverse order)."""

    workdir: Path
    pop_port: int = 0
    projects_dir: Path | None = None
    redis: Service | None = None
    kafka: Service | None = None
    processes: list[RelayProcess] = field(default_factory=list)
    log_level: str = "info"
    #: Number of POP relays in a row in front of the processing relay (outermost last).
    pop_tiers: int = 1
    #: Whether the processing relay trusts the POP next to it as ``internal``. An external
    #: POP gets only configs whose ``trustedRelays`` list it, and must sign its envelopes.
    pops_internal: bool = True
    #: Credentials for the POPs (next to processing first); generated when not given.
    pop_credentials: list[Credentials] = field(default_factory=list)
    #: Extra config for the processing relay and for every POP, merged section by section
    #: (e.g. ``{"aggregator": {"bucket_interval": 1, "initial_delay": 0}}``).
    processing_config: dict[str, Any] = field(default_factory=dict)
    pop_config: dict[str, Any] = field(default_factory=dict)

    @property
    def pop(self) -> RelayProcess:
        return self.processes[-1]

    @property
    def pops(self) -> list[RelayProcess]:
        """The POP relays, the one next to the processing relay first."""
        return self.processes[2:]

    @property
    def processing(self) -> RelayProcess:
        return self.processes[1]

    @property
    def configserver(self) -> RelayProcess:
        return self.processes[0]

    @property
    def dsn(self) -> str:
        return f"http://{DEMO_PUBLIC_KEY}@127.0.0.1:{self.pop.port}/{DEMO_PROJECT_ID}"

    @property
    def kafka_bootstrap(self) -> str:
        assert self.kafka is not None
        return self.kafka.address

    def start(self, redis: Service | None = None, kafka: Service | None = None) -> None:
        """Start everything (reusing given services) and wait until each relay is ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.redis = redis or start_redis(workdir=self.workdir / "redis")
            self.kafka = kafka or start_kafka(workdir=self.workdir / "kafka")
            self._own_services = (redis is None, kafka is None)
            self._start_relays()
        except BaseException:
            self.stop()
            raise

    def _start_relays(self) -> None:
        assert self.redis is not None and self.kafka is not None
        redis_url = f"redis://{self.redis.address}/0"
        projects = self.projects_dir or self._default_projects()
        cs = RelayProcess("configserver", free_port(), self.workdir / "configserver")
        proc = RelayProcess("processing", free_port(), self.workdir / "processing")
        pops = []
        for tier in range(self.pop_tiers):
            outermost = tier == self.pop_tiers - 1
            port = self.pop_port if outermost and self.pop_port else free_port()
            name = "pop" if self.pop_tiers == 1 else f"pop{tier + 1}"
            pops.append(RelayProcess(name, port, self.workdir / name))
        proc.credentials = generate_credentials()
        for tier, pop in enumerate(pops):
            given = self.pop_credentials[tier] if tier < len(self.pop_credentials) else None
            pop.credentials = given or generate_credentials()
        edge = pops[0].credentials
        assert edge is not None
        logging_cfg = {"level": self.log_level, "format": "simplified"}
        self._write(cs, {
            "relay": {"host": "127.0.0.1", "port": cs.port, "mode": "proxy"},
            "processing": {"redis": redis_url},
            "auth": {"static_relays": {proc.credentials.id: {
                "public_key": proc.credentials.public_key, "internal": True}}},
            "logging": logging_cfg,
        })  # fmt: skip
        self._write(proc, _merged({
            "relay": {"host": "127.0.0.1", "port": proc.port, "upstream": cs.url},
            "processing": {
                "enabled": True,
                "redis": redis_url,
                "kafka_config": [{"name": "bootstrap.servers", "value": self.kafka.address}],
            },
            "auth": {"static_relays": {edge.id: {
                "public_key": edge.public_key, "internal": self.pops_internal}}},
            "logging": logging_cfg,
        }, self.processing_config))  # fmt: skip
        for tier, pop in enumerate(pops):
            upstream = proc.url if tier == 0 else pops[tier - 1].url
            config: dict[str, Any] = {
                "relay": {"host": "127.0.0.1", "port": pop.port, "upstream": upstream},
                "logging": logging_cfg,
                # POPs have no processing.redis, but apply the shared kill-switches too.
                "killswitches": {"redis": redis_url},
            }
            if tier + 1 < len(pops):
                outer = pops[tier + 1].credentials
                assert outer is not None
                config["auth"] = {"static_relays": {outer.id: {
                    "public_key": outer.public_key, "internal": True}}}  # fmt: skip
            self._write(pop, _merged(config, self.pop_config))
        self.processes = [cs, proc, *pops]
        self._spawn(cs, ["configserver", "--projects", str(projects)])
        self._wait_ready(cs)
        for relay in (proc, *pops):
            self._spawn(relay, ["run"])
            self._wait_ready(relay)

    def _default_projects(self) -> Path:
        repo_projects = Path(__file__).resolve().parents[2] / "configs" / "projects"
        if repo_projects.is_dir():
            return repo_projects
        folder = self.workdir / "projects"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{DEMO_PROJECT_ID}.yml").write_text(yaml.safe_dump({
            "projectId": DEMO_PROJECT_ID, "organizationId": 1,
            "publicKeys": [{"publicKey": DEMO_PUBLIC_KEY, "numericId": 1, "isEnabled": True}],
            "config": {"allowedDomains": ["*"]},
        }))  # fmt: skip
        return folder

    def restart(self, relay: RelayProcess) -> None:
        """Start a relay that was stopped or killed again, with its config; wait until ready."""
        if relay.proc is not None and relay.proc.poll() is None:
            raise RuntimeError(f"{relay.name} is still running")
        self._spawn(relay, ["run"])
        self._wait_ready(relay)

    def _write(self, relay: RelayProcess, config: dict[str, Any]) -> None:
        relay.config_dir.mkdir(parents=True, exist_ok=True)
        (relay.config_dir / "config.yml").write_text(yaml.safe_dump(config))
        if relay.credentials is not None:
            save_credentials(relay.config_dir / "credentials.json", relay.credentials)

    def _spawn(self, relay: RelayProcess, args: list[str]) -> None:
        # Appended: a restarted relay keeps the log of its previous run.
        log = (relay.config_dir / "relay.log").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        relay.proc = subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "-c", str(relay.config_dir), *args],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        log.close()

    def _wait_ready(self, relay: RelayProcess, timeout: float = 30.0) -> None:
        relay.wait_ready(timeout)

    def log_of(self, relay: RelayProcess) -> str:
        return relay.log_tail()

    def stop(self) -> None:
        """Stop relays (POP first, so its in-flight envelopes drain upstream), then services."""
        for relay in reversed(self.processes):
            relay.stop()
        own_redis, own_kafka = getattr(self, "_own_services", (True, True))
        if self.kafka is not None and own_kafka:
            self.kafka.stop()
        if self.redis is not None and own_redis:
            self.redis.stop()

    def clean(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, key by key for nested sections."""
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = _merged(current, value)
        else:
            out[key] = value
    return out
