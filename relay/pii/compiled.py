"""A piiConfig resolved for execution: applications in Relay's order with flattened rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from relay.pii.builtin import BUILTIN_RULES
from relay.pii.config import PiiConfig, Redaction, RuleSpec, parse_rule
from relay.pii.regexes import BUILTIN_TYPE_PATTERNS, KEY_VALUE, VALUE, PatternSpec
from relay.pii.selector import Selector, selector_sort_key

_MAX_DEPTH: Final = 200
_BUILTIN_SPECS: Final[dict[str, RuleSpec]] = {k: parse_rule(v) for k, v in BUILTIN_RULES.items()}


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A leaf rule as applied: `origin` names it in remarks (the outer rule if hidden)."""

    id: str
    origin: str
    ty: str
    redaction: Redaction
    patterns: tuple[PatternSpec, ...]


def _patterns(spec: RuleSpec) -> tuple[PatternSpec, ...]:
    if spec.ty == "pattern":
        groups = spec.replace_groups if spec.replace_groups is not None else (0,)
        return ((VALUE, spec.compiled(), groups),)
    if spec.ty == "redact_pair":
        return ((KEY_VALUE, spec.compiled(), None),)
    return BUILTIN_TYPE_PATTERNS[spec.ty]


def _lookup(config: PiiConfig, rule_id: str) -> RuleSpec | None:
    spec = config.rules.get(rule_id)
    return spec if spec is not None else _BUILTIN_SPECS.get(rule_id)


def _collect(
    config: PiiConfig,
    out: dict[str, RuleRef],
    seen: set[str],
    rule_id: str,
    parent: tuple[str, Redaction] | None,
    depth: int,
) -> None:
    if depth > _MAX_DEPTH:
        return
    spec = _lookup(config, rule_id)
    if spec is None or rule_id in seen:
        return
    seen.add(rule_id)
    origin, redaction = rule_id, spec.redaction
    if parent is not None:
        origin = parent[0]
        if parent[1].method != "default":
            redaction = parent[1]
    if spec.ty == "multiple":
        inner_parent = (origin, redaction) if spec.hide_inner else None
        for inner in spec.rules:
            _collect(config, out, seen, inner, inner_parent, depth + 1)
    elif spec.ty == "alias":
        inner_parent = (origin, redaction) if spec.hide_inner else None
        _collect(config, out, seen, spec.rule, inner_parent, depth + 1)
    elif rule_id not in out:
        out[rule_id] = RuleRef(rule_id, origin, spec.ty, redaction, _patterns(spec))


@dataclass(frozen=True, slots=True)
class Application:
    """One selector with the rules it applies, in application order (sorted by rule id)."""

    selector: Selector
    rules: tuple[RuleRef, ...]


def compile_applications(config: PiiConfig) -> tuple[Application, ...]:
    """Resolve aliases/multiples and order everything as Relay does; compiles all regexes."""
    apps = []
    for selector, rule_ids in sorted(config.applications, key=lambda a: selector_sort_key(a[0])):
        collected: dict[str, RuleRef] = {}
        seen: set[str] = set()
        for rule_id in rule_ids:
            _collect(config, collected, seen, rule_id, None, 0)
        rules = tuple(collected[k] for k in sorted(collected))
        apps.append(Application(selector, rules))
    return tuple(apps)


def compiled_patterns(apps: tuple[Application, ...]) -> list[re.Pattern[str]]:
    """All regexes of all applications (forces compilation; raises on invalid ones)."""
    return [p[1] for app in apps for rule in app.rules for p in rule.patterns]
