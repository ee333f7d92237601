"""Unit tests for relay.protocol.envelope and relay.protocol.items."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sentry_sdk.envelope import Envelope as SdkEnvelope
from sentry_sdk.envelope import Item as SdkItem
from sentry_sdk.envelope import PayloadRef

from relay.errors import InvalidEnvelope, InvalidJson
from relay.protocol.encoding import decode_body
from relay.protocol.envelope import (
    MAX_ENVELOPE_ITEMS,
    Envelope,
    Item,
    envelope_from_event,
    normalize_event_id,
    parse_envelope,
    parse_minimal_event,
)
from relay.protocol.items import (
    EVENT_ITEM_TYPES,
    KNOWN_ITEM_TYPES,
    DataCategory,
    ItemType,
    category_name,
    event_type_category,
    item_category,
)
from tests.paths import CORPUS

EVENT_ID = "9ec79c33ec9942ab8353589fcb2e04dc"
DSN = "https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42"
HEADER = json.dumps({"event_id": EVENT_ID, "dsn": DSN}).encode()


def env(*lines: bytes) -> bytes:
    return b"\n".join(lines)


def parse_error(data: bytes) -> str:
    with pytest.raises(InvalidEnvelope) as info:
        parse_envelope(data)
    assert info.value.status == 400
    return info.value.detail


# -- the recorded corpus ----------------------------------------------------------------------


def split_top_level(text: str) -> list[str]:
    """Split "a(x, y), b" on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


def corpus_table() -> dict[str, list[str]]:
    """File name -> item descriptions such as "attachment(app.log, 3829 B)", from the README."""
    rows: dict[str, list[str]] = {}
    for line in (CORPUS.parent / "README.md").read_text().splitlines():
        match = re.match(r"\| `([^`]+)` \|(.*)\|\s*$", line)
        if match:
            cells = [cell.strip() for cell in match.group(2).split("|")]
            rows[Path(match.group(1)).name] = split_top_level(cells[-1])
    return rows


TABLE = corpus_table()


def check_against_table(envelope: Envelope, described: list[str]) -> None:
    assert [item.type for item in envelope.items] == [d.split("(")[0] for d in described]
    for item, description in zip(envelope.items, described, strict=True):
        if item.type == "attachment":
            match = re.fullmatch(r"attachment\((.+), (\d+) B\)", description)
            assert match is not None
            assert item.filename == match.group(1)
            assert item.length == int(match.group(2))
        elif item.type == "log":
            match = re.fullmatch(r"log\(item_count=(\d+)\)", description)
            assert match is not None
            assert item.item_count == int(match.group(1))
            assert item.is_container
            assert len(json.loads(item.payload)["items"]) == item.item_count
        elif item.type == "transaction":
            match = re.fullmatch(r"transaction\((\d+) spans\)", description)
            assert match is not None
            assert len(json.loads(item.payload)["spans"]) == int(match.group(1))
        elif item.content_type == "application/json":
            json.loads(item.payload)


def check_round_trip(envelope: Envelope) -> None:
    again = parse_envelope(envelope.serialize())
    assert again.headers == envelope.headers
    assert [i.payload for i in again.items] == [i.payload for i in envelope.items]
    for old, new in zip(envelope.items, again.items, strict=True):
        assert new.headers == {**old.headers, "length": len(old.payload)}


def test_corpus_table_is_complete() -> None:
    envelopes = sorted(CORPUS.glob("*.envelope"))
    bodies = sorted((CORPUS / "wire").glob("*.body"))
    assert len(envelopes) == 40
    assert len(bodies) == 44
    assert {p.name for p in envelopes + bodies} <= set(TABLE)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.envelope")), ids=lambda p: p.name)
