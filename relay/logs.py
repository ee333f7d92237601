"""Logging set-up with Relay's ``logging.level`` and ``logging.format`` values."""

from __future__ import annotations

import json
import logging
import sys
import time

from relay.telemetry.redact import RedactingFilter

_LEVELS = {
    "off": logging.CRITICAL + 10,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}


#: ``extra`` fields written with a record (``log.debug(..., extra={"event_id": ...})``).
CONTEXT_FIELDS = ("event_id", "project_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """Human-readable lines; context fields are appended as ``key=value``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line += f" {field}={value}"
        return line


def setup_logging(level: str, fmt: str) -> None:
    """Configure the root logger once, writing to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif fmt == "pretty" or (fmt == "auto" and sys.stderr.isatty()):
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    else:
        handler.setFormatter(TextFormatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    # Every record passes the redaction first: no secret or personal data reaches the output.
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # Third-party clients are chatty at debug level and may echo payloads; keep them quiet.
    for noisy in ("aiokafka", "kafka", "asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
