"""The event of an Unreal Engine crash: its crash context, logs and user info.

The crash context (``CrashContext.runtime-xml``) is XML with ``RuntimeProperties``,
``PlatformProperties``, ``EngineData`` and ``GameData`` sections. Relay takes from it (its
``merge_unreal_context``): the error message, user name and login id, memory size, OS and GPU
facts, the level (asserts are errors, ensures warnings), the ``game`` context (game data), the
``unreal`` context (runtime properties) and the SDK. The ``__sentry`` game data entry is an
event JSON the game sends along; the user description is a user report. Log files become
breadcrumbs, and the ``UserID`` query parameter (``unreal_user_id`` envelope header) the user
id, Epic account id and machine id.
"""

from __future__ import annotations

import datetime
import re
import xml.etree.ElementTree as ET
from typing import Any, Final

import msgspec

__all__ = [
    "SENTRY_PAYLOAD_KEY",
    "UnrealContext",
    "breadcrumbs_from_logs",
    "merge_unreal_context",
    "merge_user_info",
    "parse_unreal_context",
    "user_report",
]

#: The game data key under which a game sends a Sentry event JSON.
SENTRY_PAYLOAD_KEY: Final = "__sentry"
#: Relay reads at most this many log lines into breadcrumbs.
MAX_LOG_BREADCRUMBS: Final = 40
_SDK_NAME: Final = "unreal.crashreporter"
_MAX_CONTEXT_BYTES: Final = 16 * 1024 * 1024

#: Runtime properties with a non-string value in Relay's ``unreal`` context.
_BOOL_PROPERTIES: Final = frozenset(
    {"is_ensure", "is_assert", "is_internal_build", "is_perforce_build",
     "is_source_distribution", "is_ue4_release", "is_requesting_exit"}
)  # fmt: skip
_INT_PROPERTIES: Final = frozenset(
    {"process_id", "seconds_since_start", "crash_version", "language_lcid",
     "crash_dump_mode", "misc_number_of_cores", "misc_number_of_cores_including_hyperthreads",
     "memory_stats_total_physical", "memory_stats_total_virtual", "memory_stats_page_size",
     "memory_stats_total_physical_gb"}
)  # fmt: skip
#: Relay's names for runtime properties that differ from the plain snake case conversion.
_RENAMED: Final = (
    ("user_name", "username"),
    ("misc_is64bit_operating_system", "misc_is_64bit"),
    ("crash_report_client_version", "crash_reporter_client_version"),
)
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_LOG_LINE: Final = re.compile(
    r"^\[(\d{4})\.(\d{2})\.(\d{2})-(\d{2})\.(\d{2})\.(\d{2}):(\d{3})\]\[\s*\d+\]"
    r"(?:([\w.-]+): )?(.*)$"
)
_COMPONENT_LINE: Final = re.compile(r"^([\w.-]+): (.*)$")


class UnrealContext(msgspec.Struct):
    """The sections of a crash context, as text values by key."""

    runtime_properties: dict[str, str]
    platform_properties: dict[str, str]
    engine_data: dict[str, str]
    game_data: dict[str, str]


def _snake(name: str) -> str:
    # "Misc.CPUBrand" -> "misc_cpu_brand", "CrashGUID" -> "crash_guid".
    return "_".join(_CAMEL.sub("_", part).lower() for part in name.split("."))


def _section(root: ET.Element, tag: str) -> dict[str, str]:
    element = root.find(tag)
    if element is None:
        return {}
    values: dict[str, str] = {}
    for child in element:
        text = (child.text or "").strip()
        if text:
            values[child.tag] = text
    return values


def parse_unreal_context(data: bytes) -> UnrealContext:
    """Parse ``CrashContext.runtime-xml``. Raises ValueError when it is not valid XML."""
    if len(data) > _MAX_CONTEXT_BYTES:
        raise ValueError("crash context too large")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        # Crash contexts never declare entities; refusing them avoids entity expansion.
        raise ValueError("crash context with a document type declaration")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"invalid crash context: {exc}") from exc
    return UnrealContext(
        runtime_properties=_section(root, "RuntimeProperties"),
        platform_properties=_section(root, "PlatformProperties"),
        engine_data=_section(root, "EngineData"),
        game_data=_section(root, "GameData"),
    )


def _typed(key: str, value: str) -> Any:
    if key in _BOOL_PROPERTIES:
        return value.lower() in ("true", "1")
    if key in _INT_PROPERTIES:
        try:
            return int(value)
        except ValueError:
            return None
    return value


def _runtime(context: UnrealContext) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, value in context.runtime_properties.items():
        key = _snake(name)
        typed = _typed(key, value)
        if typed is not None:
            props[key] = typed
    # Relay's field names differ from the plain conversion for these.
    for old, new in _RENAMED:
        if old in props:
            props[new] = props.pop(old)
    return props


