"""Native crash placeholders: what a processing relay writes into an event with a crash file.

Relay does not symbolicate. For an event that comes with a minidump or an Apple crash report,
it marks the event as native and puts a synthetic placeholder exception first, whose
``mechanism.type`` (``minidump`` / ``applecrashreport``) tells Sentry to process the crash
file; its type and value are what the issue shows if that processing fails. From a minidump it
also copies the crash time, the client kind and Crashpad annotations
(:mod:`relay.protocol.minidump_reader`).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from relay.normalize.containers import values_list
from relay.protocol.minidump_reader import MinidumpError, MinidumpInfo, read_minidump

__all__ = [
    "apply_apple_crash_report",
    "apply_minidump",
    "strip_context_types",
    "write_native_placeholder",
]

#: What happens to exceptions the event already has: kept after the placeholder, or removed.
AdditionalExceptions = Literal["retain", "delete"]

_PLACEHOLDERS: Final = {
    "minidump": ("Minidump", "Invalid Minidump"),
    "applecrashreport": ("AppleCrashReport", "Invalid Apple Crash Report"),
}


def write_native_placeholder(
    event: dict[str, Any],
    mechanism: Literal["minidump", "applecrashreport"],
    additional: AdditionalExceptions = "retain",
) -> None:
    """Mark ``event`` as a native crash and insert the placeholder exception first.

    A minidump placeholder takes the thread, stack trace and ``handled`` flag of the last
    exception the client sent, so the crash keeps the client's context.
    """
    event["platform"] = "native"
    if event.get("level") is None:
        # Without an explicit level, a crash file means the application crashed.
        event["level"] = "fatal"
    values = values_list(event, "exception")
    source = values[-1] if mechanism == "minidump" and values else None
    if not isinstance(source, dict):
        source = {}
    source_mechanism = source.get("mechanism")
    handled = source_mechanism.get("handled") if isinstance(source_mechanism, dict) else None
    if additional == "delete":
        values.clear()
    exc_type, exc_value = _PLACEHOLDERS[mechanism]
    placeholder: dict[str, Any] = {}
    if source.get("thread_id") is not None:
        placeholder["thread_id"] = source["thread_id"]
    if source.get("stacktrace") is not None:
        placeholder["stacktrace"] = source["stacktrace"]
    placeholder["type"] = exc_type
    placeholder["value"] = exc_value
    placeholder["mechanism"] = {
        "type": mechanism,
        "handled": handled if isinstance(handled, bool) else False,
        "synthetic": True,
    }
    values.insert(0, placeholder)


def _set_sdk(event: dict[str, Any], name: str) -> None:
    if event.get("sdk") is None:
        event["sdk"] = {"name": name, "version": "0.0.0"}


def _basename(path: str) -> str:
    # Code files may be Windows or POSIX paths whatever the platform the relay runs on.
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _write_annotations(event: dict[str, Any], info: MinidumpInfo) -> list[str]:
    if not info.has_annotations:
        return []
    untyped: list[str] = []
    contexts = event.get("contexts")
    if not isinstance(contexts, dict):
        contexts = {}
        event["contexts"] = contexts
    if info.crashpad_annotations:
        contexts["crashpad"] = dict(info.crashpad_annotations)
        untyped.append("crashpad")
    if info.stability_report is not None:
        contexts["chromium_stability_report"] = info.stability_report
    for module in info.modules:
        context: dict[str, Any] = {"type": "crashpad"}
        context.update(module.simple_annotations)
        context.update(module.string_annotations)
        if module.list_annotations:
            context["annotations"] = list(module.list_annotations)
        contexts[_basename(module.code_file)] = context
    return untyped


def apply_minidump(
    event: dict[str, Any],
    payload: bytes | None,
    additional: AdditionalExceptions = "retain",
) -> list[str]:
    """Write the minidump placeholder and what can be read from the dump into ``event``.

    ``payload`` is None when the dump is not here (an attachment placeholder for an upload):
    the event then only says it came from the upload endpoint. A dump that cannot be read
    leaves just the placeholder, as in Relay (best effort, never an error).

    Returns the keys of contexts written without a ``type``: Relay writes them after parsing
    the event, so normalization does not give them one (see :func:`strip_context_types`).
    """
    write_native_placeholder(event, "minidump", additional)
    if payload is None:
        _set_sdk(event, "minidump.upload")
        return []
    try:
        info = read_minidump(payload)
    except MinidumpError:
        return []
    _set_sdk(event, info.sdk_name)
    # The dump's time is the crash time, even if that is days before the upload.
    event["timestamp"] = float(info.timestamp)
    return _write_annotations(event, info)


def apply_apple_crash_report(
    event: dict[str, Any], additional: AdditionalExceptions = "retain"
) -> None:
    """Write the Apple crash report placeholder into ``event``."""
    write_native_placeholder(event, "applecrashreport", additional)


def strip_context_types(event: dict[str, Any], keys: list[str]) -> None:
    """Remove the ``type`` normalization gave the contexts ``keys`` (equal to their key)."""
    contexts = event.get("contexts")
    if not isinstance(contexts, dict):
        return
    for key in keys:
        context = contexts.get(key)
        if isinstance(context, dict) and context.get("type") == key:
            del context["type"]
