"""CSP filter and origin parsing: Relay's relay-filter csp.rs vectors."""

from __future__ import annotations

from typing import Any

import pytest

from relay.filters import compile_filters
from relay.filters.origins import SchemeDomainPort, compile_origins, matches_any_origin

S = str | None

SCHEME_DOMAIN_PORT: list[tuple[str, S, S, S]] = [
    ("*", None, None, None),
    ("*://*", None, None, None),
    ("*://*:*", None, None, None),
    ("https://*", "https", None, None),
    ("https://*.abc.net", "https", "*.abc.net", None),
    ("https://*:*", "https", None, None),
    ("x.y.z", None, "x.y.z", None),
    ("x.y.z:*", None, "x.y.z", None),
    ("*://x.y.z:*", None, "x.y.z", None),
    ("*://*.x.y.z:*", None, "*.x.y.z", None),
    ("*:8000", None, None, "8000"),
    ("*://*:8000", None, None, "8000"),
    ("http://x.y.z", "http", "x.y.z", None),
    ("http://*:8000", "http", None, "8000"),
    ("abc:8000", None, "abc", "8000"),
    ("*.abc.com:8000", None, "*.abc.com", "8000"),
    ("*.com:86", None, "*.com", "86"),
    ("http://abc.com:86", "http", "abc.com", "86"),
    ("http://x.y.z:4000", "http", "x.y.z", "4000"),
    ("http://", "http", "", None),
    ("abc.com/[something]", None, "abc.com", None),
    ("abc.com/something]:", None, "abc.com", None),
    ("abc.co]m/[something:", None, "abc.co]m", None),
    ("]abc.com:9000", None, "]abc.com", "9000"),
    (
        "https://api.example.com/foo/00000000-0000-0000-0000-000000000000?includes[]=user",
        "https",
        "api.example.com",
        None,
    ),
    # IP addresses
    ("http://192.168.1.1:3000", "http", "192.168.1.1", "3000"),
    ("192.168.1.1", None, "192.168.1.1", None),
    ("[fd45:7aa3:7ae4::]", None, "[fd45:7aa3:7ae4::]", None),
    ("http://172.16.*.*", "http", "172.16.*.*", None),
    ("http://[1fff:0:a88:85a3::ac1f]:8001", "http", "[1fff:0:a88:85a3::ac1f]", "8001"),
    ("::1", None, ":", "1"),
    ("[::1]", None, "[::1]", None),
    ("http://[fe80::862a:fdff:fe78:a2bf%13]", "http", "[fe80::862a:fdff:fe78:a2bf%13]", None),
    ("192.168.1.1.1", None, "192.168.1.1.1", None),
    ("192.168.1.300", None, "192.168.1.300", None),
    ("[2001:0db8:85a3:::8a2e:0370:7334]", None, "[2001:0db8:85a3:::8a2e:0370:7334]", None),
    ("[fe80::1::]", None, "[fe80::1::]", None),
    ("fe80::1::", None, "fe80::1:", ""),
    ("2001:0db8:85a3:xyz::8a2e:0370:7334", None, "2001:0db8:85a3:xyz::8a2e:0370", "7334"),
    ("192.168.0.1/24", None, "192.168.0.1", None),
]


@pytest.mark.parametrize(("url", "scheme", "domain", "port"), SCHEME_DOMAIN_PORT)
def test_scheme_domain_port(url: str, scheme: S, domain: S, port: S) -> None:
    assert SchemeDomainPort.parse(url) == (scheme, domain, port)


