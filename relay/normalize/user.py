"""User normalization: IP inference (``{{auto}}``, SDK ``infer_ip``) and the ``sentry_user`` tag."""

from __future__ import annotations

from typing import Any, Final

from relay.normalize.geoip import GeoIpLookup, lookup_geo
from relay.normalize.meta import Meta, add_error, child, has_errors
from relay.normalize.primitives import is_ip_address


def _valid_ip(value: Any) -> str | None:
    if type(value) is not str or not is_ip_address(value):
        return None
    return value


#: The values of the SDK's ``settings.infer_ip`` (Relay's ``AutoInferSetting``).
_INFER_IP_SETTINGS: Final = frozenset({"auto", "never", "legacy"})


def _infer_ip_setting(event: dict[str, Any], meta: Meta) -> str:
    """The SDK's ``settings.infer_ip``: ``auto``, ``never`` or ``legacy`` (when absent).

    A value this relay does not know means ``never``, not ``legacy``: an SDK asking for a
    newer mode must not get the old, more permissive inference. Like Relay's schema, the
    unknown value is removed (kept in ``_meta`` with an ``invalid_data`` error).
    """
    sdk = event.get("sdk")
    settings = sdk.get("settings") if type(sdk) is dict else None
    if type(settings) is not dict:
        return "legacy"
    setting_meta = child(child(child(meta, "sdk"), "settings"), "infer_ip")
    value = settings.get("infer_ip")
    if value is None:
        return "never" if has_errors(setting_meta) else "legacy"
    if value in _INFER_IP_SETTINGS:
        return str(value)
    add_error(setting_meta, "invalid_data", value)
    settings["infer_ip"] = None
    return "never"


def normalize_ip_addresses(event: dict[str, Any], meta: Meta, client_ip: str | None) -> None:
    """Fill ``user.ip_address`` from ``REMOTE_ADDR`` or the client IP where the SDK asks for it."""
    infer = _infer_ip_setting(event, meta)
    user = event.get("user")
    if infer == "never":
        if type(user) is dict and user.get("ip_address") == "{{auto}}":
            user["ip_address"] = None
        return
    request = event.get("request")
    remote_addr = None
    if type(request) is dict:
        env = request.get("env")
        if type(env) is dict:
            remote_addr = _valid_ip(env.get("REMOTE_ADDR"))
    inferred = remote_addr or client_ip
    current = user.get("ip_address") if type(user) is dict else None
    should_infer = current == "{{auto}}" if current is not None else infer == "auto"
    if should_infer and inferred is not None:
        if type(user) is not dict:
            user = event["user"] = {}
        user["ip_address"] = inferred
        current = inferred
    if infer == "legacy":
        if remote_addr is not None:
            if type(user) is not dict:
                user = event["user"] = {}
            if user.get("ip_address") is None:
                user["ip_address"] = remote_addr
        elif inferred is not None:
            if type(user) is not dict:
                user = event["user"] = {}
            if user.get("ip_address") is None and event.get("platform") in (
                "javascript",
                "cocoa",
                "objc",
            ):
                # Old JavaScript and Cocoa SDKs sent no IP meaning "{{auto}}"; respect a
                # value that data scrubbing removed on purpose.
                ip_meta = meta.get("user", {}).get("ip_address", {}).get("", {})
                removed = any(r[1] == "x" for r in ip_meta.get("rem", []) if len(r) > 1)
                if not removed:
                    user["ip_address"] = inferred


def normalize_user_geo(event: dict[str, Any], lookup: GeoIpLookup, client_ip: str | None) -> None:
    """Fill ``user.geo`` from the user's IP address, else the client's, unless already set.

    The client IP counts even where it may not become ``user.ip_address`` (scrubbed IPs,
    ``infer_ip: never``): the location is coarse and the address itself is not stored.
    """
    user = event.get("user")
    if type(user) is dict and user.get("geo") is not None:
        return
    ip = user.get("ip_address") if type(user) is dict else None
    if type(ip) is not str or ip == "{{auto}}":
        ip = client_ip
    geo = lookup_geo(lookup, ip)
    if not geo:
        return
    if type(user) is not dict:
        user = event["user"] = {}
    user["geo"] = geo


def normalize_user(event: dict[str, Any]) -> None:
    """Move unknown user fields into ``user.data`` and compute ``sentry_user``."""
    user = event.get("user")
    if type(user) is not dict:
        return
    from relay.normalize.schema import USER

    known = USER.by_name
    extra = [k for k in user if k not in known]
    if extra:
        data = user.get("data")
        if type(data) is not dict:
            data = user["data"] = {}
        for k in extra:
            data[k] = user.pop(k)
    for key, prefix in (("id", "id"), ("username", "username"), ("email", "email")):
        value = user.get(key)
        if type(value) is str:
            user["sentry_user"] = f"{prefix}:{value}"
            return
    ip = user.get("ip_address")
    if type(ip) is str:
        user["sentry_user"] = f"ip:{ip}"
    else:
        user["sentry_user"] = None
