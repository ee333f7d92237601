"""Transaction normalization: measurements, breakdowns, span exclusive times and timestamps.

Differential cases run against ``sentry_relay``'s ``StoreNormalizer`` (which has no project
config, so no breakdowns, measurement limits or metric time window); those parts are
checked against the values Relay's own tests and integration suite expect.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import pytest

from relay.normalize import InvalidTransaction, normalize_for_relay
from relay.normalize.breakdowns import normalize_breakdowns
from relay.normalize.durations import millis, positive_millis
from relay.normalize.meta import Meta
from tests.unit.normalize_cases import RECEIVED_AT
from tests.unit.test_normalize_diff import assert_same

TRACE = "4c79f60c11214eb38604f4ae0781bfb2"


def transaction(**extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "transaction",
        "transaction": "/organizations/:orgId/",
        "start_timestamp": 1795708960.6542819,
        "timestamp": 1795708968.6189718,
        "contexts": {"trace": {"trace_id": TRACE, "span_id": "fa90fdead5f74052"}},
    }
    event.update(extra)
    return event


def span(span_id: str, parent: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "parent_span_id": parent,
        "trace_id": TRACE,
        "start_timestamp": start,
        "timestamp": end,
        **extra,
    }


DIFF_CASES: dict[str, dict[str, Any]] = {
    "measurement_names": transaction(
        measurements={
            "LCP": {"value": 420.69},
            "   lcp_final.element-Size123  ": {"value": 1},
            "fid": {"value": 2020},
            "cls": {"value": None},
            "fp": {"value": "im a first paint"},
            "Total Blocking Time": {"value": 3.14159},
            "missing_value": "string",
            "": {"value": 2.71828},
        }
    ),
    "measurement_name_collision": transaction(
        measurements={"LCP": {"value": 1}, "lcp": {"value": 2}, " Lcp ": {"value": 3}}
    ),
    "measurement_units": transaction(
        measurements={
            "a": {"value": 1, "unit": "ms"},
            "b": {"value": 1, "unit": "MS"},
            "c": {"value": 1, "unit": "bad unit!"},
            "d": {"value": 1, "unit": 5},
            "e": {"value": 1, "unit": ""},
            "f": {"value": 1, "unit": "averyveryverylongunit"},
            "g": {"value": 1, "unit": "KiloByte"},
            "h": {"value": True},
            "i": {"value": "1.5"},
        }
    ),
    "measurements_not_an_object": transaction(measurements=[1, 2]),
    "mobile_measurements": transaction(
        measurements={
            "app.start.cold": {"value": 200000},
            "app.start.warm": {"value": 100, "unit": "millisecond"},
            "time_to_full_display": {"value": 180001},
            "frames_total": {"value": 10},
            "frames_slow": {"value": 3},
            "frames_frozen": {"value": 1},
            "stall_total_time": {"value": 500},
        }
    ),
    "app_start_screen": transaction(
        contexts={"trace": {"trace_id": TRACE, "span_id": "fa90fdead5f74052", "op": "ui.load"}},
        measurements={"app_start_cold": {"value": 1200.5, "unit": "millisecond"}},
    ),
    "app_start_already_tagged": transaction(
        measurements={"app_start_cold": {"value": 1200.5}},
        tags={"app.vitals.start.type": "warm"},
    ),
    "measurements_on_error": {
        "message": "x",
        "measurements": {"lcp": {"value": "x"}},
        "breakdowns": {"a": {"b": {"value": 1}}},
    },
    "breakdown_names": transaction(
        breakdowns={
            "Span Ops": {"ops.http": {"value": 1}},
            "span_ops": {"Ops.X": {"value": "y", "unit": "ms"}, "Bad Name": {"value": 1}},
        }
    ),
    "exclusive_times": transaction(
        sdk={"name": "sentry.javascript.react-native", "version": "4.2.1"},
        spans=[
            span(
                "bbbbbbbbbbbbbbbb",
                "fa90fdead5f74052",
                1795708961.0,
                1795708967.123457,
                op="app_start_cold",
            ),
            span("cccccccccccccccc", "bbbbbbbbbbbbbbbb", 1795708962.000001, 1795708963.5),
            span("dddddddddddddddd", "bbbbbbbbbbbbbbbb", 1795708963.0, 1795708964.7),
            span(
                "eeeeeeeeeeeeeeee",
                "fa90fdead5f74052",
                1795708966.0,
                1795708969.0,
                op="app_start_warm",
                measurements={"X": {"value": 1}},
            ),
        ],
    ),
    "exclusive_time_given": transaction(
        contexts={
            "trace": {"trace_id": TRACE, "span_id": "fa90fdead5f74052", "exclusive_time": 3.5}
        },
        spans=[span("bbbbbbbbbbbbbbbb", "fa90fdead5f74052", 1795708961.0, 1795708962.0)],
    ),
}


@pytest.mark.parametrize("name", sorted(DIFF_CASES))
def test_matches_relay(name: str) -> None:
    assert_same(DIFF_CASES[name], received_at=RECEIVED_AT, normalize_spans=True)


@pytest.mark.parametrize("name", sorted(DIFF_CASES))
def test_matches_relay_without_span_normalization(name: str) -> None:
    assert_same(DIFF_CASES[name], received_at=RECEIVED_AT)


# -- durations ---------------------------------------------------------------------------


def test_durations_are_exact_in_microseconds() -> None:
    assert positive_millis(500.001, 600.002003) == 100001.003
    assert positive_millis(1795708968.001003, 1795709068.002006) == 100001.003
    assert positive_millis(2.0, 1.0) == 0.0
    assert millis(1) == 0.001


# -- relay pipeline (project config) -----------------------------------------------------


def relay_normalize(event: dict[str, Any], **options: Any) -> dict[str, Any]:
    return normalize_for_relay(
        copy.deepcopy(event),
        processing=True,
        event_id=uuid.uuid4().hex,
        received_at=time.time(),
        **options,
    )


GLOBAL_MEASUREMENTS = {
    "builtinMeasurements": [
        {"name": "lcp", "unit": "millisecond"},
        {"name": "fid", "unit": "millisecond"},
        {"name": "cls", "unit": "none"},
        {"name": "fp", "unit": "millisecond"},
        {"name": "inp", "unit": "millisecond"},
        {"name": "delta", "unit": "millisecond", "allowNegative": True},
    ],
    "maxCustomMeasurements": 2,
}


def test_suite_measurements_case() -> None:
    """``test_normalize_measurement_interface`` of Relay's integration suite."""
    event = transaction(
        start_timestamp=time.time() - 8,
        timestamp=time.time() - 1,
        measurements={
            "LCP": {"value": 420.69},
            "   lcp_final.element-Size123  ": {"value": 1},
            "fid": {"value": 2020},
            "inp": {"value": 100.14},
            "cls": {"value": None},
            "fp": {"value": "im a first paint"},
            "Total Blocking Time": {"value": 3.14159},
            "missing_value": "string",
        },
    )
    for global_config in (None, GLOBAL_MEASUREMENTS):
        out = relay_normalize(event, global_measurements_config=global_config)
        assert out["measurements"] == {
            "cls": {"unit": "none", "value": None},
            "fid": {"unit": "millisecond", "value": 2020.0},
            "inp": {"unit": "millisecond", "value": 100.14},
            "fp": {"unit": "millisecond", "value": None},
            "lcp": {"unit": "millisecond", "value": 420.69},
        }