MATCHES: list[tuple[str, list[str], bool]] = [
    ("http://abc1.com", ["*://*:*", "bbc.com"], True),
    ("http://abc2.com", ["*:*", "bbc.com"], True),
    ("http://abc3.com", ["*", "bbc.com"], True),
    ("http://abc4.com", ["http://*", "bbc.com"], True),
    ("http://abc5.com", ["http://abc5.com:*", "bbc.com"], True),
    ("http://abc.com:80", ["*://*:*", "bbc.com"], True),
    ("http://abc.com:81", ["*:*", "bbc.com"], True),
    ("http://abc.com:82", ["*:82", "bbc.com"], True),
    ("http://abc.com:83", ["http://*:83", "bbc.com"], True),
    ("http://abc.com:84", ["abc.com:*", "bbc.com"], True),
    ("http://abc.com:85", ["*.abc.com:85", "bbc.com"], True),
    ("http://abc.com:86", ["*.com:86"], True),
    ("http://abc.com:86", ["*.com:86", "bbc.com"], True),
    ("http://abc.def.ghc.com:87", ["*.com:87"], True),
    ("http://abc.def.ghc.com:88", ["*.ghc.com:88"], True),
    ("http://abc.def.ghc.com:89", ["*.def.ghc.com:89"], True),
    ("http://abc.com:90", ["abc.com", "bbc.com"], True),
    ("http://abc.com:91", ["abc.com:91", "bbc.com"], True),
    ("http://abc.com:92", ["http://abc.com:92"], True),
    ("http://abc.com:93", ["http://abc.com", "bbc.com"], True),
    ("http://abc6.com", ["abc6.com", "bbc.com"], True),
    ("http://abc7.com", ["bbc.com", "abc7.com"], True),
    ("http://abc8.com", ["bbc.com", "abc8.com", "def"], True),
    ("http://abc9.com", ["http://other.com", "bbc.com"], False),
    ("http://abc10.com", ["http://*.other.com", "bbc"], False),
    ("abc11.com", ["*.other.com", "bbc"], False),
    ("https://abc12.com", ["http://abc12.com", "bbc.com"], False),
    ("http://abc13.com:80", ["http://abc13.com:8080", "bbc.com"], False),
    ("http://y:80", ["http://x"], False),
    ("https://abc.software.example.com", ["*abc.software.example.com*"], False),
]


@pytest.mark.parametrize(("url", "origins", "expected"), MATCHES)
def test_matches_any_origin(url: str, origins: list[str], expected: bool) -> None:
    assert matches_any_origin(url, compile_origins(origins)) is expected


def csp_event(
    blocked: str | None = None, source: str | None = None, document: str | None = None
) -> dict[str, Any]:
    csp: dict[str, Any] = {}
    if blocked is not None:
        csp["blocked_uri"] = blocked
    if source is not None:
        csp["source_file"] = source
    if document is not None:
        csp["document_uri"] = document
    return {"type": "csp", "csp": csp}


KNOWN_BAD = {"csp": {"disallowedSources": ["http://known.bad.com"]}}


def test_csp_fields() -> None:
    filters = compile_filters(KNOWN_BAD)
    assert filters.should_filter(csp_event(source="http://known.bad.com")) == "invalid-csp"
    assert filters.should_filter(csp_event(document="http://known.bad.com")) == "invalid-csp"
    assert filters.should_filter(csp_event(blocked="http://known.bad.com")) == "invalid-csp"
    assert filters.should_filter(csp_event(source="http://good.file.com")) is None
    assert filters.should_filter(csp_event(blocked="http://good.file.com")) is None
    event = csp_event(blocked="http://known.bad.com")
    event["type"] = "transaction"
    assert filters.should_filter(event) is None


SENTRY_SOURCES = {
    "csp": {
        "disallowedSources": [
            "about",
            "ms-browser-extension",
            "*.superfish.com",
            "chrome://*",
            "chrome-extension://*",
            "chromeinvokeimmediate://*",
            "chromenull://*",
            "localhost",
        ]
    }
}


@pytest.mark.parametrize(
    ("blocked", "source"),
    [
        ("about", None),
        ("ms-browser-extension", None),
        ("http://foo.superfish.com", None),
        (None, "chrome-extension://fdsa"),
        (None, "http://localhost:8000"),
        (None, "http://localhost"),
        (None, "http://foo.superfish.com"),
    ],
)
def test_sentry_csp_bad_reports(blocked: str | None, source: str | None) -> None:
    filters = compile_filters(SENTRY_SOURCES)
    assert filters.should_filter(csp_event(blocked, source)) == "invalid-csp"


@pytest.mark.parametrize(
    ("blocked", "source"),
    [("http://example.com", None), (None, "http://example.com"), (None, None)],
)
def test_sentry_csp_good_reports(blocked: str | None, source: str | None) -> None:
    filters = compile_filters(SENTRY_SOURCES)
    assert filters.should_filter(csp_event(blocked, source)) is None


def test_csp_wildcard_matches_even_missing_fields() -> None:
    filters = compile_filters({"csp": {"disallowedSources": ["*"]}})
    assert filters.should_filter({"type": "csp", "csp": {}}) == "invalid-csp"
    assert filters.should_filter({"type": "csp"}) is None
