"""Trimming's fast path (plain subtrees that fit their bags are not walked) is exact.

Every event is trimmed twice, with the fast path and with the node-by-node reference walk
(``trim_event(..., fast=False)``); the trimmed events and their ``_meta`` must be equal.
The generated events sit around the limits on purpose: byte budgets a few bytes either side
of full, depth limits one level either side, unicode strings, floats with exponents, nulls.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from relay.normalize.event import parse_event
from relay.normalize.schema import EVENT
from relay.normalize.trimming import trim_event
from tests.unit.normalize_cases import EDGE_CASES, TRIM_CASES, corpus_events

_LEAVES: list[Any] = [
    None,
    True,
    False,
    0,
    -12,
    2**53,
    1.5,
    1e20,
    1e-5,
    -2.5e-7,
    "",
    "x",
    "\u00e9\u2603",
    "ab" * 20,
]


def _leaf(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.15:
        # Long strings, ASCII or not, to land near byte budgets.
        char = rng.choice(["a", "\u00e9", "\u2603"])
        return char * rng.choice([10, 100, 250, 500, 1000, 2000, 4000, 8100, 8300])
    return rng.choice(_LEAVES)


def _json(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.45:
        return _leaf(rng)
    # Wide containers only near the leaves, so that events stay small enough to test fast.
    size = rng.choice([0, 1, 2, 3, 5, 20, 60] if depth <= 1 else [0, 1, 2, 3])
    if roll < 0.7:
        return [_json(rng, depth - 1) for _ in range(size)]
    return {f"k{i}": _json(rng, depth - 1) for i in range(size)}


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = {f"n{i}": value} if i % 2 else [value]
    return value


def _bag(rng: random.Random) -> Any:
    """A value for a bag: random JSON, or one nested exactly around a depth limit."""
    if rng.random() < 0.3:
        return _nested(rng.randint(2, 9), _leaf(rng))
    return _json(rng, rng.randint(1, 5))


def _frame(rng: random.Random, i: int) -> dict[str, Any]:
    frame: dict[str, Any] = {"function": f"f{i}", "in_app": rng.random() < 0.5}
    if rng.random() < 0.7:
        frame["vars"] = {f"v{j}": _bag(rng) for j in range(rng.randint(0, 6))}
    if rng.random() < 0.3:
        frame["pre_context"] = ["x" * rng.randint(0, 300) for _ in range(3)]
    if rng.random() < 0.1:
        frame["function"] = "g" * rng.choice([500, 531, 532, 533, 600])
    return frame


def _event(rng: random.Random) -> dict[str, Any]:
    event: dict[str, Any] = {"event_id": "a" * 32, "platform": "python"}
    if rng.random() < 0.7:
        event["extra"] = {f"e{i}": _bag(rng) for i in range(rng.randint(0, 12))}
    if rng.random() < 0.6:
        event["breadcrumbs"] = {
            "values": [
                {
                    "message": _leaf(rng) if rng.random() < 0.3 else f"m{i}",
                    "category": "c" * rng.choice([3, 127, 128, 129, 200]),
                    "data": {f"d{j}": _bag(rng) for j in range(rng.randint(0, 5))},
                    "unknown": _bag(rng),
                }
                for i in range(rng.randint(0, 30))
            ]
        }
    if rng.random() < 0.6:
        frames = [_frame(rng, i) for i in range(rng.choice([1, 5, 49, 51, 120]))]
        event["exception"] = {
            "values": [{"type": "E", "value": _leaf(rng), "stacktrace": {"frames": frames}}]
        }
    if rng.random() < 0.5:
        count = rng.randint(0, 400)
        event["modules"] = {f"pkg{i}": "1." * rng.randint(1, 40) for i in range(count)}
    if rng.random() < 0.6:
        count = rng.randint(0, 12)
        headers = {f"H-{i}": "h" * rng.choice([1, 50, 900, 3000]) for i in range(count)}
        event["request"] = {
            "url": "http://x/" + "p" * rng.choice([10, 290, 300]),
            "headers": headers,
            "env": {f"E{i}": _bag(rng) for i in range(rng.randint(0, 6))},
            "data": _bag(rng),
            "cookies": {f"c{i}": "v" * rng.choice([1, 500]) for i in range(rng.randint(0, 8))},
            "query_string": [[f"q{i}", "w" * rng.choice([1, 300])] for i in range(4)],
        }
    if rng.random() < 0.6:
        event["contexts"] = {
            "trace": {"trace_id": "b" * 32, "span_id": "c" * 16, "op": "o" * rng.choice([3, 200])},
            "runtime": {"name": "CPython", "version": "3.11", "extra": _bag(rng)},
            "custom": {f"x{i}": _bag(rng) for i in range(rng.randint(0, 10))},
            "os": {"name": "Linux", "kernel_version": _leaf(rng)},
        }
    if rng.random() < 0.3:
        event["logentry"] = {"message": "%s %s", "params": [_bag(rng) for _ in range(4)]}
    if rng.random() < 0.3:
        event["tags"] = {f"t{i}": "t" * rng.choice([1, 199, 200, 201, 250]) for i in range(5)}
    if rng.random() < 0.2:
        event["type"] = "transaction"
        event["start_timestamp"] = 1_700_000_000.0
        event["timestamp"] = 1_700_000_001.0
        event["spans"] = [
            {
                "span_id": f"{i:016x}",
                "trace_id": "b" * 32,
                "op": "db" * rng.choice([1, 70]),
                "start_timestamp": 1_700_000_000.0,
                "timestamp": 1_700_000_000.5,
                "data": {f"s{j}": _bag(rng) for j in range(rng.randint(0, 4))},
            }
            for i in range(rng.randint(0, 40))
        ]
    return event


def _trimmed(payload: dict[str, Any], fast: bool) -> tuple[dict[str, Any], Any]:
    event, meta = parse_event(copy.deepcopy(payload))
    trim_event(EVENT, event, meta, fast=fast)
    return event, meta


def assert_exact(payload: dict[str, Any]) -> None:
    fast_event, fast_meta = _trimmed(payload, True)
    slow_event, slow_meta = _trimmed(payload, False)
    assert fast_event == slow_event
    assert fast_meta == slow_meta


@pytest.mark.parametrize("seed", range(40))
def test_generated_events_trim_identically(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10):
        assert_exact(_event(rng))


@pytest.mark.parametrize("name", sorted(TRIM_CASES))
def test_trim_cases(name: str) -> None:
    assert_exact(TRIM_CASES[name])


def test_corpus_and_edge_cases() -> None:
    for _, payload in corpus_events():
        assert_exact(payload)
    for payload in EDGE_CASES.values():
        if isinstance(payload, dict):
            assert_exact(payload)


def test_budget_boundaries() -> None:
    """Breadcrumb data (2048 bytes, depth 5) filled to every size around its budget."""
    for size in range(2030, 2060):
        for depth in range(1, 7):
            payload = {"breadcrumbs": [{"data": {"k": _nested(depth, "z" * (size - 30))}}]}
            assert_exact(payload)
    # Empty containers and nulls after a string that leaves 0..6 bytes of the budget.
    for size in range(2030, 2050):
        data: dict[str, Any] = {"a": "x" * size, "b": {}, "c": [], "d": None, "e": [[], {}]}
        assert_exact({"breadcrumbs": [{"data": data}], "extra": {"q": data}})


def test_fast_path_is_taken_and_reference_still_cuts() -> None:
    """Sanity: over-limit data is still trimmed by both paths (not skipped)."""
    payload = {"extra": {"big": "x" * 20_000}, "breadcrumbs": [{"data": {"a": "y" * 3000}}]}
    event, meta = _trimmed(payload, True)
    assert len(event["extra"]["big"]) < 20_000
    assert len(event["breadcrumbs"]["values"][0]["data"]["a"]) < 3000
    assert meta["extra"]["big"][""]["len"] == 20_000
    assert_exact(payload)
