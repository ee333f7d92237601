"""Browser security reports (CSP) turned into Sentry events.

Browsers post Content-Security-Policy violations either in the classic ``report-uri`` shape
(``{"csp-report": {...}}`` with kebab-case keys) or through the Reporting API
(``{"type": "csp-violation", "body": {...}}`` with camelCase keys, one element of a batch).
Relay turns such a report into an event of type ``csp``: a message, a culprit, tags, a
request and the ``csp`` interface. CSP is the only supported report: other Reporting API
types (``deprecation``, ...) are filtered as ``invalid-csp``; a payload that is no known
report at all (including the removed HPKP, Expect-CT and Expect-Staple) is invalid with
reason ``security_report_type``.

The conversion raises :class:`SecurityReportError`, which carries the outcome of the
rejected report. :func:`normalize_security_report` is the step event normalization runs on
every security event (logger, client IP, the request's ``User-Agent``).
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote

import msgspec

__all__ = [
    "CSP_DIRECTIVES",
    "SecurityReportError",
    "check_security_event",
    "event_from_security_report",
    "normalize_security_report",
    "origin_url",
]

#: The CSP directives Relay knows; a report naming none of them is invalid.
CSP_DIRECTIVES: Final = frozenset(
    {
        "base-uri",
        "child-src",
        "connect-src",
        "default-src",
        "fenced-frame-src",
        "font-src",
        "form-action",
        "frame-ancestors",
        "frame-src",
        "img-src",
        "manifest-src",
        "media-src",
        "object-src",
        "plugin-types",
        "prefetch-src",
        "referrer",
        "script-src",
        "script-src-attr",
        "script-src-elem",
        "style-src",
        "style-src-elem",
        "style-src-attr",
        "upgrade-insecure-requests",
        "worker-src",
        "sandbox",
        "navigate-to",
        "report-uri",
        "report-to",
        "block-all-mixed-content",
        "require-sri-for",
        "require-trusted-types-for",
        "trusted-types",
    }
)

#: Security event types whose reports are no longer supported (older relays may still send
#: them as classified ``security`` items).
REMOVED_EVENT_TYPES: Final = frozenset({"hpkp", "expectct", "expectstaple"})


class SecurityReportError(Exception):
    """A security report that cannot become an event.

    ``reason`` is the outcome reason: ``invalid_json``, ``security_report_type`` (not a known
    report), ``security_report`` (a CSP report that does not parse) or, when ``filtered``,
    the filter key ``invalid-csp`` (a Reporting API report of another type).
    """

    def __init__(self, reason: str, detail: str, *, filtered: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.filtered = filtered


def _invalid_report(detail: str) -> SecurityReportError:
    return SecurityReportError("security_report", detail)


# --- URLs -----------------------------------------------------------------------------
#
# Relay reads report URIs with the WHATWG URL parser; the parts that matter here are the
# scheme, the host and a non-default port. ``urllib.parse`` splits differently (no default
# ports, no validation of ports or special-scheme hosts), hence this small reader.

_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_DEFAULT_PORTS: Final[dict[str, int | None]] = {
    "http": 80,
    "https": 443,
    "ws": 80,
    "wss": 443,
    "ftp": 21,
    "file": None,
}
_TAB_NEWLINE: Final = re.compile(r"[\t\n\r]")
_C0_AND_SPACE: Final = "".join(chr(c) for c in range(0x21))
_PORT: Final = re.compile(r"[0-9]*")
_FORBIDDEN_HOST: Final = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")


class _Url(msgspec.Struct, frozen=True):
    scheme: str
    host: str | None
    #: The port when it is not the scheme's default.
    port: int | None
    #: Everything after the authority (path, query, fragment) as written.
    rest: str
    userinfo: str


def _parse_url(value: str) -> _Url | None:
    """Scheme, host and port of an absolute URL; None where the WHATWG parser fails."""
    value = _TAB_NEWLINE.sub("", value.strip(_C0_AND_SPACE))
    match = _SCHEME.match(value)
    if match is None:
        return None  # a relative reference: no base to resolve it against
    scheme = match.group(1).lower()
    rest = value[match.end() :]
    special = scheme in _DEFAULT_PORTS
    if special:
        # Special schemes accept backslashes and any number of slashes before the host.
        rest = rest.replace("\\", "/").lstrip("/")
    elif rest.startswith("//"):
        rest = rest[2:]
    else:
        return _Url(scheme, None, None, rest, "")  # an opaque path such as ``data:...``
    end = len(rest)
    for delimiter in "/?#":
        index = rest.find(delimiter)
        if index != -1:
            end = min(end, index)
    authority, tail = rest[:end], rest[end:]
    userinfo, _, host_port = authority.rpartition("@")
    if host_port.startswith("["):
        close = host_port.find("]")
        if close == -1:
            return None
        host, port_text = host_port[: close + 1], host_port[close + 1 :]
        if port_text and not port_text.startswith(":"):
            return None
        port_text = port_text[1:]
    else:
        host, _, port_text = host_port.partition(":")
    if _PORT.fullmatch(port_text) is None:
        return None
    port = int(port_text) if port_text else None
    if port is not None and port > 0xFFFF:
        return None
    if special:
        domain = host if host.startswith("[") else _domain(host)
        if domain is None or (not domain and scheme != "file"):
            return None
        host = domain
        if port == _DEFAULT_PORTS[scheme]:
            port = None
    return _Url(scheme, host or None, port, tail, userinfo)


def _domain(host: str) -> str | None:
    """A special URL's host as the WHATWG parser keeps it (lower case, punycode); None: invalid."""
    host = unquote(host)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    host = host.lower()
    if _FORBIDDEN_HOST.search(host):
        return None
    return host


