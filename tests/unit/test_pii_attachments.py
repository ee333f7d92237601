"""Plain-attachment scrubbing, against the test vectors of Relay's relay-pii attachments.rs."""

from __future__ import annotations

from typing import Any

import pytest

import relay.pii as pii
from relay.pii.attachments import AttachmentScrubber, _swap_utf16, utf16_segments
from relay.pii.compiled import compile_applications
from relay.pii.config import parse_pii_config


def utf16le(text: str) -> bytes:
    return text.encode("utf-16-le")


def builtin(selector: str, rule: str) -> dict[str, Any]:
    return {"applications": {selector: [rule]}}


def pattern(selector: str, regex: str) -> dict[str, Any]:
    return {
        "rules": {
            "custom": {"type": "pattern", "pattern": regex, "redaction": {"method": "remove"}}
        },
        "applications": {selector: ["custom"]},
    }


def scrub(config: dict[str, Any], payload: bytes, filename: str = "foo.txt") -> tuple[bytes, bool]:
    scrubber = AttachmentScrubber(compile_applications(parse_pii_config(config)))
    return scrubber.scrub(filename, payload)


CASES = [
    ("@ip", b"before 127.0.0.1 after", b"before [ip]***** after"),
    ("@ip", utf16le("before 127.0.0.1 after"), utf16le("before [ip]***** after")),
    ("@ip:hash", b"before 127.0.0.1 after", b"before AE12FE3B5 after"),
    ("@ip:hash", utf16le("before 127.0.0.1 after"), utf16le("before 3FA8F5A46 after")),
    ("@ip:mask", b"before 127.0.0.1 after", b"before ********* after"),
    ("@ip:mask", utf16le("before 127.0.0.1 after"), utf16le("before ********* after")),
    ("@ip:remove", b"before 127.0.0.1 after", b"before ********* after"),
    ("@ip:remove", utf16le("before 127.0.0.1 after"), utf16le("before ********* after")),
    ("@anything:remove", bytes(range(255)), b"*" * 255),
]


@pytest.mark.parametrize(("rule", "payload", "expected"), CASES)
def test_relay_vectors(rule: str, payload: bytes, expected: bytes) -> None:
    assert scrub(builtin("$binary", rule), payload) == (expected, True)


@pytest.mark.parametrize(
    "selector",
    ["$string", "$number", "$attachments.* && $string", "$attachments", "** && !$binary"],
)
def test_selectors_that_do_not_match(selector: str) -> None:
    payload = b"before 127.0.0.1 after"
    assert scrub(builtin(selector, "@ip:mask"), payload) == (payload, False)


@pytest.mark.parametrize(
    "selector", ["$binary", "$attachments.'foo.txt'", "$attachments.*", "$attachments.**", "**"]
)
def test_selectors_that_match(selector: str) -> None:
    assert scrub(builtin(selector, "@ip:mask"), b"x 127.0.0.1")[1]


def test_filename_selector_is_case_insensitive_and_exact() -> None:
    config = builtin("$attachments.'Foo.TXT'", "@ip:mask")
    assert scrub(config, b"x 127.0.0.1", "foo.txt")[1]
    assert not scrub(config, b"x 127.0.0.1", "other.txt")[1]


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc3\x28",
        b"\xa0\xa1",
        b"\xe2\x28\xa1",
        b"\xe2\x82\x28",
        b"\xf0\x28\x8c\xbc",
        b"\xf0\x90\x28\xbc",
        b"\xf0\x28\x8c\x28",
        b"\xf8\xa1\xa1\xa1\xa1",
        b"\xfc\xa1\xa1\xa1\xa1\xa1",
    ],
)
def test_bytes_regexes(raw: bytes) -> None:
    regex = "".join(f"\\x{b:02x}" for b in raw)
    assert scrub(pattern("$binary", regex), raw) == (b"*" * len(raw), True)


@pytest.mark.parametrize(
    ("data", "texts"),
    [
        (b"h\x00e\x00l\x00l\x00o\x00", ["hello"]),
        (b"\xd8\xd8\xd8\xd8h\x00e\x00l\x00l\x00o\x00\xd8\xd8", ["hello"]),
        (b"\xd8\xd8\xd8h\x00e\x00l\x00l\x00o\x00\xd8\xd8", ["棘攀氀氀漀"]),
        (b"\xd8\xd8h\x00e\x00l\x00l\x00o\x00", ["hello"]),
        (b"\xd8\xd8", []),
        (b"\xd8\xd8y\x00o\x00\xd8\xd8h\x00e\x00l\x00l\x00o\x00", ["hello"]),
        (b"\xd8\xd8h\x00e\x00l\x00l\x00o\x00\xd8\xd8w\x00o\x00r\x00l\x00d\x00", ["hello", "world"]),
    ],
)
def test_utf16_segments(data: bytes, texts: list[str]) -> None:
    segments = list(utf16_segments(data))
    assert [text for _, _, text in segments] == texts
    for start, end, text in segments:
        assert data[start:end] == utf16le(text)


def test_utf16_swap_content() -> None:
    # Relay's swap_content vectors: shorter is padded, longer is truncated, and a surrogate
    # pair that does not fit is dropped.
    def swap(payload: str, text: str) -> bytes:
        data = bytearray(utf16le(payload))
        _swap_utf16(data, 0, len(data), text)
        return bytes(data)

    assert swap("hello", "world") == utf16le("world")
    assert swap("hello", "hey") == utf16le("hey**")
    assert swap("hey", "world") == utf16le("wor")
    assert swap("hey", "yo\U00010000") == utf16le("yo*")


def test_utf16_only_outside_utf8_matches() -> None:
    # UTF-16 text next to a UTF-8 match: both are found, each in its own encoding.
    payload = b"ip 10.0.0.1 " + utf16le(" 10.0.0.2 ")
    out, changed = scrub(builtin("$binary", "@ip:mask"), payload)
    assert changed
    assert out == b"ip ******** " + utf16le(" ******** ")


def test_key_patterns_match_content_and_blank_everything() -> None:
    # `@password` includes the `token` key pattern; Relay applies it to the bytes as a value.
    payload = b"first line\nmy token is here\nlast"
    out, changed = scrub(builtin("$attachments.'a.log'", "@password"), payload, "a.log")
    assert changed
    assert out == b"*" * len(payload)


def test_pipeline_wiring() -> None:
    config = builtin("$attachments.'secret.txt'", "@email:replace")
    pipeline = pii.compile_project_configs(config, {"scrubData": True, "scrubDefaults": True})
    payload = b"mail jane@example.com now"
    assert pipeline.process_attachment("secret.txt", payload) == b"mail [email]********* now"
    assert pipeline.process_attachment("other.txt", payload) == payload
    # Without a `$attachments.<name>` application Relay does not scrub plain attachments,
    # and datascrubbing settings never apply to them.
    generic = pii.compile_project_configs(builtin("$binary", "@email"), {"scrubData": True})
    assert generic.process_attachment("secret.txt", payload) == payload
