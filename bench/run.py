"""``make bench``: envelopes per second through one POP relay vs a bare aiohttp handler.

Both servers run as subprocesses on this machine and get the same load: the recorded
SDK corpus (gzip bodies, X-Sentry-Auth) replayed at maximum rate by an async client with
a fixed number of connections. Timings are printed as a ratio against the baseline
measured in the same run, since absolute numbers on shared machines are noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relay.dev.services import free_port  # noqa: E402
from relay.protocol.keys import generate_credentials, save_credentials  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "python" / "wire"
PUBLIC_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def load_corpus() -> list[tuple[str, bytes, dict[str, str]]]:
    """The wire requests that carry envelopes, with the headers the SDK sent."""
    out = []
    for meta_path in sorted(CORPUS.glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        meta["headers"] = dict(meta["headers"])
        body = meta_path.with_name(meta_path.name.replace(".meta.json", ".body")).read_bytes()
        wanted = ("content-type", "content-encoding", "x-sentry-auth")
        headers = {k: v for k, v in meta["headers"].items() if k.lower() in wanted}
        out.append((meta["path"], body, headers))
    return out


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def drive(name: str, port: int, corpus: list[tuple[str, bytes, dict[str, str]]],
                seconds: float, concurrency: int) -> Result:  # fmt: skip
    """Send the corpus round-robin from ``concurrency`` workers for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    count = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            nonlocal errors, count
            i = offset
            while time.perf_counter() < stop_at:
                path, body, headers = corpus[i % len(corpus)]
                i += 1
                started = time.perf_counter()
                async with session.post(f"http://127.0.0.1:{port}{path}", data=body,
                                        headers=headers) as resp:  # fmt: skip
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)
                count += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Result(name, count, errors, elapsed, latencies)


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    opts = parser.parse_args()
    corpus = load_corpus()
    workdir = ROOT / "bench" / "results" / "run.tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        base_port, up_port, pop_port = free_port(), free_port(), free_port()
        servers = str(ROOT / "bench" / "servers.py")
        procs.append(start([sys.executable, servers, "baseline", str(base_port)],
                           workdir / "baseline.log"))  # fmt: skip
        procs.append(start([sys.executable, servers, "upstream", str(up_port), PUBLIC_KEY],
                           workdir / "upstream.log"))  # fmt: skip
        config_dir = workdir / "pop"
        config_dir.mkdir(exist_ok=True)
        (config_dir / "config.yml").write_text(yaml.safe_dump({
            "relay": {"port": pop_port, "upstream": f"http://127.0.0.1:{up_port}/"},
            "logging": {"level": "warn"},
        }))  # fmt: skip
        save_credentials(config_dir / "credentials.json", generate_credentials())
        procs.append(start([sys.executable, "-m", "relay.cli", "-c", str(config_dir), "run"],
                           workdir / "pop.log"))  # fmt: skip
        wait_http(f"http://127.0.0.1:{base_port}/")
        wait_http(f"http://127.0.0.1:{pop_port}/api/relay/healthcheck/ready/")

        async def run_all() -> list[Result]:
            # Warm up both (the POP fetches its project config on the first request).
            await drive("warmup", base_port, corpus, 1.0, 4)
            await drive("warmup", pop_port, corpus, 1.0, 4)
            base = await drive("bare aiohttp+uvloop", base_port, corpus, opts.seconds,
                               opts.concurrency)  # fmt: skip
            pop = await drive("POP relay", pop_port, corpus, opts.seconds, opts.concurrency)
            return [base, pop]

        results = asyncio.run(run_all())
    finally:
        # The POP first, so it does not retry towards an upstream that is gone.
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(30)
    base = results[0]
    print(f"\ncorpus: {len(corpus)} SDK requests, {opts.concurrency} connections, "
          f"{opts.seconds:.0f}s each\n")  # fmt: skip
    print(f"{'server':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'vs base':>9}")
    for r in results:
        print(f"{r.name:<22}{r.rps:>9.0f}{r.pct(0.5):>9.2f}{r.pct(0.99):>9.2f}"
              f"{r.errors:>8}{r.rps / base.rps:>8.2f}x")  # fmt: skip
    print(
        f"(mean latency ratio POP/base: "
        f"{statistics.mean(results[1].latencies) / statistics.mean(base.latencies):.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
