"""Differential tests: our scrubber against `sentry_relay.pii_strip_event` (Relay's own code).

Events are first put into Relay's canonical shape by a no-op `pii_strip_event({}, e)`,
which is what a relay's own event parsing produces; both scrubbers then see the same input.
"""

from __future__ import annotations

from typing import Any

import pytest
import sentry_relay.processing as sentry_relay

import relay.pii as pii
from tests.unit.pii_corpus import DATASCRUBBING_VARIANTS, PII_CONFIGS, corpus_events

CANONICAL = [(name, sentry_relay.pii_strip_event({}, event)) for name, event in corpus_events()]
CONFIGS: dict[str, dict[str, Any]] = dict(PII_CONFIGS)
for i, settings in enumerate(DATASCRUBBING_VARIANTS):
    CONFIGS[f"datascrubbing_{i}"] = sentry_relay.convert_datascrubbing_config(settings)


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_corpus_matches_relay(config_name: str) -> None:
    config = CONFIGS[config_name]
    mismatches = []
    for name, event in CANONICAL:
        expected = sentry_relay.pii_strip_event(config, event)
        actual = pii.pii_strip_event(config, event)
        if expected != actual:
            mismatches.append(name)
    assert not mismatches, f"{config_name}: {mismatches}"


@pytest.mark.parametrize("settings", [*DATASCRUBBING_VARIANTS, {}, {"scrubData": False}])
def test_convert_datascrubbing_config_matches_relay(settings: dict[str, Any]) -> None:
    expected = sentry_relay.convert_datascrubbing_config(settings)
    actual = pii.convert_datascrubbing_config(settings)
    assert actual == expected
    assert list(actual.get("applications", {})) == list(expected.get("applications", {}))


def test_input_is_not_modified() -> None:
    name, event = CANONICAL[0]
    before = repr(event)
    pii.pii_strip_event(CONFIGS["datascrubbing_1"], event)
    assert repr(event) == before, name


def test_project_config_then_datascrubbing() -> None:
    # Relay re-parses between two `pii_strip_event` calls (hashed IPs become invalid IPs
    # there); the same canonicalization is applied on our side between the two passes.
    settings = DATASCRUBBING_VARIANTS[1]
    project = PII_CONFIGS["builtin_types"]
    converted = sentry_relay.convert_datascrubbing_config(settings)
    pipeline = pii.compile_project_configs(project, settings)
    for name, event in CANONICAL:
        first = sentry_relay.pii_strip_event(project, event)
        assert pii.pii_strip_event(project, event) == first, name
        first = sentry_relay.pii_strip_event({}, first)  # canonical again
        expected = sentry_relay.pii_strip_event(converted, first)
        assert pii.pii_strip_event(converted, first) == expected, name
        # The in-process pipeline runs both passes on one payload, as Relay's server does.
        copy = pii.pii_strip_event({}, event)
        pipeline.process_event(copy)
        assert copy == pii.pii_strip_event(converted, pii.pii_strip_event(project, event))


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_compiled_config_reused_across_events_matches_relay(config_name: str) -> None:
    # The server's path: one compiled config for many events, twice over, so that the
    # second pass is served by the cross-event string cache.
    config = CONFIGS[config_name]
    processor = pii.compile_config(config)
    for _ in range(2):
        for name, event in CANONICAL:
            copy = pii.pii_strip_event({}, event)
            processor.process_event(copy)
            assert copy == sentry_relay.pii_strip_event(config, event), (config_name, name)


def test_value_cache_stays_bounded() -> None:
    from relay.pii import processor as proc_module

    processor = pii.compile_config(CONFIGS["datascrubbing_1"])
    for i in range(proc_module.VALUE_CACHE_ENTRIES + 500):
        processor.process_event({"extra": {"k": f"value number {i} at 10.0.0.{i % 250}"}})
    assert len(processor.values) <= proc_module.VALUE_CACHE_ENTRIES
    processor.process_event({"extra": {"k": "x" * 60_000, "j": "y" * 60_000}})
    assert processor._value_chars <= proc_module.VALUE_CACHE_CHARS
