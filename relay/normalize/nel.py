"""Network Error Logging (NEL) reports as Sentry logs.

Browsers post NEL reports (https://w3c.github.io/network-error-logging/) as a JSON array.
Relay turns each report into one log (``OurLog``): a human-readable body naming the
failure, level ``warn`` (``info`` for successful requests), the report's fields as
OTel-style attributes (``url.full``, ``http.request.method``, ``nel.phase`` ...), and the
time the browser observed the failure (arrival time minus the report's ``age``).

Fields are read as leniently as Relay reads them: a field of the wrong type is left out, a
report that is not an object or has no ``body`` object produces no log. Only a payload that
is not a JSON array is an error (:class:`InvalidNelPayload`, outcome ``invalid_json``).
"""

from __future__ import annotations

import ipaddress
import math
import uuid
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import msgspec

from relay.normalize.ourlogs import Attributes
from relay.protocol.attributes import typed_attribute

__all__ = [
    "NEL_ORIGIN",
    "InvalidNelPayload",
    "nel_message",
    "nel_report_to_log",
    "nel_reports_to_logs",
    "parse_nel_reports",
]

#: ``sentry.origin`` of every log made from a NEL report.
NEL_ORIGIN: Final = "auto.http.browser_report.nel"

# Human-readable descriptions of NEL error types: the W3C predefined types
# (https://w3c.github.io/network-error-logging/#predefined-network-error-types) and the
# Chromium extensions (net/network_error_logging). ``{}`` takes the HTTP status code.
_CULPRITS: Final[dict[str, str]] = {
    "dns.unreachable": "DNS server is unreachable",
    "dns.name_not_resolved": "DNS server responded but is unable to resolve the address",
    "dns.failed": "Request to the DNS server failed due to reasons not covered by previous errors",
    "dns.address_changed": "Indicates that the resolved IP address for a request's origin has "
    "changed since the corresponding NEL policy was received",
    "tcp.timed_out": "TCP connection to the server timed out",
    "tcp.closed": "The TCP connection was closed by the server",
    "tcp.reset": "The TCP connection was reset",
    "tcp.refused": "The TCP connection was refused by the server",
    "tcp.aborted": "The TCP connection was aborted",
    "tcp.address_invalid": "The IP address is invalid",
    "tcp.address_unreachable": "The IP address is unreachable",
    "tcp.failed": "The TCP connection failed due to reasons not covered by previous errors",
    "tls.version_or_cipher_mismatch": "The TLS connection was aborted due to version or "
    "cipher mismatch",
    "tls.bad_client_auth_cert": "The TLS connection was aborted due to invalid client certificate",
    "tls.cert.name_invalid": "The TLS connection was aborted due to invalid name",
    "tls.cert.date_invalid": "The TLS connection was aborted due to invalid certificate date",
    "tls.cert.authority_invalid": "The TLS connection was aborted due to invalid issuing authority",
    "tls.cert.invalid": "The TLS connection was aborted due to invalid certificate",
    "tls.cert.revoked": "The TLS connection was aborted due to revoked server certificate",
    "tls.cert.pinned_key_not_in_cert_chain": "The TLS connection was aborted due to a key "
    "pinning error",
    "tls.protocol.error": "The TLS connection was aborted due to a TLS protocol error",
    "tls.failed": "The TLS connection failed due to reasons not covered by previous errors",
    "http.error": "The user agent successfully received a response, but it had a {} status code",
    "http.protocol.error": "The connection was aborted due to an HTTP protocol error",
    "http.response.invalid": "Response is empty, has a content-length mismatch, has improper "
    "encoding, and/or other conditions that prevent user agent from processing the response",
    "http.response.redirect_loop": "The request was aborted due to a detected redirect loop",
    "http.failed": "The connection failed due to errors in HTTP protocol not covered by "
    "previous errors",
    "abandoned": "User aborted the resource fetch before it is complete",
    "unknown": "error type is unknown",
    "dns.protocol": "ERR_DNS_MALFORMED_RESPONSE",
    "dns.server": "ERR_DNS_SERVER_FAILED",
    "tls.unrecognized_name_alert": "ERR_SSL_UNRECOGNIZED_NAME_ALERT",
    "h2.ping_failed": "ERR_HTTP2_PING_FAILED",
    "h2.protocol.error": "ERR_HTTP2_PROTOCOL_ERROR",
    "h3.protocol.error": "ERR_QUIC_PROTOCOL_ERROR",
    "http.response.invalid.empty": "ERR_EMPTY_RESPONSE",
    "http.response.invalid.content_length_mismatch": "ERR_CONTENT_LENGTH_MISMATCH",
    "http.response.invalid.incomplete_chunked_encoding": "ERR_INCOMPLETE_CHUNKED_ENCODING",
    "http.response.invalid.invalid_chunked_encoding": "ERR_INVALID_CHUNKED_ENCODING",
    "http.request.range_not_satisfiable": "ERR_REQUEST_RANGE_NOT_SATISFIABLE",
    "http.response.headers.truncated": "ERR_RESPONSE_HEADERS_TRUNCATED",
    "http.response.headers.multiple_content_disposition": (
        "ERR_RESPONSE_HEADERS_MULTIPLE_CONTENT_DISPOSITION"
    ),
    "http.response.headers.multiple_content_length": (
        "ERR_RESPONSE_HEADERS_MULTIPLE_CONTENT_LENGTH"
    ),
}

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1