def origin_url(origin: str) -> str | None:
    """The request's ``Origin`` as Relay serializes it (``http://host/``); None if invalid."""
    url = _parse_url(origin)
    if url is None or url.scheme not in ("http", "https") or url.host is None:
        return None
    userinfo = f"{url.userinfo}@" if url.userinfo else ""
    port = f":{url.port}" if url.port is not None else ""
    tail = url.rest if url.rest.startswith("/") else "/" + url.rest
    return f"{url.scheme}://{userinfo}{url.host}{port}{tail}"


_HOST_SCHEMES: Final = frozenset(
    {
        "ftp",
        "http",
        "gopher",
        "nntp",
        "telnet",
        "imap",
        "wais",
        "file",
        "mms",
        "https",
        "shttp",
        "snews",
        "prospero",
        "rtsp",
        "rtspu",
        "rsync",
        "svn",
        "svn+ssh",
        "sftp",
        "nfs",
        "git",
        "git+ssh",
        "ws",
        "wss",
    }
)


def _unsplit(scheme: str, host: str) -> str:
    """Python's ``urlunsplit((scheme, host, "", "", ""))``, which Sentry's messages use."""
    if host or scheme in _HOST_SCHEMES:
        return f"{scheme}://{host}"
    if scheme:
        return f"{scheme}:{host}"
    return ""


def _is_local(uri: str) -> bool:
    return uri in ("", "self", "'self'")


def _normalize_uri(value: str) -> str:
    """The short form of a URI in messages: ``'self'``, ``host[:port]`` or ``scheme://host``."""
    if _is_local(value):
        return "'self'"
    if ":" not in value:
        # Browsers often report just a scheme (``data``, ``blob``).
        return _unsplit(value, "")
    url = _parse_url(value)
    if url is None:
        return value
    host = url.host or ""
    short = host if url.scheme in ("http", "https") else _unsplit(url.scheme, host)
    return short if url.port is None else f"{short}:{url.port}"


# --- the raw report -------------------------------------------------------------------

