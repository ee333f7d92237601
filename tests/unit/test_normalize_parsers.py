"""The Rust-crate behaviours the normalizer reproduces: chrono, uuid, cookie, dynfmt, serde."""

from __future__ import annotations

from typing import Any

import pytest

from relay.normalize import serde_json
from relay.normalize.chrono import ChronoError, format_utc, parse_datetime
from relay.normalize.containers import parse_cookies
from relay.normalize.logentry import format_message
from relay.normalize.meta import add_error, estimate_size, set_original
from relay.normalize.primitives import is_ip_address, parse_uuid, uuid_error


def _reason(text: str) -> tuple[int, int] | str:
    try:
        return parse_datetime(text)
    except ChronoError as error:
        return error.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-01-01T12:00:00", (1577880000, 0)),
        ("2020-01-01T12:00:00Z", (1577880000, 0)),
        ("2020-01-01t12:00:00z", (1577880000, 0)),
        ("2020-01-01 12:00:00+01:00", (1577876400, 0)),
        (" 2020 - 01 - 01T 12 : 00 : 00 ", (1577880000, 0)),
        ("2020-01-01T12:00:00 UTC", (1577880000, 0)),
        ("2020-01-01T12:00:00\u221201:00", (1577883600, 0)),
        ("2020-01-01T12:00:00.1234567891Z", (1577880000, 123456789)),
        ("2016-12-31T23:59:60.5Z", (1483228799, 1_500_000_000)),
        ("-0001-01-01T00:00:00Z", (-62198755200, 0)),
        ("2020-01-01 12:00:00", "premature end of input"),
        ("2020-01-01T12:00:00+01", "premature end of input"),
        (" ", "premature end of input"),
        ("not a date", "input contains invalid characters"),
        ("2020-02-30T00:00:00Z", "input is out of range"),
        ("2020-13-01T00:00:00Z", "input is out of range"),
        ("2020-01-01T12:00:00+25:00", "input is out of range"),
        ("2020-01-01T12:00:00+01:60", "input is out of range"),
        ("2020-01-01T12:00:00Zx", "trailing input"),
        ("-262143-01-01T00:00:00+01:00", "no possible date and time matching input"),
        ("+99999999999999999999-01-01T00:00:00", "input is out of range"),
    ],
)
def test_chrono_datetimes(text: str, expected: tuple[int, int] | str) -> None:
    assert _reason(text) == expected


def test_chrono_display_of_far_years() -> None:
    assert format_utc(0) == "1970-01-01 00:00:00"
    assert format_utc(-62198755200) == "-0001-01-01 00:00:00"
    assert format_utc(253402300800) == "+10000-01-01 00:00:00"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "invalid length: found 0"),
        ("!", "invalid character: found `!` at 0"),
        ("x" * 300, "invalid length: found 300"),
        ("abc", "invalid length: found 3"),
        ("{{auto}}", "invalid character: found `{` at 1"),
        ("urn:uuid:x", "invalid character: found `x` at 9"),
        ("a\u00e9", "invalid character: found `\u00e9` at 1"),
        ("1-2-3-4-5", "invalid group length in group 0: expected 8, found 1"),
        ("F9168C5E-CEB2-4faa", "invalid group count: expected 5, found 3"),
        ("a" * 36, "invalid group count: expected 5, found 1"),
        ("{aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaax}", "invalid character: found `x` at 35"),
        (
            "{aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaaa}",
            "invalid group length in group 4: expected 12, found 15",
        ),
    ],
)
def test_uuid_errors(text: str, reason: str) -> None:
    assert parse_uuid(text) is None
    assert uuid_error(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "F9168C5ECEB24faaB6BF329BF39FA1E4",
        "f9168c5e-ceb2-4faa-b6bf-329bf39fa1e4",
        "{F9168C5E-CEB2-4faa-B6BF-329BF39FA1E4}",
        "urn:uuid:F9168C5E-CEB2-4faa-B6BF-329BF39FA1E4",
    ],
)
def test_uuid_spellings(text: str) -> None:
    assert parse_uuid(text) == "f9168c5eceb24faab6bf329bf39fa1e4"


