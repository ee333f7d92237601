"""Request normalization: method, URL split into query/fragment, body parsing, cookies."""

from __future__ import annotations

import json
import re
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from relay.normalize.containers import parse_cookies, parse_query
from relay.normalize.meta import Meta, add_error, child, has_errors

_METHOD: Final = re.compile(r"[A-Z\-_]{3,32}")
#: An absolute URL's scheme (RFC 3986), which decides how the URL is split.
_SCHEME: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*:")


def _header(headers: Any, name: str) -> str | None:
    if type(headers) is not list:
        return None
    for pair in headers:
        if pair is not None and pair[0] == name:
            return pair[1]  # type: ignore[no-any-return]
    return None


def content_type_of(headers: Any) -> str | None:
    """The media type of a ``Content-Type`` header, parameters stripped."""
    value = _header(headers, "Content-Type")
    return value.split(";", 1)[0] if value is not None else None


def _normalize_url(request: dict[str, Any]) -> None:
    url = request.get("url")
    if url is None:
        return
    if url.endswith("\u2026"):
        url = url[:-1] + "..."
    parsed = None
    if _SCHEME.match(url):
        try:
            parsed = urlsplit(url)
        except ValueError:
            parsed = None
    if parsed is not None and parsed.scheme and (parsed.netloc or "://" not in url):
        if request.get("query_string") is None and parsed.query:
            query = [[k, v] for k, v in parse_qsl(parsed.query, keep_blank_values=True)]
            if query:
                request["query_string"] = query
        if request.get("fragment") is None and parsed.fragment:
            request["fragment"] = parsed.fragment
        url = urlunsplit((parsed.scheme, parsed.netloc, parsed.path or "/", "", ""))
        if parsed.netloc and not parsed.path:
            url = urlunsplit((parsed.scheme, parsed.netloc, "/", "", ""))
    else:
        hash_at = url.find("#")
        if hash_at >= 0:
            fragment = url[hash_at + 1 :]
            if fragment and request.get("fragment") is None:
                request["fragment"] = fragment
            url = url[:hash_at]
        query_at = url.find("?")
        if query_at >= 0:
            query_string = url[query_at + 1 :]
            if query_string and request.get("query_string") is None:
                query = parse_query(query_string)
                if query:
                    request["query_string"] = query
            url = url[:query_at]
    request["url"] = url


def _urlencoded(raw: str) -> dict[str, str] | None:
    if not raw.isascii() or raw.startswith(("<?xml", "{", "[")):
        return None
    pairs = parse_qsl(raw, keep_blank_values=True)
    if not pairs:
        return None
    data: dict[str, str] = {}
    for k, v in pairs:
        data[k] = v
    if len(data) > 1 or next(iter(data.values())) not in ("", "="):
        return data
    return None


def _normalize_data(request: dict[str, Any]) -> None:
    raw = request.get("data")
    if type(raw) is str:
        try:
            request["data"] = json.loads(raw)
            request["inferred_content_type"] = "application/json"
            return
        except ValueError:
            form = _urlencoded(raw)
            if form is not None:
                request["data"] = form
                request["inferred_content_type"] = "application/x-www-form-urlencoded"
                return
    request["inferred_content_type"] = content_type_of(request.get("headers"))


def _take_cookie_header(holder: dict[str, Any], header: str) -> None:
    headers = holder.get("headers")
    if type(headers) is not list:
        return
    if holder.get("cookies") is not None:
        holder["headers"] = [p for p in headers if p is None or p[0] != header]
        return
    raw = _header(headers, header)
    if raw is None:
        return
    cookies, errors = parse_cookies(raw)
    # Relay takes the header over only when every cookie in it parses.
    if not errors:
        holder["cookies"] = cookies
        holder["headers"] = [p for p in headers if p is None or p[0] != header]


_ASCII_UPPER: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def normalize_request(event: dict[str, Any], meta: Meta) -> None:
    """Everything Relay derives from ``request``."""
    request = event.get("request")
    if type(request) is not dict:
        return
    method = request.get("method")
    if method is not None:
        # Only ASCII letters are uppercased (Rust's ``make_ascii_uppercase``).
        method = method.translate(_ASCII_UPPER)
        request["method"] = method
        req_meta = meta.get("request") or {}
        if not has_errors(req_meta.get("method")) and not _METHOD.fullmatch(method):
            add_error(child(child(meta, "request"), "method"), "invalid_data", method)
            request["method"] = None
    _normalize_url(request)
    _normalize_data(request)
    _take_cookie_header(request, "Cookie")


def normalize_response(response: dict[str, Any]) -> None:
    """The response context gets the same body parsing and Set-Cookie extraction."""
    raw = response.get("data")
    parsed = False
    if type(raw) is str:
        try:
            response["data"] = json.loads(raw)
            response["inferred_content_type"] = "application/json"
            parsed = True
        except ValueError:
            pass
    if not parsed:
        response["inferred_content_type"] = content_type_of(response.get("headers"))
    _take_cookie_header(response, "Set-Cookie")
