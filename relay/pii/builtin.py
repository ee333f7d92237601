"""Relay's built-in `@rule` catalogue, as plain rule specs in piiConfig JSON form."""

from __future__ import annotations

from typing import Any, Final


def _replace(text: str) -> dict[str, str]:
    return {"method": "replace", "text": text}


def _alias(target: str) -> dict[str, Any]:
    # Short names (`@ip`) hide the inner rule: remarks name the alias.
    return {"type": "alias", "rule": target, "hideInner": True}


def _variants(
    name: str, ty: str, replace_text: str | None, filter_: bool = False
) -> dict[str, dict[str, Any]]:
    rules: dict[str, dict[str, Any]] = {
        f"@{name}:hash": {"type": ty, "redaction": {"method": "hash"}},
        f"@{name}:mask": {"type": ty, "redaction": {"method": "mask"}},
        f"@{name}:remove": {"type": ty, "redaction": {"method": "remove"}},
    }
    if replace_text is not None:
        rules[f"@{name}:replace"] = {"type": ty, "redaction": _replace(replace_text)}
    if filter_:
        rules[f"@{name}:filter"] = {"type": ty, "redaction": _replace("[Filtered]")}
    return rules


BUILTIN_RULES: Final[dict[str, dict[str, Any]]] = {
    "@common": {
        "type": "multiple",
        "rules": [
            "@iban",
            "@ip",
            "@email",
            "@creditcard",
            "@pemkey",
            "@urlauth",
            "@userpath",
            "@bearer",
            "@password",
            "@usssn",
        ],
    },
    # The legacy data scrubber's equivalent.
    "@common:filter": {
        "type": "multiple",
        "rules": [
            "@creditcard:filter",
            "@iban:filter",
            "@pemkey:filter",
            "@urlauth:legacy",
            "@userpath:filter",
            "@bearer:filter",
            "@password:filter",
            "@usssn:filter",
        ],
    },
    "@anything": _alias("@anything:replace"),
    "@anything:filter": {"type": "anything", "redaction": _replace("[Filtered]")},
    **_variants("anything", "anything", "[Filtered]"),
    "@bearer": _alias("@bearer:replace"),
    **_variants("bearer", "bearer", "Bearer [token]", filter_=True),
    "@ip": _alias("@ip:replace"),
    **_variants("ip", "ip", "[ip]"),
    "@imei": _alias("@imei:replace"),
    **_variants("imei", "imei", "[imei]"),
    "@mac": _alias("@mac:mask"),
    **_variants("mac", "mac", "[mac]"),
    "@uuid": _alias("@uuid:mask"),
    **_variants("uuid", "uuid", "[uuid]"),
    "@email": _alias("@email:replace"),
    **_variants("email", "email", "[email]"),
    "@iban": _alias("@iban:replace"),
    **_variants("iban", "iban", "[iban]", filter_=True),
    "@creditcard": _alias("@creditcard:replace"),
    **_variants("creditcard", "creditcard", "[creditcard]", filter_=True),
    "@pemkey": _alias("@pemkey:replace"),
    **_variants("pemkey", "pemkey", "[pemkey]", filter_=True),
    "@urlauth": _alias("@urlauth:replace"),
    **_variants("urlauth", "url_auth", "[auth]"),
    # Sentry's legacy URL_PASSWORD_RE: only the password part is filtered.
    "@urlauth:legacy": {
        "type": "pattern",
        "pattern": r"\b((?:[a-z0-9]+:)?//[a-zA-Z0-9%_.-]+:)([a-zA-Z0-9%_.-]+)@",
        "replaceGroups": [2],
        "redaction": _replace("[Filtered]"),
    },
    "@usssn": _alias("@usssn:mask"),
    **_variants("usssn", "us_ssn", "[us-ssn]", filter_=True),
    "@userpath": _alias("@userpath:replace"),
    **_variants("userpath", "userpath", "[user]"),
    "@password": _alias("@password:remove"),
    **_variants("password", "password", "[password]", filter_=True),
    "@cookies:filter": {"type": "cookies", "redaction": _replace("[Filtered]")},
}
# Relay's catalogue has a quirk: `@imei:mask` hashes.
BUILTIN_RULES["@imei:mask"] = {"type": "imei", "redaction": {"method": "hash"}}
