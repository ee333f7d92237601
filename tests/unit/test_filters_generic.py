"""Generic filters: rule conditions, release comparisons, globs and project/global merging."""

from __future__ import annotations

from typing import Any

import pytest

from relay.filters import compile_filters
from relay.filters.condition import compile_condition, condition_supported
from relay.filters.event import EventView, normalize_header_name
from relay.filters.glob import GlobError, Patterns, glob_to_regex
from relay.filters.inbound import _merge_generic
from relay.filters.release import compare_releases, parse_release

Json = dict[str, Any]


def eq(name: str, value: Any) -> Json:
    return {"op": "eq", "name": name, "value": value}


def generic(*filters: Json, version: int = 1) -> Json:
    return {"version": version, "filters": list(filters)}


def flt(fid: str, condition: Json | None, enabled: bool = True) -> Json:
    out: Json = {"id": fid, "isEnabled": enabled}
    if condition is not None:
        out["condition"] = condition
    return out


MOCK = generic(
    flt("firstReleases", eq("event.release", "1.0")),
    flt("helloTransactions", eq("event.transaction", "/hello")),
)


def run(
    project: Json | None, event: Json, global_filters: Json | None = None, ip: str | None = None
) -> str | None:
    settings = {"generic": project} if project is not None else {}
    return compile_filters(settings, global_filters).should_filter(event, client_ip=ip)


# --- matching, order, versions (generic.rs) ----------------------------------------------


def test_generic_match_rules_in_order() -> None:
    assert run(MOCK, {"release": "1.0"}) == "firstReleases"
    assert run(MOCK, {"transaction": "/hello"}) == "helloTransactions"
    assert run(MOCK, {"release": "1.0", "transaction": "/hello"}) == "firstReleases"
    assert run(MOCK, {"transaction": "/world"}) is None


def test_generic_higher_version_is_not_applied() -> None:
    assert run({**MOCK, "version": 2}, {"release": "1.0"}) is None
    filters = compile_filters({"generic": {**MOCK, "version": 2}})
    assert not filters.generic_supported
    filters = compile_filters({"generic": MOCK}, generic(version=2))
    assert not filters.generic_supported
    assert filters.should_filter({"release": "1.0"}) is None
    assert compile_filters({}).generic_supported


def test_generic_from_global_filters() -> None:
    project = generic(flt("firstReleases", eq("event.release", "1.0")))
    global_filters = generic(flt("helloTransactions", eq("event.transaction", "/hello")))
    assert run(project, {"transaction": "/hello"}, global_filters) == "helloTransactions"
    # A whole global config is accepted too.
    assert run(project, {"transaction": "/hello"}, {"filters": global_filters}) == (
        "helloTransactions"
    )
    # Relay's integration test: global filter with the project having none.
    suite_global = generic(flt("premature-releases", eq("event.release", "0.0.0")))
    assert compile_filters({}, suite_global).should_filter({"release": "0.0.0"}) == (
        "premature-releases"
    )


def test_generic_client_ip() -> None:
    cond = {"op": "cidr", "name": "envelope.client_ip", "value": ["10.0.0.0/8", "2001:db8::1"]}
    config = generic(flt("blockedIps", cond))
    assert run(config, {}, ip="10.1.2.3") == "blockedIps"
    assert run(config, {}, ip="2001:db8::1") == "blockedIps"
    assert run(config, {}, ip="192.168.0.1") is None
    assert run(config, {}, ip=None) is None
    both = {
        "op": "and",
        "inner": [eq("event.release", "1.0"), {**cond, "value": ["10.0.0.0/8"]}],
    }
    config = generic(flt("releaseAndIp", both))
    assert run(config, {"release": "1.0"}, ip="10.1.2.3") == "releaseAndIp"
    assert run(config, {"release": "2.0"}, ip="10.1.2.3") is None


@pytest.mark.parametrize(("name", "filtered"), [("fooBar", False), ("foobar", True), ("x", True)])
def test_generic_not_os_name(name: str, filtered: bool) -> None:
    config = generic(flt("os_name", {"op": "not", "inner": eq("event.contexts.os.name", "fooBar")}))
    assert run(config, {"contexts": {"os": {"name": name}}}) == ("os_name" if filtered else None)


