"""JSON attachment (view hierarchy) scrubbing, as Relay's `scrub_json`.

Expected values come from Relay's relay-pii json.rs tests, the integration suite's
test_attachments.py, and `sentry_relay` (the Rust library) for what serde_json prints and
how a string is scrubbed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sentry_relay.processing import pii_strip_event

from relay.pii import compile_config, compile_project_configs
from relay.pii.json_numbers import NumberError, format_float, parse_number
from relay.pii.json_scrub import MAX_DEPTH, JsonScrubError, scrub_json
from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState
from relay.server.event_normalization import scrub_attachments

IP_EVERYWHERE = {"applications": {"$string": ["@ip"]}}
PASSWORD_CONFIG = {
    "rules": {"0": {"type": "password", "redaction": {"method": "remove"}}},
    "applications": {
        "$string": ["@password:remove"],
        "$attachments.'view-hierarchy.json'": ["0"],
    },
}


def scrub(config: dict[str, Any], document: Any) -> Any:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return json.loads(scrub_json(compile_config(config), raw))


def serde(event_json: str) -> str:
    """What Relay's serde_json makes of an event JSON text (raw, nothing scrubbed)."""
    out: str = pii_strip_event(
        {},
        event_json,
        json_dumps=lambda x: x if isinstance(x, str) else json.dumps(x),
        json_loads=lambda s: s,
    )
    return out


# -- Relay's json.rs tests ---------------------------------------------------------------------


def test_view_hierarchy_ip_everywhere() -> None:
    document = {
        "rendering_system": "UIKIT",
        "identifier": "192.45.128.54",
        "windows": [
            {
                "type": "UIWindow",
                "identifier": "123.123.123.123",
                "width": 414,
                "alpha": 1,
                "visible": True,
                "children": [],
            }
        ],
    }
    result = scrub(IP_EVERYWHERE, document)
    assert result["identifier"] == "[ip]"
    assert result["windows"][0]["identifier"] == "[ip]"
    assert result["windows"][0]["width"] == 414
    assert result["windows"][0]["visible"] is True


def test_nested_path_rule() -> None:
    document = {"nested": {"stuff": {"ident": "10.0.0.1"}}}
    config = {"applications": {"nested.stuff.ident": ["@ip"]}}
    assert scrub(config, document)["nested"]["stuff"]["ident"] == "[ip]"


def test_not_existing_path() -> None:
    document = {"nested": {"stuff": {"ident": "10.0.0.1"}}}
    config = {"applications": {"non.existent.path": ["@ip"]}}
    assert scrub(config, document)["nested"]["stuff"]["ident"] == "10.0.0.1"


# -- the integration suite's expectations -------------------------------------------------------


def test_password_removed_to_empty_string_compact_output() -> None:
    pipeline = compile_project_configs(PASSWORD_CONFIG, None)
    payload = b'{"rendering_system": "UIKIT", "password": "hunter42"}'
    assert pipeline.process_json_attachment(payload) == (
        b'{"rendering_system":"UIKIT","password":""}'
    )


def test_ip_masked_through_string_selector() -> None:
    config = {
        "rules": {"0": {"type": "ip", "redaction": {"method": "mask"}}},
        "applications": {"$attachments.'view-hierarchy.json'": ["0"], "$string": ["0"]},
    }
    document = {"rendering_system": "UIKIT", "identifier": "129.16.41.92"}
    assert scrub(config, document) == {"rendering_system": "UIKIT", "identifier": "*" * 12}


# -- paths ----------------------------------------------------------------------------------------


def test_array_elements_take_the_key_of_their_array() -> None:
    document = {"windows": ["1.2.3.4", {"identifier": "1.2.3.4"}, [["1.2.3.4"]]]}
    assert scrub({"applications": {"windows": ["@ip"]}}, document) == {
        "windows": ["[ip]", {"identifier": "1.2.3.4"}, [["[ip]"]]]
    }
    assert scrub({"applications": {"windows.identifier": ["@ip"]}}, document) == {
        "windows": ["1.2.3.4", {"identifier": "[ip]"}, [["1.2.3.4"]]]
    }


def test_every_level_is_a_string_never_an_object() -> None:
    document = {"a": {"b": "1.2.3.4"}}
    assert scrub({"applications": {"$object.b": ["@ip"]}}, document) == document
    assert scrub({"applications": {"$string.b": ["@ip"]}}, document) == {"a": {"b": "[ip]"}}
    assert scrub({"applications": {"**.b": ["@ip"]}}, document) == {"a": {"b": "[ip]"}}


def test_root_is_not_pii() -> None:
    assert scrub(IP_EVERYWHERE, "1.2.3.4") == "1.2.3.4"
    assert scrub(IP_EVERYWHERE, ["1.2.3.4", {"k": "1.2.3.4"}]) == ["1.2.3.4", {"k": "[ip]"}]


