"""JSON text exactly as Relay's ``serde_json`` writes a ``Value``.

Object keys are sorted (Relay's objects are B-tree maps) and floats use serde's shortest
round-trip form (``1e+20``, ``1e-7``, ``0.00001``, ``1.0``), which differs from Python's
``repr`` for small exponents.
"""

from __future__ import annotations

import json
from typing import Any

_encode_str = json.JSONEncoder(ensure_ascii=False).encode


def float_text(value: float) -> str:
    """A float as serde_json writes it."""
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text)
    if exp == -5:
        # serde switches to exponents only below 1e-5; Python already at 1e-5.
        digits = mantissa.replace(".", "").lstrip("-")
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{digits}"
    return f"{mantissa}e+{exp}" if exp > 0 else f"{mantissa}e{exp}"


def dumps(value: Any, pretty: bool = False, indent: str = "") -> str:
    """Compact (or, with ``pretty``, two-space indented) JSON of a JSON-like value."""
    if value is None:
        return "null"
    if type(value) is str:
        return _encode_str(value)
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        # Integers beyond 64 bits were read as floats by serde_json.
        return str(value) if -(2**63) <= value < 2**64 else float_text(float(value))
    if type(value) is float:
        return float_text(value)
    if type(value) is list:
        if not value:
            return "[]"
        if not pretty:
            return "[" + ",".join(dumps(v) for v in value) + "]"
        inner = indent + "  "
        items = ",\n".join(inner + dumps(v, True, inner) for v in value)
        return f"[\n{items}\n{indent}]"
    if type(value) is dict:
        if not value:
            return "{}"
        keys = sorted(value)
        if not pretty:
            return "{" + ",".join(_encode_str(k) + ":" + dumps(value[k]) for k in keys) + "}"
        inner = indent + "  "
        items = ",\n".join(f"{inner}{_encode_str(k)}: {dumps(value[k], True, inner)}" for k in keys)
        return f"{{\n{items}\n{indent}}}"
    return _encode_str(str(value))