def test_generic_release_condition_from_suite() -> None:
    cond = {"op": "release", "name": "event.release", "comparator": "lt", "value": "1.10.0"}
    config = generic(flt("old-releases", cond))
    assert run(config, {"release": "myapp@1.9.0"}) == "old-releases"
    assert run(config, {"release": "myapp@1.10.0"}) is None
    assert run(config, {"release": "a4b7e0f9c2d1"}) is None


# --- merging (generic.rs merge_generic_filters) ---------------------------------------------

COND = eq("event.exceptions", "myError")


def ids(project: Json, global_filters: Json | None) -> list[tuple[str, bool, bool]]:
    _supported, merged = _merge_generic(project, global_filters)
    return [(f.id, f.is_enabled, f.condition is not None) for f in merged]


@pytest.mark.parametrize(
    ("project", "global_filters", "expected"),
    [
        (generic(flt("p", COND), version=2), generic(flt("g", COND)), []),
        (generic(flt("p", COND)), generic(flt("g", COND), version=2), []),
        (generic(flt("p", COND)), generic(flt("g", COND)), [("p", True, True), ("g", True, True)]),
        (generic(flt("f", COND)), generic(flt("f", COND)), [("f", True, True)]),
        (generic(), generic(), []),
        (generic(), generic(flt("g", COND, False)), [("g", False, True)]),
        (generic(), generic(flt("g", None)), [("g", True, False)]),
        (generic(flt("p", COND, False)), None, [("p", False, True)]),
        (generic(flt("f", None, False)), generic(flt("f", COND)), [("f", False, True)]),
        (generic(flt("f", None)), generic(flt("f", COND, False)), [("f", True, True)]),
        (generic(flt("f", COND)), generic(flt("f", None)), [("f", True, True)]),
        (generic(flt("f", None)), generic(flt("f", None)), [("f", True, False)]),
        (
            generic(flt("p", COND, False)),
            generic(flt("g", COND, False)),
            [("p", False, True), ("g", False, True)],
        ),
        (
            generic(flt("0", COND), flt("1", None), flt("2", COND)),
            generic(flt("1", COND, False), flt("3", COND, False)),
            [("0", True, True), ("1", True, True), ("2", True, True), ("3", False, True)],
        ),
        # Duplicate ids inside one list: the first one wins.
        (generic(flt("d", None), flt("d", COND)), None, [("d", True, False)]),
    ],
)
def test_merge_generic_filters(
    project: Json, global_filters: Json | None, expected: list[tuple[str, bool, bool]]
) -> None:
    assert ids(project, global_filters) == expected


def test_merged_condition_from_global_is_applied() -> None:
    project = generic(flt("f", None))
    global_filters = generic(flt("f", eq("event.release", "1.0"), False))
    assert run(project, {"release": "1.0"}, global_filters) == "f"
    project = generic(flt("f", None, False))
    global_filters = generic(flt("f", eq("event.release", "1.0")))
    assert run(project, {"release": "1.0"}, global_filters) is None


# --- conditions (relay-protocol condition.rs) ---------------------------------------------


class Obj:
    """A plain getter over a dict of paths, with an iterable under ``obj.exceptions``."""

    def __init__(self, values: Json, items: list[Json] | None = None) -> None:
        self.values = values
        self.items = items

    def get_value(self, path: str) -> Any:
        return self.values.get(path)

    def get_iter(self, path: str) -> list[Obj] | None:
        if path == "obj.exceptions" and self.items is not None:
            return [Obj(i) for i in self.items]
        return None


