"""The container image, without Docker: its Dockerfile's rules, and its entry command run
as the image would run it (ENTRYPOINT + CMD, the image's ENV, the config volume)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in _final_stage():
        if word == "ENV":
            for part in shlex.split(args):
                key, _, value = part.partition("=")
                env[key] = value
    return env


def _json_arg(word: str) -> list[str]:
    [args] = [a for w, a in _final_stage() if w == word]
    value: list[str] = json.loads(args)
    return value


def test_dockerfile_follows_the_rules() -> None:
    froms = [args for word, args in _instructions() if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    assert "slim" in froms[-1]
    final = dict(_final_stage())
    user = final["USER"].split(":")[0]
    assert user.isdigit() and int(user) >= 1000, "non-root, fixed UID"
    volumes = json.loads(final["VOLUME"])
    assert "/etc/relay" in volumes and "/var/lib/relay" in volumes
    assert _json_arg("ENTRYPOINT") == ["relay"]
    assert _json_arg("CMD") == ["run"]
    health = final["HEALTHCHECK"]
    assert "CMD" in health and "healthcheck" in health and "live" in health
    assert _image_env()["RELAY_CONFIG_DIR"] == "/etc/relay"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _container_env(config_dir: Path, port: int) -> dict[str, str]:
    """The image's ENV with its paths mapped onto this machine; nothing else (no HOME)."""
    env = {}
    for key, value in _image_env().items():
        value = value.replace("/opt/relay/bin", str(VENV_BIN)).replace("$PATH", "/usr/bin:/bin")
        env[key] = value.replace("/etc/relay", str(config_dir))
    env["RELAY_HOST"] = "127.0.0.1"  # the image binds 0.0.0.0; a test stays local
    env["RELAY_PORT"] = str(port)
    return env


def _healthcheck_argv() -> list[str]:
    health = dict(_final_stage())["HEALTHCHECK"]
    argv: list[str] = json.loads(health[health.index("CMD") + 3 :].strip())
    return argv


@pytest.mark.e2e
def test_entry_command_runs_and_answers_the_healthcheck(tmp_path: Path) -> None:
    config_dir = tmp_path / "etc-relay"
    config_dir.mkdir()
    port = _free_port()
    env = _container_env(config_dir, port)
    # What an operator does once, into the config volume.
    for argv in (["relay", "config", "init"], ["relay", "credentials", "generate"]):
        subprocess.run(argv, env=env, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    env["RELAY_UPSTREAM_URL"] = f"http://127.0.0.1:{_free_port()}/"  # nobody listens: offline
    argv = _json_arg("ENTRYPOINT") + _json_arg("CMD")
    proc = subprocess.Popen(
        argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[0].decode()
            check = subprocess.run(
                _healthcheck_argv(), env=env, cwd=tmp_path, capture_output=True, text=True,
                timeout=30,
            )  # fmt: skip
            if check.returncode == 0:
                assert check.stdout.strip() == "healthy"
                break
            assert time.monotonic() < deadline, check.stdout + check.stderr
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # `docker stop`
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_entry_command_explains_an_empty_config_volume(tmp_path: Path) -> None:
    env = _container_env(tmp_path, _free_port())
    argv = _json_arg("ENTRYPOINT") + _json_arg("CMD")
    out = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "relay credentials generate" in out.stderr
    assert os.listdir(tmp_path) == []  # nothing written outside the volumes
