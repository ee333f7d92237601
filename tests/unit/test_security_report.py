"""Browser security reports: conversion to CSP events, rejection, and the server glue."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgpack
import msgspec
import pytest

from relay.config import config_from_dict
from relay.kafka.outcomes import OutcomeCode
from relay.kafka.producer import KafkaProducer
from relay.kafka.topics import resolve_topics
from relay.normalize.security_report import (
    SecurityReportError,
    check_security_event,
    event_from_security_report,
    normalize_security_report,
    origin_url,
)
from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.event_normalization import EventRejected, normalize_event_payload
from relay.server.outcomes import OutcomeSink
from relay.server.processor import Processor
from relay.server.request_meta import RequestMeta

KEY = "a" * 32
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/74.0.3729.169 Safari/537.36"
)
MSDN_REPORT = {
    "csp-report": {
        "document-uri": "https://example.com/foo/bar",
        "referrer": "https://www.google.com/",
        "violated-directive": "default-src self",
        "original-policy": "default-src self; report-uri /csp-hotline.php",
        "blocked-uri": "http://evilhackerscripts.com",
    }
}


def convert(report: Any, **kwargs: Any) -> dict[str, Any]:
    return event_from_security_report(json.dumps(report).encode(), **kwargs)


def csp(**fields: Any) -> dict[str, Any]:
    return convert({"csp-report": fields})


def rejection(payload: bytes) -> SecurityReportError:
    with pytest.raises(SecurityReportError) as info:
        event_from_security_report(payload)
    return info.value


# --- conversion -------------------------------------------------------------------------


def test_classic_report_becomes_csp_event() -> None:
    event = convert(MSDN_REPORT, release="1.0", environment="prod", origin="http://valid.com")
    assert event == {
        "type": "csp",
        "logentry": {"formatted": "Blocked 'default-src' from 'evilhackerscripts.com'"},
        "culprit": "default-src self",
        "tags": [
            ["effective-directive", "default-src"],
            ["blocked-uri", "http://evilhackerscripts.com"],
            ["blocked-host", "evilhackerscripts.com"],
        ],
        "request": {
            "url": "https://example.com/foo/bar",
            "headers": [["Referer", "https://www.google.com/"], ["Origin", "http://valid.com/"]],
        },
        "csp": {
            "effective_directive": "default-src",
            "blocked_uri": "http://evilhackerscripts.com",
            "document_uri": "https://example.com/foo/bar",
            "original_policy": "default-src self; report-uri /csp-hotline.php",
            "referrer": "https://www.google.com/",
            "violated_directive": "default-src self",
        },
        "release": "1.0",
        "environment": "prod",
    }


def test_reporting_api_report_uses_the_body() -> None:
    report = {
        "type": "csp-violation",
        "age": 10,
        "url": "https://example.net/",
        "body": {
            "blockedURL": "https://example.net/assets/media/7_del.png",
            "disposition": "enforce",
            "documentURL": "https://example.net/page",
            "effectiveDirective": "img-src",
            "lineNumber": 9,
            "originalPolicy": "default-src 'none'; report-to endpoint-csp;",
            "referrer": "",
            "sourceFile": "https://example.net/page",
            "statusCode": 0,
        },
    }
    event = convert(report)
    assert event["logentry"] == {"formatted": "Blocked 'image' from 'example.net'"}
    assert event["request"] == {"url": "https://example.net/page"}  # empty referrer: no header
    assert event["csp"]["disposition"] == "enforce"
    assert event["csp"]["line_number"] == 9
    assert event["csp"]["status_code"] == 0


def test_numbers_may_be_strings_and_unknown_fields_are_kept() -> None:
    event = csp(**{"document-uri": "http://example.com", "effective-directive": "style-src",
                   "blocked-uri": "http://example.com/lol.css", "status-code": "200",
                   "x-custom": 1})  # fmt: skip
    assert event["csp"]["status_code"] == 200
    assert event["csp"]["x-custom"] == 1
    assert event["logentry"]["formatted"] == "Blocked 'style' from 'example.com'"


def test_missing_blocked_uri_is_self() -> None:
    event = csp(**{"document-uri": "http://example.com", "effective-directive": "script-src"})
    assert event["csp"]["blocked_uri"] == "self"
    assert event["csp"]["violated_directive"] == ""
    assert event["culprit"] == ""
    assert event["logentry"]["formatted"] == "Blocked unsafe (eval() or inline) 'script'"
    assert event["tags"] == [["effective-directive", "script-src"], ["blocked-uri", "self"]]


def test_sample_alias() -> None:
    event = csp(**{"violated-directive": "style-src x", "sample": 'console.log("lo")'})
    assert event["csp"]["script_sample"] == 'console.log("lo")'


def test_firefox_directive_comes_from_violated_directive() -> None:
    event = csp(**{"violated-directive": "style-src http://cdn.example.com",
                   "blocked-uri": "http://notlocalhost:8000/lol.css"})  # fmt: skip
    assert event["csp"]["effective_directive"] == "style-src"
    assert event["logentry"]["formatted"] == "Blocked 'style' from 'notlocalhost:8000'"


@pytest.mark.parametrize(
    ("directive", "blocked", "violated", "message"),
    [
        ("img-src", "http://google.com/foo", "", "Blocked 'image' from 'google.com'"),
        ("style-src", "", "", "Blocked inline 'style'"),
        ("script-src", "", "script-src 'unsafe-inline'", "Blocked unsafe inline 'script'"),
        ("script-src", "", "script-src 'unsafe-eval'", "Blocked unsafe eval() 'script'"),
        ("script-src", "data:text/plain;base64,SGVsbG8=", "", "Blocked 'script' from 'data:'"),
        ("script-src", "data", "", "Blocked 'script' from 'data:'"),
        ("style-src-elem", "http://fonts.google.com/foo", "",
         "Blocked 'style' from 'fonts.google.com'"),
        ("script-src-elem", "http://cdn.ajaxapis.com/foo", "",
         "Blocked 'script' from 'cdn.ajaxapis.com'"),
        ("style-src", "http://notlocalhost:8000/lol.css", "",
         "Blocked 'style' from 'notlocalhost:8000'"),
        ("style-src", "https://example.com:443/x", "", "Blocked 'style' from 'example.com'"),
        ("frame-src", "wss://chat.example.com/x", "",
         "Blocked 'frame-src' from 'wss://chat.example.com'"),
        ("form-action", "http://x.com", "", "Blocked 'form' action to 'x.com'"),
        ("base-uri", "self", "", "Blocked inline 'base-uri'"),
    ],
)  # fmt: skip
def test_messages(directive: str, blocked: str, violated: str, message: str) -> None:
    event = csp(**{"document-uri": "http://example.com/foo", "effective-directive": directive,
                   "blocked-uri": blocked, "violated-directive": violated})  # fmt: skip
    assert event["logentry"]["formatted"] == message


@pytest.mark.parametrize(
    ("document", "violated", "culprit"),
    [
        ("http://example.com/foo", "style-src http://cdn.example.com",
         "style-src http://cdn.example.com"),
        ("https://example.com/foo", "style-src cdn.example.com", "style-src cdn.example.com"),
        ("http://example.com/foo", "style-src http://example.com", "style-src 'self'"),
        ("http://example.com/foo", "style-src http://example2.com example.com",
         "style-src http://example2.com 'self'"),
        ("example.com", "style-src example2.com", "style-src example2.com"),
        ("ftp://example.com/foo", "style-src cdn.example.com", "style-src ftp://cdn.example.com"),
        ("http://example.com", "script-src  'none'\t'unsafe-eval'",
         "script-src 'none' 'unsafe-eval'"),
    ],
)  # fmt: skip
def test_culprits(document: str, violated: str, culprit: str) -> None:
    event = csp(**{"document-uri": document, "violated-directive": violated,
                   "effective-directive": "style-src"})  # fmt: skip
    assert event["culprit"] == culprit


def test_stripe_query_is_cut_from_the_tag() -> None:
    event = csp(**{"blocked-uri": "https://api.stripe.com/v1/tokens?card[number]=xxx",
                   "effective-directive": "script-src"})  # fmt: skip
    assert event["tags"][1:] == [
        ["blocked-uri", "https://api.stripe.com/v1/tokens"],
        ["blocked-host", "api.stripe.com"],
    ]


def test_no_blocked_host_for_other_schemes_or_bad_urls() -> None:
    for blocked in ("data:image/png;base64,xyz", "http://", "http://host:99999/", "nonsense"):
        event = csp(**{"blocked-uri": blocked, "effective-directive": "img-src"})
        assert [tag[0] for tag in event["tags"]] == ["effective-directive", "blocked-uri"]


# --- rejection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{nope", "invalid_json"),
        (b'"a string"', "invalid_json"),
        (b'{"type": 5}', "invalid_json"),
        (b'{"expect-ct-report": {"hostname": "www.example.com", "port": 443}}',
         "security_report_type"),
        (b'{"expect-staple-report": {"hostname": "www.example.com"}}', "security_report_type"),
        (b'{"hostname": "www.example.com", "port": 443, "known-pins": []}',
         "security_report_type"),
        (b'{"csp-report": null}', "security_report_type"),
        (b'{"csp-report": {"effective-directive": "bogus-src"}}', "security_report"),
        (b'{"csp-report": {"violated-directive": "style-src", "status-code": -1}}',
         "security_report"),
        (b'{"csp-report": {"violated-directive": "style-src", "referrer": 5}}', "security_report"),
        (b'{"csp-report": {"violated-directive": "style-src", "blocked-uri": null}}',
         "security_report"),
        (b'{"csp-report": {"violated-directive": "style-src", "blocked-uri": "a",'
         b' "blockedURL": "b"}}', "security_report"),
        (b'{"csp-report": []}', "security_report"),
        (b'{"type": "csp-violation"}', "security_report"),
    ],
)  # fmt: skip
def test_invalid_reports(payload: bytes, reason: str) -> None:
    error = rejection(payload)
    assert (error.reason, error.filtered) == (reason, False)


def test_other_reporting_api_types_are_filtered() -> None:
    error = rejection(b'{"type": "deprecation", "body": {"id": "websql"}}')
    assert (error.reason, error.filtered) == ("invalid-csp", True)


def test_origin_url_serialization() -> None:
    assert origin_url("http://valid.com") == "http://valid.com/"
    assert origin_url("HTTPS://Valid.COM:443/a?b") == "https://valid.com/a?b"
    assert origin_url("http://valid.com:8080") == "http://valid.com:8080/"
    assert origin_url("ftp://valid.com") is None
    assert origin_url("http://") is None


def test_classified_events_must_be_csp() -> None:
    event: dict[str, Any] = {"type": "transaction", "csp": {"effective_directive": "img-src"}}
    check_security_event(event)
    assert "type" not in event  # normalization infers ``csp`` again
    for ty in ("hpkp", "expectct", "expectstaple"):
        with pytest.raises(SecurityReportError) as info:
            check_security_event({"type": ty, ty: {"hostname": "www.example.com"}})
        assert info.value.reason == "security_report_type"
    with pytest.raises(SecurityReportError):
        check_security_event({"csp": {}, "exception": {"values": [{"type": "E"}]}})


def test_normalization_step_adds_logger_ip_and_user_agent() -> None:
    event: dict[str, Any] = {"csp": {}, "request": {"headers": [["Referer", "x"]]}}
    normalize_security_report(event, "10.0.0.1", CHROME)
    assert event["logger"] == "csp"
    assert event["user"] == {"ip_address": "10.0.0.1"}
    assert event["request"]["headers"] == [["Referer", "x"], ["User-Agent", CHROME]]
    normalize_security_report(event, None, "other")  # a User-Agent header is kept
    assert event["request"]["headers"][-1] == ["User-Agent", CHROME]
    plain: dict[str, Any] = {"message": "x"}
    normalize_security_report(plain, "10.0.0.1", CHROME)
    assert plain == {"message": "x"}


# --- server glue ------------------------------------------------------------------------

STATE = ProjectState(
    project_id=42,
    organization_id=7,
    public_keys=[PublicKeyConfig(public_key=KEY, numeric_id=123)],
    config={},
)
META = RequestMeta(public_key=KEY, project_id=42, remote_addr="127.0.0.1",
                   user_agent=CHROME, origin="http://valid.com")  # fmt: skip


def raw_envelope(report: Any) -> Envelope:
    item = Item.new("raw_security", json.dumps(report).encode(), content_type="application/json",
                    sentry_release="1.0", sentry_environment="production")  # fmt: skip
    return Envelope({"event_id": uuid.uuid4().hex}, [item])


def test_pop_turns_raw_report_into_security_item() -> None:
    env = raw_envelope(MSDN_REPORT)
    item = env.items[0]
    event = normalize_event_payload(item, env, META, STATE, processing=False)
    assert item.type == "security"
    assert "sentry_release" not in item.headers
    stored = msgspec.json.decode(item.payload)
    assert stored == event
    assert (event["type"], event["logger"], event["release"], event["environment"]) == (
        "csp", "csp", "1.0", "production"
    )  # fmt: skip
    assert event["user"]["ip_address"] == "127.0.0.1"
    assert ["Origin", "http://valid.com/"] in event["request"]["headers"]
    assert event["contexts"]["browser"]["name"] == "Chrome"
    # The next hop accepts the classified item as it is.
    normalize_event_payload(item, env, META, STATE, processing=True)
    assert item.type == "security"


@pytest.mark.parametrize(
    ("report", "reason", "code"),
    [
        ({"hostname": "www.example.com", "port": 443}, "security_report_type",
         OutcomeCode.INVALID),
        ({"type": "deprecation", "body": {}}, "invalid-csp", OutcomeCode.FILTERED),
    ],
)  # fmt: skip
def test_pop_rejects_unsupported_reports(report: Any, reason: str, code: OutcomeCode) -> None:
    env = raw_envelope(report)
    with pytest.raises(EventRejected) as info:
        normalize_event_payload(env.items[0], env, META, STATE, processing=False)
    assert (info.value.reason, info.value.code) == (reason, code)


def test_classified_hpkp_item_is_rejected() -> None:
    payload = json.dumps({"type": "hpkp", "hpkp": {"hostname": "www.example.com"}}).encode()
    env = Envelope({"event_id": uuid.uuid4().hex}, [Item.new("security", payload)])
    with pytest.raises(EventRejected) as info:
        normalize_event_payload(env.items[0], env, META, STATE, processing=False)
    assert info.value.reason == "security_report_type"


def make_processor() -> Processor:
    config = config_from_dict({"processing": {"enabled": True}})
    topics = resolve_topics({})
    # Never started: building messages does not touch the producer.
    producer = KafkaProducer([("bootstrap.servers", "127.0.0.1:1")])
    return Processor(config, producer, topics, OutcomeSink(config, producer, topics))


def test_processing_relay_stores_raw_report_as_csp_event() -> None:
    plan = make_processor().build(raw_envelope(MSDN_REPORT), META, STATE)
    [message] = plan.messages
    event = json.loads(msgpack.unpackb(message.value)["payload"])
    assert event["type"] == "csp"
    assert event["csp"]["effective_directive"] == "default-src"
    assert event["release"] == "1.0"


def test_processing_relay_drops_unsupported_reports() -> None:
    processor = make_processor()
    plan = processor.build(raw_envelope({"expect-ct-report": {}}), META, STATE)
    assert plan.messages == []
    assert dict(processor.outcomes.totals) == {(int(OutcomeCode.INVALID), 3): 1}
