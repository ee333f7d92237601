"""``make bench`` (PII): µs per event, our compiled scrubber vs `sentry_relay.pii_strip_event`.

Both run in this process on the same canonical corpus events with the default
datascrubbing settings. `sentry_relay` is measured as Sentry calls it (dict in, dict out;
its JSON conversion and per-call config compilation are part of its cost). Ours is the
server's hot path: a config compiled once, applied to a freshly decoded event (the copy is
timed separately and also reported, since the server decodes events anyway).

"warm" is the steady state of a relay: the compiled config keeps a bounded cross-event
cache of string results, and this benchmark repeats one event, so every string hits it.
"cold" clears that cache before each call: every string is scrubbed from scratch, which
is the cost of an event whose values were never seen before. What stays is derived from
the config alone, as it does in a relay across all events of a config revision: the
compiled rules and, per field path, which rules apply there.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import sentry_relay.processing as sentry_relay

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import relay.pii as pii  # noqa: E402
from tests.unit.pii_corpus import corpus_events  # noqa: E402

SETTINGS = {"scrubData": True, "scrubDefaults": True, "scrubIpAddresses": True}
PICKS = (
    "pii-on_05_error-unhandled__event-error.envelope:event",  # ~7 KB
    "pii-on_01_error-handled-deep-locals__event-error.envelope:event",  # ~91 KB
    "pii-on_12_transaction-30spans__profile+transaction.envelope:transaction",
)


def per_call(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Median µs per call over repeated timed batches."""
    fn()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        for _ in range(10):
            fn()
        samples.append((time.perf_counter() - start) / 10)
    samples.sort()
    return samples[len(samples) // 2] * 1e6


def main() -> int:
    converted = sentry_relay.convert_datascrubbing_config(SETTINGS)
    pipeline = pii.compile_project_configs(None, SETTINGS)
    events = {name: sentry_relay.pii_strip_event({}, ev) for name, ev in corpus_events()}
    print("pii scrubbing, default datascrubbing settings (µs per event, lower is better)")
    for name in PICKS:
        event: dict[str, Any] = events[name]
        raw = msgspec.json.encode(event)

        def ours(raw: bytes = raw) -> None:
            pipeline.process_event(msgspec.json.decode(raw))

        def cold(raw: bytes = raw) -> None:
            pipeline.clear_value_cache()
            pipeline.process_event(msgspec.json.decode(raw))

        def copy_only(raw: bytes = raw) -> None:
            msgspec.json.decode(raw)

        def relay(event: dict[str, Any] = event) -> None:
            sentry_relay.pii_strip_event(converted, event)

        t_relay = per_call(relay)
        t_ours = per_call(ours)
        t_cold = per_call(cold)
        t_copy = per_call(copy_only)
        size = len(json.dumps(event))
        print(
            f"  {name.split('__')[0]:<38} {size / 1024:5.1f} KB  sentry_relay {t_relay:6.0f}  "
            f"ours: warm {t_ours:5.0f} cold {t_cold:5.0f} (decode {t_copy:4.0f})  "
            f"speedup: warm {t_relay / t_ours:5.2f}x cold {t_relay / t_cold:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