TRACE = Obj(
    {
        "trace.transaction": "transaction1",
        "trace.release": "1.1.1",
        "trace.environment": "debug",
        "trace.user.segment": "vip",
        "trace.user.ip": "127.0.0.1",
        "trace.count": 10,
        "trace.ratio": 0.5,
        "trace.flag": True,
        "trace.empty": None,
    }
)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (eq("trace.environment", "debug"), True),
        (eq("trace.environment", "DEBUG"), False),
        ({**eq("trace.environment", "DEBUG"), "options": {"ignoreCase": True}}, True),
        (eq("trace.environment", ["prod", "debug"]), True),
        (eq("trace.environment", ["prod"]), False),
        (eq("trace.missing", None), True),
        (eq("trace.environment", None), False),
        (eq("trace.flag", True), True),
        (eq("trace.flag", False), False),
        (eq("trace.count", 10), False),  # numbers are not compared for equality
        (eq("trace.user.ip", "127.0.0.1"), True),
        ({"op": "gte", "name": "trace.count", "value": 10}, True),
        ({"op": "gt", "name": "trace.count", "value": 10}, False),
        ({"op": "lt", "name": "trace.ratio", "value": 1}, True),
        ({"op": "lte", "name": "trace.ratio", "value": 0.5}, True),
        ({"op": "lt", "name": "trace.environment", "value": "e"}, True),
        ({"op": "lt", "name": "trace.environment", "value": 5}, False),
        ({"op": "gt", "name": "trace.flag", "value": 0}, False),
        ({"op": "glob", "name": "trace.release", "value": ["1.1.*"]}, True),
        ({"op": "glob", "name": "trace.release", "value": ["1.2.*", "1.1.?"]}, True),
        ({"op": "glob", "name": "trace.release", "value": ["2.*"]}, False),
        ({"op": "glob", "name": "trace.release", "value": "1.1.*"}, False),  # must be a list
        ({"op": "glob", "name": "trace.transaction", "value": ["TRANSACTION*"]}, True),
        ({"op": "cidr", "name": "trace.user.ip", "value": ["127.0.0.0/8", "bad"]}, True),
        ({"op": "cidr", "name": "trace.user.ip", "value": ["10.0.0.0/8"]}, False),
        ({"op": "cidr", "name": "trace.environment", "value": ["0.0.0.0/0"]}, False),
        ({"op": "and", "inner": []}, True),
        ({"op": "or", "inner": []}, False),
        (
            {
                "op": "and",
                "inner": [eq("trace.environment", "debug"), eq("trace.user.segment", "vip")],
            },
            True,
        ),
        (
            {"op": "or", "inner": [eq("trace.environment", "prod"), eq("trace.user.segment", "x")]},
            False,
        ),
        ({"op": "not", "inner": eq("trace.environment", "prod")}, True),
        ({"op": "unknown_op", "name": "trace.environment"}, False),
        ({"op": "eq", "name": "trace.environment"}, False),  # malformed
        ("garbage", False),
    ],
)
def test_conditions(condition: Any, expected: bool) -> None:
    assert compile_condition(condition)(TRACE) is expected


def test_any_all_conditions() -> None:
    inner = eq("name", "NullPointerException")
    any_cond = compile_condition({"op": "any", "name": "obj.exceptions", "inner": inner})
    all_cond = compile_condition({"op": "all", "name": "obj.exceptions", "inner": inner})
    mixed = Obj({}, [{"name": "NullPointerException"}, {"name": "Other"}])
    same = Obj({}, [{"name": "NullPointerException"}])
    empty = Obj({}, [])
    missing = Obj({})
    assert any_cond(mixed) and any_cond(same) and not any_cond(empty) and not any_cond(missing)
    assert not all_cond(mixed) and all_cond(same) and all_cond(empty) and not all_cond(missing)


def test_condition_supported() -> None:
    assert condition_supported(eq("a", "b"))
    assert condition_supported({"op": "and", "inner": [eq("a", "b")]})
    assert not condition_supported({"op": "and", "inner": [{"op": "new"}]})
    assert not condition_supported(
        {"op": "release", "name": "a", "comparator": "lt", "value": "a4b7e0f9c2d1"}
    )
    assert not condition_supported({"op": "release", "name": "a", "comparator": "x", "value": "1"})


# --- event getter paths -------------------------------------------------------------------

