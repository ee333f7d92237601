"""Log entry normalization: format ``message`` with ``params`` into ``formatted``."""

from __future__ import annotations

import json
import re
from typing import Any

from relay.normalize.meta import Meta, add_error, child, invalid, node, serialized
from relay.normalize.schema import LOGENTRY

_PERCENT = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?(?P<flags>[-+ #0]*)(?P<width>\d+)?"
    r"(?:\.(?P<prec>\d+))?(?P<conv>[a-zA-Z%])"
)
_CURLY = re.compile(r"\{\{|\}\}|\{(?P<arg>[^{}]*)\}")


def _display(value: Any) -> str:
    """How a JSON value renders as a format argument."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value.__class__ in (dict, list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


class _Missing(Exception):
    pass


def _lookup(params: Any, key: str | None, position: int) -> Any:
    if key is not None and key != "":
        if key.isdigit() and params.__class__ is list:
            index = int(key)
            if index < len(params):
                return params[index]
            raise _Missing
        if params.__class__ is not dict or key not in params:
            raise _Missing
        return params[key]
    if params.__class__ is not list or position >= len(params):
        raise _Missing
    return params[position]


def _format_percent(message: str, params: Any) -> str | None:
    position = 0
    out: list[str] = []
    last = 0
    for match in _PERCENT.finditer(message):
        out.append(message[last : match.start()])
        last = match.end()
        conv = match.group("conv")
        if conv == "%":
            out.append("%")
            continue
        try:
            value = _lookup(params, match.group("key"), position)
        except _Missing:
            return None
        if match.group("key") is None:
            position += 1
        out.append(_display(value))
    out.append(message[last:])
    return "".join(out)


def _format_curly(message: str, params: Any) -> str | None:
    position = 0
    out: list[str] = []
    last = 0
    for match in _CURLY.finditer(message):
        out.append(message[last : match.start()])
        last = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            out.append(token[0])
            continue
        try:
            value = _lookup(params, match.group("arg"), position)
        except _Missing:
            return None
        if not match.group("arg"):
            position += 1
        out.append(_display(value))
    out.append(message[last:])
    return "".join(out)


def format_message(message: str, params: Any) -> str | None:
    """Python ``%`` formatting when the message has ``%``, else ``{}`` formatting."""
    if "%" in message:
        return _format_percent(message, params)
    if "{" in message:
        return _format_curly(message, params)
    return None


def normalize_logentry(event: dict[str, Any], meta: Meta) -> None:
    """Fill ``formatted``; a log entry without any message text is invalid."""
    entry = event.get("logentry")
    if entry.__class__ is not dict:
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
            child(meta, "logentry"), invalid("no message present"), serialized(entry, LOGENTRY)
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
        sub = meta.get("logentry")
        if sub and "message" in sub:
            sub["formatted"] = sub.pop("message")
