"""The sampling decision for a transaction, over all the rules that apply to it.

In Relay's order: the project's ``transaction`` rules against the event (seeded by the
event id), then its ``project`` rules and finally the trace root project's ``trace`` rules
against the DSC (both seeded by the trace id). Factors and minimum rates carry over from
one rule set to the next. Non-processing relays do not sample with a config they do not
fully understand; processing relays, the last hop, always do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from relay.filters.condition import Getter
from relay.sampling.config import RuleType, SamplingConfig
from relay.sampling.dsc import DscView, trace_id_of, uuid_field
from relay.sampling.evaluation import SamplingEvaluator, SamplingMatch

__all__ = ["sampling_decision", "trace_sampled"]

log = logging.getLogger(__name__)


def sampling_decision(
    *,
    processing: bool,
    config: SamplingConfig | None,
    event: Getter | None,
    event_payload: Mapping[str, Any] | None,
    root_config: SamplingConfig | None,
    dsc: Mapping[str, Any] | None,
    now: float | None = None,
) -> SamplingMatch | None:
    """The match that decides (None: no rule matched, the transaction is kept).

    ``event`` is the getter over the normalized transaction ``event_payload`` (for its
    ``event_id``); ``config`` is the project's, ``root_config`` the trace root's.
    """
    has_event = event is not None and event_payload is not None
    if (config is None or not has_event) and (root_config is None or dsc is None):
        return None
    if (config is not None and config.unsupported) or (
        root_config is not None and root_config.unsupported
    ):
        if not processing:
            return None
        log.error("found unsupported sampling rules even as processing relay")
    evaluator = SamplingEvaluator(time.time() if now is None else now)
    if config is not None and event is not None and event_payload is not None:
        seed = uuid_field(event_payload, "event_id")
        if seed is not None:
            found = evaluator.match_rules(seed, event, config.rules_of(RuleType.TRANSACTION))
            if found is not None:
                return found
    trace_id = trace_id_of(dsc) if dsc is not None else None
    if dsc is None or trace_id is None:
        return None
    view = DscView(dsc)
    if config is not None:
        found = evaluator.match_rules(trace_id, view, config.rules_of(RuleType.PROJECT))
        if found is not None:
            return found
    if root_config is not None:
        return evaluator.match_rules(trace_id, view, root_config.rules_of(RuleType.TRACE))
    return None


def _dsc_sampled(dsc: Mapping[str, Any]) -> bool | None:
    """The DSC's ``sampled`` flag (SDKs send ``"true"``/``"false"`` or booleans)."""
    raw = dsc.get("sampled")
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw in ("true", "false"):
        return raw == "true"
    return None


def trace_sampled(
    root_config: SamplingConfig | None, dsc: Mapping[str, Any] | None, now: float | None = None
) -> bool | None:
    """Whether the trace an error belongs to is kept, for tagging the error; None: unknown.

    Only the trace root's ``trace`` rules count. A trace whose head the client did not
    sample is not fully sampled; without the client's ``sampled`` flag nothing is known.
    """
    if root_config is None or dsc is None or root_config.unsupported:
        return None
    sampled = _dsc_sampled(dsc)
    if sampled is None:
        return None
    if not sampled:
        return False
    trace_id = trace_id_of(dsc)
    if trace_id is None:
        return None
    evaluator = SamplingEvaluator(time.time() if now is None else now)
    found = evaluator.match_rules(trace_id, DscView(dsc), root_config.rules_of(RuleType.TRACE))
    return True if found is None else found.keep
