"""Tier 3: the README's quick start and the deployment guide's commands, run as written.

``relay dev`` (what ``make run`` starts) brings the chain up; the README's curl block (the
store endpoint and an envelope), its ``relay tail`` command and its SDK snippet then run
against it, and what they sent must show up in ``relay tail``'s output. The only changes
to the commands are the POP port (a free one instead of 3000, which may be taken) and the
broker address the README leaves as ``PORT``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay.dev.services import free_port
from tests.unit.test_docs_examples import code_blocks

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEPLOYMENT = ROOT / "docs" / "deployment.md"
BIN = Path(sys.executable).parent


def doc_block(path: Path, lang: str, containing: str) -> str:
    """The ``lang`` code block of ``path`` that contains ``containing``."""
    for block in code_blocks(path, lang):
        if containing in block:
            return block
    raise AssertionError(f"no {lang} block with {containing!r} in {path.name}")


def wait_for_banner(log: Path, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> str:
    """``relay dev``'s banner; returns the Kafka bootstrap address it prints."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        match = re.search(r"Kafka\s+(\S+:\d+)", text)
        if match and "Ctrl-C stops everything" in text:
            return match.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"relay dev exited:\n{text}")
        time.sleep(0.2)
    raise AssertionError(f"relay dev did not start:\n{log.read_text(errors='replace')}")


def localize(command: str, port: int, bootstrap: str) -> str:
    """The README's command, aimed at this test's chain."""
    return (
        command.replace("127.0.0.1:3000", f"127.0.0.1:{port}")
        .replace("127.0.0.1:PORT", bootstrap)
        .replace(".venv/bin/relay", str(BIN / "relay"))
    )


@pytest.mark.e2e
def test_readme_quick_start(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [str(BIN / "relay"), "dev", "--workdir", str(tmp_path / "dev"), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        bootstrap = wait_for_banner(log, dev)
        curl_block = localize(doc_block(README, "sh", "curl -s"), port, bootstrap)
        lines = curl_block.splitlines()
        tail_at = next(i for i, line in enumerate(lines) if "relay tail" in line)
        sends = "\n".join(lines[:tail_at])
        sent = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", sends], capture_output=True, text=True, timeout=60
        )
        assert sent.returncode == 0, sent.stderr
        # Both curl calls answer with the event id, as Relay does.
        assert len(re.findall(r'\{"id":"[0-9a-f]{32}"\}', sent.stdout)) == 2, sent.stdout

        sdk = doc_block(README, "python", "sentry_sdk.init")
        sdk = sdk.replace("127.0.0.1:3000", f"127.0.0.1:{port}") + "\nsentry_sdk.flush(10)\n"
        ran = subprocess.run([sys.executable, "-c", sdk], capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr

        messages = ["hello from curl", "envelope from curl", "hello from the SDK"]
        tail_log = tmp_path / "tail.log"
        with tail_log.open("wb") as out:
            tail = subprocess.Popen(
                ["bash", "-c", lines[tail_at]], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        seen = ""
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline and not all(m in seen for m in messages):
                time.sleep(0.2)
                seen = tail_log.read_text(errors="replace")
        finally:
            os.killpg(tail.pid, signal.SIGTERM)
            tail.wait(10)
        missing = [m for m in messages if m not in seen]
        assert not missing, seen[-2000:]
    finally:
        # Ctrl-C, as the README says, stops everything.
        dev.send_signal(signal.SIGINT)
        assert dev.wait(60) == 0, log.read_text(errors="replace")


@pytest.mark.e2e
def test_deployment_single_relay_commands(tmp_path: Path) -> None:
    """Topology 1 (one relay in front of sentry.io): its config and commands, run as written
    but on free ports, a temporary spool and a local upstream (no internet in tests)."""
    port, internal = free_port(), free_port()
    config = doc_block(DEPLOYMENT, "yaml", "# edge/config.yml")
    config = (
        config.replace("port: 3000", f"port: {port}")
        .replace("internal_port: 3001", f"internal_port: {internal}")
        .replace("/var/lib/relay/spool", str(tmp_path / "spool"))
        .replace("https://sentry.io/", f"http://127.0.0.1:{free_port()}/")
    )
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "config.yml").write_text(config)
    commands = doc_block(DEPLOYMENT, "sh", "relay -c edge run").splitlines()
    assert commands[:3] == [
        "relay -c edge credentials generate",
        "relay -c edge config validate",
        "relay -c edge run",
    ], commands
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for command in commands[:2]:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
    log = tmp_path / "edge.log"
    with log.open("wb") as out:
        relay = subprocess.Popen(
            shlex.split(commands[2]), cwd=tmp_path, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        live = f"curl -sf http://127.0.0.1:{internal}/api/relay/healthcheck/live/"
        deadline = time.monotonic() + 30
        while subprocess.run(live, shell=True, capture_output=True).returncode != 0:
            assert relay.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        scrape = commands[3].replace("127.0.0.1:3001", f"127.0.0.1:{internal}")
        shown = subprocess.run(scrape, shell=True, capture_output=True, text=True, timeout=10)
        assert shown.returncode == 0, log.read_text(errors="replace")
        # The health check just answered counts as a request.
        assert 'relay_requests_total{endpoint="/api/relay/healthcheck/{kind}/"' in shown.stdout
    finally:
        os.killpg(relay.pid, signal.SIGTERM)
        assert relay.wait(30) == 0, log.read_text(errors="replace")