EVENT: Json = {
    "type": "transaction",
    "level": "error",
    "release": "myapp@1.2.3-rc.1+0123456789abcdef0123456789abcdef01234567",
    "dist": "d",
    "environment": "prod",
    "transaction": "/hello",
    "logger": "root",
    "logentry": {"formatted": "formatted msg", "message": "msg %s"},
    "user": {"email": "", "id": "42", "ip_address": "1.2.3.4", "geo": {"country_code": "AT"}},
    "request": {
        "method": "GET",
        "url": "http://x/",
        "headers": [["Content-Type", "text/html"], ["X-Thing", "a"]],
    },
    "transaction_info": {"source": "route"},
    "sdk": {"name": "sentry.python", "version": "2.0"},
    "contexts": {
        "os": {"type": "os", "name": "Linux", "os": "Linux 5", "rooted": False},
        "device": {"battery_level": 50.5, "charging": True},
        "response": {"status_code": 500},
        "trace": {"op": "http.server", "status": "ok", "secret": "x"},
    },
    "start_timestamp": 1000.0,
    "timestamp": 1001.5,
    "measurements": {"lcp": {"value": 2500}},
    "breakdowns": {"ops": {"db": {"value": 12.5}}},
    "extra": {"a": {"b": "c"}, "n": 3, "obj": {"x": 1}},
    "tags": [["server", "web-1"], ["region", "eu"]],
    "exception": {"values": [{"type": "ValueError", "value": "bad"}, None]},
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("event.level", "error"),
        ("event.dist", "d"),
        ("event.environment", "prod"),
        ("event.transaction", "/hello"),
        ("event.logger", "root"),
        ("event.platform", "other"),
        ("event.logentry.formatted", "formatted msg"),
        ("event.logentry.message", "msg %s"),
        ("event.user.email", None),
        ("event.user.id", "42"),
        ("event.user.ip_address", "1.2.3.4"),
        ("event.user.geo.country_code", "AT"),
        ("event.request.method", "GET"),
        ("event.request.url", "http://x/"),
        ("event.request.headers.Content-Type", "text/html"),
        ("event.request.headers.content-type", None),
        ("event.transaction.source", "route"),
        ("event.sdk.name", "sentry.python"),
        ("event.sdk.version", "2.0"),
        ("event.contexts.os", "Linux 5"),
        ("event.contexts.os.name", "Linux"),
        ("event.contexts.os.rooted", False),
        ("event.contexts.device.battery_level", 50.5),
        ("event.contexts.device.charging", True),
        ("event.contexts.response.status_code", 500),
        ("event.contexts.trace.op", "http.server"),
        ("event.contexts.trace.secret", None),
        ("event.duration", 1500.0),
        ("event.release.build", "0123456789abcdef0123456789abcdef01234567"),
        ("event.release.package", "myapp"),
        ("event.release.version.short", "1.2.3-rc.1"),
        ("event.measurements.lcp.value", 2500.0),
        ("event.measurements.lcp", None),
        ("event.breakdowns.ops.db", 12.5),
        ("event.extra.a.b", "c"),
        ("event.extra.n", 3),
        ("event.extra.obj", None),
        ("event.tags.region", "eu"),
        ("event.tags.missing", None),
        ("event.exceptions", None),
        ("other.release", None),
    ],
)
def test_event_getter(path: str, value: Any) -> None:
    assert EventView(EVENT).get_value(path) == value


def test_event_getter_exceptions_and_client_ip() -> None:
    view = EventView(EVENT, "10.0.0.1")
    items = view.get_iter("event.exception.values")
    assert items is not None
    assert [(e.get_value("ty"), e.get_value("value")) for e in items] == [
        ("ValueError", "bad"),
        (None, None),
    ]
    assert str(view.get_value("envelope.client_ip")) == "10.0.0.1"
    assert EventView(EVENT, "nope").get_value("envelope.client_ip") is None
    assert (
        EventView({"type": "error", "start_timestamp": 1, "timestamp": 2}).get_value(
            "event.duration"
        )
        is None
    )
    cond = {
        "op": "any",
        "name": "event.exception.values",
        "inner": {"op": "glob", "name": "value", "value": ["BA*"]},
    }
    assert run(generic(flt("exc", cond)), EVENT) == "exc"


def test_header_name_normalization() -> None:
    assert normalize_header_name("x-forwarded-host") == "X-Forwarded-Host"
    assert normalize_header_name("user-AGENT") == "User-AGENT"
    assert normalize_header_name("HOST") == "HOST"


# --- releases (relay-protocol release.rs) --------------------------------------------------


@pytest.mark.parametrize("release", ["a4b7e0f9c2d1", "myapp@a4b7e0f9c2d1", "123456789012", ""])
def test_releases_without_version(release: str) -> None:
    assert compare_releases("1.0.0", release) is None


@pytest.mark.parametrize(
    ("release", "other", "expected"),
    [
        ("1.9.0", "1.10.0", -1),
        ("1.2.3.4", "1.2.3.5", -1),
        ("1.2", "1.2.0", 0),
        ("1.0.0-rc.1", "1.0.0", -1),
        ("1.0.0-beta.2", "1.0.0-beta.11", -1),
        ("1.0.0-alpha", "1.0.0-alpha.1", -1),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta", -1),
        ("1.0.0+build.2", "1.0.0+build.1", 0),
        ("2.0.0", "1.0.0", 1),
    ],
)
def test_compare_versions(release: str, other: str, expected: int) -> None:
    assert compare_releases(other, release) == expected


