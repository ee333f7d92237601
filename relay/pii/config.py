"""piiConfig parsing and validation: JSON (as Sentry stores it) into typed rule specs.

Acceptance follows Relay's deserializer: unknown top-level and rule keys are ignored, rule
types and their required fields are checked, and patterns are compiled only for rules that
an application actually reaches (an unused broken pattern is accepted, as in Relay).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from relay.pii.regex_compat import RegexError, compile_rust_regex
from relay.pii.selector import InvalidSelectorError, Selector, parse_selector


class PiiConfigError(ValueError):
    """An invalid piiConfig (bad JSON shape, selector or pattern)."""


RULE_TYPES: Final = frozenset(
    {
        "anything",
        "pattern",
        "imei",
        "mac",
        "uuid",
        "email",
        "ip",
        "creditcard",
        "iban",
        "userpath",
        "pemkey",
        "url_auth",
        "us_ssn",
        "bearer",
        "password",
        "cookies",
        "redact_pair",
        "multiple",
        "alias",
    }
)


@dataclass(frozen=True, slots=True)
class Redaction:
    """How a match is rewritten: default/remove/replace/mask/hash/other (unknown method)."""

    method: str
    text: str = "[Filtered]"


DEFAULT_REDACTION: Final = Redaction("default")


@dataclass(slots=True)
class RuleSpec:
    """One rule from `rules` (or the built-in catalogue)."""

    ty: str
    redaction: Redaction = DEFAULT_REDACTION
    pattern: str | None = None  # pattern / redact_pair keyPattern
    replace_groups: tuple[int, ...] | None = (0,)
    rules: tuple[str, ...] = ()  # multiple
    rule: str = ""  # alias
    hide_inner: bool = False
    case_insensitive: bool = False
    _compiled: re.Pattern[str] | None = field(default=None, repr=False)

    def compiled(self) -> re.Pattern[str]:
        """The rule's own regex (pattern / redact_pair), compiled once."""
        if self._compiled is None:
            assert self.pattern is not None
            try:
                self._compiled = compile_rust_regex(self.pattern, self.case_insensitive)
            except RegexError as exc:
                raise PiiConfigError(str(exc)) from exc
        return self._compiled


@dataclass(slots=True)
class PiiConfig:
    """A parsed piiConfig. `applications` keeps JSON order; duplicates resolve like Relay."""

    rules: dict[str, RuleSpec] = field(default_factory=dict)
    hash_key: str | None = None
    applications: list[tuple[Selector, list[str]]] = field(default_factory=list)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


def _expect(value: object, kind: type | tuple[type, ...], what: str) -> None:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise PiiConfigError(f"invalid type: {_type_name(value)}, expected {what}")


def _string_list(value: object) -> tuple[str, ...]:
    _expect(value, list, "a sequence")
    assert isinstance(value, list)
    for item in value:
        _expect(item, str, "a string")
    return tuple(value)


def parse_redaction(raw: object) -> Redaction:
    """Parse a `redaction` object; unknown methods are kept (Relay treats them as no-op)."""
    _expect(raw, dict, "internally tagged enum Redaction")
    assert isinstance(raw, dict)
    if "method" not in raw:
        raise PiiConfigError("missing field `method`")
    method = raw["method"]
    _expect(method, str, "a string")
    if method == "replace":
        text = raw.get("text", "[Filtered]")
        _expect(text, str, "a string")
        return Redaction("replace", text)
    if method in ("default", "remove", "mask", "hash"):
        return Redaction(method)
    return Redaction("other")


def parse_rule(raw: object) -> RuleSpec:
    """Parse one rule spec (`{"type": ..., "redaction": ...}`)."""
    _expect(raw, dict, "a map")
    assert isinstance(raw, dict)
    if "type" not in raw:
        raise PiiConfigError("missing field `type`")
    ty = raw["type"]
    _expect(ty, str, "a string")
    if ty == "redactPair":
        ty = "redact_pair"
    if ty == "unknown":
        raise PiiConfigError("invalid type: map, expected a string")
    if ty not in RULE_TYPES:
        raise PiiConfigError(f"unknown variant `{ty}`")
    redaction = parse_redaction(raw["redaction"]) if "redaction" in raw else DEFAULT_REDACTION
    spec = RuleSpec(ty=ty, redaction=redaction)
    if ty == "pattern":
        if "pattern" not in raw:
            raise PiiConfigError("missing field `pattern`")
        _expect(raw["pattern"], str, "a string")
        spec.pattern = raw["pattern"]
        if "replaceGroups" in raw:
            groups = raw["replaceGroups"]
            if groups is None:
                spec.replace_groups = None
            else:
                _expect(groups, list, "a sequence")
                for g in groups:
                    if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g <= 255:
                        raise PiiConfigError(f"invalid value: {_type_name(g)}, expected u8")
                spec.replace_groups = tuple(sorted(set(groups)))
    elif ty == "redact_pair":
        if "keyPattern" not in raw:
            raise PiiConfigError("missing field `keyPattern`")
        _expect(raw["keyPattern"], str, "a string")
        spec.pattern = raw["keyPattern"]
    elif ty == "multiple":
        if "rules" not in raw:
            raise PiiConfigError("missing field `rules`")
        spec.rules = _string_list(raw["rules"])
    elif ty == "alias":
        if "rule" not in raw:
            raise PiiConfigError("missing field `rule`")
        _expect(raw["rule"], str, "a string")
        spec.rule = raw["rule"]
    if ty in ("multiple", "alias") and "hideInner" in raw:
        _expect(raw["hideInner"], bool, "a boolean")
        spec.hide_inner = raw["hideInner"]
    return spec


def parse_pii_config(raw: object) -> PiiConfig:
    """Parse a piiConfig from decoded JSON, rejecting what Relay's deserializer rejects."""
    if isinstance(raw, list) and not raw:
        return PiiConfig()  # serde accepts an empty sequence for a struct
    _expect(raw, dict, "struct PiiConfig")
    assert isinstance(raw, dict)
    config = PiiConfig()
    if "rules" in raw:
        _expect(raw["rules"], dict, "a map")
        for rule_id, spec in raw["rules"].items():
            try:
                config.rules[rule_id] = parse_rule(spec)
            except PiiConfigError as exc:
                raise PiiConfigError(f"rules.{rule_id}: {exc}") from None
    if "vars" in raw:
        _expect(raw["vars"], dict, "struct Vars")
        hash_key = raw["vars"].get("hashKey")
        if hash_key is not None:
            _expect(hash_key, str, "a string")
        config.hash_key = hash_key
    if "applications" in raw:
        _expect(raw["applications"], dict, "a map")
        by_selector: dict[Selector, list[str]] = {}
        for text, rule_ids in raw["applications"].items():
            try:
                selector = parse_selector(text)
            except InvalidSelectorError:
                raise PiiConfigError(
                    f'invalid value: string "{text}", expected a selector'
                ) from None
            # Equal selectors collapse; the later entry wins (map semantics).
            by_selector[selector] = list(_string_list(rule_ids))
        config.applications = list(by_selector.items())
    return config
