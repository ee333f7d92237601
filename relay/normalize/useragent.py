"""User-agent and client-hints parsing into ``browser``, ``device`` and ``os`` contexts.

Relay's ``normalize_user_agent`` (run when ``normalize_user_agent`` is set): the request's
``User-Agent`` and ``Sec-CH-UA*`` headers fill the contexts the event does not have yet.
Client hints win over the user-agent string. The OS context goes to ``os`` for JavaScript
events and to ``client_os`` otherwise, so a server SDK's own ``os`` stays.

Parsing uses the ``ua-parser`` package (uap-core rules, the same rule set as Relay's
``relay-ua``) through the compiled resolver of :mod:`relay.filters.useragent`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Final, NamedTuple

from relay.filters import useragent as _filters_ua

__all__ = ["browser_from_user_agent", "normalize_user_agent"]

_CACHE_SIZE: Final = 2048
_MAX_CACHED_LEN: Final = 512

_BRAND: Final = re.compile(r'"([^"]*)";v="([^"]*)"')


class _Parsed(NamedTuple):
    browser: dict[str, Any] | None
    device: dict[str, Any] | None
    os: dict[str, Any] | None


_cache: OrderedDict[str, _Parsed] = OrderedDict()


def _version(major: str | None, minor: str | None, patch: str | None) -> str | None:
    if major is None:
        return None
    version = major
    if minor is not None:
        version += f".{minor}"
        if patch is not None:
            version += f".{patch}"
    return version


def _parse_uncached(user_agent: str) -> _Parsed:
    from ua_parser import Domain

    resolver: Any = _filters_ua._load()
    result = resolver(user_agent, Domain.ALL)
    browser = device = os = None
    ua = result.user_agent
    if ua is not None and ua.family != "Other":
        family = "Chrome" if ua.family == "Google Chrome" else ua.family
        browser = {"type": "browser", "name": family}
        version = _version(ua.major, ua.minor, ua.patch)
        if version is not None:
            browser["version"] = version
    dev = result.device
    if dev is not None and dev.family != "Other":
        device = {"type": "device", "family": dev.family}
        if dev.model is not None:
            device["model"] = dev.model
        if dev.brand is not None:
            device["brand"] = dev.brand
    os_result = result.os
    if os_result is not None and os_result.family != "Other":
        name = os_result.family
        version = _version(os_result.major, os_result.minor, os_result.patch)
        if version is not None and (
            (name == "Windows" and version == "10") or (name == "Mac OS X" and version == "10.15.7")
        ):
            # User agents freeze at these versions; the real one may be higher.
            version = ">=" + version
        os = {"type": "os", "name": name}
        if version is not None:
            os["version"] = version
    return _Parsed(browser, device, os)


def _parse(user_agent: str) -> _Parsed:
    cached = _cache.get(user_agent)
    if cached is not None:
        return cached
    parsed = _parse_uncached(user_agent)
    if len(user_agent) <= _MAX_CACHED_LEN:
        _cache[user_agent] = parsed
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return parsed


def browser_from_user_agent(user_agent: str) -> tuple[str, str | None] | None:
    """The browser ``(name, version)`` a user-agent string names, if it names one."""
    browser = _parse(user_agent).browser
    if browser is None:
        return None
    version = browser.get("version")
    return browser["name"], version if isinstance(version, str) else None


def _browser_from_hints(sec_ch_ua: str) -> tuple[str, str] | None:
    """The first brand that is neither a fake ("Not A Brand") nor an engine."""
    for item in sec_ch_ua.split(","):
        if "Brand" in item or "Chromium" in item or "Gecko" in item or "WebKit" in item:
            continue
        match = _BRAND.search(item)
        if match is None:
            return None
        browser, version = match.group(1), match.group(2)
        if not browser.strip() or not version.strip():
            return None
        return browser, version
    return None


def _from_headers(headers: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    if type(headers) is not list:
        return found
    for pair in headers:
        if type(pair) is not list or len(pair) != 2:
            continue
        key, value = pair
        if type(key) is not str:
            continue
        name = key.lower()
        if name in ("user-agent", "sec-ch-ua", "sec-ch-ua-model", "sec-ch-ua-platform"):
            pass
        elif name != "sec-ch-ua-platform-version":
            continue
        if type(value) is str:
            found[name] = value
        else:
            found.pop(name, None)
    return found


def normalize_user_agent(event: dict[str, Any]) -> None:
    """Add browser/device/os contexts from the request's user agent and client hints."""
    request = event.get("request")
    if type(request) is not dict:
        return
    headers = request.get("headers")
    if headers is None:
        return
    info = _from_headers(headers)
    contexts = event.get("contexts")
    if type(contexts) is not dict:
        contexts = event["contexts"] = {}
    if not info:
        return
    user_agent = info.get("user-agent")
    parsed = _parse(user_agent) if user_agent is not None else None

    if "browser" not in contexts:
        browser: dict[str, Any] | None = None
        hints = info.get("sec-ch-ua")
        if hints is not None:
            found = _browser_from_hints(hints)
            if found is not None:
                name = "Chrome" if found[0] == "Google Chrome" else found[0]
                browser = {"type": "browser", "name": name, "version": found[1]}
        if browser is None and parsed is not None and parsed.browser is not None:
            browser = dict(parsed.browser)
        if browser is not None:
            contexts["browser"] = browser

    if "device" not in contexts:
        device: dict[str, Any] | None = None
        model = info.get("sec-ch-ua-model")
        if model is not None:
            model = model.strip().replace('"', "")
            if model:
                device = {"type": "device", "model": model}
        if device is None and parsed is not None and parsed.device is not None:
            device = dict(parsed.device)
        if device is not None:
            contexts["device"] = device

    key = "os" if event.get("platform") == "javascript" else "client_os"
    if key not in contexts:
        os: dict[str, Any] | None = None
        platform = info.get("sec-ch-ua-platform")
        if platform is not None:
            platform = platform.strip().replace('"', "")
            if platform:
                os = {"type": "os", "name": platform}
                version = info.get("sec-ch-ua-platform-version")
                if version is not None:
                    os["version"] = version.strip().replace('"', "")
        if os is None and parsed is not None and parsed.os is not None:
            os = dict(parsed.os)
        if os is not None:
            contexts[key] = os
