"""Tier 1: the pure parts of the SDK-facing endpoints: store bodies, multipart, dumps, limits."""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import lzma
import zlib

import pytest

from relay.errors import BadRequest, InvalidCompression, PayloadTooLarge
from relay.protocol.envelope import Envelope, Item
from relay.protocol.limits import SizeLimits, check_envelope_size_limits, discard_item_type
from relay.protocol.minidump import (
    InvalidMinidump,
    decode_minidump,
    remove_container_extension,
    validate_minidump,
)
from relay.protocol.multipart import (
    FormDataWriter,
    InvalidMultipart,
    embedded_boundary,
    iter_form_data,
    parse_boundary,
    parse_multipart,
)
from relay.protocol.store import decode_store_body, is_legacy_python_client, translate_python_json
from relay.server.endpoints.security import parse_mime, split_reports

# --- store bodies -------------------------------------------------------------------------------


def test_store_body_json_passes_unchanged() -> None:
    body = b'{"message": "hi"}'
    assert decode_store_body(body, 100) is body


def test_store_body_base64_and_zlib() -> None:
    event = b'{"message": "im in ur query params"}'
    assert decode_store_body(base64.b64encode(event), 100) == event
    assert decode_store_body(base64.b64encode(zlib.compress(event)), 100) == event
    # The example the Relay suite sends.
    assert (
        decode_store_body(b"eF6rVspNLS5OTE9VslJQysxVyMxTKC1SKCxNLapUKEgsSswtVqoFAOKyDI4=", 100)
        == b'{"message": "im in ur query params"}'
    )


def test_store_body_zlib_bomb_is_too_large() -> None:
    bomb = base64.b64encode(zlib.compress(b"{" + b" " * 10_000_000))
    with pytest.raises(PayloadTooLarge):
        decode_store_body(bomb, 1000)