def test_corpus_envelopes(path: Path) -> None:
    data = path.read_bytes()
    envelope = parse_envelope(data)
    check_against_table(envelope, TABLE[path.name])
    # The file name lists the item types too ("event-error" is an event of kind error).
    named = {part.split("-")[0] for part in path.stem.split("__")[1].split("+")}
    assert {item.type for item in envelope.items} == named
    assert envelope.event_id is None or normalize_event_id(envelope.event_id) is not None
    assert (envelope.sent_at is None) == (envelope.sent_at_datetime is None)
    check_round_trip(envelope)
    # The SDK writes compact headers with `length`, so re-serializing is byte-identical.
    assert envelope.serialize() == data


@pytest.mark.parametrize("path", sorted((CORPUS / "wire").glob("*.body")), ids=lambda p: p.name)
def test_corpus_wire_bodies(path: Path) -> None:
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    headers = {name.lower(): value for name, value in meta["headers"]}
    assert headers["content-type"] == "application/x-sentry-envelope"
    body = decode_body(path.read_bytes(), headers.get("content-encoding"), 10 << 20)
    envelope = parse_envelope(body)
    check_against_table(envelope, TABLE[path.name])
    check_round_trip(envelope)


# -- sentry_sdk interoperability --------------------------------------------------------------


def sdk_envelope() -> SdkEnvelope:
    envelope = SdkEnvelope(headers={"event_id": EVENT_ID, "sent_at": "2024-01-01T00:00:00Z"})
    envelope.add_event({"event_id": EVENT_ID, "message": "héllo\nworld", "level": "error"})
    envelope.add_item(
        SdkItem(
            payload=PayloadRef(bytes=b"\x00\xffbinary\n\r\nend"),
            type="attachment",
            filename="blob.bin",
            content_type="application/octet-stream",
        )
    )
    envelope.add_session({"sid": "x", "status": "ok"})
    envelope.add_checkin({"check_in_id": "y", "status": "ok"})
    envelope.add_item(SdkItem(payload=b"", type="attachment", filename="empty.txt"))
    envelope.add_item(SdkItem(payload=b"{}", type="some_future_type"))
    return envelope


def test_parse_sentry_sdk_envelope() -> None:
    sdk = sdk_envelope()
    envelope = parse_envelope(sdk.serialize())
    assert envelope.event_id == EVENT_ID
    assert [item.type for item in envelope.items] == [item.type for item in sdk.items]
    assert [item.payload for item in envelope.items] == [item.get_bytes() for item in sdk.items]
    assert envelope.items[1].filename == "blob.bin"
    assert envelope.items[1].content_type == "application/octet-stream"
    assert json.loads(envelope.items[0].payload)["message"] == "héllo\nworld"
    assert envelope.event_item() is envelope.items[0]


def test_sentry_sdk_parses_our_output() -> None:
    envelope = parse_envelope(sdk_envelope().serialize())
    envelope.add_item(Item.new("attachment", b"line1\nline2\n", filename="log.txt"))
    sdk = SdkEnvelope.deserialize(envelope.serialize())
    assert sdk.headers == envelope.headers
    assert [item.type for item in sdk.items] == [item.type for item in envelope.items]
    assert [item.get_bytes() for item in sdk.items] == [item.payload for item in envelope.items]
    assert sdk.get_event() is not None


def test_sentry_sdk_parses_envelope_from_event() -> None:
    envelope = envelope_from_event({"type": "transaction", "spans": []}, EVENT_ID)
    sdk = SdkEnvelope.deserialize(envelope.serialize())
    assert sdk.get_transaction_event() == {"type": "transaction", "spans": []}


# -- framing rules (cases from Relay's envelope tests) ----------------------------------------


def test_header_only_without_newline() -> None:
    envelope = parse_envelope(HEADER)
    assert envelope.event_id == EVENT_ID
    assert envelope.dsn == DSN
    assert envelope.items == []


def test_header_only_with_newline() -> None:
    assert parse_envelope(HEADER + b"\n").items == []


@pytest.mark.parametrize("header", [b"{}", b"{}\n", b" \n {}\n", b'{"foo":[1,{"bar":null}]}'])
def test_minimal_headers(header: bytes) -> None:
    assert parse_envelope(header).items == []


