"""Evaluating sampling rules: which rule decides, the sample rate, and keep or drop.

Rules are tried in order. ``factor`` rules multiply the final rate and go on, the first
``minimumSampleRate`` sets a floor and goes on, and the first matching ``sampleRate`` rule
ends the evaluation with ``max(rate, floor) * factors`` (clamped to ``[0, 1]``). The
decision compares the rate with the number derived from the seed (relay.sampling.pcg).
Evaluation may continue over several rule sets (event, project, trace) with the same
accumulated state.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Final

from relay.filters.condition import Getter
from relay.sampling.config import SamplingRule
from relay.sampling.pcg import random_from_id

__all__ = ["SamplingEvaluator", "SamplingMatch", "outcome_reason", "rule_category"]

#: Relay's outcome reasons carry the category of each matched rule, not its id.
_RULE_CATEGORIES: Final = {
    1000: "1000",  # boost low volume projects
    1001: "1001",  # boost environments
    1002: "1002",  # ignore health checks
    1003: "1003",  # boost key transactions
    1004: "1004",  # recalibration
    1005: "1005",  # boost replay id
}
#: Sort order of the categories in a reason (the order of Relay's category enum).
_CATEGORY_ORDER: Final = ("1000", "1001", "1002", "1003", "1004", "1005",
                          "1400", "1500", "3000", "0")  # fmt: skip


def rule_category(rule_id: int) -> str:
    """The low-cardinality category of a rule id, as Relay writes it in outcome reasons."""
    known = _RULE_CATEGORIES.get(rule_id)
    if known is not None:
        return known
    if 1400 <= rule_id <= 1499:
        return "1400"  # boost low volume transactions
    if 1500 <= rule_id <= 1599:
        return "1500"  # boost latest releases
    if 3000 <= rule_id <= 4999:
        return "3000"  # custom rules
    return "0"


def outcome_reason(rule_ids: list[int]) -> str:
    """``Sampled:<categories>``: the distinct categories of the matched rules, in order."""
    categories = {rule_category(rule_id) for rule_id in rule_ids}
    return "Sampled:" + ",".join(c for c in _CATEGORY_ORDER if c in categories)


@dataclass(frozen=True)
class SamplingMatch:
    """The rate that applies, the seed it is compared with, and the rules that made it."""

    sample_rate: float
    seed: uuid.UUID
    rule_ids: list[int]

    @property
    def keep(self) -> bool:
        """Whether the item is sampled (kept)."""
        if self.sample_rate <= 0.0:
            return False
        if self.sample_rate >= 1.0:
            return True
        return random_from_id(self.seed) < self.sample_rate

    @property
    def reason(self) -> str:
        """The outcome reason of the items this match drops."""
        return outcome_reason(self.rule_ids)


@dataclass
class SamplingEvaluator:
    """The state accumulated over the rule sets evaluated so far."""

    #: Unix seconds the rules' time ranges and decaying functions are evaluated at.
    now: float
    rule_ids: list[int] = field(default_factory=list)
    factor: float = 1.0
    minimum_sample_rate: float | None = None

    def match_rules(
        self, seed: uuid.UUID, instance: Getter, rules: list[SamplingRule]
    ) -> SamplingMatch | None:
        """The match that ends the evaluation, or None to go on with other rules."""
        for rule in rules:
            if not rule.time_range.contains(self.now) or not rule.condition(instance):
                continue
            rate = self._apply(rule)
            if rate is not None:
                return SamplingMatch(rate, seed, list(self.rule_ids))
        return None

    def _apply(self, rule: SamplingRule) -> float | None:
        value = rule.rate(rule.value.value, self.now)
        if value is None:
            return None  # e.g. a linear decay without a complete time range
        kind = rule.value.kind
        if kind == "factor":
            self.factor *= value
            self.rule_ids.append(rule.id)
            return None
        if kind == "minimumSampleRate":
            if self.minimum_sample_rate is None:
                self.minimum_sample_rate = value
                self.rule_ids.append(rule.id)
            return None
        floor = self.minimum_sample_rate or 0.0
        self.rule_ids.append(rule.id)
        return min(max(max(value, floor) * self.factor, 0.0), 1.0)
