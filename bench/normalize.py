"""Benchmark: ``relay.normalize.StoreNormalizer`` vs ``sentry_relay.StoreNormalizer``.

Runs every error event and transaction of the SDK corpus through both normalizers in the
same process and prints microseconds per event and the ratio (theirs / ours: >1 means
we are faster). Usage: ``python bench/normalize.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relay.normalize import StoreNormalizer
from tests.unit.normalize_cases import corpus_events


def _time_per_event(
    normalize: Callable[[dict[str, Any]], Any], events: list[dict[str, Any]], rounds: int
) -> float:
    """Best-of-``rounds`` mean microseconds per event (inputs copied outside the timer)."""
    best = float("inf")
    for _ in range(rounds):
        inputs = [copy.deepcopy(e) for e in events]
        start = time.perf_counter()
        for event in inputs:
            normalize(event)
        best = min(best, (time.perf_counter() - start) / len(events))
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    try:
        import sentry_relay
    except ImportError:
        sys.exit("sentry_relay is not installed (pip install sentry-relay)")
    corpus = corpus_events()
    groups = {
        "error events": [e for n, e in corpus if "event-" in n],
        "transactions": [e for n, e in corpus if "transaction" in n],
    }
    ours = StoreNormalizer()
    theirs = sentry_relay.StoreNormalizer()  # type: ignore[attr-defined]
    print(f"{'corpus':<16}{'events':>7}{'ours us/ev':>12}{'relay us/ev':>13}{'ratio':>8}")
    for name, events in groups.items():
        if not events:
            continue
        t_ours = _time_per_event(ours.normalize_event, events, args.rounds)
        t_theirs = _time_per_event(theirs.normalize_event, events, args.rounds)
        print(
            f"{name:<16}{len(events):>7}{t_ours:>12.1f}{t_theirs:>13.1f}{t_theirs / t_ours:>8.2f}"
        )


if __name__ == "__main__":
    main()