@pytest.mark.parametrize("body", [b"not base64!", base64.b64encode(b"not zlib")])
def test_store_body_garbage_is_invalid(body: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_store_body(body, 100)


def test_python_json_non_finite_floats() -> None:
    data = b'{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN Infinity", "d": "\\"NaN"}'
    out = translate_python_json(data)
    assert len(out) == len(data)
    assert json.loads(out) == {"a": 0, "b": [0, 0], "c": "NaN Infinity", "d": '"NaN'}
    assert is_legacy_python_client("raven-python/6.0")
    assert is_legacy_python_client("sentry-python/0.1")
    assert not is_legacy_python_client("sentry.python/2.0")
    assert not is_legacy_python_client(None)


# --- multipart ----------------------------------------------------------------------------------


def _multipart(boundary: str, *parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--".encode()


def test_multipart_round_trip() -> None:
    body = _multipart(
        "XyZ",
        ("upload_file_minidump", "m.dmp", b"MDMP\r\n--X"),
        ("sentry[event_id]", None, b"2dd132e467174db48dbaddabd3cbed57"),
    )
    boundary = parse_boundary("multipart/form-data; boundary=XyZ")
    parts = parse_multipart(body, boundary)
    assert [(p.name, p.filename, p.data) for p in parts] == [
        ("upload_file_minidump", "m.dmp", b"MDMP\r\n--X"),
        ("sentry[event_id]", None, b"2dd132e467174db48dbaddabd3cbed57"),
    ]


@pytest.mark.parametrize(
    "content_type", [None, "", "application/json", "multipart/form-data", "text/plain; boundary=x"]
)
def test_multipart_bad_content_type(content_type: str | None) -> None:
    with pytest.raises(InvalidMultipart):
        parse_boundary(content_type)


@pytest.mark.parametrize("body", [b"", b"--b\r\nno headers end", b"--b\r\n\r\nunterminated"])
def test_multipart_truncated(body: bytes) -> None:
    with pytest.raises(InvalidMultipart):
        parse_multipart(body, "b")


def test_embedded_boundary() -> None:
    assert embedded_boundary(b"--some_val") == "some_val"
    assert embedded_boundary(b"\n\r--some_val\r\nfasdf") == "some_val"
    assert embedded_boundary(b"--\nsecond line") is None
    assert embedded_boundary(b"\n\rsome_val") is None
    assert embedded_boundary(b"") is None


def test_form_data_round_trip() -> None:
    writer = FormDataWriter()
    writer.append("foo", "foo")
    writer.append("bar", "")
    writer.append("blüb", "blub")
    payload = writer.getvalue()
    assert len(writer) == len(payload)
    assert list(iter_form_data(payload)) == [("foo", "foo"), ("bar", ""), ("blüb", "blub")]
    assert list(iter_form_data(payload[:-1])) == [("foo", "foo"), ("bar", "")]


# --- minidumps ----------------------------------------------------------------------------------

DUMP = b"MDMP" + bytes(range(256)) * 4


@pytest.mark.parametrize(
    "wrap",
    [lambda d: d, gzip.compress, lzma.compress, bz2.compress,
     lambda d: __import__("zstandard").ZstdCompressor().compress(d)],
    ids=["plain", "gzip", "xz", "bzip2", "zstd"],
)  # fmt: skip
def test_decode_minidump_containers(wrap: object) -> None:
    assert callable(wrap)
    assert decode_minidump(wrap(DUMP), len(DUMP)) == DUMP
    if wrap(DUMP) != DUMP:
        with pytest.raises(PayloadTooLarge):
            decode_minidump(wrap(DUMP), len(DUMP) - 1)


def test_decode_minidump_too_large_and_broken() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_minidump(gzip.compress(DUMP), len(DUMP) - 1)
    with pytest.raises(InvalidCompression):
        decode_minidump(gzip.compress(DUMP)[:20], len(DUMP))
    validate_minidump(DUMP)
    validate_minidump(b"PMDM")
    with pytest.raises(InvalidMinidump):
        validate_minidump(b"MZ\x90\x00")
    assert remove_container_extension("minidump.dmp.gz") == "minidump.dmp"
    assert remove_container_extension("minidump.dmp") == "minidump.dmp"


# --- per-item size limits -----------------------------------------------------------------------


def _envelope(*items: Item) -> Envelope:
    return Envelope({"event_id": "9ec79c33ec9942ab8353589fcb2e04dc"}, list(items))


def test_size_limits_events_and_attachments() -> None:
    limits = SizeLimits(max_event_size=10, max_attachment_size=5, max_attachments_size=8)
    assert check_envelope_size_limits(limits, _envelope(Item.new("event", b"x" * 10))) is None
    assert check_envelope_size_limits(limits, _envelope(Item.new("event", b"x" * 11))) == "event"
    # Only one event per envelope.
    two = _envelope(Item.new("event", b"{}"), Item.new("transaction", b"{}"))
    assert check_envelope_size_limits(limits, two) == "transaction"
    big = Item.new("attachment", b"x" * 6, attachment_type="event.minidump")
    assert check_envelope_size_limits(limits, _envelope(big)) == "attachment:minidump"
    total = _envelope(Item.new("attachment", b"x" * 5), Item.new("attachment", b"x" * 5))
    assert check_envelope_size_limits(limits, total) == "attachment:attachment"
    unknown = _envelope(Item.new("something_new", b"x" * 1000))
    assert check_envelope_size_limits(limits, unknown) is None


def test_size_limits_containers_by_average() -> None:
    limits = SizeLimits(max_log_size=10, max_container_size=100)
    logs = Item.new(
        "log", b"x" * 40, content_type="application/vnd.sentry.items.log+json", item_count=4
    )
    assert check_envelope_size_limits(limits, _envelope(logs)) is None
    logs.headers["item_count"] = 3
    assert check_envelope_size_limits(limits, _envelope(logs)) == "log"


def test_size_limits_counts() -> None:
    limits = SizeLimits(max_session_count=2, max_client_reports_count=1)
    sessions = [Item.new("session", b"{}") for _ in range(3)]
    assert check_envelope_size_limits(limits, _envelope(*sessions)) == "session"
    reports = [Item.new("client_report", b"{}") for _ in range(2)]
    assert check_envelope_size_limits(limits, _envelope(*reports)) == "client_report"


def test_discard_item_type_names() -> None:
    assert discard_item_type(Item.new("feedback")) == "user_report_v2"
    assert discard_item_type(Item.new("attachment")) == "attachment:attachment"
    assert discard_item_type(Item.new("attachment", attachment_type="x.y")) == (
        "attachment:attachment"
    )
    assert discard_item_type(Item.new("unknown_thing")) == "unknown"


# --- security / NEL media types -----------------------------------------------------------------


def test_parse_mime() -> None:
    assert parse_mime("application/reports+json; charset=utf-8") == (
        "application", "reports", "json",
    )  # fmt: skip
    assert parse_mime("Application/CSP-Report") == ("application", "csp-report", None)
    for bad in (None, "", "json", "application/", "/json", "application/x+"):
        with pytest.raises(BadRequest):
            parse_mime(bad)


def test_split_reports() -> None:
    assert split_reports(b'[{"a": 1}, {"b": 2}]') == [b'{"a": 1}', b'{"b": 2}']
    assert split_reports(b'{"csp-report": {}}') == [b'{"csp-report": {}}']
    assert split_reports(b"not json") == [b"not json"]