def test_empty_items_with_newlines() -> None:
    data = env(
        HEADER, b'{"type":"attachment","length":0}', b"", b'{"type":"attachment","length":0}', b""
    )
    envelope = parse_envelope(data)
    assert [item.payload for item in envelope.items] == [b"", b""]


def test_empty_items_at_eof() -> None:
    data = env(
        HEADER, b'{"type":"attachment","length":0}', b"", b'{"type":"attachment","length":0}'
    )
    assert len(parse_envelope(data).items) == 2


def test_implicit_length() -> None:
    for tail in (b"\n", b""):
        data = env(HEADER, b'{"type":"attachment"}', b"helloworld") + tail
        (item,) = parse_envelope(data).items
        assert item.payload == b"helloworld"
        assert item.length == 10


def test_implicit_length_empty_at_eof() -> None:
    (item,) = parse_envelope(env(HEADER, b'{"type":"attachment"}')).items
    assert item.payload == b""


def test_implicit_length_keeps_carriage_return() -> None:
    data = env(HEADER, b'{"type":"attachment"}', b"hello\r", b'{"type":"event"}', b"{}")
    envelope = parse_envelope(data)
    assert [item.payload for item in envelope.items] == [b"hello\r", b"{}"]


def test_multiple_items_with_binary_payload() -> None:
    data = (
        HEADER
        + b"\n"
        + b'{"type":"attachment","length":10,"content_type":"text/plain","filename":"hello.txt"}\n'
        + b"\xef\xbb\xbfHello\r\n\n"
        + b'{"type":"event","length":41,"content_type":"application/json",'
        + b'"filename":"application.log"}\n'
        + b'{"message":"hello world","level":"error"}\n'
    )
    first, second = parse_envelope(data).items
    assert first.type == "attachment"
    assert first.payload == b"\xef\xbb\xbfHello\r\n"
    assert first.content_type == "text/plain"
    assert second.type == "event"
    assert second.payload == b'{"message":"hello world","level":"error"}'
    assert second.filename == "application.log"


def test_payload_with_length_may_contain_newlines() -> None:
    data = env(HEADER, b'{"type":"attachment","length":5}', b"a\nb\nc")
    assert parse_envelope(data).items[0].payload == b"a\nb\nc"


def test_unknown_item_type_is_kept() -> None:
    data = env(HEADER, b'{"type":"invalid_unknown","extra":{"a":1}}', b"helloworld", b"")
    (item,) = parse_envelope(data).items
    assert item.type == "invalid_unknown"
    assert item.headers["extra"] == {"a": 1}
    (again,) = parse_envelope(Envelope({}, [item]).serialize()).items
    assert again == Item({**item.headers, "length": 10}, b"helloworld")


def test_profile_chunk_ui_alias() -> None:
    data = env(b"{}", b'{"type":"profile_chunk_ui","platform":"android"}', b"{}")
    (item,) = parse_envelope(data).items
    assert item.type == "profile_chunk"


def test_blank_lines_between_items_are_skipped() -> None:
    data = env(
        b"{}", b'{"type":"event","length":2}', b"{}", b"", b"", b"  ", b'{"type":"event"}', b"{}"
    )
    assert len(parse_envelope(data).items) == 2


def test_pretty_printed_headers() -> None:
    header = json.dumps({"event_id": EVENT_ID, "note": "{not a brace}"}, indent=2).encode()
    item = json.dumps({"type": "event", "length": 2, "s": 'a "}" b\\'}, indent=1).encode()
    envelope = parse_envelope(env(header, item, b"{}", b""))
    assert envelope.headers["note"] == "{not a brace}"
    assert envelope.items[0].payload == b"{}"
    assert envelope.items[0].headers["s"] == 'a "}" b\\'


def test_max_items() -> None:
    items = [b'{"type":"attachment"}\nhello world' for _ in range(MAX_ENVELOPE_ITEMS)]
    assert len(parse_envelope(env(HEADER, *items)).items) == MAX_ENVELOPE_ITEMS
    assert "too many" in parse_error(env(HEADER, *items, b'{"type":"attachment"}\nx'))


