"""``relay dev`` (``make run``): the whole local chain in the foreground until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from relay.dev.chain import DEMO_PROJECT_ID, DEMO_PUBLIC_KEY, LocalChain


def run_stack(workdir: Path, pop_port: int) -> int:
    """Start Redis, the broker, the configserver, a processing and a POP relay."""
    chain = LocalChain(workdir.resolve(), pop_port=pop_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("starting Redis, Kafka (Tansu), configserver, processing relay, POP relay ...")
    try:
        chain.start()
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        _banner(chain)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping ...")
        chain.stop()
    return 0


def _banner(chain: LocalChain) -> None:
    assert chain.redis is not None and chain.kafka is not None
    pop = chain.pop.url
    print(f"""
  Redis              {chain.redis.address}
  Kafka              {chain.kafka_bootstrap}
  configserver       {chain.configserver.url}
  processing relay   {chain.processing.url}
  POP relay          {pop}        logs: {chain.workdir}/*/relay.log

  DSN:  {chain.dsn}

  Send an event:
    curl -s {pop}/api/{DEMO_PROJECT_ID}/store/ \\
      -H 'X-Sentry-Auth: Sentry sentry_key={DEMO_PUBLIC_KEY}, sentry_version=7' \\
      -H 'Content-Type: application/json' \\
      -d '{{"message": "hello from curl", "level": "error"}}'

  Watch it land:
    .venv/bin/relay tail ingest-events --bootstrap {chain.kafka_bootstrap} --from-beginning

  Ctrl-C stops everything.
""", flush=True)  # fmt: skip
