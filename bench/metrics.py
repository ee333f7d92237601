"""Benchmark: session items aggregated per second by one process, and the shrink ratio.

Generates session updates (50 releases, 3 environments, 5 statuses, 2,000 users, start
times spread over two minutes), runs each item through the full pure pipeline (parse,
normalize, extract, aggregator merge), flushes, and prints:

- session items/s through parse+normalize+extract+merge, and merge alone (buckets/s);
- the ratio of Kafka messages (one per flushed bucket) to input items.

Usage: ``python bench/metrics.py [--items N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relay.metrics import Aggregator, AggregatorConfig, Bucket, SessionContext, process_sessions

KEY = "a94ae32be2584e0bbd7a4cbb95971fee"


def _payloads(n: int, now: datetime) -> list[bytes]:
    rng = random.Random(1)
    statuses = ["ok", "exited", "exited", "errored", "crashed"]
    out = []
    for i in range(n):
        started = now - timedelta(seconds=rng.randrange(120))
        payload = {
            "sid": f"{i:032x}",
            "did": f"user-{rng.randrange(2000)}",
            "seq": i,
            "init": rng.random() < 0.3,
            "timestamp": now.isoformat(),
            "started": started.isoformat(),
            "status": rng.choice(statuses),
            "errors": 0,
            "attrs": {
                "release": f"app@{rng.randrange(50)}.0.0",
                "environment": rng.choice(["production", "staging", "dev"]),
            },
        }
        out.append(json.dumps(payload).encode())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    now = datetime.now(UTC)
    payloads = _payloads(args.items, now)
    ctx = SessionContext(received_at=now, client="sentry.python/2.0.0")

    best_total = best_merge = float("inf")
    flushed = extracted = 0
    for _ in range(args.rounds):
        aggregator = Aggregator(AggregatorConfig(), now=now.timestamp())
        all_buckets: list[list[Bucket]] = []
        start = time.perf_counter()
        for payload in payloads:
            buckets, _ = process_sessions([payload], [], ctx)
            aggregator.merge_all(KEY, buckets, now.timestamp())
            all_buckets.append(buckets)
        best_total = min(best_total, time.perf_counter() - start)
        flushed = sum(len(b) for b in aggregator.flush_all().values())
        extracted = sum(len(b) for b in all_buckets)

        # Merge alone, on already extracted buckets.
        aggregator = Aggregator(AggregatorConfig(), now=now.timestamp())
        start = time.perf_counter()
        for buckets in all_buckets:
            aggregator.merge_all(KEY, buckets, now.timestamp())
        best_merge = min(best_merge, time.perf_counter() - start)

    print(f"session items:             {args.items}")
    print(f"extracted buckets:         {extracted}")
    print(f"items/s (full pipeline):   {args.items / best_total:,.0f}")
    print(f"buckets/s (merge only):    {extracted / best_merge:,.0f}")
    print(f"kafka messages:            {flushed}")
    print(f"messages per input item:   {flushed / args.items:.4f}")


if __name__ == "__main__":
    main()