@pytest.mark.parametrize(
    "event_id",
    [
        EVENT_ID,
        EVENT_ID.upper(),
        str(uuid.UUID(EVENT_ID)),
        "{" + str(uuid.UUID(EVENT_ID)) + "}",
        "urn:uuid:" + str(uuid.UUID(EVENT_ID)),
        None,
    ],
)
def test_valid_event_ids(event_id: str | None) -> None:
    envelope = parse_envelope(json.dumps({"event_id": event_id}).encode())
    assert envelope.event_id == event_id
    if event_id is not None:
        assert normalize_event_id(event_id) == EVENT_ID


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b" \n\t\r\n", id="whitespace"),
        pytest.param(b"{", id="unterminated"),
        pytest.param(b'{"a":}', id="bad-json"),
        pytest.param(b'{"a":"\\x"}', id="bad-escape"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"string"', id="string"),
        pytest.param(b"42", id="number"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{} x", id="junk-after"),
        pytest.param(b"{}{}", id="two-objects"),
        pytest.param(b"{} \n", id="space-before-newline"),
        pytest.param(b"{}\r\n", id="crlf"),
        pytest.param(b'{"event_id":"not-a-uuid"}', id="event-id"),
        pytest.param(b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04d"}', id="event-id-short"),
        pytest.param(b'{"event_id":"9ec79c33-ec99-42ab-8353589fcb2e04dc"}', id="event-id-hyphens"),
        pytest.param(b'{"event_id":42}', id="event-id-number"),
        pytest.param(b'{"sent_at":"yesterday"}', id="sent-at"),
        pytest.param(b'{"sent_at":"2024-01-01T00:00:00"}', id="sent-at-naive"),
        pytest.param(b'{"sent_at":1700000000}', id="sent-at-number"),
        pytest.param(b'{"dsn":"not a dsn"}', id="dsn"),
        pytest.param(b'{"dsn":"https://short@sentry.io/42"}', id="dsn-key"),
        pytest.param(
            b'{"dsn":"https://e12d836b15bb49d7bbf99e64295d995b@sentry.io/x"}', id="dsn-pid"
        ),
        pytest.param(b'{"dsn":42}', id="dsn-type"),
    ],
)
def test_bad_envelope_header(header: bytes) -> None:
    parse_error(header)


def test_header_null_values_are_accepted() -> None:
    envelope = parse_envelope(b'{"event_id":null,"sent_at":null,"dsn":null}')
    assert (envelope.event_id, envelope.sent_at, envelope.dsn) == (None, None, None)


def test_sent_at() -> None:
    envelope = parse_envelope(b'{"sent_at":"1970-01-01T00:02:03z"}')
    assert envelope.sent_at == "1970-01-01T00:02:03z"
    assert envelope.sent_at_datetime == datetime(1970, 1, 1, 0, 2, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        pytest.param(b'{"length":0}\n', "type", id="missing-type"),
        pytest.param(b'{"type":1}\n', "type", id="number-type"),
        pytest.param(b'{"type":null}\n', "type", id="null-type"),
        pytest.param(b"[]\n", "object", id="array"),
        pytest.param(b"oops\n", "object", id="not-json"),
        pytest.param(b'{"type":"event"\n', "", id="unterminated"),
        pytest.param(b'{"type":"event"}\r\n{}', "newline", id="crlf"),
        pytest.param(b'{"type":"event"} \n{}', "newline", id="trailing-space"),
        pytest.param(b'{"type":"event","length":10}\n{}', "end of file", id="past-end"),
        pytest.param(b'{"type":"event","length":2}\n{}x', "newline", id="no-newline-after"),
        pytest.param(b'{"type":"event","length":-1}\n', "length", id="negative"),
        pytest.param(b'{"type":"event","length":1.0}\n{', "length", id="float"),
        pytest.param(b'{"type":"event","length":"2"}\n{}', "length", id="string"),
        pytest.param(b'{"type":"event","length":null}\n', "length", id="null"),
        pytest.param(b'{"type":"event","length":true}\n{', "length", id="bool"),
        pytest.param(b'{"type":"event","length":99999999999999999999}\n', "", id="huge"),
    ],
)
def test_bad_item(item: bytes, message: str) -> None:
    assert message in parse_error(HEADER + b"\n" + item)


