"""Keeps secrets and personal data out of log output.

A log line may quote a URL, a request path or an exception from a client library. The
:class:`RedactingFilter` rewrites every record before it is formatted:

- literal secrets registered at start-up (the relay's secret key, the ``sentry.dsn``,
  passwords of the Redis URL and of ``kafka_config``) become ``[redacted]``;
- URL credentials (``scheme://user:pass@host``) and ``sentry_key=``/``sentry_secret=``/
  ``password=``-style parameters lose their values;
- project keys (the 32 hex digits of a DSN) are shortened to their first 8 digits, enough
  to tell projects apart, too little to send data;
- relay secret keys (86 base64url characters), e-mail addresses and card numbers are
  replaced.

Event ids travel in a structured field (``extra={"event_id": ...}``), which is not
rewritten: a dropped envelope stays traceable by its id.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from relay.config import Config
    from relay.protocol.keys import Credentials

REDACTED = "[redacted]"

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_PARAMS = re.compile(
    r"(?P<name>sentry_key|sentry_secret|secret_key|secret|password|passwd|token|api_key)"
    r"(?P<sep>\"?\s*[=:]\s*\"?)(?P<value>[^\s,&\"'}]+)",
    re.IGNORECASE,
)
_PROJECT_KEY = re.compile(r"(?<![0-9a-fA-F])([0-9a-f]{8})[0-9a-f]{24}(?![0-9a-fA-F])")
_RELAY_SECRET = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{86}(?![A-Za-z0-9_-])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")

_lock = threading.Lock()
_secrets: set[str] = set()
_secrets_re: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Never log ``value`` (and, for a URL, its password); short values are ignored."""
    global _secrets_re
    if not value:
        return
    values = {value}
    if "://" in value:
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is not None:
            values.update(v for v in (parts.password, parts.username) if v)
    with _lock:
        _secrets.update(v for v in values if len(v) >= 6)
        if _secrets:
            ordered = sorted(_secrets, key=len, reverse=True)
            _secrets_re = re.compile("|".join(re.escape(v) for v in ordered))


def register_secrets(values: Iterable[str | None]) -> None:
    """:func:`register_secret` for several values."""
    for value in values:
        register_secret(value)


def redact(text: str) -> str:
    """``text`` without secrets, credentials, project keys or personal data."""
    pattern = _secrets_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _URL_CREDENTIALS.sub(rf"\g<scheme>{REDACTED}@", text)
    text = _PARAMS.sub(rf"\g<name>\g<sep>{REDACTED}", text)
    text = _RELAY_SECRET.sub(REDACTED, text)
    text = _PROJECT_KEY.sub(r"\1…", text)
    text = _EMAIL.sub("[email]", text)
    return _CARD.sub(_card, text)


def _card(match: re.Match[str]) -> str:
    # Only numbers that pass the Luhn check: ids and timestamps of that length stay.
    digits = [int(c) for c in match.group(0) if c.isdigit()]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return "[card]" if total % 10 == 0 else match.group(0)


_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, exception and stack text with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def config_secrets(config: Config, credentials: Credentials | None = None) -> list[str]:
    """The secrets a config (and the relay's credentials) hold, for :func:`register_secrets`."""
    found: list[str | None] = [config.sentry.dsn, config.processing.redis_url]
    found += [
        str(p.value)
        for p in config.processing.kafka_config
        if any(word in p.name for word in ("password", "secret", "sasl.oauthbearer"))
    ]
    if credentials is not None:
        found.append(credentials.secret_key)
    return [value for value in found if value]
