"""The configs and commands of docs/deployment.md and README.md work as written.

Every YAML block that starts with ``# DIR/config.yml`` is written to ``DIR`` and must pass
``relay config validate``; every ``relay ...`` command of the shell blocks runs, except
those that start long-running processes (``run``, ``dev``, ``configserver``, ``tail``) or
need services (``healthcheck``): tests/e2e/test_doc_commands.py runs the README's quick
start (``relay dev``, its curl commands, ``relay tail``, the SDK snippet) and the single
relay topology (``run`` and the ``/metrics`` scrape); LocalChain runs ``run`` and
``configserver`` for every other e2e test, and test_docker_entry the image's commands.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "deployment.md", ROOT / "README.md"]
RELAY = str(Path(sys.executable).parent / "relay")
_BLOCK = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)
_LONG_RUNNING = {"run", "dev", "configserver", "tail", "healthcheck"}


def code_blocks(path: Path, lang: str) -> list[str]:
    """The ``lang`` code blocks of a Markdown file, unindented."""
    out = []
    for match in _BLOCK.finditer(path.read_text()):
        if match.group(2) == lang:
            indent = len(match.group(1))
            out.append("\n".join(line[indent:] for line in match.group(3).splitlines()))
    return out


def _configs(path: Path) -> dict[str, str]:
    configs = {}
    for block in code_blocks(path, "yaml"):
        first = block.splitlines()[0]
        match = re.fullmatch(r"# ([\w.-]+)/config\.yml", first.strip())
        if match:
            configs[match.group(1)] = block
    return configs


def _subcommand(args: list[str]) -> str | None:
    """The first word that is neither an option nor an option's value (``-c DIR``)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-c", "--config", "--log-level", "--log-format"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _commands(path: Path) -> list[list[str]]:
    commands = []
    for block in code_blocks(path, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            for part in line.split("&&"):
                argv = shlex.split(part)
                if not argv or argv[0] not in ("relay", ".venv/bin/relay"):
                    continue
                sub = _subcommand(argv[1:])
                if sub is not None and sub not in _LONG_RUNNING:
                    commands.append([RELAY, *argv[1:]])
    return commands


def test_deployment_doc_has_the_three_topologies() -> None:
    text = (ROOT / "docs" / "deployment.md").read_text()
    assert "in front of sentry.io" in text
    assert "processing tier with Kafka and Redis" in text
    assert "Sentry Relay" in text
    assert len(_configs(ROOT / "docs" / "deployment.md")) >= 5


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_example_configs_and_commands_work(doc: Path, tmp_path: Path) -> None:
    for name, text in _configs(doc).items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yml").write_text(text)
        out = subprocess.run(
            [RELAY, "-c", str(folder), "config", "validate"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, f"{doc.name}: {name}/config.yml: {out.stderr}"
    for argv in _commands(doc):
        out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{doc.name}: {shlex.join(argv[1:])}: {out.stderr}"