@pytest.mark.parametrize(
    "tail",
    [b"\n\n", b"\n \n", b"\n\n\n"],
)
def test_trailing_blank_lines_are_rejected_like_relay(tail: bytes) -> None:
    # After the newline that ends the last payload, Relay parses another item and hits EOF.
    assert "end of file" in parse_error(env(HEADER, b'{"type":"event","length":2}', b"{}") + tail)
    assert "end of file" in parse_error(HEADER + tail)


def test_parse_accepts_bytearray_and_memoryview() -> None:
    data = env(HEADER, b'{"type":"event"}', b"{}")
    for buffer in (bytearray(data), memoryview(data)):
        (item,) = parse_envelope(buffer).items
        assert type(item.payload) is bytes
        assert item.payload == b"{}"


# -- Item and Envelope API --------------------------------------------------------------------


def test_item_new_and_properties() -> None:
    item = Item.new(
        ItemType.ATTACHMENT,
        b"12345",
        filename="a.txt",
        content_type="text/plain",
        attachment_type="event.attachment",
    )
    assert item.headers["type"] == "attachment"
    assert item.headers["length"] == 5
    assert (item.type, item.length, item.filename) == ("attachment", 5, "a.txt")
    assert (item.content_type, item.attachment_type) == ("text/plain", "event.attachment")
    assert item.item_count is None
    assert not item.creates_event()
    assert item.requires_event()
    item.set_payload(b"abc", "application/octet-stream")
    assert item.headers["length"] == 3
    assert item.content_type == "application/octet-stream"


def test_item_non_string_headers_read_as_absent() -> None:
    item = Item({"type": "attachment", "filename": 3, "content_type": None, "item_count": "2"})
    assert item.filename is None
    assert item.content_type is None
    assert item.attachment_type is None


@pytest.mark.parametrize(
    ("headers", "payload", "creates"),
    [
        ({"type": "event"}, b"", True),
        ({"type": "transaction"}, b"", True),
        ({"type": "security"}, b"", True),
        ({"type": "raw_security"}, b"", True),
        ({"type": "unreal_report"}, b"", True),
        ({"type": "feedback"}, b"", True),
        ({"type": "attachment", "attachment_type": "event.minidump"}, b"", True),
        ({"type": "attachment", "attachment_type": "event.applecrashreport"}, b"", True),
        ({"type": "attachment", "attachment_type": "event.payload"}, b"", True),
        ({"type": "attachment", "attachment_type": "event.view_hierarchy"}, b"", False),
        ({"type": "attachment", "attachment_type": "unknown.type"}, b"", False),
        ({"type": "attachment"}, b"", False),
        ({"type": "attachment", "filename": "dying_message.dat"}, b"sntr...", True),
        ({"type": "attachment", "filename": "dying_message.dat"}, b"nope", False),
        ({"type": "form_data"}, b"", False),
        ({"type": "user_report"}, b"", False),
        ({"type": "session"}, b"", False),
        ({"type": "client_report"}, b"", False),
        ({"type": "whatever"}, b"", False),
    ],
)
def test_creates_event(headers: dict[str, Any], payload: bytes, creates: bool) -> None:
    item = Item(headers, payload)
    assert item.creates_event() is creates
    assert Envelope({}, [item]).creates_event() is creates


def test_item_count_only_for_container_types() -> None:
    assert Item({"type": "log", "item_count": 5}).item_count == 5
    assert Item({"type": "future", "item_count": 5}).item_count == 5
    assert Item({"type": "event", "item_count": 5}).item_count is None
    assert Item({"type": "log", "item_count": -1}).item_count is None
    assert Item({"type": "log", "item_count": True}).item_count is None
    assert Item({"type": "log", "item_count": 1 << 32}).item_count is None


