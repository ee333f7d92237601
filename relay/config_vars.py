"""Relay's config variables: a value written ``${file:PATH}`` or ``${NAME}`` in config.yml.

As in Relay, a string that is exactly one reference is replaced when the file is loaded:
``${file:PATH}`` by the contents of the file (``PATH`` relative to the config directory;
one trailing newline dropped, as editors add one), ``${NAME}`` by the environment variable.
Secrets and per-host values can so stay out of the file. The text then counts as what it
spells for the key's type: ``"42"`` for a number, ``"true"``/``"false"`` for a flag, ``"1MiB"``
for a size. A missing file or variable is a config error naming the key, never an empty
value. References inside longer strings are left alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relay.errors import ConfigError

_REFERENCE = re.compile(r"\$\{(file:)?([^}]+)\}")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def substitute(data: Any, base: Path, environ: Mapping[str, str] = os.environ) -> Any:
    """``data`` (loaded YAML) with every variable reference replaced by its value."""
    return _walk(data, base, environ, "")


def _walk(node: Any, base: Path, environ: Mapping[str, str], path: str) -> Any:
    if isinstance(node, dict):
        return {
            key: _walk(value, base, environ, f"{path}.{key}" if path else str(key))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_walk(item, base, environ, f"{path}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, str):
        match = _REFERENCE.fullmatch(node)
        if match is not None:
            return _typed(_resolve(match, base, environ, path))
    return node


def _resolve(match: re.Match[str], base: Path, environ: Mapping[str, str], key: str) -> str:
    is_file, name = match.groups()
    if not is_file:
        value = environ.get(name)
        if value is None:
            raise ConfigError(f"invalid config: `{key}`: environment variable {name} is not set")
        return value
    path = base / name
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"invalid config: `{key}`: cannot read {path}: {exc.strerror}") from None
    return text[:-1] if text.endswith("\n") else text


def _typed(text: str) -> str | int | float | bool:
    # The key's type decides in Relay; here the value's spelling does, which agrees for
    # every key: no string-valued key takes a bare number or true/false.
    if _INTEGER.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text in ("true", "false"):
        return text == "true"
    return text
