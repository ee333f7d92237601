"""`datascrubbingSettings` (Sentry's legacy project options) converted into a piiConfig."""

from __future__ import annotations

from typing import Any, Final

from relay.pii.config import PiiConfigError
from relay.pii.regex_compat import rust_escape
from relay.pii.regexes import SENSITIVE_COOKIE_NAMES
from relay.pii.selector import (
    AndSelector,
    InvalidSelectorError,
    KeyItem,
    NotSelector,
    OrSelector,
    PathSelector,
    Selector,
    TypeItem,
    parse_selector_strict,
    selector_sort_key,
    selector_to_str,
)
from relay.pii.value_types import VALUE_TYPE_NAMES

# Fields the legacy scrubber never touched.
_IGNORE: Final = (
    "(debug_meta.** | $frame.filename | $frame.abs_path | $logentry.formatted | $error.value"
    " | $request.headers.user-agent)"
)
# Fields known to hold IP addresses (legacy IP scrubbing removes them outright).
_KNOWN_IP_FIELDS: Final = (
    "($request.env.REMOTE_ADDR | $user.ip_address | $sdk.client_ip"
    " | $span.sentry_tags.'user.ip' | attributes.'client.address')"
)
# Whole cookie headers (as string or list): only the sensitive cookies inside are filtered.
_BULK_COOKIES: Final = (
    "(*.'http.request.header.cookie'.*)|((*.'http.request.header.cookie'))"
    "|(*.'http.response.header.set-cookie'.*)|((*.'http.response.header.set-cookie'))"
)
# Fields important to the product: only replace-style rules, no destructive filters.
_REPLACE_ONLY: Final = "|".join(
    ["$logentry.formatted", "$log.body"]
    + [
        item
        for name in (
            "gen_ai.input.messages",
            "gen_ai.prompt",
            "gen_ai.request.messages",
            "gen_ai.tool.call.arguments",
            "gen_ai.tool.input",
            "gen_ai.tool.call.result",
            "gen_ai.tool.output",
            "gen_ai.output.messages",
            "gen_ai.response.tool_calls",
            "gen_ai.response.text",
            "gen_ai.response.object",
            "gen_ai.tool.definitions",
            "gen_ai.request.available_tools",
            "gen_ai.tool.name",
            "mcp.prompt.result",
            "mcp.tool.result.content",
        )
        for item in (f"$span.data.'{name}'", f"attributes.'{name}'.value")
    ]
)


def _sensitive_cookies() -> Selector:
    items: list[Selector] = []
    for name in SENSITIVE_COOKIE_NAMES:
        items.append(parse_selector_strict(f"*.cookies.{name}"))
        items.append(parse_selector_strict(f"*.'http.request.header.cookie.{name}'"))
        items.append(parse_selector_strict(f"*.'http.response.header.set-cookie.{name}'"))
    return OrSelector(tuple(items))


def _type(name: str) -> Selector:
    return PathSelector((TypeItem(VALUE_TYPE_NAMES.index(name)),))


def _settings(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise PiiConfigError("invalid type: expected struct DataScrubbingConfig")
    out: dict[str, Any] = {}
    for key, default in (
        ("excludeFields", []),
        ("scrubData", False),
        ("scrubIpAddresses", False),
        ("sensitiveFields", []),
        ("scrubDefaults", False),
    ):
        value = raw.get(key, default)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise PiiConfigError(f"invalid type for `{key}`: expected a boolean")
        elif not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PiiConfigError(f"invalid type for `{key}`: expected a sequence of strings")
        out[key] = value
    return out


def datascrubbing_applications(
    raw: object,
) -> tuple[dict[str, dict[str, Any]], list[tuple[Selector, list[str]]]] | None:
    """Rules and applications equivalent to the settings, or None if scrubbing is off."""
    settings = _settings(raw)
    scrub_data = settings["scrubData"]
    rules: dict[str, dict[str, Any]] = {}
    applied: list[str] = []
    applications: list[tuple[Selector, list[str]]] = []

    if scrub_data and settings["scrubDefaults"]:
        applied.append("@common:filter")
        applications.append((_sensitive_cookies(), ["@anything:filter"]))
        applications.append((parse_selector_strict(_BULK_COOKIES), ["@cookies:filter"]))
        applications.append(
            (
                parse_selector_strict(_REPLACE_ONLY),
                [
                    "@email:replace",
                    "@creditcard:replace",
                    "@iban:replace",
                    "@usssn:replace",
                    "@bearer:replace",
                ],
            )
        )
    if settings["scrubIpAddresses"]:
        applications.append((parse_selector_strict(_KNOWN_IP_FIELDS), ["@anything:remove"]))
        applied.append("@ip:replace")
    if scrub_data:
        fields = [f.strip() for f in settings["sensitiveFields"] if f.strip()]
        if fields:
            rules["strip-fields"] = {
                "type": "redact_pair",
                "keyPattern": "|".join(rust_escape(f) for f in fields),
                "redaction": {"method": "replace", "text": "[Filtered]"},
            }
            applied.append("strip-fields")
    if not applied and not applications:
        return None

    conjunctions: list[Selector] = [
        OrSelector(tuple(_type(t) for t in ("string", "number", "array", "object"))),
        NotSelector(parse_selector_strict(_IGNORE)),
    ]
    for field in settings["excludeFields"]:
        field = field.strip()
        if not field:
            continue
        try:
            spec = parse_selector_strict(field)
        except InvalidSelectorError:
            # Sentry accepted invalid safe fields; Relay treats them as plain keys.
            spec = PathSelector((KeyItem(field),))
        conjunctions.append(NotSelector(spec))
    if applied:
        applications.append((AndSelector(tuple(conjunctions)), applied))
    return rules, applications


def convert_datascrubbing_config(settings: object) -> dict[str, Any]:
    """Same result as `sentry_relay.convert_datascrubbing_config`."""
    converted = datascrubbing_applications(settings)
    if converted is None:
        return {}
    rules, applications = converted
    out: dict[str, Any] = {}
    if rules:
        out["rules"] = rules
    ordered: dict[str, list[str]] = {}
    for selector, rule_ids in sorted(applications, key=lambda a: selector_sort_key(a[0])):
        ordered[selector_to_str(selector)] = rule_ids
    if ordered:
        out["applications"] = ordered
    return out