@pytest.mark.parametrize(
    ("headers", "payload", "expected"),
    [
        ({"type": "event"}, b"{}", [(DataCategory.ERROR, 1)]),
        (
            {"type": "transaction", "span_count": 30},
            b"{}",
            [
                (DataCategory.TRANSACTION, 1),
                (DataCategory.TRANSACTION_INDEXED, 1),
                (DataCategory.SPAN, 31),
                (DataCategory.SPAN_INDEXED, 31),
            ],
        ),
        ({"type": "raw_security"}, b"", [(DataCategory.SECURITY, 1)]),
        (
            {"type": "attachment"},
            b"x" * 100,
            [(DataCategory.ATTACHMENT, 100), (DataCategory.ATTACHMENT_ITEM, 1)],
        ),
        (
            {"type": "attachment"},
            b"",
            [(DataCategory.ATTACHMENT, 1), (DataCategory.ATTACHMENT_ITEM, 1)],
        ),
        (
            {
                "type": "attachment",
                "content_type": "application/vnd.sentry.trace-attachment",
                "meta_length": 40,
            },
            b"x" * 100,
            [(DataCategory.ATTACHMENT, 60), (DataCategory.ATTACHMENT_ITEM, 1)],
        ),
        (
            {
                "type": "attachment",
                "content_type": "application/vnd.sentry.attachment-ref+json",
                "attachment_length": 5000,
            },
            b"{}",
            [(DataCategory.ATTACHMENT, 5000), (DataCategory.ATTACHMENT_ITEM, 1)],
        ),
        ({"type": "sessions", "item_count": 3}, b"", [(DataCategory.SESSION, 3)]),
        (
            {"type": "log", "item_count": 5},
            b"x" * 50,
            [(DataCategory.LOG_BYTE, 50), (DataCategory.LOG_ITEM, 5)],
        ),
        (
            {"type": "trace_metric", "item_count": 2},
            b"x" * 7,
            [(DataCategory.TRACE_METRIC_BYTE, 7), (DataCategory.TRACE_METRIC, 2)],
        ),
        ({"type": "user_report"}, b"", [(DataCategory.USER_REPORT_V2, 1)]),
        ({"type": "feedback"}, b"", [(DataCategory.USER_REPORT_V2, 1)]),
        (
            {"type": "profile"},
            b"",
            [(DataCategory.PROFILE, 1), (DataCategory.PROFILE_INDEXED, 1)],
        ),
        (
            {"type": "profile", "platform": "android"},
            b"",
            [
                (DataCategory.PROFILE, 1),
                (DataCategory.PROFILE_INDEXED, 1),
                (DataCategory.PROFILE_UI, 1),
            ],
        ),
        (
            {"type": "profile", "platform": "python"},
            b"",
            [
                (DataCategory.PROFILE, 1),
                (DataCategory.PROFILE_INDEXED, 1),
                (DataCategory.PROFILE_BACKEND, 1),
            ],
        ),
        ({"type": "profile_chunk"}, b"", []),
        ({"type": "profile_chunk", "platform": "cocoa"}, b"", [(DataCategory.PROFILE_CHUNK_UI, 1)]),
        ({"type": "profile_chunk", "platform": "node"}, b"", [(DataCategory.PROFILE_CHUNK, 1)]),
        ({"type": "replay_video"}, b"", [(DataCategory.REPLAY, 1)]),
        ({"type": "check_in"}, b"", [(DataCategory.MONITOR, 1)]),
        (
            {"type": "span", "item_count": 4},
            b"",
            [(DataCategory.SPAN, 4), (DataCategory.SPAN_INDEXED, 4)],
        ),
        (
            {
                "type": "integration",
                "content_type": "application/vnd.sentry.integration.otel.logs+json",
            },
            b"xyz",
            [(DataCategory.LOG_BYTE, 3), (DataCategory.LOG_ITEM, 1)],
        ),
        ({"type": "client_report"}, b"", []),
        ({"type": "metric_buckets"}, b"", []),
        ({"type": "form_data"}, b"", []),
        ({"type": "statsd"}, b"", []),
    ],
)
def test_quantities(
    headers: dict[str, Any], payload: bytes, expected: list[tuple[DataCategory, int]]
) -> None:
    assert Item(headers, payload).quantities() == expected


