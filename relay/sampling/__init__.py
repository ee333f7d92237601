"""Dynamic sampling: project ``sampling`` rules decide which transactions are stored.

Pure domain code (no I/O): :func:`parse_sampling_config` compiles a project's rules,
:func:`sampling_decision` evaluates them for a transaction and its DSC, and a
:class:`SamplingMatch` says keep or drop, deterministically per event or trace id, with
the outcome reason Relay writes (``Sampled:<rule categories>``).
"""

from relay.sampling.config import (
    RuleType,
    SamplingConfig,
    SamplingRule,
    parse_sampling_config,
)
from relay.sampling.decision import sampling_decision, trace_sampled
from relay.sampling.dsc import DscView, trace_id_of
from relay.sampling.evaluation import (
    SamplingEvaluator,
    SamplingMatch,
    outcome_reason,
    rule_category,
)
from relay.sampling.pcg import random_from_id

__all__ = [
    "DscView",
    "RuleType",
    "SamplingConfig",
    "SamplingEvaluator",
    "SamplingMatch",
    "SamplingRule",
    "outcome_reason",
    "parse_sampling_config",
    "random_from_id",
    "rule_category",
    "sampling_decision",
    "trace_id_of",
    "trace_sampled",
]
