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
    trace_meta = ((out.get("_meta") or {}).get("contexts") or {}).get("trace") or {}
    if "nil_trace_id" in str(trace_meta.get("trace_id")):
        # A nil trace id is replaced by a random one.
        trace = out["contexts"]["trace"]
        trace["trace_id"] = "<random>"
        trace["span_id"] = "<random>"
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
#: Shapes the plain scalars miss: odd timestamps (naive, lowercase ``t``, space separated,
#: signed and far years, leap seconds, impossible dates, numeric extremes), UUID, cookie and
#: format-string look-alikes, and huge strings.
_ODD_SCALARS: list[Any] = [
    "2026-11-26 12:00:00",
    "2026-11-26t12:00:00z",
    " 2026 - 11 - 26T12 : 00 : 00 +01:00 ",
    "2026-11-26T12:00:60Z",
    "2026-02-30T12:00:00Z",
    "+12026-11-26T12:00:00Z",
    "-0001-01-01T00:00:00Z",
    "2026-11-26T12:00:00.9999999Z",
    "2026-11-26T12:00:00+25:00",
    "2026-11-26T12:00:00UTC",
    1e20,
    -(2**63),
    2**63,
    1e-7,
    "{F9168C5E-CEB2-4faa-B6BF-329BF39FA1E4}",
    "urn:uuid:f9168c5e-ceb2-4faa-b6bf-329bf39fa1e4",
    "f9168c5e-ceb2-4faa-b6bf-329bf39fa1e",
    "a=1; b; =c; d=%ff",
    "%s and %(a)r and %x",
    "{} {0} {a}",
    "fe80::1%eth0",
    "\u00e9" * 5000,
    "y" * 20000,
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


def _deep(rng: random.Random, depth: int) -> Any:
    """A chain of ``depth`` nested lists and objects (deeper than any trimming limit)."""
    value: Any = rng.choice(_SCALARS)
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if roll < 0.05:
        return rng.choice(_ODD_SCALARS)
    if roll < 0.07:
        return _deep(rng, rng.randint(5, 40))
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


GENERATED = generated_events(1000)
#: Every generated event matches Relay exactly. Intentional differences the generator does
#: not produce: timestamps are floats (whole microseconds), so a sub-microsecond time just
#: before 1970 counts as 1970 and the "too stale" message of a far pre-1970 fractional
#: timestamp may be off by a microsecond (Relay keeps nanoseconds); and JSON integers of
#: 2**64 and above, which Relay's JSON reader does not read faithfully, are kept as is.
MIN_GENERATED_MATCH_RATE = 1.0


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