def test_keys_are_never_scrubbed() -> None:
    assert scrub(IP_EVERYWHERE, {"1.2.3.4": "x"}) == {"1.2.3.4": "x"}


def test_skipped_literal_strings() -> None:
    config = {"applications": {"$string": ["@anything:remove"]}}
    document = {k: k for k in ("", "true", "false", "null", "undefined", "other")}
    expected = {**document, "other": ""}
    assert scrub(config, document) == expected


def test_escaped_keys_do_not_enter_the_path_but_leave_it() -> None:
    # serde_json hands out escaped keys as copies, which Relay does not push onto the
    # path; stepping out of their member pops the parent instead.
    config = {"applications": {"a.b": ["@ip"], "b": ["@ip"]}}
    payload = b'{"a": {"x\\n": "1.2.3.4", "b": "1.2.3.4"}, "b": "1.2.3.4"}'
    result = scrub(config, payload)
    assert result == {"a": {"x\n": "1.2.3.4", "b": "[ip]"}, "b": "[ip]"}
    # The member under the escaped key is scrubbed with its parent's path.
    config = {"applications": {"a": ["@ip"]}}
    payload = b'{"a": {"\\u0078": "1.2.3.4"}}'
    assert scrub(config, payload) == {"a": {"x": "[ip]"}}


def test_duplicate_keys_survive() -> None:
    out = scrub_json(compile_config(IP_EVERYWHERE), b'{"a":"1.2.3.4","a":"x"}')
    assert out == b'{"a":"[ip]","a":"x"}'


# -- the document format --------------------------------------------------------------------------


def test_unchanged_document_is_still_rewritten_compactly() -> None:
    payload = b'{ "a" : [ 1 , 2.50, {"b": null}, true ] }\n'
    out = scrub_json(compile_config({}), payload)
    assert out == b'{"a":[1,2.5,{"b":null},true]}'


def test_data_after_the_first_value_is_ignored() -> None:
    processor = compile_config(IP_EVERYWHERE)
    assert scrub_json(processor, b'{"a":"1.2.3.4"} trailing {') == b'{"a":"[ip]"}'
    assert scrub_json(processor, b"  123abc") == b"123"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"   ",
        b"{",
        b'{"a"}',
        b'{"a":}',
        b'{"a":1,}',
        b"[1,]",
        b"[1 2]",
        b"{'a': 1}",
        b"01",
        b"1.",
        b"1e",
        b"-",
        b"1e400",
        b"nul",
        b'"unterminated',
        b'"bad \\x escape"',
        b'"raw \n newline"',
        b'"lone \\ud800 surrogate"',
        b'"\xff invalid utf-8"',
        b"\xef\xbb\xbf{}",  # a BOM
        b'{"a":"\xc3"}',
    ],
)
def test_invalid_documents(payload: bytes) -> None:
    with pytest.raises(JsonScrubError):
        scrub_json(compile_config(IP_EVERYWHERE), payload)


def test_invalid_document_kept_by_pipeline() -> None:
    pipeline = compile_project_configs(PASSWORD_CONFIG, None)
    payload = b'{"password": "hunter42"'
    assert pipeline.process_json_attachment(payload) is payload


def test_nesting_limit() -> None:
    processor = compile_config({})
    ok = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)
    assert scrub_json(processor, ok) == ok
    too_deep = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    with pytest.raises(JsonScrubError):
        scrub_json(processor, too_deep)
    with pytest.raises(JsonScrubError):
        scrub_json(processor, b'{"a":' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH)


def test_non_ascii_and_escapes_match_serde_json() -> None:
    text = "".join(chr(i) for i in range(0x80)) + "\u2028é😀\u007f/"
    ours = scrub_json(compile_config({}), json.dumps({"s": text}).encode()).decode()
    theirs = serde(json.dumps({"extra": {"s": text}}))
    assert ours[len('{"s":') : -1] == theirs[len('{"extra":{"s":') : -2]


NUMBER_TOKENS = [
    "0", "-0", "7", "-7", "1.0", "1.50", "0.1", "2.5e3", "1E2", "1e+2", "1e-2",
    "18446744073709551615", "18446744073709551616", "-9223372036854775808",
    "-9223372036854775809", "123456789012345678901234567890",
    "184467440737095516160.5", "0.12345678901234567890123", "1e15", "1e16", "1.5e-5",
    "1.5e-6", "5e-324", "1.7976931348623157e308", "2.2250738585072014e-308", "1e-400",
    "0e99999999999", "123456789e-20", "9007199254740993", "9007199254740993.0",
]  # fmt: skip