def test_envelope_api() -> None:
    envelope = Envelope()
    assert envelope.headers == {} and envelope.items == []
    assert envelope.event_id is None
    assert envelope.event_item() is None
    assert envelope.ensure_event_id() is None
    envelope.add_item(Item.new("attachment", b"x"))
    envelope.add_item(Item.new("transaction", b"{}"))
    assert envelope.event_item() is envelope.items[1]
    assert envelope.get_item("attachment") is envelope.items[0]
    assert envelope.get_item("event") is None
    new_id = envelope.ensure_event_id()
    assert new_id is not None and normalize_event_id(new_id) == new_id
    assert envelope.ensure_event_id() == new_id
    envelope.event_id = EVENT_ID
    assert envelope.headers["event_id"] == EVENT_ID
    envelope.event_id = None
    assert "event_id" not in envelope.headers
    envelope.headers["trace"] = {"trace_id": "abc", "public_key": "k"}
    assert envelope.trace == {"trace_id": "abc", "public_key": "k"}
    envelope.headers["trace"] = "junk"
    assert envelope.trace is None


def test_serialize_sets_length_without_mutating() -> None:
    item = Item({"type": "attachment", "length": 99}, b"hello")
    stale = Item({"type": "event"}, b"{}")
    data = Envelope({"event_id": EVENT_ID}, [item, stale]).serialize()
    assert data == (
        b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n'
        b'{"type":"attachment","length":5}\nhello\n'
        b'{"type":"event","length":2}\n{}\n'
    )
    assert item.headers["length"] == 99
    assert "length" not in stale.headers


def test_serialize_empty_envelope() -> None:
    assert Envelope().serialize() == b"{}\n"
    assert parse_envelope(Envelope().serialize()) == Envelope()


def test_struct_equality_and_encoding() -> None:
    data = env(HEADER, b'{"type":"event"}', b"{}")
    assert parse_envelope(data) == parse_envelope(data)
    # Structs encode with msgspec, e.g. for spooling.
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(parse_envelope(data)), type=Envelope) == (
        parse_envelope(data)
    )


# -- store endpoint helpers -------------------------------------------------------------------


def test_envelope_from_event_dict() -> None:
    envelope = envelope_from_event({"message": "hi"}, EVENT_ID, {"sent_at": "x"})
    assert envelope.headers == {"event_id": EVENT_ID, "sent_at": "x"}
    (item,) = envelope.items
    assert item.type == "event"
    assert item.content_type == "application/json"
    assert json.loads(item.payload) == {"message": "hi"}


@pytest.mark.parametrize(
    ("event_type", "item_type"),
    [
        (None, "event"),
        ("error", "event"),
        ("default", "event"),
        ("transaction", "transaction"),
        ("csp", "security"),
        ("feedback", "feedback"),
        ("something", "event"),
    ],
)
def test_envelope_from_event_bytes(event_type: str | None, item_type: str) -> None:
    event: dict[str, Any] = {"event_id": EVENT_ID}
    if event_type is not None:
        event["type"] = event_type
    payload = json.dumps(event).encode()
    envelope = envelope_from_event(payload, EVENT_ID)
    assert envelope.items[0].type == item_type
    assert envelope.items[0].payload is payload
    assert envelope_from_event(event, EVENT_ID).items[0].type == item_type
    assert envelope_from_event(payload, EVENT_ID, event_type=event_type).items[0].type == item_type
    assert parse_envelope(envelope.serialize()) == Envelope(
        envelope.headers, [Item({**envelope.items[0].headers}, payload)]
    )


