"""Origin matching, as Relay matches allowedDomains and CSP origins."""

from __future__ import annotations

import pytest

from relay.filters.origins import compile_origins, matches_any_origin


@pytest.mark.parametrize(
    ("url", "patterns", "expected"),
    [
        ("http://example.com", ["*"], True),
        (None, ["*"], True),
        (None, ["example.com"], False),
        ("http://example.com", [], False),
        ("http://example.com/path", ["example.com"], True),
        ("https://example.com", ["http://example.com"], False),
        ("http://sub.example.com", ["*.example.com"], True),
        ("http://example.com", ["*.example.com"], True),
        ("http://badexample.com", ["*.example.com"], False),
        ("http://example.com:8080", ["example.com:80"], False),
        ("http://example.com:8080", ["example.com:8080"], True),
        ("http://EXAMPLE.com", ["example.COM"], True),
        ("http://[::1]:3000/x", ["[::1]:3000"], True),
        ("http://other.com", ["example.com", "other.com"], True),
    ],
)
def test_matches(url: str | None, patterns: list[str], expected: bool) -> None:
    assert matches_any_origin(url, compile_origins(patterns)) is expected
