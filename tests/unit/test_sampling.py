"""Dynamic sampling (relay.sampling): config parsing, rule evaluation, determinism."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from relay.filters.event import EventView
from relay.sampling import (
    DscView,
    RuleType,
    SamplingEvaluator,
    outcome_reason,
    parse_sampling_config,
    random_from_id,
    rule_category,
    sampling_decision,
    trace_sampled,
)
from relay.sampling.pcg import Pcg32

TRACE_ID = "67e5504410b1426f9247bb680e5fe0c8"
ALL: dict[str, Any] = {"op": "and", "inner": []}


def _rule(
    rule_id: int,
    value: float,
    *,
    kind: str = "sampleRate",
    rule_type: str = "transaction",
    condition: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": rule_id,
        "type": rule_type,
        "samplingValue": {"type": kind, "value": value},
        "condition": condition if condition is not None else ALL,
        **extra,
    }


def _config(*rules: dict[str, Any], version: int = 2) -> Any:
    config = parse_sampling_config({"version": version, "rules": list(rules)})
    assert config is not None
    return config


def _event(**fields: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "type": "transaction", **fields}


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# --- the random number ---------------------------------------------------------------


def test_pcg32_matches_the_reference_output() -> None:
    # The reference pcg32 demo (seed 42, stream 54) prints these six numbers.
    rng = Pcg32(42, 54)
    assert [rng.next_u32() for _ in range(6)] == [
        0xA15C02B7, 0x7B47F409, 0xBA1D3330, 0x83D2F293, 0xBFA4784B, 0xCBED606E,
    ]  # fmt: skip


def test_random_from_id_is_deterministic_and_in_range() -> None:
    seed = uuid.UUID(TRACE_ID)
    value = random_from_id(seed)
    assert value == random_from_id(uuid.UUID(TRACE_ID))
    assert 0.0 <= value < 1.0
    values = [random_from_id(uuid.uuid4()) for _ in range(2000)]
    assert all(0.0 <= v < 1.0 for v in values)
    # Uniform enough that a 50% rate keeps about half.
    assert 800 < sum(v < 0.5 for v in values) < 1200


def test_same_trace_same_decision_at_any_rate() -> None:
    config = _config(_rule(1, 0.5, rule_type="trace"))
    dsc = {"trace_id": TRACE_ID, "public_key": "a" * 32}
    first = sampling_decision(
        processing=True, config=None, event=None, event_payload=None, root_config=config, dsc=dsc
    )
    assert first is not None
    for _ in range(5):
        again = sampling_decision(
            processing=False, config=None, event=None, event_payload=None,
            root_config=config, dsc=dict(dsc),
        )  # fmt: skip
        assert again is not None and again.keep == first.keep
    assert first.keep == (random_from_id(uuid.UUID(TRACE_ID)) < 0.5)


# --- config ------------------------------------------------------------------------


def test_invalid_configs_are_no_config() -> None:
    assert parse_sampling_config(None) is None
    assert parse_sampling_config("nope") is None
    assert parse_sampling_config({"rules": [{"id": 1}]}) is None
    assert parse_sampling_config({"rules": [_rule(-1, 0.5)]}) is None
    assert parse_sampling_config({"rules": [_rule(1, 0.5, kind="reservoir")]}) is None


def test_unknown_rule_types_and_conditions_are_unsupported() -> None:
    assert not _config(_rule(1, 1.0)).unsupported
    assert _config(_rule(1, 1.0, rule_type="new_rule_type")).unsupported
    assert _config(_rule(1, 1.0, condition={"op": "future", "name": "x"})).unsupported
    assert _config(_rule(1, 1.0), version=3).unsupported


def test_legacy_version_merges_rules_v2() -> None:
    config = parse_sampling_config({"rules": [], "rulesV2": [_rule(7, 0.1)]})
    assert config is not None
    assert [r.id for r in config.rules_of(RuleType.TRANSACTION)] == [7]


def test_unsupported_config_samples_only_on_processing_relays() -> None:
    config = _config(_rule(1, 0.0), _rule(2, 1.0, rule_type="new_rule_type"))
    event = _event()
    args: dict[str, Any] = {
        "config": config, "event": EventView(event), "event_payload": event,
        "root_config": None, "dsc": None,
    }  # fmt: skip
    assert sampling_decision(processing=False, **args) is None
    found = sampling_decision(processing=True, **args)
    assert found is not None and not found.keep


# --- evaluation --------------------------------------------------------------------


def test_first_matching_sample_rate_wins() -> None:
    config = _config(
        _rule(1, 0.0, condition={"op": "eq", "name": "event.environment", "value": "dev"}),
        _rule(3001, 0.0, condition={"op": "eq", "name": "event.transaction", "value": "hi"}),
        _rule(2, 1.0),
    )
    dropped = _event(transaction="hi", environment="production")
    found = sampling_decision(
        processing=True, config=config, event=EventView(dropped), event_payload=dropped,
        root_config=None, dsc=None,
    )  # fmt: skip
    assert found is not None and not found.keep
    assert found.rule_ids == [3001] and found.reason == "Sampled:3000"
    kept = _event(transaction="ho")
    found = sampling_decision(
        processing=True, config=config, event=EventView(kept), event_payload=kept,
        root_config=None, dsc=None,
    )  # fmt: skip
    assert found is not None and found.keep and found.rule_ids == [2]


def test_factors_and_minimum_rate_compound() -> None:
    dsc = DscView({"trace_id": TRACE_ID})
    seed = uuid.UUID(TRACE_ID)
    rules = _config(
        _rule(1, 0.8, kind="factor", rule_type="trace"),
        _rule(2, 0.5, kind="factor", rule_type="trace"),
        _rule(3, 0.25, rule_type="trace"),
    ).rules_of(RuleType.TRACE)
    found = SamplingEvaluator(now=0.0).match_rules(seed, dsc, rules)
    assert found is not None and found.sample_rate == pytest.approx(0.1)
    assert found.rule_ids == [1, 2, 3]
    rules = _config(
        _rule(1, 0.5, kind="minimumSampleRate", rule_type="trace"),
        _rule(2, 0.9, kind="minimumSampleRate", rule_type="trace"),
        _rule(3, 1.5, kind="factor", rule_type="trace"),
        _rule(4, 0.05, rule_type="trace"),
    ).rules_of(RuleType.TRACE)
    found = SamplingEvaluator(now=0.0).match_rules(seed, dsc, rules)
    # max(0.05, 0.5) * 1.5; only the first minimum counts.
    assert found is not None and found.sample_rate == pytest.approx(0.75)
    assert found.rule_ids == [1, 3, 4]


def test_rate_is_clamped_to_one() -> None:
    rules = _config(
        _rule(1, 10.0, kind="factor", rule_type="trace"), _rule(2, 0.5, rule_type="trace")
    ).rules_of(RuleType.TRACE)
    found = SamplingEvaluator(now=0.0).match_rules(
        uuid.UUID(TRACE_ID), DscView({"trace_id": TRACE_ID}), rules
    )
    assert found is not None and found.sample_rate == 1.0 and found.keep


def test_time_ranges_and_linear_decay() -> None:
    time_range = {"start": "2022-10-10T00:00:00.000000Z", "end": "2022-10-20T00:00:00.000000Z"}
    rules = _config(
        _rule(1, 0.9, rule_type="trace", timeRange=time_range,
              decayingFn={"type": "linear", "decayedValue": 0.1}),
    ).rules_of(RuleType.TRACE)  # fmt: skip
    dsc = DscView({"trace_id": TRACE_ID})
    seed = uuid.UUID(TRACE_ID)
    assert SamplingEvaluator(now=_ts("2022-10-09T00:00:00")).match_rules(seed, dsc, rules) is None
    assert SamplingEvaluator(now=_ts("2022-10-20T00:00:00")).match_rules(seed, dsc, rules) is None
    found = SamplingEvaluator(now=_ts("2022-10-15T00:00:00")).match_rules(seed, dsc, rules)
    assert found is not None and found.sample_rate == pytest.approx(0.5)
    # A linear decay needs both ends of the range: the rule does not apply without them.
    open_ended = _config(
        _rule(1, 0.9, rule_type="trace", decayingFn={"type": "linear", "decayedValue": 0.1}),
    ).rules_of(RuleType.TRACE)
    assert SamplingEvaluator(now=0.0).match_rules(seed, dsc, open_ended) is None


def test_dsc_fields_for_trace_rules() -> None:
    view = DscView({
        "trace_id": TRACE_ID, "release": "1.0", "environment": "prod",
        "transaction": "/x", "user": {"id": "u1", "segment": "vip"},
        "replay_id": "a" * 32,
    })  # fmt: skip
    assert view.get_value("trace.release") == "1.0"
    assert view.get_value("trace.environment") == "prod"
    assert view.get_value("trace.transaction") == "/x"
    assert view.get_value("trace.user.id") == "u1"
    assert view.get_value("trace.user.segment") == "vip"
    assert view.get_value("trace.replay_id") == str(uuid.UUID("a" * 32))
    assert view.get_value("event.release") is None
    flat = DscView({"user_segment": "free", "user": {"segment": "vip"}})
    assert flat.get_value("trace.user.segment") == "free"


def test_transaction_then_project_then_trace_rules() -> None:
    own = _config(
        _rule(10, 0.5, kind="factor", rule_type="transaction"),
        _rule(11, 0.5, kind="factor", rule_type="project"),
    )
    prod = {"op": "eq", "name": "trace.environment", "value": "prod"}
    root = _config(_rule(1001, 1.0, rule_type="trace", condition=prod))
    event = _event()
    dsc = {"trace_id": TRACE_ID, "public_key": "b" * 32, "environment": "prod"}
    found = sampling_decision(
        processing=True, config=own, event=EventView(event), event_payload=event,
        root_config=root, dsc=dsc,
    )  # fmt: skip
    assert found is not None and found.sample_rate == pytest.approx(0.25)
    assert found.rule_ids == [10, 11, 1001]
    assert found.seed == uuid.UUID(TRACE_ID)
    assert found.reason == "Sampled:1001,0"


def test_no_config_or_no_dsc_is_no_match() -> None:
    event = _event()
    assert sampling_decision(
        processing=True, config=None, event=EventView(event), event_payload=event,
        root_config=None, dsc=None,
    ) is None  # fmt: skip
    root = _config(_rule(1, 0.0, rule_type="trace"))
    assert sampling_decision(
        processing=True, config=None, event=None, event_payload=None,
        root_config=root, dsc={"trace_id": "not a trace id"},
    ) is None  # fmt: skip


@pytest.mark.parametrize(
    ("rule_id", "category"),
    [(1000, "1000"), (1005, "1005"), (1006, "0"), (1400, "1400"), (1499, "1400"),
     (1500, "1500"), (3000, "3000"), (3001, "3000"), (4999, "3000"), (5000, "0"), (7, "0")],
)  # fmt: skip
def test_rule_categories(rule_id: int, category: str) -> None:
    assert rule_category(rule_id) == category


def test_outcome_reason_lists_distinct_categories_in_relay_order() -> None:
    assert outcome_reason([3001, 3002]) == "Sampled:3000"
    assert outcome_reason([7, 3001, 1500, 1001]) == "Sampled:1001,1500,3000,0"


def test_trace_sampled_tags_from_trace_rules_only() -> None:
    drop = _config(_rule(1, 0.0, rule_type="trace"))
    keep = _config(_rule(1, 1.0, rule_type="trace"))
    dsc: dict[str, Any] = {"trace_id": TRACE_ID, "sampled": "true"}
    assert trace_sampled(drop, dsc) is False
    assert trace_sampled(keep, dsc) is True
    assert trace_sampled(_config(_rule(1, 0.0)), dsc) is True  # no trace rule matches
    # The client dropped the head of the trace: not fully sampled, whatever the rules say.
    assert trace_sampled(keep, {**dsc, "sampled": False}) is False
    # Without the client's flag, nothing is known.
    assert trace_sampled(keep, {"trace_id": TRACE_ID}) is None
    assert trace_sampled(None, dsc) is None
    assert trace_sampled(_config(_rule(1, 1.0, rule_type="other")), dsc) is None
