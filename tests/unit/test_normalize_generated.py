"""Hypothesis-generated shapes, normalized by us and by ``sentry_relay``: outputs are equal.

Each strategy aims at one family of inputs the hand-written generator in
``test_normalize_diff`` samples only sparsely: datetime spellings, UUID spellings, Cookie
headers, log messages with parameters, header value lists, deep nesting and huge strings,
and values of the wrong type in every top-level field. Runs are derandomized, so a failure
is reproducible (and printed as the smallest example).
"""

from __future__ import annotations

import importlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.normalize import StoreNormalizer
from tests.unit.normalize_cases import RECEIVED_AT
from tests.unit.test_normalize_diff import _run

sentry_relay: Any = importlib.import_module("sentry_relay")

SETTINGS = settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EVENT_ID = "9ec79c33ec9942ab8353589fcb2e04dc"

#: Floats Relay's JSON reader parses exactly. serde_json reads a float exactly when its
#: digits fit 53 bits and its power of ten is at most 22; otherwise it may be one ulp off.
#: That is an intentional difference (we keep the exact value), so such floats are left out.
floats = st.one_of(
    st.builds(lambda n, k: n / 10**k, st.integers(-(10**15), 10**15), st.integers(0, 15)),
    st.sampled_from([1e20, -1e20, 1e300, 5e-324, 1e-7, 0.1, 2.5, -0.0]),
)


def assert_same(payload: dict[str, Any]) -> None:
    """Ours and Relay's normalized event are identical (random ids masked)."""
    theirs = _run(sentry_relay.StoreNormalizer(received_at=RECEIVED_AT), payload)
    ours = _run(StoreNormalizer(received_at=RECEIVED_AT), payload)
    assert ours == theirs


# -- datetimes ---------------------------------------------------------------------------

_two = st.integers(0, 99).map(lambda n: f"{n:02d}")
_year = st.one_of(
    st.integers(1900, 2100).map(str),
    st.sampled_from(["0000", "9999", "+2026", "-0001", "+12026", "20261", "1", "+0"]),
)
_fraction = st.one_of(st.just(""), st.from_regex(r"\.[0-9]{0,12}", fullmatch=True))
_offset = st.one_of(
    st.sampled_from(["", "Z", "z", "UTC", "utc", " Z", "+01", "x", "\u221201:00"]),
    st.builds(
        lambda s, h, m, c: f"{s}{h}{c}{m}",
        st.sampled_from("+-"),
        _two,
        _two,
        st.sampled_from(["", ":", " "]),
    ),
)
_space = st.sampled_from(["", "", "", " ", "\u3000", "\x1c"])
datetimes = st.builds(
    lambda y, mo, d, sep, h, mi, s, f, off, sp: f"{sp}{y}-{mo}-{d}{sep}{h}:{mi}:{s}{f}{off}{sp}",
    _year,
    _two,
    _two,
    st.sampled_from(["T", "t", " ", " T", "x", ""]),
    _two,
    _two,
    _two,
    _fraction,
    _offset,
    _space,
)
#: Realistic times (in the event's window) mixed with arbitrary ones.
timestamps = st.one_of(
    datetimes,
    st.builds(
        lambda mo, d, h, f, off: f"2026-{mo:02d}-{d:02d}T{h:02d}:00:00{f}{off}",
        st.integers(1, 12),
        st.integers(1, 31),
        st.integers(0, 23),
        _fraction,
        st.sampled_from(["", "Z", "+01:00", "-05:30"]),
    ),
    st.text(alphabet="0123456789-:.TZ+ ", max_size=30),
)


@SETTINGS
@given(timestamps)
def test_breadcrumb_timestamps(text: str) -> None:
    assert_same({"event_id": EVENT_ID, "breadcrumbs": [{"timestamp": text, "message": "m"}]})


@SETTINGS
@given(st.one_of(st.integers(-(2**63), 2**63 - 1), floats))
def test_numeric_timestamps(value: float) -> None:
    assert_same({"event_id": EVENT_ID, "breadcrumbs": [{"timestamp": value, "message": "m"}]})


# -- identifiers -------------------------------------------------------------------------

_hex = st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=40)
uuids = st.one_of(
    _hex,
    st.uuids().map(str),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: "urn:uuid:" + str(u)),
    st.builds(
        lambda a, b: a[: len(a) // 2] + b + a[len(a) // 2 :],
        st.uuids().map(str),
        st.text(max_size=3),
    ),
    st.text(alphabet="0123456789abcdef-{}urn:x\u00e9", max_size=50),
)


@SETTINGS
@given(uuids)
def test_event_ids(text: str) -> None:
    assert_same({"event_id": text, "message": "m"})


@SETTINGS
@given(uuids)
def test_trace_ids(text: str) -> None:
    assert_same(
        {"event_id": EVENT_ID, "contexts": {"trace": {"trace_id": text, "span_id": "a" * 16}}}
    )


# -- cookies, headers, log messages -------------------------------------------------------

cookie_headers = st.lists(
    st.one_of(
        st.builds(
            lambda k, v: f"{k}={v}",
            st.text(alphabet='ab %="\u00e9', max_size=5),
            st.text(alphabet='xy %ZC3A9f"', max_size=8),
        ),
        st.text(alphabet="ab =;", max_size=4),
    ),
    max_size=4,
).map("; ".join)


@SETTINGS
@given(cookie_headers)
def test_cookies(text: str) -> None:
    assert_same({"event_id": EVENT_ID, "request": {"cookies": text}})
    assert_same({"event_id": EVENT_ID, "request": {"headers": {"Cookie": text}}})


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    floats,
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@SETTINGS
@given(st.lists(json_values, max_size=4))
def test_header_value_lists(values: list[Any]) -> None:
    assert_same({"event_id": EVENT_ID, "request": {"headers": {"X-Test": values}}})


messages = st.lists(
    st.one_of(
        st.sampled_from(["%s", "%d", "%r", "%x", "%X", "%o", "%e", "%#x", "%%", "%(a)s", "%(0)s"]),
        st.sampled_from(["{}", "{0}", "{1}", "{a}", "{{", "}}", "% s", "%|", "%5.2f"]),
        st.text(alphabet="ab %{}", max_size=4),
    ),
    max_size=4,
).map("".join)
params = st.one_of(
    st.lists(json_values, max_size=3),
    st.dictionaries(st.sampled_from(["a", "0", "b"]), json_values, max_size=3),
    json_values,
)


@SETTINGS
@given(messages, params)
def test_log_messages(message: str, values: Any) -> None:
    assert_same({"event_id": EVENT_ID, "logentry": {"message": message, "params": values}})


# -- nesting, huge strings, wrong types ---------------------------------------------------

_FIELDS = [
    "level",
    "logger",
    "platform",
    "release",
    "dist",
    "environment",
    "transaction",
    "culprit",
    "message",
    "tags",
    "extra",
    "user",
    "request",
    "contexts",
    "breadcrumbs",
    "exception",
    "stacktrace",
    "fingerprint",
    "modules",
    "sdk",
    "threads",
    "server_name",
]
deep = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=2),
        st.dictionaries(
            st.sampled_from(["a", "values", "type", "value"]), inner, min_size=1, max_size=2
        ),
    ),
    max_leaves=40,
)
huge = st.sampled_from(["x" * 10_000, "\u00e9" * 3000, "a b " * 3000, "%s" * 2000])


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(_FIELDS), st.one_of(deep, huge, json_values), min_size=1, max_size=5
    )
)
def test_wrong_types_deep_nesting_and_huge_strings(fields: dict[str, Any]) -> None:
    assert_same({"event_id": EVENT_ID, **fields})
