"""Relay configs that must load (misplaced and older keys) and Relay's start-up check of
``spool.envelopes.batch_size_bytes`` (relay.config, relay.config_check)."""

from __future__ import annotations

import logging

import pytest

from relay.config import config_from_dict
from relay.config_check import spool_batch_size_error
from relay.errors import ConfigError

GIB = 1024**3


def test_a_section_key_at_the_top_level_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="relay.config"):
        config = config_from_dict({"kafka_config": [{"name": "ssl.key.password", "value": "x"}]})
    assert config.processing.kafka_config == []
    assert "belongs under `processing`" in caplog.text


def test_keys_nobody_knows_are_still_errors() -> None:
    with pytest.raises(ConfigError, match="unknown key `kafka_confg`"):
        config_from_dict({"kafka_confg": []})


def test_cache_keys_of_older_relays_load() -> None:
    config = config_from_dict({"cache": {"event_buffer_expiry": 2, "event_expiry": 3}})
    assert config.cache.envelope_expiry == 600.0


def test_spool_batch_size_defaults_pass() -> None:
    config = config_from_dict({})
    assert config.spool.envelopes.batch_size_bytes == 10 * 1024
    assert spool_batch_size_error(config, 8 * GIB) is None


def test_spool_batch_size_over_a_tenth_of_the_backpressure_memory_fails() -> None:
    config = config_from_dict({"spool": {"envelopes": {"batch_size_bytes": "10tb"}}})
    error = spool_batch_size_error(config, 8 * GIB)
    assert error is not None
    assert "spool.envelopes.batch_size_bytes" in error
    # 8 GiB * 0.8 * 0.1: the largest batch allowed.
    limit = config_from_dict(
        {"spool": {"envelopes": {"batch_size_bytes": int(8 * GIB * 0.8 * 0.1)}}}
    )
    assert spool_batch_size_error(limit, 8 * GIB) is None


def test_unknown_memory_never_refuses_a_start() -> None:
    config = config_from_dict({"spool": {"envelopes": {"batch_size_bytes": "10tb"}}})
    assert spool_batch_size_error(config, 0) is None