def test_parse_minimal_event() -> None:
    event = parse_minimal_event(b'{"event_id":"' + EVENT_ID.encode() + b'","type":"csp","x":[1]}')
    assert (event.event_id, event.type) == (EVENT_ID, "csp")
    event = parse_minimal_event(b"{}")
    assert (event.event_id, event.type) == (None, None)


@pytest.mark.parametrize(
    "payload", [b"", b"{", b"[]", b'{"event_id":"nope"}', b'{"type":3}', b"NaN"]
)
def test_parse_minimal_event_errors(payload: bytes) -> None:
    with pytest.raises(InvalidJson) as info:
        parse_minimal_event(payload)
    assert info.value.status == 400
    with pytest.raises(InvalidJson):
        envelope_from_event(payload, EVENT_ID)


# -- items.py ---------------------------------------------------------------------------------


def test_data_category_values_and_names() -> None:
    expected = {
        "DEFAULT": 0,
        "ERROR": 1,
        "TRANSACTION": 2,
        "SECURITY": 3,
        "ATTACHMENT": 4,
        "SESSION": 5,
        "USER_REPORT_V2": 14,
        "LOG_ITEM": 23,
        "SNAPSHOT_IMAGE": 38,
        "UNKNOWN": -1,
    }
    for name, value in expected.items():
        assert DataCategory[name].value == value
    assert [c.value for c in DataCategory if c >= 0] == list(range(39))
    assert category_name(DataCategory.ERROR) == "error"
    assert DataCategory.DEFAULT.name_str == "default"
    assert DataCategory.USER_REPORT_V2.name_str == "feedback"
    assert DataCategory.REPLAY_VIDEO.name_str == "replay_video"
    assert DataCategory.ATTACHMENT_ITEM.name_str == "attachment_item"
    for category in DataCategory:
        assert DataCategory.from_name(category.name_str) is category
    assert DataCategory.from_name("user_report_v2") is DataCategory.USER_REPORT_V2
    assert DataCategory.from_name("nonsense") is DataCategory.UNKNOWN


def test_item_category() -> None:
    assert item_category("event") is DataCategory.ERROR
    assert item_category("event", "default") is DataCategory.ERROR
    assert item_category("event", "csp") is DataCategory.SECURITY
    assert item_category("event", "transaction") is DataCategory.TRANSACTION
    assert item_category("transaction") is DataCategory.TRANSACTION
    assert item_category("security") is DataCategory.SECURITY
    assert item_category("attachment") is DataCategory.ATTACHMENT
    assert item_category("session") is DataCategory.SESSION
    assert item_category("sessions") is DataCategory.SESSION
    assert item_category("check_in") is DataCategory.MONITOR
    assert item_category("replay_recording") is DataCategory.REPLAY
    assert item_category("feedback") is DataCategory.USER_REPORT_V2
    assert item_category("log") is DataCategory.LOG_ITEM
    for uncounted in ("client_report", "metric_buckets", "form_data", "integration", "future"):
        assert item_category(uncounted) is None
    assert event_type_category(None) is DataCategory.ERROR
    assert event_type_category("feedback") is DataCategory.USER_REPORT_V2


def test_item_type_sets() -> None:
    expected = {"event", "transaction", "security", "raw_security", "unreal_report", "feedback"}
    assert expected == EVENT_ITEM_TYPES
    assert EVENT_ITEM_TYPES <= KNOWN_ITEM_TYPES
    assert ItemType.USER_REPORT_V2 == ItemType.FEEDBACK == "feedback"
    assert ItemType.STATSD not in KNOWN_ITEM_TYPES


@pytest.mark.parametrize(
    "data", [b'{"a":"\xff"}\n', b'{}\n{"type":"\xff"}\n', b'{}\n{"type":"event","x":"\xfe"}\n{}\n']
)
def test_invalid_utf8_in_headers_is_an_invalid_envelope(data: bytes) -> None:
    """Found by fuzzing: must be a 400, never an unhandled UnicodeDecodeError."""
    with pytest.raises(InvalidEnvelope):
        parse_envelope(data)
