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
import re
from decimal import Decimal
from struct import unpack
from typing import Any
from urllib.parse import parse_qsl

from relay.normalize import serialize
from relay.normalize.chrono import ChronoError, parse_datetime, utc_timestamp
from relay.normalize.config import NormalizationConfig
from relay.normalize.containers import ValuesKind, parse_query
from relay.normalize.event import normalize_event, parse_event
from relay.normalize.meta import Meta, child, copy_meta, f64_len, merge
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


#: The fast path's grammar as one regex (how it was written before it was hand-unrolled).
_UTC_GRAMMAR = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{6}))?(?:[Zz]|\+00:00)"
)


def test_utc_fast_path_takes_exactly_its_grammar() -> None:
    """Every string of the grammar is taken (when its date is valid), nothing else is."""
    rng = random.Random(11)
    pieces = [
        "2026-11-26",
        "T",
        "t",
        " ",
        "12:03",
        ":58",
        ":5",
        ":60",
        ".123456",
        ".12345",
        ".1234567",
        "Z",
        "z",
        "+00:00",
        "-00:00",
        "+01:00",
        "\u0662",
        "\uff10",
        "x",
        ":",
        ".",
    ]
    valid = [
        f"2026-11-26{sep}12:03:58{frac}{zone}"
        for sep in "Tt "
        for frac in ("", ".228814")
        for zone in ("Z", "z", "+00:00")
    ]
    for text in valid:
        assert utc_timestamp(text) == _reference_timestamp(text), text
    samples = valid + [
        "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 8))) for _ in range(20000)
    ]
    for text in samples:
        # Mutate one character now and then, in the digits too.
        if rng.random() < 0.5 and text:
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice("0123456789:.-+TZz \u0663") + text[i + 1 :]
        fast = utc_timestamp(text)
        if _UTC_GRAMMAR.fullmatch(text) is None:
            assert fast is None, text
        elif fast is not None:
            assert fast == _reference_timestamp(text), text
        else:
            # In the grammar but left to parse_datetime: an invalid date or second.
            assert isinstance(_reference_timestamp(text), str) or int(text[17:19]) > 59, text


def _rust_display(value: float) -> str:
    """Rust's ``f64`` ``Display``, spelled out: ``repr``'s digits, never an exponent."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def test_float_size_is_the_length_of_rusts_display() -> None:
    rng = random.Random(5)
    values = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        100.0,
        0.1,
        1e-5,
        1e-7,
        1e15,
        1e16,
        1e22,
        -1e22,
        5e-324,
        1.7976931348623157e308,
        float("nan"),
        float("inf"),
        float("-inf"),
    ]
    # Every exponent (random bit patterns), span timestamps, rounded and scaled numbers.
    values += [unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(100_000)]
    values += [rng.uniform(1.6e9, 1.9e9) for _ in range(20_000)]
    values += [round(rng.uniform(0, 1e6), rng.randrange(8)) for _ in range(20_000)]
    values += [
        rng.randrange(-(10**20), 10**20) * 10.0 ** rng.randrange(-30, 30) for _ in range(50_000)
    ]
    for value in values:
        assert f64_len(value) == len(_rust_display(value)), repr(value)


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