def test_measurement_limits() -> None:
    now = time.time()
    event = transaction(
        start_timestamp=now - 8,
        timestamp=now - 1,
        measurements={
            "lcp": {"value": 1, "unit": "second"},  # builtin, wrong unit: dropped silently
            "fid": {"value": -1},  # builtin, negative
            "delta": {"value": -1, "unit": "millisecond"},  # negative allowed
            "custom_a": {"value": 1},
            "custom_b": {"value": 2},
            "custom_c": {"value": 3},  # over the custom budget
            "x" * 170: {"value": 4},  # name too long for the metric name limit
        },
    )
    out = relay_normalize(
        event,
        measurements_config={"maxCustomMeasurements": 5},
        global_measurements_config=GLOBAL_MEASUREMENTS,
    )
    assert sorted(out["measurements"]) == ["custom_a", "custom_b", "delta"]
    own = out["_meta"]["measurements"][""]
    assert own["err"] == [
        ["invalid_data", {"reason": "Too many measurements: custom_c"}],
        ["invalid_data", {"reason": "Negative value for measurement fid not allowed: -1"}],
        ["invalid_data", {"reason": f'Metric name too long 170/167: "{"x" * 170}"'}],
    ]
    assert own["val"]["custom_c"] == {"value": 3.0, "unit": "none"}
    # Relay reports the errors of the ``Measurements`` newtype twice.
    names = [e["name"] for e in out["errors"] if e["name"] == "measurements"]
    assert len(names) == 6


def test_measurements_of_errors_are_dropped_with_their_meta() -> None:
    out = relay_normalize({"message": "x", "measurements": {"cls": {"value": None}}})
    assert "measurements" not in out
    assert "measurements" not in out.get("_meta", {})