_decoder = msgspec.json.Decoder(list[Any])


class InvalidNelPayload(ValueError):
    """The NEL payload is not a JSON array of reports (outcome ``invalid_json``)."""

    # ClassVar: mypyc would otherwise make it an instance attribute, never set.
    reason: ClassVar[str] = "invalid_json"


def parse_nel_reports(payload: bytes) -> list[Any]:
    """The reports of a NEL payload; raises :class:`InvalidNelPayload` unless a JSON array."""
    try:
        return _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidNelPayload(f"invalid NEL payload: {exc}") from None


def nel_message(error_type: str, status_code: int | None) -> str:
    """The log body for a NEL error type; unknown types are reported as they are."""
    template = _CULPRITS.get(error_type)
    if template is None:
        return error_type
    if error_type == "http.error":
        # The status code is read as an unsigned 16-bit number, as Relay does.
        code = 0 if status_code is None else status_code & 0xFFFF
        return template.replace("{}", str(code))
    return template


def _int(value: Any) -> int | None:
    """A signed 64-bit integer from a JSON number (floats truncate), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if _I64_MIN <= value <= _I64_MAX else None
    if isinstance(value, float):
        if not math.isfinite(value) or not _I64_MIN <= value < 2.0**63:
            return None
        return int(value)
    return None


def _float(value: Any) -> float | None:
    """A float from a JSON number, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _ip(value: Any) -> str | None:
    """An IP address (or Relay's ``{{auto}}`` marker) as sent; anything else is dropped."""
    if not isinstance(value, str):
        return None
    if value == "{{auto}}":
        return value
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return None
    return value


def url_domain(url: str) -> str:
    """The host of an absolute URL (IPv6 in brackets); the string itself if it has none."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return url
    if not parts.scheme or not host:
        return url
    return f"[{host}]" if ":" in host else host


def nel_report_to_log(
    report: Any, received_at: float, trace_id: str | None = None
) -> dict[str, Any] | None:
    """One log (Relay's ``OurLog`` JSON) from one NEL report; None without a report body.

    ``received_at`` is when the report arrived (Unix seconds); the log's timestamp is that
    minus the report's ``age`` (milliseconds). ``trace_id`` defaults to a random one: NEL
    reports belong to no trace.
    """
    if not isinstance(report, dict):
        return None
    body = report.get("body")
    if not isinstance(body, dict):
        return None

    body_type = _str(body.get("type"))
    status_code = _int(body.get("status_code"))
    error_type = body_type if body_type is not None else "unknown"
    age = _int(report.get("age")) or 0

    attributes: Attributes = {}

    def add(name: str, value: str | int | float | None) -> None:
        # Fields as sent, empty strings included.
        if value is not None:
            attributes[name] = typed_attribute(value)

    def add_nonempty(name: str, value: str) -> None:
        # Derived values: only when there is something to say.
        if value:
            attributes[name] = typed_attribute(value)

    add_nonempty("sentry.origin", NEL_ORIGIN)
    add_nonempty("browser.report.type", "network-error")
    url = _str(report.get("url"))
    if url is not None:
        add_nonempty("url.domain", url_domain(url))
    add("url.full", url)
    add("http.request.duration", _int(body.get("elapsed_time")))
    add("http.request.method", _str(body.get("method")))
    referrer = _str(body.get("referrer"))
    add("http.request.header.referer", referrer)
    add("http.response.status_code", status_code)
    protocol = _str(body.get("protocol"))
    if protocol is not None:
        # "http/1.1" -> name "http", version "1.1"
        parts = protocol.split("/")
        add_nonempty("network.protocol.name", parts[0])
        if len(parts) > 1:
            add_nonempty("network.protocol.version", parts[1])
    server_ip = _ip(body.get("server_ip"))
    if server_ip is not None:
        add_nonempty("server.address", server_ip)
    add("nel.referrer", referrer)
    phase = _str(body.get("phase"))
    if phase is not None:
        # "dns", "connection", "application", or a newer phase: all lower-cased.
        add("nel.phase", phase.lower())
    add("nel.sampling_fraction", _float(body.get("sampling_fraction")))
    add("nel.type", body_type)

    return {
        "timestamp": received_at - age / 1000.0,
        "trace_id": trace_id or uuid.uuid4().hex,
        "level": "info" if error_type == "ok" else "warn",
        "body": nel_message(error_type, status_code),
        "attributes": attributes,
    }


def nel_reports_to_logs(payload: bytes, received_at: float) -> list[dict[str, Any]]:
    """Every log of a NEL payload (reports without a body produce none).

    Raises :class:`InvalidNelPayload` when the payload is not a JSON array.
    """
    logs = []
    for report in parse_nel_reports(payload):
        log = nel_report_to_log(report, received_at)
        if log is not None:
            logs.append(log)
    return logs
