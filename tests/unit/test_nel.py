"""NEL reports into logs: the pure conversion, log normalization, and the envelope step."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from relay.config import config_from_dict
from relay.kafka.outcomes import OutcomeCode
from relay.normalize.nel import (
    InvalidNelPayload,
    nel_message,
    nel_report_to_log,
    nel_reports_to_logs,
    url_domain,
)
from relay.normalize.ourlogs import (
    LOG_CONTAINER_CONTENT_TYPE,
    LogTimestampOutOfRange,
    check_log_timestamp,
    encode_log_container,
    log_byte_size,
    normalize_log,
)
from relay.protocol.attributes import typed_attribute
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory, ItemType
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.log_integrations import (
    LOGS_FEATURE,
    NEL_CONTENT_TYPE,
    expand_log_integrations,
    log_retention_days,
)
from relay.server.outcomes import OutcomeSink
from relay.server.request_meta import RequestMeta

RECEIVED = 1_700_000_000.0

REPORT: dict[str, Any] = {
    "age": 1200000,
    "body": {
        "elapsed_time": 37,
        "method": "GET",
        "phase": "application",
        "protocol": "http/1.1",
        "referrer": "https://example.com/nel/",
        "sampling_fraction": 1,
        "server_ip": "123.123.123.123",
        "status_code": 500,
        "type": "http.error",
    },
    "type": "network-error",
    "url": "https://example.com/index.html",
    "user_agent": "Mozilla/5.0",
}


def s(value: str) -> dict[str, Any]:
    return {"type": "string", "value": value}


# --- the conversion --------------------------------------------------------------------


def test_report_to_log() -> None:
    log = nel_report_to_log(REPORT, RECEIVED, trace_id="ab" * 16)
    assert log == {
        "timestamp": RECEIVED - 1200.0,
        "trace_id": "ab" * 16,
        "level": "warn",
        "body": "The user agent successfully received a response, but it had a 500 status code",
        "attributes": {
            "sentry.origin": s("auto.http.browser_report.nel"),
            "browser.report.type": s("network-error"),
            "url.domain": s("example.com"),
            "url.full": s("https://example.com/index.html"),
            "http.request.duration": {"type": "integer", "value": 37},
            "http.request.method": s("GET"),
            "http.request.header.referer": s("https://example.com/nel/"),
            "http.response.status_code": {"type": "integer", "value": 500},
            "network.protocol.name": s("http"),
            "network.protocol.version": s("1.1"),
            "server.address": s("123.123.123.123"),
            "nel.referrer": s("https://example.com/nel/"),
            "nel.phase": s("application"),
            "nel.sampling_fraction": {"type": "double", "value": 1.0},
            "nel.type": s("http.error"),
        },
    }


def test_random_trace_id() -> None:
    first = nel_report_to_log(REPORT, RECEIVED)
    second = nel_report_to_log(REPORT, RECEIVED)
    assert first is not None and second is not None
    assert len(first["trace_id"]) == 32
    assert first["trace_id"] != second["trace_id"]


@pytest.mark.parametrize(
    ("error_type", "status", "expected"),
    [
        ("dns.unreachable", None, "DNS server is unreachable"),
        (
            "http.error",
            404,
            "The user agent successfully received a response, but it had a 404 status code",
        ),
        (
            "http.error",
            None,
            "The user agent successfully received a response, but it had a 0 status code",
        ),
        ("http.some_new_error", None, "http.some_new_error"),
        ("h2.ping_failed", None, "ERR_HTTP2_PING_FAILED"),
    ],
)
def test_message(error_type: str, status: int | None, expected: str) -> None:
    assert nel_message(error_type, status) == expected


def test_successful_request_is_info() -> None:
    report = {"age": 0, "body": {"type": "ok", "status_code": 200}}
    log = nel_report_to_log(report, RECEIVED)
    assert log is not None
    assert log["level"] == "info"
    assert log["body"] == "ok"
    assert log["timestamp"] == RECEIVED


def test_missing_type_is_unknown_without_attribute() -> None:
    log = nel_report_to_log({"body": {}}, RECEIVED)
    assert log is not None
    assert log["body"] == "error type is unknown"
    assert log["level"] == "warn"
    assert "nel.type" not in log["attributes"]


@pytest.mark.parametrize("report", [None, 1, "x", [], {}, {"body": None}, {"body": [1]}])
def test_no_log_without_body(report: Any) -> None:
    assert nel_report_to_log(report, RECEIVED) is None


def test_wrong_types_are_left_out() -> None:
    report = {
        "age": "soon",
        "url": 5,
        "body": {
            "elapsed_time": "slow",
            "method": 1,
            "status_code": True,
            "sampling_fraction": "all",
            "server_ip": "not-an-ip",
            "protocol": 2,
            "phase": None,
            "type": "tcp.reset",
        },
    }
    log = nel_report_to_log(report, RECEIVED)
    assert log is not None
    assert log["timestamp"] == RECEIVED
    assert set(log["attributes"]) == {"sentry.origin", "browser.report.type", "nel.type"}


def test_lenient_numbers_and_phase() -> None:
    report = {
        "age": 1500.9,
        "body": {"elapsed_time": 12.7, "sampling_fraction": 0.5, "phase": "DNS", "type": "x"},
    }
    log = nel_report_to_log(report, RECEIVED)
    assert log is not None
    attrs = log["attributes"]
    assert attrs["http.request.duration"] == {"type": "integer", "value": 12}
    assert attrs["nel.sampling_fraction"] == {"type": "double", "value": 0.5}
    assert attrs["nel.phase"] == s("dns")
    assert log["timestamp"] == RECEIVED - 1.5


def test_empty_strings() -> None:
    # Fields as sent keep empty strings; derived values are left out when empty.
    report = {"url": "", "body": {"referrer": "", "protocol": "/2", "server_ip": "::1"}}
    log = nel_report_to_log(report, RECEIVED)
    assert log is not None
    attrs = log["attributes"]
    assert attrs["url.full"] == s("")
    assert "url.domain" not in attrs
    assert attrs["nel.referrer"] == s("")
    assert attrs["http.request.header.referer"] == s("")
    assert "network.protocol.name" not in attrs
    assert attrs["network.protocol.version"] == s("2")
    assert attrs["server.address"] == s("::1")


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://example.com/foo?bar=1", "example.com"),
        ("http://localhost:8080/foo", "localhost"),
        ("http://[::1]:8080/foo", "[::1]"),
        ("123.123.123.123", "123.123.123.123"),
        ("example.com/path", "example.com/path"),
        ("http://[bad", "http://[bad"),
    ],
)
def test_url_domain(url: str, domain: str) -> None:
    assert url_domain(url) == domain


def test_payload_must_be_array() -> None:
    with pytest.raises(InvalidNelPayload):
        nel_reports_to_logs(b'{"age": 1}', RECEIVED)
    with pytest.raises(InvalidNelPayload):
        nel_reports_to_logs(b"not json", RECEIVED)
    payload = json.dumps([REPORT, {"no": "body"}, REPORT]).encode()
    assert len(nel_reports_to_logs(payload, RECEIVED)) == 2


# --- logs ------------------------------------------------------------------------------


def test_attribute_types() -> None:
    assert typed_attribute(True) == {"type": "boolean", "value": True}
    assert typed_attribute(3) == {"type": "integer", "value": 3}
    assert typed_attribute(0.5) == {"type": "double", "value": 0.5}
    assert typed_attribute("x") == s("x")


def test_byte_size() -> None:
    log = {
        "body": "7 bytes",
        "attributes": {
            "foo": s("ඞ and some more equals 33 bytes"),
            "n": {"type": "integer", "value": 1},
            "b": {"type": "boolean", "value": False},
            "broken": "not an attribute",
        },
    }
    assert log_byte_size(log) == 7 + 3 + 33 + 1 + 8 + 1 + 1 + len("broken")
    assert log_byte_size({}) == 1


def test_normalize_log_adds_relay_attributes() -> None:
    log: dict[str, Any] = {"attributes": {}}
    normalize_log(
        log,
        received_at=RECEIVED,
        ingress="integration",
        user_agent="RelayIntegrationTests/1.0.0 Firefox/42.0",
    )
    assert log["attributes"] == {
        "sentry.observed_timestamp_nanos": s(str(int(RECEIVED * 1e9))),
        "user_agent.original": s("RelayIntegrationTests/1.0.0 Firefox/42.0"),
        "browser.name": s("Firefox"),
        "browser.version": s("42.0"),
        "sentry.relay.ingress": s("integration"),
    }


def test_normalize_log_keeps_existing_values() -> None:
    log: dict[str, Any] = {
        "attributes": {"browser.name": s("Safari"), "sentry.relay.ingress": s("container")}
    }
    normalize_log(log, received_at=RECEIVED, ingress="integration", user_agent="Firefox/42.0")
    attrs = log["attributes"]
    assert attrs["browser.name"] == s("Safari")
    assert "user_agent.original" not in attrs
    assert "browser.version" not in attrs
    assert attrs["sentry.relay.ingress"] == s("container")


def test_normalize_log_without_user_agent() -> None:
    log: dict[str, Any] = {}
    normalize_log(log, received_at=RECEIVED, ingress="integration")
    assert set(log["attributes"]) == {"sentry.observed_timestamp_nanos", "sentry.relay.ingress"}


def test_timestamp_window() -> None:
    log: dict[str, Any] = {"timestamp": RECEIVED + 3600}
    check_log_timestamp(log, RECEIVED, 86400, 60)
    assert log["timestamp"] == RECEIVED  # a drifting clock is corrected
    log = {"timestamp": RECEIVED - 100}
    check_log_timestamp(log, RECEIVED, 86400, 60)
    assert log["timestamp"] == RECEIVED - 100
    with pytest.raises(LogTimestampOutOfRange):
        check_log_timestamp({"timestamp": RECEIVED - 86401}, RECEIVED, 86400, 60)
    with pytest.raises(LogTimestampOutOfRange):
        check_log_timestamp({"timestamp": float("nan")}, RECEIVED, 86400, 60)


def test_container() -> None:
    payload = encode_log_container([({"body": "a"}, 1), ({"body": "bc"}, 2)])
    assert json.loads(payload) == {
        "version": 2,
        "items": [
            {"__header": {"byte_size": 1}, "body": "a"},
            {"__header": {"byte_size": 2}, "body": "bc"},
        ],
    }


# --- the envelope step -----------------------------------------------------------------

KEY = "a" * 32
CONFIG = config_from_dict({})


def state(features: list[str] | None = None, **config: Any) -> ProjectState:
    return ProjectState(
        project_id=42,
        organization_id=1,
        public_keys=[PublicKeyConfig(public_key=KEY)],
        config={"features": [LOGS_FEATURE] if features is None else features, **config},
    )


def nel_envelope(payload: bytes, *extra: Item) -> Envelope:
    item = Item.new(ItemType.INTEGRATION, payload, content_type=NEL_CONTENT_TYPE)
    return Envelope({}, [item, *extra])


def meta(received_at: float | None = None) -> RequestMeta:
    return RequestMeta(
        public_key=KEY,
        project_id=42,
        user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        received_at=received_at or time.time(),
    )


def invalid(sink: OutcomeSink, category: DataCategory) -> int:
    return sink.totals[(int(OutcomeCode.INVALID), int(category))]


def test_expand_replaces_item_with_container() -> None:
    sink = OutcomeSink(CONFIG)
    envelope = nel_envelope(json.dumps([REPORT, REPORT]).encode())
    expand_log_integrations(envelope, meta(), state(), sink, CONFIG)
    [item] = envelope.items
    assert item.type == ItemType.LOG
    assert item.content_type == LOG_CONTAINER_CONTENT_TYPE
    assert item.item_count == 2
    container = json.loads(item.payload)
    assert container["version"] == 2
    first = container["items"][0]
    assert first["__header"]["byte_size"] > 1
    attrs = first["attributes"]
    assert attrs["browser.name"] == s("Firefox")
    assert attrs["sentry.relay.ingress"] == s("integration")
    assert sink.emitted == 0


def test_expand_without_feature_drops_silently() -> None:
    sink = OutcomeSink(CONFIG)
    envelope = nel_envelope(json.dumps([REPORT]).encode())
    expand_log_integrations(envelope, meta(), state(features=[]), sink, CONFIG)
    assert envelope.items == []
    assert sink.emitted == 0


def test_expand_invalid_payload_is_an_outcome() -> None:
    sink = OutcomeSink(CONFIG)
    envelope = nel_envelope(b'{"not": "a list"}')
    expand_log_integrations(envelope, meta(), state(), sink, CONFIG)
    assert envelope.items == []
    assert invalid(sink, DataCategory.LOG_ITEM) == 1


def test_expand_old_report_is_an_outcome() -> None:
    sink = OutcomeSink(CONFIG)
    old = dict(REPORT, age=2 * 86400 * 1000)
    envelope = nel_envelope(json.dumps([old, REPORT]).encode())
    expand_log_integrations(envelope, meta(), state(eventRetention=1), sink, CONFIG)
    [item] = envelope.items
    assert item.item_count == 1
    assert invalid(sink, DataCategory.LOG_ITEM) == 1


def test_expand_no_logs_removes_item() -> None:
    sink = OutcomeSink(CONFIG)
    envelope = nel_envelope(b"[]")
    expand_log_integrations(envelope, meta(), state(), sink, CONFIG)
    assert envelope.items == []


def test_expand_duplicate_log_items() -> None:
    sink = OutcomeSink(CONFIG)
    other = Item.new(ItemType.LOG, b'{"items": []}', content_type=LOG_CONTAINER_CONTENT_TYPE)
    event = Item.new(ItemType.EVENT, b"{}")
    envelope = nel_envelope(json.dumps([REPORT]).encode(), other, event)
    expand_log_integrations(envelope, meta(), state(), sink, CONFIG)
    assert envelope.items == [event]
    assert invalid(sink, DataCategory.LOG_ITEM) == 2


def test_expand_leaves_other_envelopes_alone() -> None:
    sink = OutcomeSink(CONFIG)
    item = Item.new(ItemType.LOG, b"{}", content_type=LOG_CONTAINER_CONTENT_TYPE)
    envelope = Envelope({}, [item])
    expand_log_integrations(envelope, meta(), state(), sink, CONFIG)
    assert envelope.items == [item]


def test_log_retention() -> None:
    assert log_retention_days(state()) == 90
    assert log_retention_days(state(eventRetention=30)) == 30
    assert log_retention_days(state(eventRetention=30, retentions={"log": {"standard": 7}})) == 7