#: Field name -> the names a browser may use for it (snake, kebab and camel case).
_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "effective_directive": ("effective_directive", "effective-directive", "effectiveDirective"),
    "blocked_uri": ("blocked_uri", "blockedURL", "blocked-uri"),
    "document_uri": ("document_uri", "documentURL", "document-uri"),
    "original_policy": ("original_policy", "originalPolicy", "original-policy"),
    "referrer": ("referrer",),
    "status_code": ("status_code", "statusCode", "status-code"),
    "violated_directive": ("violated_directive", "violatedDirective", "violated-directive"),
    "source_file": ("source_file", "sourceFile", "source-file"),
    "line_number": ("line_number", "lineNumber", "line-number"),
    "column_number": ("column_number", "columnNumber", "column-number"),
    "script_sample": ("script_sample", "scriptSample", "script-sample", "sample"),
    "disposition": ("disposition",),
}
_NUMBER_FIELDS: Final = frozenset({"status_code", "line_number", "column_number"})
#: Fields that are always present: a missing value takes this default (null is invalid).
_REQUIRED_DEFAULTS: Final = {"blocked_uri": "self", "violated_directive": ""}
_KNOWN_NAMES: Final = frozenset(name for names in _ALIASES.values() for name in names)
_UNSIGNED: Final = re.compile(r"\+?[0-9]+")
_MAX_U64: Final = 2**64 - 1