def _get(container: dict[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        value = {}
        container[key] = value
    return value


def _set_if_empty(container: dict[str, Any], key: str, value: Any) -> None:
    if container.get(key) in (None, ""):
        container[key] = value


def merge_unreal_context(event: dict[str, Any], context: UnrealContext) -> None:
    """Fill ``event`` from the crash context, keeping what the event already has."""
    props = _runtime(context)
    message = props.pop("error_message", None)
    if message is not None:
        logentry = _get(event, "logentry")
        _set_if_empty(logentry, "formatted", message)
    username = props.pop("username", None)
    if username is not None:
        _set_if_empty(_get(event, "user"), "username", username)
    login_id = props.get("login_id")
    if login_id is not None:
        _set_if_empty(_get(event, "user"), "id", login_id)
    contexts = _get(event, "contexts")
    memory = props.pop("memory_stats_total_physical", None)
    if memory is not None:
        _set_if_empty(_get(contexts, "device"), "memory_size", memory)
    os_major = props.pop("misc_os_version_major", None)
    if os_major is not None:
        _set_if_empty(_get(contexts, "os"), "raw_description", os_major)
    engine = context.engine_data
    gpu_brand = props.pop("misc_primary_gpu_brand", None)
    gpu_name = engine.get("RHI.AdapterName", gpu_brand)
    for key, value in (
        ("name", gpu_name),
        ("id", engine.get("RHI.DeviceId")),
        ("graphics_shader_level", engine.get("RHI.FeatureLevel")),
        ("vendor_name", engine.get("RHI.GPUVendor")),
        ("version", engine.get("RHI.UserDriverVersion")),
        ("api_type", engine.get("RHI.RHIName")),
    ):
        if value is not None:
            _set_if_empty(_get(contexts, "gpu"), key, value)
    if event.get("level") is None:
        if props.get("is_assert") is True:
            event["level"] = "error"
        elif props.get("is_ensure") is True:
            event["level"] = "warning"
    # Modules come from the minidump or Apple crash report later.
    props.pop("modules", None)
    game = {k: v for k, v in context.game_data.items() if k != SENTRY_PAYLOAD_KEY}
    if game:
        _get(contexts, "game").update(game)
    if event.get("sdk") is None:
        version = props.pop("crash_reporter_client_version", None)
        event["sdk"] = {"name": _SDK_NAME, "version": version or "0.0.0"}
    if props:
        _get(contexts, "unreal").update(props)


def user_report(event_id: str, context: UnrealContext) -> dict[str, Any] | None:
    """The user report of the crash reporter's user description, if the user wrote one."""
    props = context.runtime_properties
    comments = props.get("UserDescription")
    if not comments:
        return None
    return {
        "event_id": event_id,
        "name": props.get("UserName") or "unknown",
        "email": "",
        "comments": comments,
    }


def merge_user_info(event: dict[str, Any], user_info: str) -> None:
    """Apply ``UserID`` (``<user id>|<epic account id>|<machine id>``) to ``event``."""
    parts = user_info.split("|")
    if parts and parts[0]:
        _get(event, "user")["id"] = parts[0]
    tags: list[Any] = []
    for key, index in (("epic_account_id", 1), ("machine_id", 2)):
        if len(parts) > index and parts[index]:
            tags.append([key, parts[index]])
    if tags:
        existing = event.get("tags")
        if isinstance(existing, dict):
            existing.update(dict(tags))
        elif isinstance(existing, list):
            existing.extend(tags)
        else:
            event["tags"] = tags


def _log_timestamp(match: re.Match[str]) -> float | None:
    year, month, day, hour, minute, second, millis = (int(match.group(i)) for i in range(1, 8))
    try:
        moment = datetime.datetime(
            year, month, day, hour, minute, second, millis * 1000, tzinfo=datetime.UTC
        )
    except ValueError:
        return None
    return moment.timestamp()


def breadcrumbs_from_logs(data: bytes, limit: int = MAX_LOG_BREADCRUMBS) -> list[dict[str, Any]]:
    """The last ``limit`` lines of an Unreal log file as breadcrumbs."""
    text = data.decode("utf-8", "replace").lstrip("\ufeff")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    crumbs = []
    for line in lines[-limit:]:
        crumb: dict[str, Any] = {}
        match = _LOG_LINE.match(line)
        if match is not None:
            timestamp = _log_timestamp(match)
            if timestamp is not None:
                crumb["timestamp"] = timestamp
            if match.group(8):
                crumb["category"] = match.group(8)
            crumb["message"] = match.group(9)
        elif (plain := _COMPONENT_LINE.match(line)) is not None:
            crumb["category"] = plain.group(1)
            crumb["message"] = plain.group(2)
        else:
            crumb["message"] = line
        crumbs.append(crumb)
    return crumbs
