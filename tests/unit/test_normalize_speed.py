"""The hot-path shortcuts of relay.normalize give exactly what the general paths give.

Covers the UTC timestamp fast path, the undecoded query split, the incoming ``_meta`` copy,
the converters' pass-through of values already of the field's type, and the serializer's
cached visiting plans (including unknown keys next to meta-only fields).
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from typing import Any
from urllib.parse import parse_qsl

from relay.normalize import serialize
from relay.normalize.chrono import ChronoError, parse_datetime, utc_timestamp
from relay.normalize.config import NormalizationConfig
from relay.normalize.containers import ValuesKind, parse_query
from relay.normalize.event import normalize_event, parse_event
from relay.normalize.meta import Meta, child, copy_meta, merge
from relay.normalize.primitives import micros_timestamp, to_timestamp
from relay.normalize.schema import EVENT
from relay.normalize.serialize import Finisher, finish_event
from relay.normalize.types import OTHER_RETAIN, SKIP_DEEP, SKIP_EMPTY, SKIP_NEVER, Field, Struct


def _reference_timestamp(text: str) -> float | str:
    try:
        secs, nanos = parse_datetime(text)
    except ChronoError as error:
        return error.reason
    return micros_timestamp(secs, (nanos + 500) // 1000)


def test_utc_fast_path_equals_parse_datetime() -> None:
    dates = ["2026-11-26", "2024-02-29", "2023-02-29", "1970-01-01", "0000-01-01", "9999-12-31"]
    dates += ["2026-13-01", "2026-04-31", "2026-01-00"]
    times = ["12:03:58", "00:00:00", "23:59:59", "23:59:60", "24:00:00", "12:60:00"]
    fractions = ["", ".1", ".228814", ".999999", ".123456789", ".000000"]
    offsets = ["", "Z", "z", "+00:00", "-00:00", "+01:00", "+0000", " Z"]
    checked = 0
    for date, time, fraction, offset in itertools.product(dates, times, fractions, offsets):
        for sep in ("T", "t", " "):
            text = f"{date}{sep}{time}{fraction}{offset}"
            fast = utc_timestamp(text)
            if fast is None:
                continue
            checked += 1
            reference = _reference_timestamp(text)
            assert fast == reference and type(fast) is type(reference), text
    assert checked > 100


def test_to_timestamp_random_micros() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        secs = rng.randrange(0, 253402300799)
        micros = rng.randrange(0, 1_000_000)
        text = f"{_iso(secs)}.{micros:06d}Z"
        meta: Meta = {}
        assert to_timestamp(text, meta, "t") == _reference_timestamp(text), text
        assert not meta


def _iso(secs: int) -> str:
    from relay.normalize.chrono import format_utc

    return format_utc(secs).replace(" ", "T")


def test_query_split_equals_parse_qsl() -> None:
    rng = random.Random(3)
    alphabet = "ab=&?;x/ \t"
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        body = text[1:] if text.startswith("?") else text
        expected = [[k, v] for k, v in parse_qsl(body, keep_blank_values=True)]
        assert parse_query(text) == expected, repr(text)


def test_copy_meta_equals_merge_of_a_deep_copy() -> None:
    incoming: Meta = {
        "": {"err": [["invalid_data", {"reason": "x"}]], "rem": [["!a", "s"]], "len": 3},
        "exception": {"values": {"0": {"value": {"": {"val": {"a": [1, 2]}, "err": []}}}}},
        "bad": [1, 2],
        "empty": {},
        "own_only": {"": {}},
    }
    holder: Meta = {}
    merge(child(holder, "e"), copy.deepcopy(incoming))
    copied = copy_meta(incoming)
    # Equal as trees; the copy lists a node's annotations in Relay's order (rem, err, len, val).
    assert copied == holder["e"]
    # A private copy: changing it leaves the incoming tree alone.
    copied["exception"]["values"]["0"]["value"][""]["val"]["a"].append(3)
    copied[""]["err"][0][1]["reason"] = "changed"
    assert incoming["exception"]["values"]["0"]["value"][""]["val"]["a"] == [1, 2]
    assert incoming[""]["err"][0][1]["reason"] == "x"


def test_pass_through_values_are_converted_like_before() -> None:
    payload: dict[str, Any] = {
        "message": "hello",
        "logger": "a",
        "server_name": 12,
        "breadcrumbs": [{"message": 1, "data": {"a": None}, "category": "c"}],
        "exception": {
            "values": [{"type": "E", "stacktrace": {"frames": [{"pre_context": ["a", 1]}]}}]
        },
        "extra": {"k": "v"},
    }
    event, meta = parse_event(copy.deepcopy(payload))
    assert event["logger"] == "a" and event["extra"] == {"k": "v"}
    assert event["server_name"] is None and "server_name" in meta
    frame = event["exception"]["values"][0]["stacktrace"]["frames"][0]
    assert frame["pre_context"] == ["a", None]
    assert meta["exception"]["values"]["0"]["stacktrace"]["frames"]["0"]["pre_context"]["1"]
    crumb = event["breadcrumbs"]["values"][0]
    assert crumb["message"] is None and crumb["data"] == {"a": None}


def test_string_lists_are_copied() -> None:
    frames = [{"pre_context": ["a", "b"]}]
    event, _ = parse_event({"exception": [{"stacktrace": {"frames": frames}}]})
    out = event["exception"]["values"][0]["stacktrace"]["frames"][0]["pre_context"]
    assert out == ["a", "b"] and out is not frames[0]["pre_context"]


def test_unknown_keys_are_handled_next_to_meta_only_fields() -> None:
    struct = Struct(
        "Thing",
        [Field("a", "str"), Field("b", "str"), Field("c", "str")],
        other=OTHER_RETAIN,
    )
    meta: Meta = {
        "b": {"": {"err": ["invalid_data"]}},
        "c": {"": {"err": ["invalid_data"]}},
    }
    out = Finisher(remove_other=True).finish_struct(struct, {"a": "x", "zz": 1}, meta, "")
    assert out == {"a": "x", "b": None, "c": None, "zz": 1}


def test_plans_are_bounded_and_reused() -> None:
    struct = Struct("Bag", [Field("a", "str", skip=SKIP_EMPTY), Field("b", "str")])
    finisher = Finisher(remove_other=True)
    for i in range(serialize._MAX_PLANS + 10):
        assert finisher.finish_struct(struct, {f"k{i}": 1, "a": "", "b": "y"}, None, "") == {
            "b": "y"
        }
    assert len(struct.plans) <= serialize._MAX_PLANS
    value = {"b": "y", "a": "z"}
    assert list(finisher.finish_struct(struct, value, None, "")) == ["a", "b"]
    assert list(finisher.finish_struct(struct, value, None, "")) == ["a", "b"]


def test_leaf_modes_match_the_generic_finish() -> None:
    """Every field of every struct: the meta-less shortcut gives the generic result."""
    samples: list[Any] = ["", "x", 0, 1.5, True, [], ["a"], {}, {"a": None}, {"a": 1}, [None]]
    structs: list[Struct] = []
    seen: set[int] = set()

    def collect(kind: Any) -> None:
        if id(kind) in seen:
            return
        seen.add(id(kind))
        if isinstance(kind, Struct):
            structs.append(kind)
            for field in kind.fields:
                collect(field.kind)
        for attr in ("item",):
            inner = getattr(kind, attr, None)
            if inner is not None:
                collect(inner)
        known = getattr(kind, "known", None)
        if isinstance(known, dict):
            for inner in known.values():
                collect(inner)

    collect(EVENT)
    assert len(structs) > 20
    for struct in structs:
        for field in struct.fields:
            if serialize._entry(field)[1] == serialize._NOT_LEAF:
                continue  # always finished the generic way
            for sample in samples:
                value = {field.name: copy.deepcopy(sample)}
                fast = Finisher(remove_other=False).finish_struct(struct, value, None, "")
                generic = _generic_field(struct, field, copy.deepcopy(sample))
                assert fast == generic, (struct.name, field.name, sample)


def _generic_field(struct: Struct, field: Field, v: Any) -> dict[str, Any]:
    """The pre-plan serialization of one meta-less field, for comparison."""
    finisher = Finisher(remove_other=False)
    kind = field.kind
    fv = finisher.finish(kind, v, None, field.name)
    skip = field.skip
    if skip == SKIP_DEEP and fv is not None:
        fv = serialize._without_deep_empty_items(kind, fv, None)
    if fv is None:
        return {field.name: None} if skip == SKIP_NEVER else {}
    if skip == SKIP_EMPTY:
        if kind.__class__ is ValuesKind:
            if not v.get("values") and len(v) <= 1:
                return {}
        elif serialize.is_empty_kind(kind, fv):
            return {}
    elif skip == SKIP_DEEP and serialize.is_deep_empty_kind(kind, fv):
        return {}
    return {field.name: fv}


def test_corpus_output_is_stable_across_plan_reuse() -> None:
    from tests.unit.normalize_cases import corpus_events

    config = NormalizationConfig(received_at_ns=1_795_694_700_000_000_000)
    for name, event in corpus_events():
        first = normalize_event(copy.deepcopy(event), config)
        second = normalize_event(copy.deepcopy(event), config)
        assert json.dumps(first) == json.dumps(second), name


def test_finish_event_without_meta_has_no_meta_key() -> None:
    event, meta = parse_event({"logger": "x", "extra": {"a": 1}})
    out = finish_event(EVENT, event, meta, remove_other=True, emit_errors=True)
    assert "_meta" not in out and out["logger"] == "x"