def _number(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_U64:
        return value
    if isinstance(value, str) and _UNSIGNED.fullmatch(value) and int(value) <= _MAX_U64:
        return int(value)
    raise _invalid_report(f"{field} is not an unsigned integer")


def _read_raw(body: Any) -> dict[str, Any]:
    """The report body's fields under their snake-case names, plus ``other`` (unknown keys)."""
    if not isinstance(body, dict):
        raise _invalid_report("the report is not an object")
    raw: dict[str, Any] = {}
    for field, names in _ALIASES.items():
        present = [name for name in names if name in body]
        if len(present) > 1:
            raise _invalid_report(f"duplicate field {field}")
        value = body[present[0]] if present else None
        if field in _NUMBER_FIELDS:
            raw[field] = _number(field, value)
        elif present and field in _REQUIRED_DEFAULTS and value is None:
            raise _invalid_report(f"{field} is null")
        elif value is None:
            raw[field] = _REQUIRED_DEFAULTS.get(field)
        elif isinstance(value, str):
            raw[field] = value
        else:
            raise _invalid_report(f"{field} is not a string")
    raw["other"] = {k: v for k, v in body.items() if k not in _KNOWN_NAMES}
    return raw


def _first_token(value: str) -> str:
    return value.split(" ", 1)[0]


def _effective_directive(raw: dict[str, Any]) -> str:
    # Firefox sends no effective-directive: fall back to the violated one.
    for candidate in (raw["effective_directive"], raw["violated_directive"]):
        if candidate is not None and _first_token(candidate) in CSP_DIRECTIVES:
            return _first_token(candidate)
    raise _invalid_report("no known CSP directive")


_INLINE_MESSAGES: Final = {
    "child-src": "Blocked inline 'child'",
    "connect-src": "Blocked inline 'connect'",
    "font-src": "Blocked inline 'font'",
    "img-src": "Blocked inline 'image'",
    "manifest-src": "Blocked inline 'manifest'",
    "media-src": "Blocked inline 'media'",
    "object-src": "Blocked inline 'object'",
    "script-src-attr": "Blocked unsafe 'script' element",
    "script-src-elem": "Blocked inline script attribute",
    "style-src": "Blocked inline 'style'",
    "style-src-elem": "Blocked 'style' or 'link' element",
    "style-src-attr": "Blocked style attribute",
}
_FROM_MESSAGES: Final = {
    "child-src": "Blocked 'child' from '{}'",
    "connect-src": "Blocked 'connect' from '{}'",
    "font-src": "Blocked 'font' from '{}'",
    "form-action": "Blocked 'form' action to '{}'",
    "img-src": "Blocked 'image' from '{}'",
    "manifest-src": "Blocked 'manifest' from '{}'",
    "media-src": "Blocked 'media' from '{}'",
    "object-src": "Blocked 'object' from '{}'",
    "script-src": "Blocked 'script' from '{}'",
    "script-src-attr": "Blocked inline script attribute from '{}'",
    "script-src-elem": "Blocked 'script' from '{}'",
    "style-src": "Blocked 'style' from '{}'",
    "style-src-elem": "Blocked 'style' from '{}'",
    "style-src-attr": "Blocked style attribute from '{}'",
}


def _message(raw: dict[str, Any], directive: str) -> str:
    blocked: str = raw["blocked_uri"]
    if _is_local(blocked):
        if directive == "script-src":
            violated: str = raw["violated_directive"]
            if "'unsafe-inline'" in violated:
                return "Blocked unsafe inline 'script'"
            if "'unsafe-eval'" in violated:
                return "Blocked unsafe eval() 'script'"
            return "Blocked unsafe (eval() or inline) 'script'"
        return _INLINE_MESSAGES.get(directive, f"Blocked inline '{directive}'")
    uri = _normalize_uri(blocked)
    template = _FROM_MESSAGES.get(directive)
    return template.format(uri) if template else f"Blocked '{directive}' from '{uri}'"


_KEYWORDS: Final = frozenset({"'none'", "'self'", "'unsafe-inline'", "'unsafe-eval'"})
_SCHEMED: Final = ("data:", "mediastream:", "blob:", "filesystem:", "http:", "https:", "file:")
_ASCII_WHITESPACE: Final = re.compile(r"[ \t\n\x0c\r]+")


def _culprit_value(value: str, document: str, document_uri: str) -> str:
    """A source of the violated directive, with the document's own origin as ``'self'``."""
    if value in _KEYWORDS:
        return value
    if value.startswith(_SCHEMED):
        # Firefox spells out 'self' as the document's origin: turn it back.
        return "'self'" if document == _normalize_uri(value) else value
    if value == document:
        return "'self'"
    scheme, colon, _ = document_uri.partition(":")
    if not colon or scheme in ("http", "https"):
        return value
    return _unsplit(scheme, value)


def _culprit(raw: dict[str, Any]) -> str:
    bits = [bit for bit in _ASCII_WHITESPACE.split(raw["violated_directive"]) if bit]
    if not bits:
        return ""
    document_uri: str = raw["document_uri"] or ""
    document = _normalize_uri(document_uri)
    return " ".join([bits[0], *(_culprit_value(b, document, document_uri) for b in bits[1:])])


def _tags(raw: dict[str, Any], directive: str) -> list[list[str]]:
    blocked: str = raw["blocked_uri"]
    sanitized = blocked
    if blocked.startswith("https://api.stripe.com/"):
        # Stripe puts card data into query strings; tags are not scrubbed like fields.
        sanitized = re.split(r"[#?]", blocked, maxsplit=1)[0]
    tags = [["effective-directive", directive], ["blocked-uri", sanitized]]
    url = _parse_url(blocked)
    if url is not None and url.scheme in ("http", "https") and url.host:
        tags.append(["blocked-host", url.host])
    return tags


def _request(raw: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {}
    if raw["document_uri"] is not None:
        request["url"] = raw["document_uri"]
    if raw["referrer"]:
        request["headers"] = [["Referer", raw["referrer"]]]
    return request


def _csp_interface(raw: dict[str, Any], directive: str) -> dict[str, Any]:
    csp: dict[str, Any] = {"effective_directive": directive}
    for field in _ALIASES:
        if field != "effective_directive" and raw[field] is not None:
            csp[field] = raw[field]
    csp.update(raw["other"])
    return csp


def _report_kind(report: dict[str, Any]) -> str | None:
    """``csp``, ``unsupported`` (another Reporting API type) or None (no known report)."""
    report_type = report.get("type")
    if report_type is not None and not isinstance(report_type, str):
        raise SecurityReportError("invalid_json", "report type is not a string")
    if report.get("csp-report") is not None or report_type == "csp-violation":
        return "csp"
    if report_type is not None:
        return "unsupported"
    return None


def _csp_body(report: dict[str, Any]) -> dict[str, Any]:
    """The report body: ``csp-report`` (report-uri) else ``body`` (Reporting API)."""
    error: SecurityReportError | None = None
    for key in ("csp-report", "body"):
        if key not in report:
            continue
        try:
            return _read_raw(report[key])
        except SecurityReportError as exc:
            error = error or exc
    raise error or _invalid_report("the report has no body")


def event_from_security_report(
    payload: bytes,
    *,
    release: str | None = None,
    environment: str | None = None,
    origin: str | None = None,
) -> dict[str, Any]:
    """Turn one raw security report (JSON bytes) into a ``csp`` event; raises SecurityReportError.

    ``release`` and ``environment`` come from the report URL's ``sentry_release`` and
    ``sentry_environment``; ``origin`` is the request's ``Origin``, added as a header.
    """
    try:
        report = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise SecurityReportError("invalid_json", str(exc)) from None
    if not isinstance(report, dict):
        raise SecurityReportError("invalid_json", "the report is not a JSON object")
    kind = _report_kind(report)
    if kind is None:
        raise SecurityReportError("security_report_type", "not a known security report")
    if kind == "unsupported":
        raise SecurityReportError(
            "invalid-csp", f"unsupported report type {report['type']!r}", filtered=True
        )
    raw = _csp_body(report)
    directive = _effective_directive(raw)
    request = _request(raw)
    event: dict[str, Any] = {
        "type": "csp",
        "logentry": {"formatted": _message(raw, directive)},
        "culprit": _culprit(raw),
        "tags": _tags(raw, directive),
        "request": request,
        "csp": _csp_interface(raw, directive),
    }
    if release is not None:
        event["release"] = release
    if environment is not None:
        event["environment"] = environment
    origin_value = origin_url(origin) if origin is not None else None
    if origin_value is not None:
        # The only header so far is ``Referer``: the origin goes after it.
        request.setdefault("headers", []).append(["Origin", origin_value])
    return event


def check_security_event(event: dict[str, Any]) -> None:
    """Accept an already classified security event (a ``security`` item), or raise.

    Its declared ``type`` is dropped (normalization infers ``csp`` again), so that a security
    item cannot become an event of another category. Only CSP reports remain supported:
    anything without a ``csp`` interface, such as the removed ``hpkp``, ``expectct`` and
    ``expectstaple`` reports, is rejected with reason ``security_report_type``.
    """
    declared = event.pop("type", None)
    exception = event.get("exception")
    if isinstance(exception, dict):
        exception = exception.get("values")
    csp = event.get("csp", event.get("sentry.interfaces.Csp"))
    # Normalization infers the type: with exceptions it would be an error, not a report.
    if (isinstance(exception, list) and exception) or not isinstance(csp, dict):
        raise SecurityReportError(
            "security_report_type", f"security event of type {declared!r} is no CSP report"
        )


def _has_header(headers: list[Any], name: str) -> bool:
    lowered = name.lower()
    return any(
        isinstance(pair, list) and pair and isinstance(pair[0], str) and pair[0].lower() == lowered
        for pair in headers
    )


def normalize_security_report(
    event: dict[str, Any], client_ip: str | None, user_agent: str | None
) -> None:
    """Relay's security-report normalization step; a no-op for events without ``csp``.

    The logger defaults to ``csp``, the reporting client's IP becomes the user's, and the
    browser's ``User-Agent`` (the report's sender) joins the request headers so that the
    browser and OS contexts can be derived from it.
    """
    if event.get("csp") is None:
        return
    if event.get("logger") is None:
        event["logger"] = "csp"
    if client_ip is not None:
        user = event.get("user")
        if not isinstance(user, dict):
            user = event["user"] = {}
        user["ip_address"] = client_ip
    if user_agent:
        request = event.get("request")
        if not isinstance(request, dict):
            request = event["request"] = {}
        headers = request.get("headers")
        if not isinstance(headers, list):
            headers = request["headers"] = []
        if not _has_header(headers, "User-Agent"):
            headers.append(["User-Agent", user_agent])
