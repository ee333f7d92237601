"""docs/configuration.md is generated from the config Structs and must not go stale."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import yaml

from relay.cli import main
from relay.config import Config, config_from_dict
from relay.dev.config_docs import DOC_PATH, render, starter_config


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for field in msgspec.structs.fields(cls):
        tp = field.type
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            keys += _leaf_keys(tp, f"{prefix}{field.encode_name}.")
        else:
            keys.append(f"{prefix}{field.encode_name}")
    return keys


def test_configuration_doc_is_up_to_date() -> None:
    assert DOC_PATH.read_text() == render(), (
        "docs/configuration.md is stale: run `python -m relay.dev.config_docs --write`"
    )


def test_every_key_is_documented_with_its_default() -> None:
    doc = render()
    for key in _leaf_keys(Config):
        row = re.search(rf"^\| `{re.escape(key)}` \| [^|]+(?:\\\|[^|]+)* \| ([^|]+) \|", doc, re.M)
        assert row is not None, f"{key} is missing from docs/configuration.md"
        assert row.group(1).strip(), key


def _uncomment(text: str) -> str:
    return re.sub(r"^(\s*)# ([a-z_]+:)", r"\1\2", text, flags=re.M)


def test_starter_config_lists_every_key_with_its_default() -> None:
    text = starter_config()
    assert config_from_dict(yaml.safe_load(text) or {}) == Config()
    # Uncommenting every line gives a complete config equal to the defaults.
    full = yaml.safe_load(_uncomment(text))
    assert config_from_dict(full) == Config()
    for section in msgspec.structs.fields(Config):
        assert section.encode_name in full


def test_config_init_writes_a_valid_file(tmp_path: Path) -> None:
    assert main(["-c", str(tmp_path), "config", "init"]) == 0
    assert (tmp_path / "config.yml").read_text() == starter_config()
    assert main(["-c", str(tmp_path), "config", "init"]) == 1  # no silent overwrite
    assert main(["-c", str(tmp_path), "config", "init", "--overwrite"]) == 0
    assert main(["-c", str(tmp_path), "config", "validate"]) == 0
