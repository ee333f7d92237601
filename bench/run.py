"""``make bench``: the corpus mix through each kind of hop, against a bare baseline, in one run.

Targets (each a set of subprocesses started and stopped here):

* ``baseline``: a bare aiohttp + uvloop handler that reads the body and answers 200;
* ``pop``: one POP relay (managed, no processing) forwarding to a fake upstream
  (bench/servers.py, a bare asyncio protocol);
* ``processing``: one processing relay (normalization, filters, PII, Redis quotas, Kafka)
  writing to a local Tansu broker, its project config seeded in Redis;
* ``processing-errors``: the same relay fed the requests of the unhandled-error scenario
  (the 7 KB error event with the transaction, session and log envelopes sent alongside);
* ``processing-error-event``: the same relay fed only the 7 KB error event envelopes, as the
  SDK sent them (gzip included); the issue's criterion. At the end the messages on
  ``ingest-events`` are counted: every accepted request must be there (no data lost);
* ``chain``: POP -> processing -> Kafka (relay.dev.chain.LocalChain, configserver on top);
* ``pop-workers1`` / ``pop-workers2`` and ``processing-error-event-workers1`` / ``-workers2``:
  ``relay run --workers N``. With 2 CPUs no core is left to put the load generator apart from
  two workers, so 1 and 2 workers run under the same placement (every process on every CPU,
  the load generator and a POP's upstream in SCHED_BATCH, see :func:`batch`; each worker
  gets the connections of one process) and the report gives the ratio of the two from the
  same run. Both run at once and are measured in alternating max-rate rounds (``--rounds``,
  default 5): the VM's speed drifts by 10-20% within minutes, and the one-worker row alone
  moved by as much between runs; each round's ratio compares neighbours in time.

Connections at max rate: 16 per POP (SDK clients), 64 per processing relay (its clients are
POPs, whose answers wait for the broker's acks: see :func:`connections_of`).

Placement (more than one CPU): the relay processes run on all CPUs but the last; the load
generator (this process) and the infrastructure (fake upstream, configserver, Redis, broker:
other machines in production) on the last, so the relay's core runs only the relay.

For each target: a short warm-up, a maximum-rate run (closed loop) and a fixed-rate run at 80%
of that maximum (open loop; latency from the scheduled send time). Measured: envelopes/s,
p50/p99/p99.9 latency, CPU seconds per 1,000 envelopes of the relay processes (from
/proc/PID/stat, workers included), of the infrastructure and of the load generator apart,
the CPU the load generator and processes outside the benchmark kept busy (a shared machine),
and the peak RSS (VmHWM) of each relay process. Results go to ``bench/results/latest.json``
and ``latest.md`` with ratios to the baseline of the same run: absolute numbers on a shared
machine are noise, ratios much less so.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadgen import LoadResult, fixed_rate, load_corpus, max_rate, serialize  # noqa: E402

from relay.dev.chain import LocalChain  # noqa: E402
from relay.dev.services import (  # noqa: E402
    Service,
    free_port,
    start_kafka,
    start_redis,
    stop_process,
)
from relay.protocol.keys import generate_credentials, save_credentials  # noqa: E402
from relay.server.runner import install_event_loop  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "python" / "wire"
PUBLIC_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
RESULTS = ROOT / "bench" / "results"
TICKS = os.sysconf("SC_CLK_TCK")
ALL_TARGETS = [
    "baseline", "pop", "processing", "processing-errors", "processing-error-event", "chain",
    "pop-workers1", "pop-workers2",
    "processing-error-event-workers1", "processing-error-event-workers2",
]  # fmt: skip
OPTIONAL_TARGETS: list[str] = []
#: The 7 KB unhandled-error event of the corpus (the issue's processing criterion).
ERROR_LABELS = {"error-unhandled"}
#: The Kafka topic every error event must reach.
EVENTS_TOPIC = "ingest-events"
#: Where a processing relay writes outcomes (billing ones to the second).
OUTCOMES_TOPICS = ("outcomes", "outcomes-billing")


# ---------------------------------------------------------------- /proc accounting


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def tree(roots: list[int]) -> list[int]:
    """``roots`` and all their live descendants (supervised workers, their helpers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry.name))
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine spent not idle so far (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / TICKS


def cpu_seconds(pids: list[int]) -> float:
    return sum(s[1] for s in map(_stat, pids) if s is not None)


def peak_rss_mb(pids: list[int]) -> float:
    """The largest VmHWM (peak resident set) among ``pids``, in MB: per process, not a sum."""
    return max(rss_by_process(pids).values(), default=0.0)


def _vmhwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def process_label(pid: int) -> str:
    """A short name for a relay process: its config folder, ``worker`` or ``supervisor``."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    if any("resource_tracker" in a for a in args):
        return "resource tracker"  # multiprocessing's helper of the supervisor
    if any("spawn_main" in a for a in args):
        return "worker"
    label = Path(args[args.index("-c") + 1]).name if "-c" in args[:-1] else Path(args[0]).name
    return f"{label} (supervisor)" if "--workers" in args else label


def rss_by_process(pids: list[int]) -> dict[str, float]:
    """Peak RSS (VmHWM, MB) of each process, by :func:`process_label` (``#n`` when repeated)."""
    out: dict[str, float] = {}
    for pid in sorted(set(pids)):
        rss = _vmhwm_mb(pid)
        if rss is None:
            continue
        label = process_label(pid)
        name, n = label, 1
        while name in out:
            n += 1
            name = f"{label} #{n}"
        out[name] = round(rss, 1)
    return out


def _each_thread(pids: list[int], apply: Callable[[int], None]) -> None:
    """``apply`` to every thread id of ``pids`` (threads started later inherit the setting)."""
    for pid in pids:
        try:
            tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:
            continue
        for tid in tids:
            try:
                apply(tid)
            except OSError:
                continue


def pin(pids: list[int], cpus: set[int]) -> None:
    """Move every thread of ``pids`` to ``cpus``."""
    _each_thread(pids, lambda tid: os.sched_setaffinity(tid, cpus))


def batch(pids: list[int], on: bool = True) -> None:
    """Put every thread of ``pids`` in the SCHED_BATCH policy (``on``) or back in SCHED_OTHER.

    Where the load generator and the infrastructure share the CPUs with the relays (the
    ``-workersN`` targets), they should take as little from the relays as can be: they stand
    in for other machines. SCHED_BATCH keeps their fair share of CPU (same weight) but does
    not let their wake-ups preempt a running relay, so they handle answers in batches. With
    two POP workers this halved the CPU per request of the load generator and the upstream
    (0.050 -> 0.026 ms). Not for infrastructure the answers wait for (Redis, the broker):
    its delayed wake-ups would be the relay's latency, and so fewer requests per connection.
    """
    policy = os.SCHED_BATCH if on else os.SCHED_OTHER
    _each_thread(pids, lambda tid: os.sched_setscheduler(tid, policy, os.sched_param(0)))


# ---------------------------------------------------------------- targets


@dataclass
class Target:
    """Processes serving one benchmark target on ``port``."""

    name: str
    port: int = 0
    relay_pids: Callable[[], list[int]] = list
    infra_pids: Callable[[], list[int]] = list
    stop: Callable[[], None] = lambda: None
    labels: set[str] | None = None
    #: Only requests whose envelope's first item has one of these types (None: all).
    item_types: set[str] | None = None
    pinned: bool = True
    #: Whether the relay's answers wait for the infrastructure (Redis, the broker's acks),
    #: or not (a POP's upstream: envelopes are forwarded after the answer).
    infra_in_answer_path: bool = True
    notes: list[str] = field(default_factory=list)
    #: Broker to check for the events at the end (error-event targets: one per request).
    kafka_address: str | None = None
    #: Stops the relay alone (a graceful drain), leaving the broker up to be read.
    stop_relay: Callable[[], None] = lambda: None


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _relay_dir(workdir: Path, name: str, config: dict[str, Any]) -> Path:
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    save_credentials(folder / "credentials.json", generate_credentials())
    return folder


def _relay(config_dir: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return _start([sys.executable, "-m", "relay.cli", "-c", str(config_dir), "run", *extra], log)


def _stopper(*procs: subprocess.Popen[bytes]) -> Callable[[], None]:
    def stop() -> None:
        for proc in procs:
            stop_process(proc, 30)

    return stop


def start_baseline(workdir: Path) -> Target:
    port = free_port()
    proc = _start([sys.executable, str(ROOT / "bench" / "servers.py"), "baseline", str(port)],
                  workdir / "baseline.log")  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/", proc)
    return Target("baseline", port, lambda: tree([proc.pid]), stop=_stopper(proc))


def _fake_upstream(workdir: Path) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    proc = _start(
        [sys.executable, str(ROOT / "bench" / "servers.py"), "upstream", str(port), PUBLIC_KEY],
        workdir / "upstream.log",
    )
    wait_http(f"http://127.0.0.1:{port}/", proc)
    return port, proc


def start_pop(workdir: Path, workers: int = 0) -> Target:
    up_port, upstream = _fake_upstream(workdir)
    port = free_port()
    name = "pop" if not workers else f"pop-workers{workers}"
    config_dir = _relay_dir(workdir, name, {
        "relay": {"port": port, "upstream": f"http://127.0.0.1:{up_port}/"},
        "logging": {"level": "warn"},
    })  # fmt: skip
    extra = ["--workers", str(workers)] if workers else []
    proc = _relay(config_dir, workdir / f"{name}.log", *extra)
    wait_http(f"http://127.0.0.1:{port}/api/relay/healthcheck/ready/", proc)
    target = Target(name, port, lambda: tree([proc.pid]), lambda: tree([upstream.pid]),
                    _stopper(proc, upstream))  # fmt: skip
    target.infra_in_answer_path = False
    target.notes.append(
        "upstream: bench/servers.py, a bare asyncio protocol (reads the body, answers 200)"
    )
    if workers:
        target.pinned = False
        target.notes.append(
            f"`relay run --workers {workers}`, not pinned: the workers, the load generator "
            "and the upstream share all CPUs (the same placement for 1 and 2 workers)"
        )
    return target


def _seed_redis(workdir: Path, redis_url: str) -> None:
    """Write the project configs into Redis as the configserver does (``configserver push``)."""
    folder = workdir / "seed"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yml").write_text(yaml.safe_dump({"relay": {"mode": "proxy"}}))
    subprocess.run(
        [sys.executable, "-m", "relay.cli", "-c", str(folder), "configserver", "push",
         "--projects", str(ROOT / "configs" / "projects"), "--redis-url", redis_url],
        check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip


def start_processing(
    workdir: Path,
    labels: set[str] | None = None,
    *,
    name: str | None = None,
    item_types: set[str] | None = None,
    workers: int = 0,
) -> Target:
    redis: Service = start_redis(workdir=workdir / "redis")
    kafka: Service = start_kafka(workdir=workdir / "kafka")
    redis_url = f"redis://{redis.address}/0"
    _seed_redis(workdir, redis_url)
    up_port, upstream = _fake_upstream(workdir)
    port = free_port()
    config_dir = _relay_dir(workdir, "processing", {
        "relay": {"port": port, "upstream": f"http://127.0.0.1:{up_port}/"},
        "processing": {
            "enabled": True, "redis": redis_url,
            "kafka_config": [{"name": "bootstrap.servers", "value": kafka.address}],
        },
        "logging": {"level": "warn"},
    })  # fmt: skip
    extra = ["--workers", str(workers)] if workers else []
    proc = _relay(config_dir, workdir / "processing.log", *extra)

    def stop() -> None:
        stop_process(proc, 30)
        stop_process(upstream, 10)
        kafka.stop()
        redis.stop()

    try:
        wait_http(f"http://127.0.0.1:{port}/api/relay/healthcheck/ready/", proc)
    except BaseException:
        stop()
        raise
    infra = [p.pid for p in (redis.proc, kafka.proc, upstream) if p is not None]
    name = name or ("processing" if labels is None else "processing-errors")
    target = Target(name, port, lambda: tree([proc.pid]), lambda: infra, stop, labels)
    target.item_types = item_types
    target.stop_relay = lambda: stop_process(proc, 30)
    if item_types is not None:
        target.kafka_address = kafka.address
        target.notes.append(
            "only the error-unhandled scenario's 7 KB error event envelopes (gzip, as the SDK "
            f"sent them); every accepted request is checked to be on {EVENTS_TOPIC}"
        )
    elif labels is not None:
        target.notes.append(
            "only the error-unhandled scenario's requests (7 KB error event, with the "
            "transaction, session and log envelopes the SDK sent alongside)"
        )
    target.notes.append("project config read from Redis (seeded by `configserver push`)")
    if workers:
        target.pinned = False
        target.notes.append(
            f"`relay run --workers {workers}`, not pinned: workers, load generator, Redis and "
            "the broker share all CPUs (the same placement for 1 and 2 workers)"
        )
    return target


def start_chain(workdir: Path) -> Target:
    chain = LocalChain(workdir / "chain", log_level="warn")
    chain.start()
    # The configserver stands in for Sentry (the upstream): infrastructure, like the broker.
    relays = [p.proc.pid for p in (chain.processing, chain.pop) if p.proc is not None]
    infra = [s.proc.pid for s in (chain.redis, chain.kafka) if s is not None and s.proc]
    if chain.configserver.proc is not None:
        infra.append(chain.configserver.proc.pid)
    target = Target("chain", chain.pop.port, lambda: tree(relays), lambda: tree(infra),
                    chain.stop)  # fmt: skip
    target.notes.append("CPU and RSS: processing + POP relays (two processes, RSS per process)")
    return target


def _workers_of(name: str) -> int:
    """N of a ``...-workersN`` target."""
    return int(name.rsplit("-workers", 1)[1])


def start_target(name: str, workdir: Path) -> Target:
    workdir.mkdir(parents=True, exist_ok=True)
    if name == "baseline":
        return start_baseline(workdir)
    if name == "pop":
        return start_pop(workdir)
    if name.startswith("pop-workers"):
        return start_pop(workdir, workers=_workers_of(name))
    if name == "processing":
        return start_processing(workdir)
    if name == "processing-errors":
        return start_processing(workdir, ERROR_LABELS)
    if name.startswith("processing-error-event"):
        workers = _workers_of(name) if "-workers" in name else 0
        return start_processing(
            workdir, ERROR_LABELS, name=name, item_types={"event"}, workers=workers
        )
    if name == "chain":
        return start_chain(workdir)
    raise ValueError(name)


# ---------------------------------------------------------------- what is sent, what arrived


def first_item_type(headers: dict[str, str], body: bytes) -> str | None:
    """The type of the first item of a recorded envelope request (gzip bodies unpacked)."""
    encoding = {k.lower(): v for k, v in headers.items()}.get("content-encoding", "")
    data = gzip.decompress(body) if encoding.lower() == "gzip" else body
    lines = data.split(b"\n", 2)
    if len(lines) < 2:
        return None
    try:
        item_type = json.loads(lines[1]).get("type")
    except (ValueError, AttributeError):
        return None
    return item_type if isinstance(item_type, str) else None


def target_corpus(target: Target) -> list[tuple[str, dict[str, str], bytes]]:
    """The recorded requests a target is fed."""
    corpus = load_corpus(CORPUS, target.labels)
    if target.item_types is not None:
        corpus = [r for r in corpus if first_item_type(r[1], r[2]) in target.item_types]
    if not corpus:
        raise RuntimeError(f"no corpus requests for target {target.name}")
    return corpus


@dataclass
class TopicCount:
    """What reading a topic from the start found."""

    messages: int
    #: The reader caught up: its last poll found nothing new. False: the time ran out while
    #: messages were still coming, so ``messages`` undercounts.
    caught_up: bool
    seconds: float


async def count_messages(
    address: str,
    topic: str,
    expected: int,
    timeout: float = 60.0,
    each: Callable[[bytes], None] | None = None,
    settle: float = 0.0,
) -> TopicCount:
    """Messages on ``topic``, read from the start: at least ``expected`` or all by ``timeout``
    (each payload handed to ``each``, if given), reading for at least ``settle`` seconds.

    Read rather than taken from offsets: Tansu reports a partition's end offset as the base
    offset of its last batch plus one, which undercounts by that batch's size.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=address, auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )  # fmt: skip
    await consumer.start()
    count, got = 0, -1
    start = time.monotonic()
    deadline = start + timeout
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            got = sum(len(records) for records in batches.values())
            count += got
            if each is not None:
                for records in batches.values():
                    for record in records:
                        each(record.value or b"")
            # Past the expected count, drain what is left (duplicates would show).
            if not got and count >= expected and time.monotonic() - start >= settle:
                break
    finally:
        await consumer.stop()
    return TopicCount(count, got == 0, round(time.monotonic() - start, 1))


#: Sentry's outcome codes (the ``outcome`` field of a message on the outcomes topic).
OUTCOME_NAMES = {
    0: "accepted", 1: "filtered", 2: "rate_limited", 3: "invalid", 4: "abuse",
    5: "client_discard", 6: "cardinality_limited",
}  # fmt: skip


async def outcome_tally(address: str) -> dict[str, int]:
    """The outcomes the relay reported, by ``outcome/reason``: what it knew it dropped, and
    why. An event missing from the topic with no drop here went unnoticed by the relay.
    (Error events get no ``accepted`` outcome from a relay: Sentry's consumers emit it.)"""
    tally: Counter[str] = Counter()

    def note(payload: bytes) -> None:
        message = json.loads(payload)
        code = message.get("outcome")
        name = OUTCOME_NAMES.get(code, str(code))
        label = name if code == 0 else f"{name}/{message.get('reason')}"
        tally[label] += message.get("quantity", 1)

    for topic in OUTCOMES_TOPICS:
        await count_messages(address, topic, 0, timeout=5.0, each=note, settle=2.0)
    return dict(tally)


# ---------------------------------------------------------------- measuring


@dataclass
class Measured:
    load: LoadResult
    cpu_per_1k: float
    infra_cpu_per_1k: float
    #: The load generator's own CPU (this process) per 1,000 requests.
    client_cpu_per_1k: float = 0.0
    #: Share of one CPU the load generator used over the run (near 1.0: it is the bottleneck).
    client_busy: float = 0.0
    #: Relay CPU seconds per wall second: how many cores the relay processes kept busy.
    relay_cores: float = 0.0
    #: CPUs kept busy by processes outside this benchmark (other users of a shared machine).
    other_cores: float = 0.0


async def measure(target: Target, run: Callable[[], Any]) -> Measured:
    relays, infra = target.relay_pids(), target.infra_pids()
    cpu0, infra0 = cpu_seconds(relays), cpu_seconds(infra)
    # Only the event loop runs in this process during a run: its CPU is the load generator's.
    client0, wall0, busy0 = time.process_time(), time.perf_counter(), machine_busy_seconds()
    load: LoadResult = await run()
    client, wall = time.process_time() - client0, time.perf_counter() - wall0
    busy = machine_busy_seconds() - busy0
    relays = target.relay_pids() or relays
    relay_cpu = cpu_seconds(relays) - cpu0
    infra_cpu = cpu_seconds(infra) - infra0
    per = 1000 / max(1, load.count)
    others = max(0.0, busy - relay_cpu - infra_cpu - client) / wall
    return Measured(
        load, relay_cpu * per, infra_cpu * per, client * per, client / wall, relay_cpu / wall,
        others,
    )  # fmt: skip


def row(target: Target, kind: str, m: Measured, rss: dict[str, float]) -> dict[str, Any]:
    load = m.load
    return {
        "target": target.name,
        "mode": kind,
        "target_rate": load.target_rate,
        "envelopes_per_s": round(load.rate, 1),
        # Error-event targets: one event per request; only the accepted ones count.
        "events_per_s": (
            round(load.ok / load.seconds, 1) if target.kafka_address and load.seconds else None
        ),
        "requests": load.count,
        "connections": load.connections,
        "ok": load.ok,
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "failures": load.failures,
        "p50_ms": round(load.percentile_ms(0.5), 3),
        "p99_ms": round(load.percentile_ms(0.99), 3),
        "p999_ms": round(load.percentile_ms(0.999), 3),
        "cpu_s_per_1k": round(m.cpu_per_1k, 4),
        "infra_cpu_s_per_1k": round(m.infra_cpu_per_1k, 4),
        "loadgen_cpu_s_per_1k": round(m.client_cpu_per_1k, 4),
        "loadgen_cpu_busy": round(m.client_busy, 3),
        "relay_cores_busy": round(m.relay_cores, 3),
        "other_cores_busy": round(m.other_cores, 3),
        # The largest relay process (worker); every process's VmHWM in rss_by_process_mb.
        "peak_rss_mb": max(rss.values(), default=0.0),
        "rss_by_process_mb": rss,
        "pinned": target.pinned,
        "notes": target.notes,
    }


def py_spy(pids: list[int], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    """Sample each relay process with py-spy for ``seconds``: a flame graph and raw stacks.

    ``--native`` unwinds C frames too, so the mypyc-compiled packages show as their functions
    (``CPyDef_<module>___<function>``) rather than as time spent in their Python caller. It
    pauses the process for each sample, which is why the profiled run is not a measured one.
    """
    exe = Path(sys.executable).with_name("py-spy")
    procs = []
    for n, pid in enumerate(pids):
        stem = out if len(pids) == 1 else out.with_name(f"{out.name}-{n}")
        for fmt, suffix in (("flamegraph", ".svg"), ("raw", ".txt")):
            args = [str(exe), "record", "--pid", str(pid), "--duration", str(int(seconds)),
                    "--rate", "200", "--native", "--format", fmt,
                    "--output", str(stem.with_suffix(suffix))]  # fmt: skip
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))  # fmt: skip
    return procs


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        total += count
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0] + ")"
                  if " (" in f else f for f in stack.split(";")]  # fmt: skip
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count
    lines = [f"samples: {total}", "", "self %  | function"]
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / total:6.1f}  | {name}")
    # The trunk (interpreter, event loop, runner: in nearly every sample) says nothing.
    branches = {name: n for name, n in incl.items() if n < 0.9 * total}
    lines += ["", "incl % | function (frames in >= 90% of samples left out)"]
    for name, n in sorted(branches.items(), key=lambda kv: -kv[1])[: top * 2]:
        lines.append(f"{100 * n / total:6.1f}  | {name}")
    return "\n".join(lines) + "\n"


async def _warm_up(
    target: Target, seconds: float, concurrency: int, profile: bool
) -> tuple[list[bytes], int]:
    """The target's serialized requests, after a warm-up (project configs fetched,
    connections and caches filled) and, if asked, a profiled run; and the requests it
    accepted meanwhile."""
    corpus = target_corpus(target)
    requests = serialize([(p, h, b) for p, h, b in corpus], "127.0.0.1", target.port)
    accepted = (await max_rate("127.0.0.1", target.port, requests, 1.0, 4)).ok
    if profile:
        # A separate profiled run, so that the sampler's cost stays out of the numbers.
        out = RESULTS / f"profile-{target.name}"
        # With workers, the supervisor itself does no work: sample one worker.
        pids = target.relay_pids()
        workers = [pid for pid in pids if process_label(pid) == "worker"]
        spies = py_spy(workers[:1] or pids[:1], seconds, out)
        accepted += (await max_rate("127.0.0.1", target.port, requests, seconds, concurrency)).ok
        for spy in spies:
            await asyncio.to_thread(spy.wait, 30)
        raw = out.with_suffix(".txt")
        if raw.exists():
            out.with_name(out.name + "-summary.txt").write_text(summarize_profile(raw))
    return requests, accepted


async def _max_run(target: Target, requests: list[bytes], seconds: float, conns: int) -> Measured:
    return await measure(
        target, lambda: max_rate("127.0.0.1", target.port, requests, seconds, conns)
    )


async def _finish(
    target: Target, requests: list[bytes], seconds: float, tops: list[Measured], accepted: int
) -> list[dict[str, Any]]:
    """Rows of a target measured at max rate in ``tops`` (rounds): the median round's, then a
    fixed-rate run at 80% of it; the broker checked for every accepted event."""
    top = sorted(tops, key=lambda m: m.load.rate)[len(tops) // 2]
    rate = max(10.0, 0.8 * top.load.rate)
    fixed = await measure(
        target, lambda: fixed_rate("127.0.0.1", target.port, requests, seconds, rate)
    )
    rss = rss_by_process(target.relay_pids())
    rows = [row(target, "max", top, rss), row(target, "fixed 80%", fixed, rss)]
    if len(tops) > 1:
        rows[0]["rounds"] = [
            {"envelopes_per_s": round(m.load.rate, 1), "cpu_s_per_1k": round(m.cpu_per_1k, 4)}
            for m in tops
        ]
    if target.kafka_address is not None:
        accepted += sum(m.load.ok for m in tops) + fixed.load.ok
        read = await count_messages(target.kafka_address, EVENTS_TOPIC, accepted)
        delivered = read.messages
        # Outcomes are aggregated for tens of seconds; a graceful stop flushes them all.
        await asyncio.to_thread(target.stop_relay)
        outcomes = await outcome_tally(target.kafka_address)
        for r in rows:
            r["kafka"] = {
                "accepted": accepted, "on_topic": delivered, "topic": EVENTS_TOPIC,
                "caught_up": read.caught_up, "read_seconds": read.seconds, "outcomes": outcomes,
            }  # fmt: skip
        print(f"   {target.name}: {delivered} messages on {EVENTS_TOPIC} for {accepted} "
              f"accepted requests (read in {read.seconds}s, caught up: {read.caught_up}); "
              f"outcomes: {outcomes}", flush=True)  # fmt: skip
    return rows


async def bench_group(
    group: list[tuple[Target, int, bool]], seconds: float, rounds: int
) -> list[dict[str, Any]]:
    """Targets started together (``(target, connections, profile)`` each: one target, or
    ``--workers 1`` and ``--workers 2``), each measured at max rate in ``rounds`` alternating
    rounds (1, 2 / 2, 1 / ...; a VM whose speed drifts within minutes then moves both
    alike, and each round gives a ratio), then at a fixed rate."""
    prepared = [await _warm_up(t, seconds, c, p) for t, c, p in group]
    tops: list[list[Measured]] = [[] for _ in group]
    for i in range(rounds):
        order = range(len(group)) if i % 2 == 0 else reversed(range(len(group)))
        for k in order:
            target, connections, _ = group[k]
            tops[k].append(await _max_run(target, prepared[k][0], seconds, connections))
    rows: list[dict[str, Any]] = []
    for (target, _, _), (requests, accepted), measured in zip(group, prepared, tops, strict=True):
        rows += await _finish(target, requests, seconds, measured, accepted)
    return rows


def _cpu_split() -> tuple[set[int], set[int]]:
    """(server CPUs, load generator CPUs): the last CPU for the client when there are two+."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return set(cpus[:-1]), {cpus[-1]}


def connections_of(name: str, concurrency: int, processing_concurrency: int) -> int:
    """Connections at max rate: per relay process, times the workers of ``-workersN``.

    A processing relay's clients are POPs, each with up to ``limits.max_concurrent_requests``
    (100) connections, and its answers wait for the broker's acks: with as few connections
    as an SDK-facing POP gets, it idles between acks instead of running at its maximum.
    """
    per_process = processing_concurrency if name.startswith("processing") else concurrency
    # Each relay process gets the connections one process gets: with N workers sharing
    # them, each would see 1/N, and a worker with fewer requests in flight batches less
    # (smaller Kafka batches, fewer answers per event-loop wake-up) and is not saturated.
    return per_process * (_workers_of(name) if "-workers" in name else 1)


def _launch(name: str, workdir: Path) -> Target:
    """Start target ``name`` and place its processes (see the module docstring)."""
    all_cpus = os.sched_getaffinity(0)
    servers, client = _cpu_split()
    # Children inherit the affinity of this process at start.
    pinned = "-workers" not in name
    os.sched_setaffinity(0, servers if pinned else all_cpus)
    try:
        target = start_target(name, workdir / name)
    finally:
        os.sched_setaffinity(0, all_cpus)
    if pinned and servers != client and target.infra_pids():
        # The relay's core runs only the relay: its upstream, Redis and the broker are
        # other machines in production, so they go with the load generator.
        pin(tree(target.infra_pids()), client)
        target.notes.append(f"infrastructure pinned with the load generator to {sorted(client)}")
    if not pinned:
        if not target.infra_in_answer_path:
            batch(tree(target.infra_pids()))
        target.notes.append(
            "in SCHED_BATCH: the load generator"
            + ("" if target.infra_in_answer_path else " and the infrastructure")
        )
    return target


def _pairs(names: list[str]) -> list[list[str]]:
    """``names`` in order, each ``X-workers1`` grouped with its ``X-workers2`` (if asked)."""
    groups: list[list[str]] = []
    for name in names:
        if name.endswith("-workers2") and name[:-1] + "1" in names:
            continue
        if name.endswith("-workers1") and name[:-1] + "2" in names:
            groups.append([name, name[:-1] + "2"])
        else:
            groups.append([name])
    return groups


def run_all(
    names: list[str],
    seconds: float,
    concurrency: int,
    workdir: Path,
    profile: set[str],
    processing_concurrency: int,
    rounds: int = 5,
) -> list[dict[str, Any]]:
    all_cpus = os.sched_getaffinity(0)
    _, client = _cpu_split()
    rows: list[dict[str, Any]] = []
    for group in _pairs(names):
        print(f"-- {' + '.join(group)}", flush=True)
        targets: list[Target] = []
        try:
            for name in group:
                targets.append(_launch(name, workdir))
            pinned = "-workers" not in group[0]
            os.sched_setaffinity(0, client if pinned else all_cpus)
            if not pinned:
                batch([os.getpid()])
            plan = [
                (t, connections_of(t.name, concurrency, processing_concurrency), t.name in profile)
                for t in targets
            ]
            # Rounds only compare a pair; a single target gets one max-rate run.
            rows += asyncio.run(bench_group(plan, seconds, rounds if len(plan) > 1 else 1))
        finally:
            for target in targets:
                target.stop()
            os.sched_setaffinity(0, all_cpus)
            batch([os.getpid()], on=False)
    return rows


# ---------------------------------------------------------------- reporting


def with_ratios(rows: list[dict[str, Any]]) -> None:
    base = {r["mode"]: r for r in rows if r["target"] == "baseline"}
    for r in rows:
        b = base.get(r["mode"])
        if b is None:
            continue
        r["throughput_vs_baseline"] = round(r["envelopes_per_s"] / b["envelopes_per_s"], 3)
        if b["cpu_s_per_1k"]:
            r["cpu_vs_baseline"] = round(r["cpu_s_per_1k"] / b["cpu_s_per_1k"], 2)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"# make bench: {meta['date']}",
        "",
        f"Machine: {meta['machine']}. Corpus: {meta['corpus']}. {meta['seconds']:.0f}s per run, "
        f"{meta['concurrency']} connections per relay process at max rate (processing relays: "
        f"{meta.get('processing_concurrency', meta['concurrency'])}, their clients are POPs; "
        "`-workersN`: N times as many); fixed rate = 80% of the measured max.",
        "Relays pinned to CPUs "
        f"{meta['server_cpus']}, load generator and infrastructure (fake upstream, Redis, "
        f"broker, configserver) to {meta['client_cpus']}, except the `-workersN` targets (all "
        "processes on all CPUs, the load generator and a POP's upstream in SCHED_BATCH). "
        "Ratios are to the baseline of the same run.",
        "CPU s/1k: CPU seconds of the relay processes per 1,000 requests; infra and load "
        "generator apart. LG busy: share of one CPU the load generator used (near 1: it is "
        "the bottleneck). Relay cores: relay CPU seconds per second. Peak RSS: VmHWM of the "
        "largest relay process (a worker, not a sum). Others: CPUs kept busy by processes "
        "outside the benchmark (a shared machine; the relay gets less than its core).",
        "",
        "| target | mode | env/s | events/s | vs base | p50 ms | p99 ms | p99.9 ms | CPU s/1k"
        " | CPU vs base | infra CPU s/1k | LG CPU s/1k | LG busy | relay cores | others"
        " | peak RSS MB | non-200 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        bad = r["requests"] - r["ok"] + r["failures"]
        events = "" if r.get("events_per_s") is None else f"{r['events_per_s']:.0f}"
        lines.append(
            f"| {r['target']} | {r['mode']} | {r['envelopes_per_s']:.0f} | {events} | "
            f"{r.get('throughput_vs_baseline', 0):.2f}x | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['p999_ms']:.2f} | {r['cpu_s_per_1k']:.3f} | {r.get('cpu_vs_baseline', 0):.1f}x | "
            f"{r['infra_cpu_s_per_1k']:.3f} | {r['loadgen_cpu_s_per_1k']:.3f} | "
            f"{r['loadgen_cpu_busy']:.2f} | {r['relay_cores_busy']:.2f} | "
            f"{r['other_cores_busy']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {bad} |"
        )
    lines += workers_table(rows)
    lines += ["", "Notes:"]
    for r in rows:
        kafka = r.get("kafka")
        if kafka and r["mode"] == "max":
            lost = kafka["accepted"] - kafka["on_topic"]
            if lost == 0:
                verdict = "none lost"
            elif lost < 0:
                verdict = f"**{-lost} DUPLICATED**"
            elif not kafka.get("caught_up", True):
                took = kafka.get("read_seconds")
                verdict = f"**{lost} NOT READ** in {took}s (the check ran out of time)"
            else:
                verdict = f"**{lost} LOST**"
            outcomes = kafka.get("outcomes") or {}
            reported = "; the relay's outcomes: " + (
                ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none"
            )
            lines.append(
                f"- {r['target']}: {kafka['on_topic']} messages on {kafka['topic']} for "
                f"{kafka['accepted']} accepted requests (all runs, warm-up included): {verdict}"
                f"{reported}"
            )
    for r in rows:
        if r["mode"] == "max" and len(r.get("rss_by_process_mb", {})) > 1:
            each = ", ".join(f"{k} {v:.0f}" for k, v in r["rss_by_process_mb"].items())
            lines.append(f"- {r['target']}: peak RSS MB per process: {each}")
    seen = set()
    for r in rows:
        for note in r["notes"]:
            if (r["target"], note) not in seen:
                seen.add((r["target"], note))
                lines.append(f"- {r['target']}: {note}")
    return "\n".join(lines) + "\n"


def _rounds(r: dict[str, Any]) -> list[dict[str, Any]]:
    """A max row's rounds (alternating with its pair), or the row itself as one round."""
    rounds: list[dict[str, Any]] = r.get("rounds") or [r]
    return rounds


def workers_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``X-workers2`` against ``X-workers1`` of the same run (same placement), per mode.

    With rounds, each round of two workers is compared with the round of one worker next to
    it, and the ratios are the medians over rounds; the env/s, CPU and cores shown are those
    of each target's median round.
    """
    by_key = {(r["target"], r["mode"]): r for r in rows}
    out = []
    for (name, mode), two in by_key.items():
        if mode != "max" or not name.endswith("-workers2"):
            continue
        one = by_key.get((name[: -len("2")] + "1", mode))
        if one is None or not one["envelopes_per_s"]:
            continue
        pairs = list(zip(_rounds(one), _rounds(two), strict=True))
        ratios = [b["envelopes_per_s"] / a["envelopes_per_s"] for a, b in pairs]
        # Envelopes per relay CPU-second, 2 workers over 1: below 1.0 the workers cost
        # more per envelope; the raw ratio also depends on the cores they could get.
        per_core = [a["cpu_s_per_1k"] / b["cpu_s_per_1k"] for a, b in pairs if b["cpu_s_per_1k"]]
        out.append({
            "target": name[: -len("-workers2")], "mode": mode,
            "workers1_per_s": one["envelopes_per_s"], "workers2_per_s": two["envelopes_per_s"],
            "ratio": round(statistics.median(ratios), 3),
            "round_ratios": [round(x, 3) for x in ratios],
            "connections": (one.get("connections", 0), two.get("connections", 0)),
            "cpu_per_1k": (one["cpu_s_per_1k"], two["cpu_s_per_1k"]),
            "relay_cores": (one["relay_cores_busy"], two["relay_cores_busy"]),
            "other_cores": (one["other_cores_busy"], two["other_cores_busy"]),
            "per_core_ratio": round(statistics.median(per_core), 3) if per_core else 0.0,
        })  # fmt: skip
    return out


def workers_table(rows: list[dict[str, Any]]) -> list[str]:
    """The ``--workers 2`` / ``--workers 1`` lines of the Markdown report."""
    ratios = workers_ratios(rows)
    if not ratios:
        return []
    lines = [
        "",
        "`--workers 2` against `--workers 1` at max rate, same placement (all CPUs shared),"
        " same run, both running and measured in alternating rounds (1, 2 / 2, 1 / ...): the"
        " ratio is the median of the rounds' ratios; env/s, CPU and cores are each target's"
        " median round. Per relay core: envelopes per relay CPU-second, 2 workers over 1"
        " (1.00x: a second worker costs nothing per envelope; the raw ratio is then the ratio"
        " of the cores the relays could get next to the load generator, infrastructure and"
        " others):",
        "",
        "| target | mode | connections (1 / 2) | 1 worker env/s | 2 workers env/s | ratio |"
        " rounds | relay CPU s/1k (1 / 2) | relay cores (1 / 2) | others (1 / 2) |"
        " per relay core |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in ratios:
        each = ", ".join(f"{x:.2f}" for x in r["round_ratios"])
        lines.append(
            f"| {r['target']} | {r['mode']} | {r['connections'][0]} / {r['connections'][1]} | "
            f"{r['workers1_per_s']:.0f} | "
            f"{r['workers2_per_s']:.0f} | {r['ratio']:.2f}x | {each} | "
            f"{r['cpu_per_1k'][0]:.3f} / "
            f"{r['cpu_per_1k'][1]:.3f} | {r['relay_cores'][0]:.2f} / {r['relay_cores'][1]:.2f} | "
            f"{r['other_cores'][0]:.2f} / {r['other_cores'][1]:.2f} | "
            f"{r['per_core_ratio']:.2f}x |"
        )
    return lines


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.node()}, {os.cpu_count()} CPUs ({model}), Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per run (max, then fixed)")
    parser.add_argument("--concurrency", type=int, default=16, help="per POP/baseline process")
    parser.add_argument(
        "--processing-concurrency", type=int, default=64, help="per processing relay process"
    )
    parser.add_argument(
        "--targets",
        default=",".join(ALL_TARGETS),
        help=f"comma-separated, of {', '.join(ALL_TARGETS + OPTIONAL_TARGETS)}",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating max-rate rounds of a workers pair"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest")
    parser.add_argument("--profile", default="", help="targets to profile with py-spy first")
    opts = parser.parse_args()
    install_event_loop()
    names = [n.strip() for n in opts.targets.split(",") if n.strip()]
    if "baseline" not in names:
        names.insert(0, "baseline")
    workdir = RESULTS / "run.tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    servers, client = _cpu_split()
    profile = {n.strip() for n in opts.profile.split(",") if n.strip()}
    rounds = max(1, opts.rounds)
    rows = run_all(
        names, opts.seconds, opts.concurrency, workdir, profile, opts.processing_concurrency, rounds
    )
    with_ratios(rows)
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "corpus": f"{len(load_corpus(CORPUS))} recorded sentry-python requests",
        "seconds": opts.seconds,
        "concurrency": opts.concurrency,
        "processing_concurrency": opts.processing_concurrency,
        "rounds": rounds,
        "server_cpus": sorted(servers),
        "client_cpus": sorted(client),
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "rows": rows, "workers": workers_ratios(rows)}
    opts.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    table = markdown(rows, meta)
    opts.out.with_suffix(".md").write_text(table)
    print()
    print(table)
    lost = [
        r["target"]
        for r in rows
        if r.get("kafka") and r["kafka"]["on_topic"] != r["kafka"]["accepted"]
    ]
    if lost:
        print(f"events lost or duplicated by: {', '.join(sorted(set(lost)))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
