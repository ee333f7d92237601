"""Tier 2: kill-switches set with the CLI reach two running relays within seconds.

A processing relay and a POP in front of it, in-process, both polling the same Redis hash
(real Redis). The switch is written by the ``relay killswitches`` command as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
import yaml
from redis.asyncio import Redis

from relay.config import config_from_dict
from relay.kafka.outcomes import OutcomeCode
from relay.protocol.encoding import zstd_compress
from relay.protocol.items import DataCategory
from relay.protocol.keys import Credentials, generate_credentials
from relay.server.app import RelayApp

PUBLIC_KEY = uuid.uuid4().hex
PROJECT_ID = 4712
REDIS_KEY = f"test:killswitches:{uuid.uuid4().hex[:8]}"
AUTH = {"X-Sentry-Auth": f"Sentry sentry_key={PUBLIC_KEY}, sentry_version=7"}
RELAY = [sys.executable, "-m", "relay.cli"]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def relays(redis_url: str, kafka_bootstrap: str) -> AsyncIterator[tuple[RelayApp, RelayApp]]:
    state = {
        "projectId": PROJECT_ID, "organizationId": 3, "rev": "r1",
        "publicKeys": [{"publicKey": PUBLIC_KEY, "numericId": 9, "isEnabled": True}],
        "config": {"allowedDomains": ["*"]},
    }  # fmt: skip
    redis = Redis.from_url(redis_url)
    await redis.set(f"relayconfig:{PUBLIC_KEY}", zstd_compress(msgspec.json.encode(state)))
    pop_creds: Credentials = generate_credentials()
    processing = RelayApp(config_from_dict({
        "relay": {"mode": "proxy", "port": 0, "upstream": "http://127.0.0.1:9/"},
        "processing": {
            "enabled": True, "redis": redis_url,
            "kafka_config": [{"name": "bootstrap.servers", "value": kafka_bootstrap}],
        },
        "killswitches": {"redis_key": REDIS_KEY},
        "auth": {"static_relays": {pop_creds.id: {
            "public_key": pop_creds.public_key, "internal": True}}},
    }), None)  # fmt: skip
    await processing.start()
    pop = RelayApp(config_from_dict({
        "relay": {"mode": "managed", "port": 0,
                  "upstream": f"http://127.0.0.1:{processing.ports[0]}/"},
        "killswitches": {"redis": redis_url, "redis_key": REDIS_KEY},
    }), pop_creds)  # fmt: skip
    await pop.start()
    yield processing, pop
    await pop.stop()
    await processing.stop()
    await redis.delete(f"relayconfig:{PUBLIC_KEY}", REDIS_KEY)
    await redis.aclose()


def _cli(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RELAY, *args], input=stdin, capture_output=True, text=True, timeout=30)


def _config_dir(tmp_path: Path, redis_url: str) -> Path:
    (tmp_path / "config.yml").write_text(
        yaml.safe_dump(
            {"processing": {"redis": redis_url}, "killswitches": {"redis_key": REDIS_KEY}}
        )
    )
    return tmp_path


def _envelope(*items: tuple[dict[str, Any], bytes]) -> bytes:
    out = json.dumps({"event_id": uuid.uuid4().hex}).encode() + b"\n"
    for header, payload in items:
        out += json.dumps({**header, "length": len(payload)}).encode() + b"\n" + payload + b"\n"
    return out


async def _post(port: int, body: bytes) -> int:
    url = f"http://127.0.0.1:{port}/api/{PROJECT_ID}/envelope/"
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=AUTH) as resp:
        await resp.read()
        return resp.status


@pytest.mark.asyncio(loop_scope="session")
async def test_cli_switch_reaches_both_relays_within_5s(
    relays: tuple[RelayApp, RelayApp], redis_url: str, tmp_path: Path
) -> None:
    processing, pop = relays
    name = "no-attachments"
    rule_file = tmp_path / "rule.txt"
    rule_file.write_text(
        f"DROP DATA WHERE project_id = {PROJECT_ID}\n  AND item_type IN ('attachment')\n"
    )
    config_dir = _config_dir(tmp_path, redis_url)

    # Without --yes the command asks, and "n" leaves Redis alone.
    out = await asyncio.to_thread(
        _cli, ["-c", str(config_dir), "killswitches", "pull", name, str(rule_file)], "n\n"
    )
    assert out.returncode == 1, out.stderr
    assert "before: (none)" in out.stdout and "item_type IN ('attachment')" in out.stdout
    assert "Apply? [y/N]" in out.stdout
    assert "aborted" in out.stdout

    out = await asyncio.to_thread(
        _cli, ["-c", str(config_dir), "killswitches", "pull", name, str(rule_file), "--yes"]
    )
    assert out.returncode == 0, out.stderr
    applied = time.monotonic()
    for app in (processing, pop):
        assert app.killswitches is not None
        while name not in app.killswitches.switches.rules:
            assert time.monotonic() - applied < 5.0, "switch not applied within 5 s"
            await asyncio.sleep(0.05)
    took = time.monotonic() - applied
    assert took < 5.0

    # Both relays drop the attachment (a filtered outcome) and keep the event.
    body = _envelope(
        ({"type": "event"}, b'{"message": "kept"}'),
        ({"type": "attachment", "filename": "a.txt"}, b"dropped"),
    )
    for app in (processing, pop):
        assert app.killswitches is not None
        before = app.outcomes.totals[(int(OutcomeCode.FILTERED), int(DataCategory.ATTACHMENT))]
        assert await _post(app.ports[0], body) == 200
        # Applied at once with a cached project config, or when it arrives (pending queue).
        deadline = time.monotonic() + 5.0
        while app.killswitches.dropped.get(name, 0) < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        after = app.outcomes.totals[(int(OutcomeCode.FILTERED), int(DataCategory.ATTACHMENT))]
        assert after - before == len(b"dropped")

    listed = await asyncio.to_thread(_cli, ["killswitches", "--redis-url", redis_url, "list"])
    # --redis-url alone uses the default key, which this test does not touch.
    assert listed.returncode == 0
    shown = await asyncio.to_thread(_cli, ["-c", str(config_dir), "killswitches", "show", name])
    assert shown.stdout.strip().startswith("DROP DATA WHERE project_id")

    cleared = await asyncio.to_thread(
        _cli, ["-c", str(config_dir), "killswitches", "clear", name, "--yes"]
    )
    assert cleared.returncode == 0, cleared.stderr
    start = time.monotonic()
    for app in (processing, pop):
        assert app.killswitches is not None
        while name in app.killswitches.switches.rules:
            assert time.monotonic() - start < 5.0, "switch not cleared within 5 s"
            await asyncio.sleep(0.05)


@pytest.mark.asyncio(loop_scope="session")
async def test_broken_rule_is_refused_with_its_position(redis_url: str, tmp_path: Path) -> None:
    rule_file = tmp_path / "bad.txt"
    rule_file.write_text("DROP DATA WHERE project_id = 'one'")
    out = await asyncio.to_thread(
        _cli, ["-c", str(_config_dir(tmp_path, redis_url)), "killswitches", "pull", "bad",
               str(rule_file), "--yes"],
    )  # fmt: skip
    assert out.returncode == 1
    assert "column 30: project_id compares with an integer" in out.stderr
    assert "^" in out.stderr
    redis = Redis.from_url(redis_url)
    assert await redis.hget(REDIS_KEY, "bad") is None
    await redis.aclose()


@pytest.mark.asyncio(loop_scope="session")
async def test_dropping_everything_answers_200(
    relays: tuple[RelayApp, RelayApp], redis_url: str
) -> None:
    processing, _ = relays
    assert processing.killswitches is not None
    redis = Redis.from_url(redis_url)
    await redis.hset(REDIS_KEY, "all", f"DROP DATA WHERE project_id = {PROJECT_ID}")
    # A hand-written broken rule is skipped; the good one still applies.
    await redis.hset(REDIS_KEY, "broken", "DROP DATA WHERE (")
    try:
        await processing.killswitches.refresh()
        assert "all" in processing.killswitches.switches.rules
        assert "broken" not in processing.killswitches.switches.rules
        before = processing.killswitches.dropped.get("all", 0)
        body = _envelope(({"type": "event"}, b'{"message": "dropped"}'))
        assert await _post(processing.ports[0], body) == 200
        deadline = time.monotonic() + 5.0
        while processing.killswitches.dropped.get("all", 0) < before + 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await redis.hdel(REDIS_KEY, "all", "broken")
        await redis.aclose()
