"""Bodies of the legacy ``store`` endpoint: base64/zlib framing and non-standard JSON.

Old SDKs send events in forms the envelope endpoint never sees:

* raven-js and old Node clients send the JSON base64-encoded, optionally zlib-compressed
  inside (``eF6rVspN...`` is base64 of a zlib stream). Relay's rule: a body starting with ``{``
  is JSON; otherwise it is base64, and if the decoded bytes do not start with ``{`` they are a
  zlib stream, inflated up to the event size limit.
* raven-python and sentry-python (before it switched to envelopes) serialize floats with
  Python's ``json``, which writes ``NaN``, ``Infinity`` and ``-Infinity``. Relay rewrites those
  tokens to ``0`` (outside of strings) before parsing, for these clients only.
"""

from __future__ import annotations

import binascii
import re
import zlib
from typing import Final

from relay.errors import BadRequest, PayloadTooLarge

__all__ = ["decode_store_body", "is_legacy_python_client", "translate_python_json"]


class InvalidBody(BadRequest):
    """The store body is neither JSON nor base64(+zlib) of it (``BadStoreRequest::InvalidBody``)."""

    reason = "invalid_body"


def decode_store_body(body: bytes, limit: int) -> bytes:
    """Undo the base64 (and zlib) framing of a store body; JSON bodies pass unchanged.

    Raises :class:`InvalidBody` (400) if the framing is broken and
    :class:`~relay.errors.PayloadTooLarge` if the inflated event exceeds ``limit`` bytes.
    """
    if not body or body[:1] == b"{":
        return body
    try:
        binary = binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error as exc:
        raise InvalidBody("invalid request body") from exc
    if binary[:1] == b"{":
        return binary
    decoder = zlib.decompressobj()
    try:
        inflated = decoder.decompress(binary, limit + 1)
    except zlib.error as exc:
        raise InvalidBody("invalid request body") from exc
    if len(inflated) > limit:
        raise PayloadTooLarge("request content exceeded size limits")
    return inflated


_LEGACY_PYTHON_PREFIXES: Final = ("raven-python/", "sentry-python/")


def is_legacy_python_client(client: str | None) -> bool:
    """Whether the ``sentry_client`` is one whose JSON may contain NaN and Infinity."""
    return client is not None and client.startswith(_LEGACY_PYTHON_PREFIXES)


# A JSON string literal (kept as is) or one of Python's non-finite float tokens.
_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|-?Infinity|NaN', re.DOTALL)


def _replace(match: re.Match[bytes]) -> bytes:
    token = match.group()
    if token[:1] == b'"':
        return token
    # Padded so that byte offsets (and error positions) stay as sent.
    return b"0".ljust(len(token))


def translate_python_json(data: bytes) -> bytes:
    """Replace ``NaN``, ``Infinity`` and ``-Infinity`` outside strings with ``0``."""
    if b"NaN" not in data and b"Infinity" not in data:
        return data
    return _TOKENS.sub(_replace, data)