def test_numbers_match_serde_json() -> None:
    ours = scrub_json(compile_config({}), ("[" + ",".join(NUMBER_TOKENS) + "]").encode())
    members = ",".join(f'"n{i}":{t}' for i, t in enumerate(NUMBER_TOKENS))
    theirs = json.loads(serde('{"extra":{' + members + "}}"), parse_float=str, parse_int=str)
    printed = ours.decode()[1:-1].split(",")
    assert printed == [theirs["extra"][f"n{i}"] for i in range(len(NUMBER_TOKENS))]


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (1.5e-7, "1.5e-7"),
        (1e-5, "0.00001"),
        (1e-6, "1e-6"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (123.456, "123.456"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
    ],
)
def test_format_float(value: float, printed: str) -> None:
    assert format_float(value) == printed


@pytest.mark.parametrize("token", ["01", "1.", "1.e5", "1e", "1e+", "-", "1e400", "-1e309"])
def test_parse_number_rejects(token: str) -> None:
    with pytest.raises(NumberError):
        parse_number(token)


# -- string scrubbing agrees with Relay's event scrubbing -----------------------------------------

STRING_CONFIGS = [
    {"applications": {"$string": ["@ip", "@email", "@password:remove", "@creditcard:mask"]}},
    {"applications": {"$string": ["@common:replace", "@userpath:hash"]}},
    {
        "rules": {
            "r": {
                "type": "pattern",
                "pattern": "[0-9]+",
                "redaction": {"method": "replace", "text": "N"},
            },
            "k": {
                "type": "redact_pair",
                "keyPattern": "secret",
                "redaction": {"method": "mask"},
            },
        },
        "applications": {"**": ["r", "k"]},
    },
]
STRING_VALUES = {
    "plain": "nothing here",
    "ip": "from 10.0.0.1 and ::1",
    "email": "mail me at foo@example.com",
    "password": "hunter2",
    "my_secret": "abc 123",
    "cc": "4111 1111 1111 1111",
    "path": "C:\\Users\\alice\\file.txt /home/bob/x",
    "numbers": "a1b22c333",
}


@pytest.mark.parametrize("config", STRING_CONFIGS)
def test_strings_scrubbed_like_event_fields(config: dict[str, Any]) -> None:
    ours = scrub(config, STRING_VALUES)
    theirs = pii_strip_event(config, {"extra": STRING_VALUES})["extra"]
    assert ours == {k: "" if v is None else v for k, v in theirs.items()}


# -- the server step ------------------------------------------------------------------------------


def _state(features: list[str], pii_config: dict[str, Any] | None) -> ProjectState:
    config: dict[str, Any] = {"features": features}
    if pii_config is not None:
        config["piiConfig"] = pii_config
    return ProjectState(project_id=42, config=config)


def _view_hierarchy(payload: bytes, **headers: Any) -> Envelope:
    item = Item.new(
        "attachment",
        payload,
        attachment_type="event.view_hierarchy",
        filename="view-hierarchy.json",
        **headers,
    )
    return Envelope(headers={"event_id": uuid.uuid4().hex}, items=[item])


PAYLOAD = b'{"rendering_system":"UIKIT","password":"hunter42"}'


def test_server_scrubs_view_hierarchy_as_json_with_feature() -> None:
    envelope = _view_hierarchy(PAYLOAD)
    scrub_attachments(envelope, _state(["organizations:view-hierarchy-scrubbing"], PASSWORD_CONFIG))
    item = envelope.items[0]
    assert item.payload == b'{"rendering_system":"UIKIT","password":""}'
    assert item.headers["length"] == len(item.payload)
    assert item.content_type == "application/json"


def test_server_keeps_existing_content_type() -> None:
    envelope = _view_hierarchy(PAYLOAD, content_type="text/plain")
    scrub_attachments(envelope, _state(["organizations:view-hierarchy-scrubbing"], PASSWORD_CONFIG))
    assert envelope.items[0].content_type == "text/plain"


def test_server_scrubs_view_hierarchy_as_bytes_without_feature() -> None:
    envelope = _view_hierarchy(PAYLOAD)
    scrub_attachments(envelope, _state([], PASSWORD_CONFIG))
    # `@password` matches the whole blob (its key pattern "password" occurs in it).
    assert envelope.items[0].payload == b"*" * len(PAYLOAD)


def test_server_without_pii_config_leaves_view_hierarchy() -> None:
    envelope = _view_hierarchy(b'{ "identifier": "1.2.3.4" }')
    scrub_attachments(envelope, _state(["organizations:view-hierarchy-scrubbing"], None))
    assert envelope.items[0].payload == b'{ "identifier": "1.2.3.4" }'


def test_server_skips_attachment_placeholders() -> None:
    placeholder = b'{"location":"x","content_type":"application/json"}'
    envelope = _view_hierarchy(placeholder, content_type="application/vnd.sentry.attachment-ref")
    scrub_attachments(envelope, _state(["organizations:view-hierarchy-scrubbing"], PASSWORD_CONFIG))
    assert envelope.items[0].payload == placeholder
