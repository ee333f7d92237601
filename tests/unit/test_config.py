"""The config loader: Relay's keys and sizes, clear errors, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from relay.config import (
    Overrides,
    apply_overrides,
    config_from_dict,
    load_config,
    overrides_from_env,
    parse_byte_size,
)
from relay.errors import ConfigError


def test_defaults_match_relay() -> None:
    config = config_from_dict({})
    assert config.relay.mode == "managed"
    assert config.relay.port == 3000
    assert config.limits.max_event_size == 1024 * 1024
    assert config.limits.max_envelope_size == 200 * 1024 * 1024
    assert config.processing.attachment_chunk_size == 1024 * 1024
    assert config.auth.signature_max_age == 300


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(1024, 1024), ("1MiB", 1048576), ("1MB", 1000000), ("10 KiB", 10240), ("5", 5)],
)
def test_byte_sizes(raw: object, expected: int) -> None:
    assert parse_byte_size(raw) == expected


def test_relay_suite_fixture_config_loads(tmp_path: Path) -> None:
    """The config Relay's integration suite writes, verbatim."""
    (tmp_path / "config.yml").write_text(yaml.safe_dump({
        "relay": {"upstream": "http://127.0.0.1:1234", "host": "127.0.0.1", "port": 4321},
        "sentry": {"dsn": "http://31a5a894b4524f74a9a8d0e27e21ba91@127.0.0.1:1/666",
                   "enabled": True},
        "limits": {"max_api_file_upload_size": "1MiB", "max_thread_count": 1},
        "cache": {"batch_interval": 0},
        "logging": {"level": "trace"},
        "http": {"timeout": 2},
        "processing": {"enabled": False, "kafka_config": [], "redis": ""},
        "outcomes": {"emit_outcomes": True},
        "aggregator": {"bucket_interval": 1, "initial_delay": 0, "shift_key": "none"},
    }))  # fmt: skip
    config = load_config(tmp_path)
    assert config.relay.port == 4321
    assert config.limits.max_api_file_upload_size == 1024 * 1024
    assert config.processing.redis_url is None


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"limits\.max_evnt_size"):
        config_from_dict({"limits": {"max_evnt_size": 5}})
    with pytest.raises(ConfigError, match="`nonsense`"):
        config_from_dict({"nonsense": {}})


def test_bad_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"relay\.port"):
        config_from_dict({"relay": {"port": "abc"}})
    with pytest.raises(ConfigError, match=r"limits\.max_event_size"):
        config_from_dict({"limits": {"max_event_size": "lots"}})


def test_overrides_from_env_and_flags() -> None:
    env = overrides_from_env({"RELAY_PORT": "4000", "RELAY_UPSTREAM_URL": "http://up/",
                              "RELAY_PROCESSING_ENABLED": "true",
                              "RELAY_KAFKA_BROKER_URL": "k:9092"})  # fmt: skip
    config = apply_overrides(config_from_dict({}), env)
    assert config.relay.port == 4000
    assert config.relay.upstream == "http://up/"
    assert config.processing.enabled
    assert [(p.name, p.value) for p in config.processing.kafka_config] == [
        ("bootstrap.servers", "k:9092")
    ]
    with pytest.raises(ConfigError, match=r"relay\.port"):
        apply_overrides(config_from_dict({}), Overrides(port="x"))
