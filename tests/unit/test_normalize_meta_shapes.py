"""Incoming ``_meta`` entries Relay cannot read are dropped, never a crash: differential
against ``sentry_relay.StoreNormalizer`` on well- and ill-shaped ``err``/``rem``/``len``/``val``.
"""

from __future__ import annotations

import copy
import importlib
import json
from typing import Any

import pytest

from relay.normalize import StoreNormalizer

sentry_relay: Any = importlib.import_module("sentry_relay")

ENTRIES: list[dict[str, Any]] = [
    # remarks: [rule, type] or [rule, type, start, end]; a lone start is dropped
    {"rem": [["r", "x"]]},
    {"rem": [["r", "x", 1, 2]]},
    {"rem": [["r", "x", 1]]},
    {"rem": [["r", "x", 1, 2, 3]]},
    {"rem": [["r", "x", 2, 1]]},
    {"rem": [["r", "a"], ["r", "s"], ["r", "m"], ["r", "p"], ["r", "e"]]},
    {"rem": [["", "x"]]},
    {"rem": [["r", "bogus"]]},
    {"rem": [["r", "ax"]]},
    {"rem": [["r", ["x"]]]},
    {"rem": [["r"]]},
    {"rem": [[]]},
    {"rem": [[5, "x"]]},
    {"rem": [["r", "x", "a", "b"]]},
    {"rem": [["r", "x", -1, 2]]},
    {"rem": [["r", "x", 1.5, 2]]},
    {"rem": [["r", "x", None]]},
    {"rem": [["r", "x", 1, None]]},
    {"rem": []},
    {"rem": None, "len": 3},
    {"rem": 5},
    {"rem": {"a": 1}},
    # errors: a name, [name] or [name, {data}] with non-null data values
    {"err": ["s"]},
    {"err": [""]},
    {"err": [["n"]]},
    {"err": [["n", {}]]},
    {"err": [["n", {"a": 1}]]},
    {"err": [["n", {"a": 1}, 3]]},
    {"err": [["n", {"a": [None], "b": {"c": None}}]]},
    {"err": [["n", {"a": None}]]},
    {"err": [["n", 5]]},
    {"err": [["n", None]]},
    {"err": [[5, {}]]},
    {"err": [[]]},
    {"err": [5]},
    {"err": [{"a": 1}]},
    {"err": "s"},
    {"err": 5},
    {"err": None, "len": 3},
    {"err": ["s"], "rem": [["r", "x"]], "len": 3, "val": "v"},
    {"err": ["s"], "rem": 5},
    # original length: u32
    {"len": 0},
    {"len": 5},
    {"len": 2**32 - 1},
    {"len": 2**32},
    {"len": -1},
    {"len": 5.5},
    {"len": "5"},
    {"len": True},
    {"len": None, "err": ["s"]},
    # original value: anything but null
    {"val": 5},
    {"val": {"a": None}},
    {"val": None, "len": 3},
    {"foo": 1},
    {},
]


def _meta(normalizer: Any, tree: dict[str, Any]) -> Any:
    event = {"message": "hi", "extra": {"x": "a"}, "_meta": copy.deepcopy(tree)}
    return normalizer.normalize_event(json.loads(json.dumps(event))).get("_meta")


@pytest.mark.parametrize("entry", ENTRIES, ids=json.dumps)
@pytest.mark.parametrize("where", ["leaf", "parent"])
def test_incoming_entry_as_relay_reads_it(entry: dict[str, Any], where: str) -> None:
    if where == "leaf":
        tree: dict[str, Any] = {"extra": {"x": {"": entry}}}
    else:  # an unreadable entry of a parent leaves its children's entries alone
        tree = {"extra": {"": entry, "x": {"": {"err": ["e"]}}}}
    expected = _meta(sentry_relay.StoreNormalizer(), tree)
    assert _meta(StoreNormalizer(), tree) == expected
