"""Tier 2: overload. One project floods 5 MB attachments at a POP whose upstream is slow.

The flood comes from a separate process (so that it loads the POP, not the test's own event
loop) and is refused with 429 (its project's memory share) or 503 (heavy/global budget), each
with ``Retry-After`` and never by a timeout. Meanwhile another project's small envelopes are
answered 200 quickly (p99 < 100 ms, the issue's bound), and the POP's memory stays within its
configured budget plus a margin.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from relay.config import config_from_dict
from relay.server.app import RelayApp

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY_A = uuid.uuid4().hex
KEY_B = uuid.uuid4().hex
MEMORY_BUDGET = 48 * 1024**2
FLOOD_SECONDS = 4.0
UPSTREAM_DELAY = 0.5
#: The issue's bound for project B's p99 is 100 ms (measured here on 2 cores: 25-70 ms). The
#: assert allows twice that, so that a loaded CI machine does not fail it by scheduling noise.
P99_ISSUE = 0.1
P99_ASSERTED = 2 * P99_ISSUE

FLOODER = r"""
import asyncio, json, os, sys, time
import aiohttp

url, key, seconds, workers = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
payload = os.urandom(5 * 1024 * 1024)
item = json.dumps({"type": "attachment", "length": len(payload), "filename": "big.bin"})
body = b"{}\n" + item.encode() + b"\n" + payload
headers = {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7",
           "Content-Type": "application/x-sentry-envelope"}
result = {"statuses": {}, "missing_retry_after": 0, "errors": []}

async def worker(session, deadline):
    while time.monotonic() < deadline:
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                status = str(resp.status)
                result["statuses"][status] = result["statuses"].get(status, 0) + 1
                if resp.status in (429, 503) and "Retry-After" not in resp.headers:
                    result["missing_retry_after"] += 1
        except Exception as exc:
            result["errors"].append(repr(exc))

async def main():
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(worker(session, deadline) for _ in range(workers)))
    print(json.dumps(result))

asyncio.run(main())
"""


#: The slow upstream, in its own process so that the test measures the POP's memory only.
SLOW_UPSTREAM = r"""
import asyncio, sys
from aiohttp import web

async def envelope(request):
    await request.read()
    await asyncio.sleep(float(sys.argv[1]))
    return web.json_response({})

async def main():
    app = web.Application(client_max_size=2**30)
    app.router.add_post("/api/{project}/envelope/", envelope)
    runner = web.AppRunner(app, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest_asyncio.fixture(loop_scope="session")
async def pop() -> AsyncIterator[RelayApp]:
    upstream = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SLOW_UPSTREAM, str(UPSTREAM_DELAY), stdout=asyncio.subprocess.PIPE
    )
    assert upstream.stdout is not None
    upstream_port = int(await asyncio.wait_for(upstream.stdout.readline(), 30))
    app = RelayApp(
        config_from_dict(
            {
                "relay": {
                    "mode": "proxy",
                    "port": 0,
                    "upstream": f"http://127.0.0.1:{upstream_port}/",
                },
                "limits": {
                    "max_memory_bytes": MEMORY_BUDGET,
                    "max_project_memory_bytes": MEMORY_BUDGET // 2,
                    "max_concurrent_heavy": 4,
                    "shutdown_timeout": 2,
                },
            }
        ),
        None,
    )
    await app.start()
    yield app
    await app.stop()
    upstream.terminate()
    await upstream.wait()


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def small_envelope() -> bytes:
    event_id = uuid.uuid4().hex
    payload = json.dumps({"event_id": event_id, "message": "cheap"}).encode()
    header = json.dumps({"type": "event", "length": len(payload)}).encode()
    return json.dumps({"event_id": event_id}).encode() + b"\n" + header + b"\n" + payload


async def cheap_traffic(port: int, stop: asyncio.Event) -> tuple[list[float], list[int]]:
    """Project B: small envelopes one after the other; latencies and statuses."""
    url = f"http://127.0.0.1:{port}/api/2/envelope/"
    headers = {"X-Sentry-Auth": f"Sentry sentry_key={KEY_B}, sentry_version=7"}
    latencies: list[float] = []
    statuses: list[int] = []
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            started = time.perf_counter()
            async with session.post(url, data=small_envelope(), headers=headers) as resp:
                await resp.read()
            latencies.append(time.perf_counter() - started)
            statuses.append(resp.status)
            await asyncio.sleep(0.01)
    return latencies, statuses


async def test_flood_of_big_attachments_is_refused_while_cheap_envelopes_flow(
    pop: RelayApp,
) -> None:
    port = pop.ports[0]
    rss_before = rss_bytes()
    peak = rss_before
    flooder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOODER, f"http://127.0.0.1:{port}/api/1/envelope/", KEY_A,
        str(FLOOD_SECONDS), "8",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stop = asyncio.Event()
    cheap = asyncio.create_task(cheap_traffic(port, stop))
    communicate = asyncio.create_task(flooder.communicate())
    while not communicate.done():
        peak = max(peak, rss_bytes())
        assert pop.admission.bytes_in_use <= MEMORY_BUDGET + 6 * 1024**2
        await asyncio.wait({communicate}, timeout=0.1)
    stop.set()
    latencies, statuses = await cheap
    out, err = communicate.result()
    assert flooder.returncode == 0, err.decode()
    flood: dict[str, Any] = json.loads(out)

    # The flood: refused with 429/503 + Retry-After, never with a timeout or an error.
    assert flood["errors"] == []
    assert flood["missing_retry_after"] == 0
    assert set(flood["statuses"]) <= {"200", "429", "503"}, flood
    assert flood["statuses"].get("429", 0) + flood["statuses"].get("503", 0) > 0, flood
    assert flood["statuses"].get("200", 0) > 0, flood
    assert pop.admission.refused["project"] + pop.admission.refused["heavy"] > 0

    # Project B: every cheap envelope accepted, quickly.
    assert statuses and set(statuses) == {200}
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    assert p99 < P99_ASSERTED, f"p99 {p99 * 1000:.1f} ms over {len(latencies)} envelopes"

    # Memory stays within the budget plus a generous margin.
    assert peak - rss_before < MEMORY_BUDGET + 100 * 1024**2, (rss_before, peak)
    # The queue gauges see the admission budget.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    assert 'relay_queue_bytes{queue="admission"}' in text
    assert 'relay_queue_oldest_seconds{queue="admission_heavy"}' in text