def test_uuid_is_stricter_than_python() -> None:
    # Python's ``uuid.UUID`` accepts hyphens anywhere and braces around 32 digits.
    assert parse_uuid("f9168c5e-ceb24faa-b6bf-329bf39fa1e4a") is None
    assert parse_uuid("{f9168c5eceb24faab6bf329bf39fa1e4}") is None


@pytest.mark.parametrize(
    ("text", "pairs", "errors"),
    [
        ("a=b; c=d", [["a", "b"], ["c", "d"]], []),
        ('a="b"', [["a", '"b"']], []),
        ("a = b ;;", [["a", "b"]], []),
        ("a=%C3%A9;%41=1", [["a", "\u00e9"], ["A", "1"]], []),
        ("a=%ZZ", [["a", "%ZZ"]], []),
        ("a/b", [], ["the cookie is missing a name/value pair"]),
        ("x;y", [], ["the cookie is missing a name/value pair"]),
        ("a=b; =c", [["a", "b"]], ["the cookie's name is empty"]),
        ("a=%ff", [], ["decoding the cookie's name or value resulted in invalid UTF-8"]),
    ],
)
def test_cookies(text: str, pairs: list[list[str]], errors: list[str]) -> None:
    parsed, found = parse_cookies(text)
    assert parsed == pairs
    assert [error[1]["reason"] for error in found] == errors


@pytest.mark.parametrize(
    ("message", "params", "expected"),
    [
        ("hello %s!", ["world"], "hello world!"),
        ("%s|%d|%r", ["x", 1, "x"], 'x|1|"x"'),
        ("%x %#x %X %o", [255, 255, 255, 8], "ff 0xff FF 10"),
        ("%x", [-3], "fffffffffffffffd"),
        ("%e %E", [1.5, 1e20], "1.5e0 1E20"),
        ("%s", [1e20], "100000000000000000000"),
        ("%s", [{"b": 1, "a": [1.5, None]}], '{"a":[1.5,null],"b":1}'),
        ("%(a)s", {"a": "v"}, "v"),
        ("100%%", [], "100%"),
        ("% s", ["x"], "% s"),
        ("{} and {0} and {name}", None, None),
        ("{} {}", ["a", "b"], "a b"),
        ("{1}{0}", ["a", "b"], "ba"),
        ("{name}", {"name": "v"}, "v"),
        ("{{auto}}", ["x"], None),  # no ``{{`` escapes: ``{auto}`` needs a named "auto"
        # Missing, null or mistyped arguments fail the whole message.
        ("%s %s", ["x"], None),
        ("%s", [None], None),
        ("%x", ["x"], None),
        ("%e", [1], None),
        ("%(0)s", ["x"], None),
        ("%|", ["x"], "%|"),  # not a conversion: the text stays
        ("{a}", ["x"], None),
        ("no placeholders", ["x"], None),
    ],
)
def test_format_message(message: str, params: Any, expected: str | None) -> None:
    assert format_message(message, params) == expected


def test_serde_json_spelling() -> None:
    value = [1e20, 1.0, 1e-7, 1e-5, 1e16, 1e15, {"z": 1, "a": "\u00e9"}]
    expected = '[1e+20,1.0,1e-7,0.00001,1e+16,1000000000000000.0,{"a":"\u00e9","z":1}]'
    assert serde_json.dumps(value) == expected
    assert serde_json.dumps({"a": [1, {}]}, pretty=True) == '{\n  "a": [\n    1,\n    {}\n  ]\n}'


def test_original_values_are_kept_only_when_small() -> None:
    assert estimate_size({"a": [1, None, "\u00e9"]}) == len('{"a":[1,null,"\u00e9"]}'.encode())
    small: dict[str, Any] = {}
    add_error(small, "invalid_data", "x" * 497)
    assert small[""]["val"] == "x" * 497
    large: dict[str, Any] = {}
    add_error(large, "invalid_data", "x" * 498)
    assert "val" not in large[""]
    set_original(large, "y")
    assert large[""]["val"] == "y"


def test_errors_are_recorded_once() -> None:
    meta: dict[str, Any] = {}
    add_error(meta, "invalid_data")
    add_error(meta, "invalid_data")
    assert meta[""]["err"] == ["invalid_data"]


def test_ip_addresses_take_no_scope() -> None:
    assert is_ip_address("fe80::1")
    assert not is_ip_address("fe80::1%eth0")
    assert not is_ip_address("")
