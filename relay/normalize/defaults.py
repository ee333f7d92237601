"""Attributes every stored event has: type, level, platform, logger, ids, SDK, trace context."""

from __future__ import annotations

import uuid
from typing import Any, Final

from relay.normalize.chrono import RUST_WHITESPACE
from relay.normalize.config import NormalizationConfig
from relay.normalize.meta import Meta, add_remark, child, set_original, set_original_length

VALID_PLATFORMS: Final = frozenset(
    {
        "as3",
        "c",
        "cfml",
        "cocoa",
        "csharp",
        "elixir",
        "go",
        "groovy",
        "haskell",
        "java",
        "javascript",
        "native",
        "node",
        "objc",
        "other",
        "perl",
        "php",
        "python",
        "ruby",
    }
)
_LOGGER_MAX: Final = 64


def infer_event_type(event: dict[str, Any]) -> str:
    """Transactions and feedback keep their type; everything else is inferred."""
    ty = event.get("type")
    if ty in ("transaction", "feedback"):
        return ty  # type: ignore[no-any-return]
    exc = event.get("exception")
    if type(exc) is dict and exc.get("values"):
        return "error"
    if event.get("csp") is not None:
        return "csp"
    return "default"


def sdk_from_client(client: str | None) -> dict[str, Any] | None:
    """``sentry.python/2.0`` (or ``name version``) as an ``sdk`` object."""
    if not client:
        return None
    for sep in ("/", " "):
        name, found, version = client.partition(sep)
        if found:
            return {"name": name, "version": version}
    return None


def shorten_logger(logger: str, meta: Meta) -> str:
    """Java loggers longer than 64 chars keep their tail, cut at a package boundary."""
    original_len = len(logger)
    trimmed = logger.strip(RUST_WHITESPACE)
    if len(trimmed) <= _LOGGER_MAX:
        if trimmed == logger:
            return logger
        if not trimmed:
            add_remark(meta, ["@logger:remove", "x", 0, original_len])
        else:
            add_remark(meta, ["@logger:trim", "s"])
        set_original_length(meta, original_len)
        return trimmed
    tail = trimmed[len(trimmed) - (_LOGGER_MAX - 1) :]
    cut_word = trimmed[len(trimmed) - _LOGGER_MAX] != "." if len(trimmed) >= _LOGGER_MAX else False
    # A partially cut word at the front is dropped up to the next dot, if there is one.
    if cut_word and "." in tail:
        tail = tail[tail.index(".") :]
    add_remark(meta, ["@logger:replace", "s", 0, len(trimmed) - len(tail)])
    set_original_length(meta, original_len)
    return f"*{tail}"


def normalize_default_attributes(
    event: dict[str, Any], meta: Meta, config: NormalizationConfig
) -> None:
    """Type, project, key, version, grouping config, and the always-present defaults."""
    event_type = infer_event_type(event)
    event["type"] = event_type
    meta.pop("type", None)
    for key, value in (
        ("project", config.project_id),
        ("key_id", config.key_id),
        ("version", config.protocol_version),
        ("grouping_config", config.grouping_config),
    ):
        event[key] = value
        meta.pop(key, None)
    platform = event.get("platform")
    if platform is not None and platform not in VALID_PLATFORMS:
        set_original(child(meta, "platform"), platform)
        event["platform"] = None
    if event.get("errors") is None:
        event["errors"] = []
    if event.get("event_id") is None:
        event["event_id"] = uuid.uuid4().hex
    if event.get("platform") is None:
        event["platform"] = "other"
    if event.get("logger") is None:
        event["logger"] = ""
    if event.get("extra") is None:
        event["extra"] = {}
    if event.get("level") is None:
        event["level"] = "info" if event_type == "transaction" else "error"
    if event.get("sdk") is None:
        event["sdk"] = sdk_from_client(config.client)
    if event["platform"] == "java" and event["logger"]:
        # Relay records the logger remarks on the event's own meta, not the logger's.
        event["logger"] = shorten_logger(event["logger"], meta)


def span_id_from_trace_id(trace_id: str) -> str:
    """Relay derives a span id from the trace id's first (or, if zero, second) half."""
    first = trace_id[:16]
    return trace_id[16:] if first == "0" * 16 else first


def force_trace_context(event: dict[str, Any]) -> None:
    """Every error event gets a trace context with ids derived from the event id."""
    contexts = event.get("contexts")
    if type(contexts) is not dict:
        contexts = event["contexts"] = {}
    trace = contexts.get("trace")
    if type(trace) is not dict or trace.get("type") != "trace":
        trace = contexts["trace"] = {"type": "trace"}
    if trace.get("trace_id") is None:
        trace["trace_id"] = event["event_id"]
    if trace.get("span_id") is None:
        trace["span_id"] = span_id_from_trace_id(trace["trace_id"])


def trace_context(event: dict[str, Any]) -> dict[str, Any] | None:
    """The event's trace context, when it has a valid one."""
    contexts = event.get("contexts")
    if type(contexts) is dict:
        trace = contexts.get("trace")
        if type(trace) is dict and trace.get("type") == "trace":
            return trace
    return None


def normalize_transaction(event: dict[str, Any]) -> None:
    """Transaction name and source defaults, and the default ``op`` of trace and spans."""
    if not event.get("transaction"):
        event["transaction"] = "<unlabeled transaction>"
    info = event.get("transaction_info")
    if info is None or info.get("source") is None:
        if info is None:
            info = event["transaction_info"] = {}
        info["source"] = "unknown"
    trace = trace_context(event)
    if trace is not None and trace.get("op") is None:
        trace["op"] = "default"
    for span in event.get("spans") or ():
        if type(span) is dict and span.get("op") is None:
            span["op"] = "default"


def normalize_breadcrumbs(event: dict[str, Any]) -> None:
    """Breadcrumbs default to type ``default`` and level ``info``."""
    crumbs = event.get("breadcrumbs")
    if type(crumbs) is not dict:
        return
    for crumb in crumbs.get("values") or ():
        if type(crumb) is dict:
            if not crumb.get("type"):
                crumb["type"] = "default"
            if crumb.get("level") is None:
                crumb["level"] = "info"


def normalize_dist(event: dict[str, Any], meta: Meta) -> None:
    """``dist`` is trimmed, dropped when blank, and limited to 64 characters."""
    dist = event.get("dist")
    if dist is None:
        return
    trimmed = dist.strip(RUST_WHITESPACE)
    if not trimmed:
        event["dist"] = None
    elif len(trimmed) > 64:
        child(meta, "dist").setdefault("", {}).setdefault("err", []).append("value_too_long")
        set_original(meta["dist"], dist)
        event["dist"] = None
    else:
        event["dist"] = trimmed
