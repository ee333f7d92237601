"""A project's dynamic sampling config (the ``sampling`` key of its project config).

Decoded into plain structs, with each rule's condition compiled once. A config that does
not decode is no config at all (Relay's ``ErrorBoundary``): nothing is sampled by it. Rules
of types or with conditions this relay does not know make the config *unsupported*; a
non-processing relay then leaves sampling to the next hop.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

import msgspec

from relay.filters.condition import Condition, compile_condition, condition_supported

__all__ = [
    "DecayingFunction",
    "RuleType",
    "SamplingConfig",
    "SamplingRule",
    "SamplingValue",
    "TimeRange",
    "parse_sampling_config",
]

log = logging.getLogger(__name__)

#: The newest config version this relay understands.
SUPPORTED_VERSION: Final = 2
_LEGACY_VERSION: Final = 1


class RuleType(StrEnum):
    """What a rule looks at: the trace (root project's DSC), the event, or the project."""

    TRACE = "trace"
    TRANSACTION = "transaction"
    PROJECT = "project"
    UNSUPPORTED = "unsupported"


class SamplingValue(msgspec.Struct, frozen=True):
    """``sampleRate`` (final), ``factor`` (multiplies later rates) or ``minimumSampleRate``."""

    kind: str
    value: float


class TimeRange(msgspec.Struct, frozen=True):
    """When a rule is active, as Unix seconds: ``start <= now < end``; None is open."""

    start: float | None = None
    end: float | None = None

    def contains(self, now: float) -> bool:
        """Whether the rule is active at ``now``."""
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)


class DecayingFunction(msgspec.Struct, frozen=True):
    """``constant`` keeps the rate; ``linear`` moves it to ``decayed_value`` over the range."""

    kind: str = "constant"
    decayed_value: float = 0.0

    def adjust(self, rate: float, now: float, time_range: TimeRange) -> float | None:
        """The rate at ``now``; None when the rule cannot apply (bad linear range)."""
        if self.kind != "linear":
            return rate
        if time_range.start is None or time_range.end is None or rate < self.decayed_value:
            return None
        # Whole seconds, as the reference computes the progress.
        start, end, current = int(time_range.start), int(time_range.end), int(now)
        if end == start:
            progress = 1.0 if current >= end else 0.0
        else:
            progress = min(max((current - start) / (end - start), 0.0), 1.0)
        return rate + (self.decayed_value - rate) * progress


@dataclass(frozen=True)
class SamplingRule:
    """One rule: where it applies, what it matches, and the value it contributes."""

    id: int
    type: RuleType
    value: SamplingValue
    condition: Condition
    supported: bool
    time_range: TimeRange
    decaying: DecayingFunction

    def rate(self, value: float, now: float) -> float | None:
        """``value`` after the rule's decaying function (None: the rule does not apply)."""
        return self.decaying.adjust(value, now, self.time_range)


@dataclass(frozen=True)
class SamplingConfig:
    """The rules of a project, in order; ``unsupported`` as explained in the module doc."""

    version: int
    rules: tuple[SamplingRule, ...]

    @property
    def unsupported(self) -> bool:
        """A newer version or a rule this relay cannot evaluate faithfully."""
        return self.version > SUPPORTED_VERSION or not all(r.supported for r in self.rules)

    def rules_of(self, rule_type: RuleType) -> list[SamplingRule]:
        """The rules of one type, in config order."""
        return [rule for rule in self.rules if rule.type == rule_type]


# --- wire models -------------------------------------------------------------------------


class _WireValue(msgspec.Struct):
    type: str
    value: float


class _WireTimeRange(msgspec.Struct):
    start: datetime | None = None
    end: datetime | None = None


class _WireDecaying(msgspec.Struct, rename="camel"):
    type: str = "constant"
    decayed_value: float | None = None


class _WireRule(msgspec.Struct, rename="camel"):
    condition: Any
    sampling_value: _WireValue
    type: str
    id: Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
    time_range: _WireTimeRange = msgspec.field(default_factory=_WireTimeRange)
    decaying_fn: _WireDecaying = msgspec.field(default_factory=_WireDecaying)


class _WireConfig(msgspec.Struct, rename="camel"):
    version: int = _LEGACY_VERSION
    rules: list[_WireRule] = msgspec.field(default_factory=list)
    rules_v2: list[_WireRule] = msgspec.field(default_factory=list)


_VALUE_KINDS: Final = frozenset({"sampleRate", "factor", "minimumSampleRate"})
_RULE_TYPES: Final = {t.value: t for t in RuleType if t is not RuleType.UNSUPPORTED}


def _timestamp(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("time range without a time zone")
    return value.timestamp()


def _rule(wire: _WireRule) -> SamplingRule:
    if wire.sampling_value.type not in _VALUE_KINDS:
        raise ValueError(f"unknown samplingValue type {wire.sampling_value.type!r}")
    decaying = wire.decaying_fn
    if decaying.type == "linear":
        if decaying.decayed_value is None:
            raise ValueError("linear decayingFn without decayedValue")
        function = DecayingFunction("linear", decaying.decayed_value)
    elif decaying.type == "constant":
        function = DecayingFunction()
    else:
        raise ValueError(f"unknown decayingFn type {decaying.type!r}")
    rule_type = _RULE_TYPES.get(wire.type, RuleType.UNSUPPORTED)
    return SamplingRule(
        id=wire.id,
        type=rule_type,
        value=SamplingValue(wire.sampling_value.type, wire.sampling_value.value),
        condition=compile_condition(wire.condition),
        supported=rule_type is not RuleType.UNSUPPORTED and condition_supported(wire.condition),
        time_range=TimeRange(_timestamp(wire.time_range.start), _timestamp(wire.time_range.end)),
        decaying=function,
    )


_encoder = msgspec.json.Encoder()


def parse_sampling_config(raw: Any) -> SamplingConfig | None:
    """The compiled config of a project's ``sampling`` value; None if absent or invalid.

    Compiled once per distinct config (the cache is keyed by the config's JSON).
    """
    if raw is None:
        return None
    try:
        key = _encoder.encode(raw)
    except (TypeError, msgspec.EncodeError):
        return None
    return _parse_cached(key)


@functools.lru_cache(maxsize=1024)
def _parse_cached(raw: bytes) -> SamplingConfig | None:
    try:
        wire = msgspec.json.decode(raw, type=_WireConfig)
        rules = list(wire.rules)
        if wire.version == _LEGACY_VERSION:
            # Legacy configs carried the new rules separately; they are one list since v2.
            rules.extend(wire.rules_v2)
        version = max(wire.version, SUPPORTED_VERSION)
        return SamplingConfig(version, tuple(_rule(rule) for rule in rules))
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        log.debug("invalid sampling config ignored: %s", exc)
        return None
