"""Differential tests: ``relay.normalize.StoreNormalizer`` against ``sentry_relay``'s."""

from __future__ import annotations

import copy
import importlib
import random
from typing import Any

import pytest

from relay.normalize import InvalidTransaction, StoreNormalizer
from tests.unit.normalize_cases import (
    EDGE_CASES,
    RECEIVED_AT,
    TRIM_CASES,
    UA_CASES,
    corpus_events,
)

# The oracle (a dependency, always installed); its functions carry no annotations.
sentry_relay: Any = importlib.import_module("sentry_relay")

CORPUS = corpus_events()
CORPUS_NAMES = sorted({n for n, _ in CORPUS})
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {"received_at": RECEIVED_AT},
    "drift": {"received_at": RECEIVED_AT, "max_secs_in_future": 60, "max_secs_in_past": 2592000},
    "keep_other": {"received_at": RECEIVED_AT, "remove_other": False},
    "client": {
        "received_at": RECEIVED_AT,
        "project_id": 42,
        "key_id": "7",
        "client": "sentry.python/2.0",
        "protocol_version": "7",
        "client_ip": "10.1.1.1",
        "grouping_config": {"id": "newstyle:2023-01-11"},
    },
}


def _comparable(output: dict[str, Any], payload: Any) -> dict[str, Any]:
    """Mask what is random by design: a generated event id and the trace ids derived from it."""
    out = copy.deepcopy(output)
    has_id = isinstance(payload, dict) and isinstance(payload.get("event_id"), str)
    if not has_id or "event_id" in out.get("_meta", {}):
        event_id = out.get("event_id")
        out["event_id"] = "<random>"
        trace = (out.get("contexts") or {}).get("trace") or {}
        if event_id and trace.get("trace_id") == event_id:
            trace["trace_id"] = trace["span_id"] = "<random>"
    return out


def _run(normalizer: Any, payload: Any) -> Any:
    try:
        return _comparable(normalizer.normalize_event(copy.deepcopy(payload)), payload)
    except (InvalidTransaction, sentry_relay.exceptions.ProcessingErrorInvalidTransaction):
        return "invalid transaction"


def assert_same(payload: Any, **config: Any) -> None:
    theirs = _run(sentry_relay.StoreNormalizer(**config), payload)
    ours = _run(StoreNormalizer(**config), payload)
    assert ours == theirs


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("name,payload", CORPUS, ids=[n for n, _ in CORPUS])
def test_corpus(name: str, payload: dict[str, Any], config: str) -> None:
    assert_same(payload, **CONFIGS[config])


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases(name: str, config: str) -> None:
    assert_same(EDGE_CASES[name], **CONFIGS[config])


# -- generated events -------------------------------------------------------------------

_SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    7,
    2**40,
    1.5,
    -0.5,
    "",
    " ",
    "x",
    "ValueError: boom",
    "a/b",
    "2026-11-26T12:00:00Z",
    "2026-11-26T12:00:00.123+01:00",
    "not a date",
    "{{auto}}",
    "127.0.0.1",
    "::1",
    "x" * 300,
    "\u00e9\u2603",
]
_FIELDS = [
    "event_id",
    "level",
    "logger",
    "platform",
    "timestamp",
    "release",
    "dist",
    "environment",
    "server_name",
    "transaction",
    "culprit",
    "message",
    "tags",
    "extra",
    "user",
    "request",
    "contexts",
    "breadcrumbs",
    "exception",
    "stacktrace",
    "fingerprint",
    "modules",
    "sdk",
    "logentry",
    "threads",
    "unknown_key",
]
_NESTED = {
    "user": ["id", "email", "ip_address", "username", "name", "geo", "data", "other"],
    "request": ["url", "method", "data", "query_string", "cookies", "headers", "env"],
    "logentry": ["message", "formatted", "params"],
    "sdk": ["name", "version", "integrations", "settings"],
}


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.6:
        return rng.choice(_SCALARS)
    if roll < 0.8:
        return [_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "b", "type", "values", "value"]): _value(rng, depth - 1)}


def _field(rng: random.Random, name: str) -> Any:
    if name in _NESTED and rng.random() < 0.7:
        keys = rng.sample(_NESTED[name], rng.randint(1, len(_NESTED[name])))
        return {k: _value(rng, 2) for k in keys}
    if name in ("exception", "breadcrumbs", "threads") and rng.random() < 0.7:
        item = {"type": _value(rng, 0), "value": _value(rng, 0), "message": _value(rng, 0)}
        return {"values": [item, _value(rng, 1)]}
    if name == "tags" and rng.random() < 0.5:
        return [[rng.choice(_SCALARS), rng.choice(_SCALARS)] for _ in range(3)]
    return _value(rng, 3)


def generated_events(count: int, seed: int = 6) -> list[dict[str, Any]]:
    """Deterministic random events with odd types, timestamps, strings and nesting."""
    rng = random.Random(seed)
    events = []
    for _ in range(count):
        fields = rng.sample(_FIELDS, rng.randint(1, 8))
        events.append({name: _field(rng, name) for name in fields})
    return events


GENERATED = generated_events(250)
#: Known divergences on hostile generated input (see the module docstring of
#: ``relay.normalize``): invalid members inside an invalid ``logentry`` and a few error
#: wordings of the Rust ``cookie``/``chrono`` crates. The corpus and edge cases match exactly.
MIN_GENERATED_MATCH_RATE = 0.92


def test_generated() -> None:
    mismatches = []
    for index, payload in enumerate(GENERATED):
        theirs = _run(sentry_relay.StoreNormalizer(received_at=RECEIVED_AT), payload)
        ours = _run(StoreNormalizer(received_at=RECEIVED_AT), payload)
        if ours != theirs:
            mismatches.append(index)
    rate = 1 - len(mismatches) / len(GENERATED)
    assert rate >= MIN_GENERATED_MATCH_RATE, f"match rate {rate:.2%}, mismatches: {mismatches}"


# -- trimming and user agents ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TRIM_CASES))
def test_trimming(name: str) -> None:
    assert_same(TRIM_CASES[name], received_at=RECEIVED_AT, enable_trimming=True)


@pytest.mark.parametrize("name", sorted(UA_CASES))
def test_user_agent(name: str) -> None:
    assert_same(UA_CASES[name], received_at=RECEIVED_AT, normalize_user_agent=True)


@pytest.mark.parametrize("name", sorted(CORPUS_NAMES))
def test_corpus_trimming_and_user_agent(name: str) -> None:
    payload = dict(CORPUS)[name]
    assert_same(payload, received_at=RECEIVED_AT, enable_trimming=True, normalize_user_agent=True)


def test_generated_trimming() -> None:
    mismatches = []
    config = {"received_at": RECEIVED_AT, "enable_trimming": True, "normalize_user_agent": True}
    for index, payload in enumerate(GENERATED):
        theirs = _run(sentry_relay.StoreNormalizer(**config), payload)
        ours = _run(StoreNormalizer(**config), payload)
        if ours != theirs:
            mismatches.append(index)
    rate = 1 - len(mismatches) / len(GENERATED)
    assert rate >= MIN_GENERATED_MATCH_RATE, f"match rate {rate:.2%}, mismatches: {mismatches}"
