"""Stack traces and exceptions: frame defaults, the top-level stack trace moving into a
single exception, ``"Type: value"`` splitting and exceptions without type or value."""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlsplit

from relay.normalize.chrono import RUST_WHITESPACE
from relay.normalize.meta import Meta, add_error, child, estimate_size, node, prune

_TYPE_VALUE: Final = re.compile(r"^(\w+):(.*)$", re.DOTALL)
_URL_PREFIXES: Final = ("file:", "http:", "https:", "applewebdata:")


def normalize_frame(frame: dict[str, Any]) -> None:
    """Derive ``filename``/``abs_path`` from each other and tidy context lines."""
    if not frame.get("abs_path"):
        frame["abs_path"] = frame.pop("filename", None)
    abs_path = frame.get("abs_path")
    if not frame.get("filename") and abs_path is not None:
        frame["filename"] = abs_path
        if abs_path.startswith(_URL_PREFIXES):
            try:
                path = urlsplit(abs_path).path
            except ValueError:
                path = ""
            if path and path != "/":
                frame["filename"] = path
    if frame.get("function") == "?":
        frame["function"] = None
    if frame.get("symbol") == "?":
        frame["symbol"] = None
    for key in ("pre_context", "post_context"):
        lines = frame.get(key)
        if lines:
            frame[key] = ["" if line is None else line for line in lines]
    if frame.get("context_line") is None and (
        frame.get("pre_context") or frame.get("post_context")
    ):
        frame["context_line"] = ""


def normalize_stacktrace(stacktrace: Any) -> None:
    """Normalize every frame of a (non-raw) stack trace."""
    if type(stacktrace) is not dict:
        return
    frames = stacktrace.get("frames")
    if type(frames) is list:
        for frame in frames:
            if type(frame) is dict:
                normalize_frame(frame)


def _values(container: Any) -> list[Any] | None:
    if type(container) is dict:
        values = container.get("values")
        if type(values) is list:
            return values
    return None


def normalize_stacktraces(event: dict[str, Any]) -> None:
    """Frames of the event's, the exceptions' and the threads' stack traces."""
    normalize_stacktrace(event.get("stacktrace"))
    for key in ("exception", "threads"):
        for item in _values(event.get(key)) or ():
            if type(item) is dict:
                normalize_stacktrace(item.get("stacktrace"))


def normalize_exceptions(event: dict[str, Any], meta: Meta) -> None:
    """A lone exception takes the event's stack trace; split and validate type/value."""
    exceptions = _values(event.get("exception"))
    if exceptions is None:
        return
    if len(exceptions) == 1 and event.get("stacktrace") is not None:
        only = exceptions[0]
        if type(only) is dict:
            only["stacktrace"] = event["stacktrace"]
            event["stacktrace"] = None
            moved = meta.pop("stacktrace", None)
            exc_meta = child(child(child(meta, "exception"), "values"), "0")
            exc_meta.pop("stacktrace", None)
            if moved:
                exc_meta["stacktrace"] = moved
    values_meta: Meta | None = None
    for i, exc in enumerate(exceptions):
        if type(exc) is not dict:
            continue
        ty = exc.get("type")
        value = exc.get("value")
        if not ty and value:
            match = _TYPE_VALUE.match(value)
            if match is not None:
                exc["type"] = ty = match.group(1)
                exc["value"] = value = match.group(2).strip(RUST_WHITESPACE)
        if not ty and not value:
            if values_meta is None:
                values_meta = child(child(meta, "exception"), "values")
            exc_meta = child(values_meta, str(i))
            # The removed exception's own field annotations travel with its original value
            # (into the ``errors`` entry), as Relay keeps them inside the original.
            fields = {k: exc_meta.pop(k) for k in [k for k in exc_meta if k != ""]}
            add_error(
                exc_meta,
                ["missing_attribute", {"attribute": "type or value"}],
                _original_exception(exc),
                estimate_size(exc, skip_nulls=True),
            )
            if prune(fields):
                node(exc_meta)["val_meta"] = fields
            exceptions[i] = None
            continue
        mechanism = exc.get("mechanism")
        if type(mechanism) is dict:
            normalize_mechanism(mechanism)


def _original_exception(exc: dict[str, Any]) -> dict[str, Any]:
    """The exception as Relay would serialize it for ``_meta.val`` (nulls dropped)."""
    from relay.normalize.meta import serialized
    from relay.normalize.schema import EXCEPTION

    return serialized(exc, EXCEPTION)  # type: ignore[no-any-return]


def normalize_mechanism(mechanism: dict[str, Any]) -> None:
    """Mechanism defaults that need no OS knowledge (signal/errno names are not derived)."""
    meta = mechanism.get("meta")
    if type(meta) is not dict:
        return
    signal = meta.get("signal")
    if type(signal) is dict and signal.get("name") is None:
        name = _POSIX_SIGNALS.get(signal.get("number"))  # type: ignore[arg-type]
        if name is not None:
            signal["name"] = name


#: Signal names every POSIX system agrees on.
_POSIX_SIGNALS: Final = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    4: "SIGILL",
    5: "SIGTRAP",
    6: "SIGABRT",
    8: "SIGFPE",
    9: "SIGKILL",
    11: "SIGSEGV",
    13: "SIGPIPE",
    14: "SIGALRM",
    15: "SIGTERM",
}
