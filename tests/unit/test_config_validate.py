"""`relay config validate` refuses every bad config of the table, naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.cli import main

BAD_CONFIGS: list[tuple[str, Any, str]] = [
    # (what is wrong, config.yml content, the key the message must name)
    ("unknown section", {"relays": {}}, "relays"),
    ("unknown key", {"relay": {"prot": 3000}}, "relay.prot"),
    ("nested unknown key", {"spool": {"envelopes": {"pth": "/x"}}}, "spool.envelopes.pth"),
    ("wrong type", {"relay": {"port": "http"}}, "relay.port"),
    ("bad enum", {"relay": {"mode": "pop"}}, "relay.mode"),
    ("bad size", {"limits": {"max_event_size": "1 lightyear"}}, "limits.max_event_size"),
    ("negative", {"health": {"refresh_interval_ms": -1}}, "health.refresh_interval_ms"),
    ("log level", {"logging": {"level": "verbose"}}, "logging.level"),
    ("log format", {"logging": {"format": "xml"}}, "logging.format"),
    ("bad upstream", {"relay": {"upstream": "sentry.io"}}, "relay.upstream"),
    ("port range", {"relay": {"port": 70000}}, "relay.port"),
    ("internal port", {"relay": {"internal_port": -5}}, "relay.internal_port"),
    ("statsd address", {"metrics": {"statsd": "localhost"}}, "metrics.statsd"),
    ("statsd periodic", {"metrics": {"periodic_secs": -1}}, "metrics.periodic_secs"),
    ("processing without kafka", {"processing": {"enabled": True}}, "processing.kafka_config"),
    (
        "kafka param value",
        {"processing": {"kafka_config": [
            {"name": "bootstrap.servers", "value": "k:9092"}, {"name": "acks", "value": "some"},
        ]}},
        "processing.kafka_config",
    ),
    ("kafka param shape", {"processing": {"kafka_config": [{"name": "acks"}]}}, "kafka_config"),
    ("redis scheme", {"processing": {"redis": "http://redis:6379"}}, "processing.redis"),
    ("topic value", {"processing": {"topics": {"events": ""}}}, "processing.topics.events"),
    (
        "static relay key",
        {"auth": {"static_relays": {"r1": {"public_key": "nope"}}}},
        "auth.static_relays.r1.public_key",
    ),
    ("emit outcomes", {"outcomes": {"emit_outcomes": "sometimes"}}, "outcomes.emit_outcomes"),
    ("sentry dsn", {"sentry": {"dsn": "not a dsn"}}, "sentry"),
    ("batch size", {"cache": {"batch_size": 0}}, "cache.batch_size"),
    ("section type", {"limits": 5}, "limits"),
    ("top level", ["relay"], "config.yml"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "data", "key"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, data: Any, key: str
) -> None:
    (tmp_path / "config.yml").write_text(yaml.safe_dump(data))
    assert main(["-c", str(tmp_path), "config", "validate"]) == 1, case
    err = capsys.readouterr().err
    assert key in err, f"{case}: {err!r} does not name {key}"


def test_secret_values_are_not_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dsn = "https://a1b2c3d4e5f60718293a4b5c6d7e8f90:deadbeefsecret@o1.example/"
    (tmp_path / "config.yml").write_text(yaml.safe_dump({"sentry": {"dsn": dsn}}))
    assert main(["-c", str(tmp_path), "config", "validate"]) == 1
    err = capsys.readouterr().err
    assert "deadbeefsecret" not in err and "e5f60718293a4b5c6d7e8f90" not in err


def test_relay_config_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    relay_config = {
        "relay": {"mode": "managed", "upstream": "http://127.0.0.1:9000/", "port": 3001},
        "processing": {
            "enabled": True,
            "redis": "",
            "kafka_config": [{"name": "bootstrap.servers", "value": "127.0.0.1:9092"}],
            "topics": {"events": "ingest-events", "not_a_topic_of_ours": "x"},
        },
        "metrics": {"statsd": "127.0.0.1:8125", "prefix": "relay"},
        "limits": {"max_event_size": "1MiB"},
    }
    (tmp_path / "config.yml").write_text(yaml.safe_dump(relay_config))
    assert main(["-c", str(tmp_path), "config", "validate"]) == 0
    captured = capsys.readouterr()
    assert "config is valid" in captured.out
    assert "processing.topics.not_a_topic_of_ours" in captured.err  # a warning only
