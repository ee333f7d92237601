"""``${file:PATH}`` and ``${NAME}`` values in config.yml (relay.config_vars), as in Relay."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from relay.config import load_config
from relay.config_vars import substitute
from relay.errors import ConfigError


def write_config(tmp_path: Path, data: dict[str, object]) -> Path:
    (tmp_path / "config.yml").write_text(yaml.safe_dump(data))
    return tmp_path


def test_file_values_relative_to_the_config_dir(tmp_path: Path) -> None:
    (tmp_path / "max_event").write_text("1B")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "processing").write_text("true\n")  # an editor's newline
    config = load_config(write_config(tmp_path, {
        "limits": {"max_event_size": "${file:max_event}"},
        "processing": {"enabled": "${file:secrets/processing}"},
    }))  # fmt: skip
    assert config.limits.max_event_size == 1
    assert config.processing.enabled is True


def test_environment_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_RELAY_PORT", "3456")
    monkeypatch.setenv("TEST_RELAY_UPSTREAM", "http://sentry.internal:9000/")
    config = load_config(write_config(tmp_path, {
        "relay": {"port": "${TEST_RELAY_PORT}", "upstream": "${TEST_RELAY_UPSTREAM}"},
    }))  # fmt: skip
    assert config.relay.port == 3456
    assert config.relay.upstream == "http://sentry.internal:9000/"


def test_missing_variable_or_file_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_RELAY_UNSET", raising=False)
    with pytest.raises(ConfigError, match=r"`http.encoding`: environment variable TEST_RELAY"):
        load_config(write_config(tmp_path, {"http": {"encoding": "${TEST_RELAY_UNSET}"}}))
    with pytest.raises(ConfigError, match=r"`limits.max_event_size`: cannot read .*absent"):
        load_config(write_config(tmp_path, {"limits": {"max_event_size": "${file:absent}"}}))


def test_only_whole_values_are_references(tmp_path: Path) -> None:
    data = {"a": "prefix-${HOME}", "b": ["${file:x}"], "c": 3}
    (tmp_path / "x").write_text("4.5")
    assert substitute(data, tmp_path, {}) == {"a": "prefix-${HOME}", "b": [4.5], "c": 3}
