"""Context normalization: computed ``os``/``runtime``/``browser`` names and raw descriptions."""

from __future__ import annotations

import re
from typing import Any, Final

from relay.normalize.chrono import RUST_WHITESPACE
from relay.normalize.request import normalize_response

_WINDOWS_1: Final = re.compile(
    r"^(Microsoft\s+)?Windows\s+(NT\s+)?(?P<version>\d+\.\d+\.(?P<build>\d+)).*$"
)
_WINDOWS_2: Final = re.compile(r"^Windows\s+\d+\s+\((?P<version>\d+\.\d+\.(?P<build>\d+)).*$")
_ANDROID: Final = re.compile(r"^Android (OS )?(?P<version>\d+(\.\d+){0,2}) / API-(?P<api>(\d+))")
_MACOS: Final = re.compile(r"^Mac OS X (?P<version>\d+\.\d+\.\d+)( \((?P<build>[a-fA-F0-9]+)\))?$")
_IOS: Final = re.compile(r"^iOS (?P<version>\d+\.\d+(\.\d+)?)")
_IPADOS: Final = re.compile(r"^iPadOS (?P<version>\d+\.\d+(\.\d+)?)")
_LINUX_DISTRO: Final = re.compile(
    r"^Linux (?P<kernel>\d+\.\d+(\.\d+(\.[1-9]+)?)?) (?P<name>[a-zA-Z]+) "
    r"(?P<version>\d+(\.\d+){0,2})"
)
_UNAME: Final = re.compile(r"^(?P<name>[a-zA-Z]+) (?P<kernel>\d+\.\d+(\.\d+(\.[1-9]+)?)?)")
_DOTNET: Final = re.compile(r"^(?P<name>.*) (?P<version>\d+\.\d+(\.\d+){0,2}).*$")
_NET_FRAMEWORK_RELEASES: Final = {
    "378389": "4.5",
    "378675": "4.5.1",
    "378758": "4.5.1",
    "379893": "4.5.2",
    "393295": "4.6",
    "393297": "4.6",
    "394254": "4.6.1",
    "394271": "4.6.1",
    "394802": "4.6.2",
    "394806": "4.6.2",
    "460798": "4.7",
    "460805": "4.7",
    "461308": "4.7.1",
    "461310": "4.7.1",
    "461808": "4.7.2",
    "461814": "4.7.2",
    "528040": "4.8",
    "528049": "4.8",
    "528209": "4.8",
    "528372": "4.8",
    "528449": "4.8",
}


def _windows_version(description: str) -> tuple[str, str] | None:
    match = _WINDOWS_1.match(description) or _WINDOWS_2.match(description)
    if match is None:
        return None
    full, build = match.group("version"), match.group("build")
    number = int(build)
    if 2600 <= number <= 3790:
        name = "XP"
    elif number == 6002:
        name = "Vista"
    elif number == 7601:
        name = "7"
    elif number == 9200:
        name = "8"
    elif number == 9600:
        name = "8.1"
    elif 10240 <= number <= 19044:
        name = "10"
    elif 22000 <= number <= 22999:
        name = "11"
    else:
        name = full
    return name, build


def _marketing_name(description: str) -> tuple[str, str] | None:
    name, sep, version = description.partition(" ")
    if not sep:
        return None
    name, version = name.strip(RUST_WHITESPACE), version.strip(RUST_WHITESPACE)
    if not name.isascii() or (not name.isalpha() and name):
        return None
    if any(c not in "0123456789.-" for c in version):
        return None
    return name, version


def _compute(ctx: dict[str, Any], key: str) -> None:
    if ctx.get(key) is None:
        name, version = ctx.get("name"), ctx.get("version")
        if name is not None:
            ctx[key] = f"{name} {version}" if version is not None else name


def normalize_os(os: dict[str, Any]) -> None:
    """Derive name/version from ``raw_description`` and the computed ``os`` string."""
    raw = os.get("raw_description")
    if os.get("name") is None and os.get("version") is None and raw is not None:
        windows = _windows_version(raw)
        if windows is not None:
            os["name"], os["version"] = "Windows", windows[0]
            if not os.get("build"):
                os["build"] = windows[1]
        elif match := _MACOS.match(raw):
            os["name"], os["version"], os["build"] = "macOS", match["version"], match["build"]
        elif match := _IOS.match(raw):
            os["name"], os["version"] = "iOS", match["version"]
        elif match := _IPADOS.match(raw):
            os["name"], os["version"] = "iPadOS", match["version"]
        elif match := _LINUX_DISTRO.match(raw):
            os["name"], os["version"] = match["name"], match["version"]
            os["kernel_version"] = match["kernel"]
        elif match := _UNAME.match(raw):
            os["name"], os["kernel_version"] = match["name"], match["kernel"]
        elif match := _ANDROID.match(raw):
            os["name"], os["version"] = "Android", match["version"]
        elif raw == "Nintendo Switch":
            os["name"] = "Nintendo OS"
        elif (marketing := _marketing_name(raw)) is not None:
            os["name"], os["version"] = marketing
    _compute(os, "os")


def normalize_runtime(runtime: dict[str, Any]) -> None:
    """.NET-style raw descriptions and the computed ``runtime`` string."""
    raw = runtime.get("raw_description")
    if not runtime.get("name") and not runtime.get("version") and raw is not None:
        match = _DOTNET.match(raw)
        if match is not None:
            runtime["name"], runtime["version"] = match["name"], match["version"]
    name, build = runtime.get("name"), runtime.get("build")
    if name is not None and build is not None and name.startswith(".NET Framework"):
        version = _NET_FRAMEWORK_RELEASES.get(build)
        if version is not None:
            runtime["version"] = version
    if runtime.get("runtime") is None:
        name, version = runtime.get("name"), runtime.get("version")
        if name is not None and version is not None:
            runtime["runtime"] = f"{name} {version}"


def normalize_contexts(event: dict[str, Any]) -> None:
    """Per-type context normalization; SDKs may not send the internal reprocessing context."""
    contexts = event.get("contexts")
    if type(contexts) is not dict:
        return
    contexts.pop("reprocessing", None)
    for ctx in contexts.values():
        if type(ctx) is not dict:
            continue
        ty = ctx.get("type")
        if ty == "runtime":
            normalize_runtime(ctx)
        elif ty == "os":
            normalize_os(ctx)
        elif ty == "browser":
            _compute(ctx, "browser")
        elif ty == "response":
            normalize_response(ctx)
        elif ty == "trace" and ctx.get("status") is None:
            ctx["status"] = "unknown"