BREAKDOWNS_V2 = {
    "span_ops": {"type": "span_operations", "matches": ["http", "db", "browser", "resource"]},
    "span_ops_2": {"type": "spanOperations", "matches": ["http", "db", "browser", "resource"]},
    "span_ops_3": {"type": "whatever", "matches": ["http"]},
    "Bad Name": {"type": "spanOperations", "matches": ["http"]},
    "empty": {"type": "spanOperations", "matches": []},
}
OPS_SPANS = [
    span("bd429c44b67a3eb4", "8f5a2b8768cafb4e", 1000.5, 2000.5, op="http"),
    span("bd429c44b67a3eb5", "8f5a2b8768cafb4e", 1500.5, 2500.5, op="http"),
    span("bd429c44b67a3eb6", "8f5a2b8768cafb4e", 3500, 4000, op="http.secure"),
    span("bd429c44b67a3eb7", "8f5a2b8768cafb4f", 500.001, 600.002003, op="resource.link"),
    span("bd429c44b67a3eb8", "8f5a2b8768cafb4e", 100, 200, op="django.middleware"),
]
EXPECTED_OPS = {
    "ops.http": {"value": 2000000.0, "unit": "millisecond"},
    "ops.resource": {"value": 100001.003, "unit": "millisecond"},
    "total.time": {"value": 2200001.003, "unit": "millisecond"},
}


def test_suite_ops_breakdowns_case() -> None:
    """``test_ops_breakdowns``: timestamps from 1970 are shifted to now, durations kept."""
    event = transaction(start_timestamp=0, timestamp=4000, spans=OPS_SPANS)
    out = relay_normalize(event, breakdowns_config=BREAKDOWNS_V2)
    assert out["breakdowns"] == {"span_ops": EXPECTED_OPS, "span_ops_2": EXPECTED_OPS}
    assert out["_meta"]["timestamp"][""]["err"][0][0] == "past_timestamp"


def test_breakdowns_replace_the_sdks() -> None:
    event: dict[str, Any] = {"breakdowns": {"mine": {"x": {"value": 1}}}, "spans": []}
    meta: Meta = {"breakdowns": {"": {"err": ["invalid_data"]}}}
    normalize_breakdowns(event, meta, {"span_ops": BREAKDOWNS_V2["span_ops"]})
    assert event["breakdowns"] is None
    assert meta == {}


def test_breakdowns_merge_overlapping_spans_once() -> None:
    spans = [
        span("a" * 16, "f" * 16, 10.0, 20.0, op="db.query"),
        span("b" * 16, "f" * 16, 12.0, 15.0, op="db.query"),
        span("c" * 16, "f" * 16, 30.0, 25.0, op="db"),  # swapped start and end
        span("d" * 16, "f" * 16, 11.0, 40.0, op="browser"),
    ]
    event: dict[str, Any] = {"spans": spans}
    normalize_breakdowns(event, {}, {"b": {"type": "spanOperations", "matches": ["db"]}})
    assert event["breakdowns"] == {
        "b": {
            "ops.db": {"value": 15000.0, "unit": "millisecond"},
            "total.time": {"value": 44000.0, "unit": "millisecond"},
        }
    }


def test_suite_exclusive_time_case() -> None:
    """``test_span_exclusive_time`` of Relay's integration suite."""
    event = transaction(
        start_timestamp=0,
        timestamp=4000,
        contexts={"trace": {"trace_id": TRACE, "span_id": "aaaaaaaaaaaaaaaa"}},
        spans=[
            span("bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa", 1000, 3000, op="http"),
            span("cccccccccccccccc", "bbbbbbbbbbbbbbbb", 1400, 2600, op="http"),
            span("dddddddddddddddd", "cccccccccccccccc", 1700, 2300, op="http"),
        ],
    )
    out = relay_normalize(event)
    assert out["contexts"]["trace"]["exclusive_time"] == 2000000
    assert [s["exclusive_time"] for s in out["spans"]] == [800000, 600000, 600000]


@pytest.mark.parametrize("offset", [900, -320000000])
def test_span_timestamps_outside_the_metrics_window_take_the_transactions(
    offset: float,
) -> None:
    """``test_transaction_with_invalid_span_timestamps`` of Relay's integration suite."""
    start, end = 1597976392.6542819, 1597976400.6189718
    event = transaction(
        start_timestamp=start,
        timestamp=end,
        contexts={"trace": {"trace_id": TRACE, "span_id": "aaaaaaaaaaaaaaaa"}},
        spans=[span("bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa", start + offset, end + offset)],
    )
    out = relay_normalize(event)
    only = out["spans"][0]
    assert (only["start_timestamp"], only["timestamp"]) == (
        out["start_timestamp"],
        out["timestamp"],
    )
    span_meta = out["_meta"]["spans"]["0"]
    for key in ("start_timestamp", "timestamp"):
        assert span_meta[key][""]["err"] == ["invalid_data"]
        assert span_meta[key][""]["val"].endswith(" UTC")
    assert out["_meta"]["timestamp"][""]["err"][0][0] == "past_timestamp"


def test_transactions_outside_the_metrics_window_are_invalid() -> None:
    ten_days_ago = time.time() - 10 * 24 * 3600
    event = transaction(start_timestamp=ten_days_ago - 5, timestamp=ten_days_ago)
    with pytest.raises(InvalidTransaction):
        relay_normalize(event)
    # Within the event retention, but errors have no metrics window.
    out = relay_normalize({"message": "x", "timestamp": ten_days_ago})
    assert out["timestamp"] == pytest.approx(ten_days_ago, abs=1e-3)