@pytest.mark.parametrize(
    ("release", "other", "expected"),
    [
        ("myapp@1.2.3", "1.2.3", 0),
        ("1.2.3", "1.2.3", 0),
        ("myapp@1.2.3", "myapp@1.2.3", 0),
        ("myapp@1.2.3", "other@1.2.3", None),
        ("1.2.3", "myapp@1.2.3", None),
    ],
)
def test_compare_packages(release: str, other: str, expected: int | None) -> None:
    assert compare_releases(other, release) == expected


def test_parse_release() -> None:
    parsed = parse_release(" myapp@1.2+7 ")
    assert parsed is not None and parsed.package == "myapp" and parsed.version is not None
    assert parsed.version.quad == (1, 2, 0, 0) and parsed.version.build == "7"
    assert parse_release("latest") is None
    assert parse_release("a/b") is None
    assert parse_release("x" * 201) is None
    plain = parse_release("foo")
    assert plain is not None and plain.package is None and plain.version is None


# --- globs (relay-pattern) ----------------------------------------------------------------


def pat(pattern: str, value: str, ci: bool = False) -> bool:
    return Patterns([pattern], case_insensitive=ci).is_match(value)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("", "", False),
        ("", "foo", False),
        ("foo", "foo", True),
        ("foo", "fOo", False),
        (r"f\{\}o", "f{}o", True),
        (r"f\\o", "f\\o", True),
        ("fඞo", "fඞo", True),
        ("foo*", "foobar", True),
        ("*bar", "foobar", True),
        ("*oob*", "foobar", True),
        ("*", "", True),
        ("*", "multi\nline", True),
        ("f?o", "fXo", True),
        ("f?o", "fo", False),
        ("[]", "", False),
        ("[]", "_", False),
        ("a[]", "a", True),
        ("[a]", "a", True),
        ("[a]", "[a]", False),
        ("[a-c]", "b", True),
        ("[a-c]", "d", False),
        ("[!a-c]", "d", True),
        ("[!a-c]", "b", False),
        (r"[!\]]", "]", False),
        ("[-a]", "-", True),
        ("[a-]", "-", True),
        ("{}foo{}", "foo", True),
        ("{foo,bar}", "bar", True),
        ("{foo,bar}", "fooo", False),
        (r"{foo,bar,baz\,}", "baz,", True),
        (r"{foo\,,}", "", True),
        ("{foo,bar,}baz", "baz", True),
        ("{,,,,}", "", False),
        ("foo/{*.js,*.html}", "foo/bar.html", True),
        ("foo/{*.js,*.html}", "foo/bar.png", False),
        ("{a,b,}{c,}", "ab", False),
        ("{a,b,}{c,}", "bc", True),
        ("foo{bar", "foo", True),  # an unclosed group is dropped
    ],
)
def test_glob_case_sensitive(pattern: str, value: str, expected: bool) -> None:
    assert pat(pattern, value) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("foo", "FOO", True),
        ("[a]", "A", True),
        ("x[ab]x", "xAX", True),
        ("x[ab]x", "Xcx", False),
        ("[ǧ]", "Ǧ", True),
        ("[Ǧ]", "ǧ", True),
        ("[!ab]", "B", False),
        ("[!ab]", "C", True),
        ("{foo,bar}", "BAR", True),
    ],
)
def test_glob_case_insensitive(pattern: str, value: str, expected: bool) -> None:
    assert pat(pattern, value, ci=True) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        "\\",
        "f\\",
        "*\\",
        "[",
        "[a-z",
        "[a-z\\",
        "[[]",
        "[]]",
        "]",
        "[b-a]",
        "[a-A]",
        "{a,b,{c,d}}",
        "}",
    ],
)
def test_glob_invalid(pattern: str) -> None:
    with pytest.raises(GlobError):
        glob_to_regex(pattern)
    # In a list, invalid patterns are skipped and the rest still apply.
    patterns = Patterns([pattern, "ok"])
    assert patterns.is_match("ok") and patterns.sources == ("ok",)
