"""Log entry normalization: format ``message`` with ``params`` into ``formatted``."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Final

from relay.normalize import serde_json
from relay.normalize.meta import (
    Meta,
    add_error,
    child,
    estimate_size,
    invalid,
    node,
    serialized,
)
from relay.normalize.schema import LOGENTRY

# Relay formats with the ``dynfmt`` crate. Its printf-style grammar: an optional
# ``(key)``, flags (``#0-+``, no space), a width, any character followed by a precision,
# length modifiers and the conversion; only the conversion and ``#`` change the output.
_PERCENT: Final = re.compile(
    r"%(?:\((?P<key>\w+)\))?(?P<flags>[#0\-+]*)(?:\*|\d+)?(?:.(?:\*|\d+))?[hlL]*"
    r"(?P<conv>[dioxuXeEfFgGcrs%])"
)
# ``{}``, ``{0}`` and ``{name}``; there are no ``{{`` escapes.
_CURLY: Final = re.compile(r"\{(?P<arg>\w+)?\}")
#: Relay formats into a buffer of this many bytes; longer results fail.
_LIMIT: Final = 8192 * 4
_I64_MIN: Final = -(2**63)
_U64_LIMIT: Final = 2**64


class _FormatError(Exception):
    """An argument is missing or cannot be formatted the requested way."""


def _is_int(value: Any) -> bool:
    """JSON integers that Relay reads as integers (wider ones become floats)."""
    return type(value) is int and _I64_MIN <= value < _U64_LIMIT


def _rust_float(value: float) -> str:
    """``f64``'s ``Display``: shortest round-trip digits, never an exponent."""
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _rust_exp(value: float, upper: bool) -> str:
    """``f64``'s ``LowerExp``/``UpperExp``: ``1.5e0``, ``1e20``, ``1.23e-7``."""
    digits, exp = f"{value:.17e}".split("e")
    # Shortest digits that round-trip, as Rust prints them.
    for precision in range(17):
        candidate = f"{value:.{precision}e}"
        if float(candidate) == value:
            digits, exp = candidate.split("e")
            break
    text = f"{digits}e{int(exp)}"
    return text.upper() if upper else text


def _render(value: Any, conv: str, alternate: bool) -> str:
    """One argument as ``dynfmt`` writes it for conversion ``conv``."""
    if type(value) is bool:
        value_kind = "bool"
    elif _is_int(value):
        value_kind = "int"
    elif type(value) in (int, float):
        value_kind = "float"
        value = float(value)
    else:
        value_kind = "other"
    if conv == "r":
        return serde_json.dumps(value, pretty=alternate)
    if conv in "diufFgGcs":
        if value_kind == "bool":
            return "true" if value else "false"
        if value_kind == "int":
            return str(value)
        if value_kind == "float":
            return _rust_float(value)
        if type(value) is str:
            return value
        return serde_json.dumps(value, pretty=alternate)
    if conv in "oxX" and value_kind == "int":
        number = value if value >= 0 else value + _U64_LIMIT  # two's complement, like i64
        if conv == "o":
            return ("0o" if alternate else "") + format(number, "o")
        text = format(number, "x" if conv == "x" else "X")
        return ("0x" if alternate else "") + text
    if conv in "eE" and value_kind == "float":
        return _rust_exp(value, conv == "E")
    raise _FormatError


def _argument(params: Any, key: str | None, auto: list[int]) -> Any:
    """The parameter at ``key`` (a name or index), or the next positional one."""
    if key is None:
        index = auto[0]
        auto[0] += 1
        if type(params) is not list or index >= len(params):
            raise _FormatError
        value = params[index]
    elif key.isascii() and key.isdigit() and type(params) is list:
        index = int(key)
        if index >= len(params):
            raise _FormatError
        value = params[index]
    elif type(params) is dict:
        value = params.get(key)
    else:
        raise _FormatError
    if value is None:
        raise _FormatError
    return value


def _format_percent(message: str, params: Any) -> str:
    auto = [0]
    out: list[str] = []
    last = 0
    for match in _PERCENT.finditer(message):
        out.append(message[last : match.start()])
        last = match.end()
        conv = match.group("conv")
        if conv == "%":
            out.append("%")
            continue
        # Named arguments are looked up by name, even when the name is a number.
        key = match.group("key")
        if key is not None and type(params) is not dict:
            raise _FormatError
        value = _argument(params, key, auto)
        out.append(_render(value, conv, "#" in match.group("flags")))
    out.append(message[last:])
    return "".join(out)


def _format_curly(message: str, params: Any) -> str:
    auto = [0]
    out: list[str] = []
    last = 0
    for match in _CURLY.finditer(message):
        out.append(message[last : match.start()])
        last = match.end()
        key = match.group("arg")
        if key is not None:
            # Numbers index a list of parameters, names look up an object of them.
            numeric = key.isascii() and key.isdigit()
            if type(params) is not (list if numeric else dict):
                raise _FormatError
        out.append(_render(_argument(params, key, auto), "s", False))
    out.append(message[last:])
    return "".join(out)


def format_message(message: str, params: Any) -> str | None:
    """Python ``%`` formatting when the message has ``%``, else ``{}`` formatting.

    ``None`` when an argument is missing or cannot be formatted as asked.
    """
    try:
        if "%" in message:
            formatted = _format_percent(message, params)
        elif "{" in message:
            formatted = _format_curly(message, params)
        else:
            return None
    except _FormatError:
        return None
    if len(formatted) * 4 > _LIMIT and len(formatted.encode()) > _LIMIT:
        return None
    return formatted


def normalize_logentry(event: dict[str, Any], meta: Meta) -> None:
    """Fill ``formatted``; a log entry without any message text is invalid."""
    entry = event.get("logentry")
    if type(entry) is not dict:
        return
    annotated = any(key != "" for key in meta.get("logentry") or ())
    # Relay skips an empty log entry, but one whose fields were invalid is not empty.
    if not annotated and all(v is None or v == "" or v == {} or v == [] for v in entry.values()):
        return
    message = entry.get("message")
    formatted = entry.get("formatted")
    if formatted is None and message is None:
        # The whole entry is removed; its fields' annotations go with the original value
        # into the ``errors`` entry, as in Relay.
        fields = {k: v for k, v in (meta.get("logentry") or {}).items() if k != ""}
        meta["logentry"] = {}
        add_error(
            child(meta, "logentry"),
            invalid("no message present"),
            serialized(entry, LOGENTRY),
            estimate_size(entry, skip_nulls=True),
        )
        if fields:
            node(meta["logentry"])["val_meta"] = fields
        event["logentry"] = None
        return
    params = entry.get("params")
    if params is not None and formatted is None and message is not None:
        formatted = format_message(message, params)
        if formatted is not None:
            entry["formatted"] = formatted
    if formatted is None or message == formatted:
        entry["formatted"] = message
        entry["message"] = None
        # Relay moves the whole annotated ``message`` over ``formatted``: the annotations
        # of an invalid ``formatted`` are replaced by those of ``message`` (if any).
        sub = meta.get("logentry")
        if sub:
            moved = sub.pop("message", None)
            if moved is None:
                sub.pop("formatted", None)
            else:
                sub["formatted"] = moved
