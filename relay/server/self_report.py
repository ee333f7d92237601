"""Reports the relay's own errors to a Sentry project (``sentry.dsn``), as Relay does.

A :class:`logging.Handler` on the ``relay`` logger turns every record at ERROR or above into
an event (message, level, logger, timestamp, release ``relay@<version>``, the exception if
any) and puts it on a bounded queue; a background task sends each as an envelope to the DSN's
envelope endpoint. Logging never waits for the network and never raises: when the queue is
full, or the project rate-limits us, events are dropped and counted.

Only our own loggers report: a third-party library's ERROR (aiohttp logs malformed client
requests that way) is not a relay error. The DSN is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from relay import __version__
from relay.config import SentrySection
from relay.protocol.auth import Auth, Dsn, parse_dsn
from relay.protocol.envelope import envelope_from_event

log = logging.getLogger(__name__)

#: Events waiting to be sent; more are dropped.
DEFAULT_MAX_QUEUE = 100
#: Per-request budget for sending one event.
DEFAULT_SEND_TIMEOUT = 5.0
#: Sentry truncates log messages at this many characters; we do it before sending.
MAX_MESSAGE_CHARS = 8192
#: Innermost stack frames kept per exception.
MAX_FRAMES = 50
#: How long to pause after a 429 without a usable Retry-After.
DEFAULT_RETRY_AFTER = 60.0
MAX_RETRY_AFTER = 3600.0

SDK_NAME = "sentry-relay-py.self-report"
#: Frames from files under this directory are the relay's own ("in app").
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1]) + "/"
_LEVELS = ((logging.CRITICAL, "fatal"), (logging.ERROR, "error"), (logging.WARNING, "warning"))


def _level_name(levelno: int) -> str:
    for threshold, name in _LEVELS:
        if levelno >= threshold:
            return name
    return "info"


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def _exception_values(exc_info: tuple[Any, Any, Any]) -> list[dict[str, Any]]:
    """Sentry's ``exception.values`` for an exception and its causes, outermost last."""
    values: list[dict[str, Any]] = []
    exc: BaseException | None = exc_info[1]
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(values) < 10:
        seen.add(id(exc))
        values.append(_exception_value(exc, exc.__traceback__))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    values.reverse()
    return values


def _exception_value(exc: BaseException, tb: TracebackType | None) -> dict[str, Any]:
    # Frames carry file, function and line only: never local variables, which may hold secrets.
    frames = [
        {
            "filename": frame.filename,
            "function": frame.name,
            "lineno": frame.lineno,
            "in_app": frame.filename.startswith(_PACKAGE_DIR),
        }
        for frame in traceback.extract_tb(tb)[-MAX_FRAMES:]
    ]
    value: dict[str, Any] = {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "value": _truncate(str(exc)),
    }
    if frames:
        value["stacktrace"] = {"frames": frames}
    return value


class SelfReporter:
    """Sends ERROR log records of the relay to ``dsn`` as Sentry events, in the background."""

    def __init__(
        self,
        dsn: str,
        *,
        release: str = f"relay@{__version__}",
        environment: str | None = None,
        server_name: str | None = None,
        tags: dict[str, str] | None = None,
        level: int = logging.ERROR,
        max_queue: int = DEFAULT_MAX_QUEUE,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
    ) -> None:
        self.dsn: Dsn = parse_dsn(dsn)
        self.release = release
        self.environment = environment
        self.server_name = server_name
        self.tags = dict(tags or {})
        self.send_timeout = send_timeout
        self.handler = ReportHandler(self, level)
        self.url = self.dsn.api_url("envelope")
        self._auth = Auth(
            public_key=self.dsn.public_key,
            secret_key=self.dsn.secret_key,
            version=7,
            client=f"{SDK_NAME}/{__version__}",
        ).to_header()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        #: Whether the last send failed: failures are logged once, not per event.
        self._failing = False
        self._logger: logging.Logger | None = None
        #: Events sent (2xx), dropped (queue full, rate-limited, not running) or failed to send.
        self.sent = 0
        self.dropped = 0
        self.failed = 0

    @classmethod
    def from_config(cls, sentry: SentrySection) -> SelfReporter | None:
        """A reporter for ``sentry.dsn`` if reporting is enabled, else None."""
        dsn = sentry.enabled_dsn
        if dsn is None:
            return None
        return cls(
            dsn,
            environment=sentry.environment,
            server_name=sentry.server_name,
            tags=sentry.default_tags,
        )

    # -- capture (any thread) ------------------------------------------------------------

    def build_event(self, record: logging.LogRecord) -> dict[str, Any]:
        """The Sentry event for a log record."""
        formatted = _truncate(record.getMessage())
        message: dict[str, Any] = {"formatted": formatted}
        if record.args and isinstance(record.args, tuple):
            # The template and its parameters let Sentry group "Not enough memory, ..." as one.
            message["message"] = _truncate(str(record.msg))
            message["params"] = [_truncate(str(arg)) for arg in record.args]
        event: dict[str, Any] = {
            "event_id": uuid.uuid4().hex,
            "timestamp": record.created,
            "platform": "python",
            "level": _level_name(record.levelno),
            "logger": record.name,
            "message": message,
            "release": self.release,
            "sdk": {"name": SDK_NAME, "version": __version__},
            "extra": {"thread": record.threadName, "source": f"{record.pathname}:{record.lineno}"},
        }
        if self.environment:
            event["environment"] = self.environment
        if self.server_name:
            event["server_name"] = self.server_name
        if self.tags:
            event["tags"] = dict(self.tags)
        if record.exc_info and record.exc_info[1] is not None:
            event["exception"] = {"values": _exception_values(record.exc_info)}
        return event

    def capture(self, record: logging.LogRecord) -> None:
        """Queue an event for ``record``; drops it (counted) when that is not possible."""
        loop = self._loop
        if loop is None or self._task is None:
            self.dropped += 1
            return
        event = self.build_event(record)
        if threading.get_ident() == self._loop_thread:
            self._enqueue(event)
            return
        try:
            loop.call_soon_threadsafe(self._enqueue, event)
        except RuntimeError:  # the loop is closed
            self.dropped += 1

    def _enqueue(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    # -- lifecycle (event loop) ------------------------------------------------------------

    async def start(self, logger: logging.Logger | None = None) -> None:
        """Start sending and attach the handler to ``logger`` (default: the ``relay`` logger)."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.send_timeout),
            headers={"User-Agent": f"sentry-relay-py/{__version__}"},
        )
        self._task = asyncio.create_task(self._run(), name="self-report")
        self._logger = logger if logger is not None else logging.getLogger("relay")
        self._logger.addHandler(self.handler)

    async def stop(self, timeout: float = 2.0) -> None:
        """Detach the handler, send what is queued within ``timeout``, then close."""
        if self._logger is not None:
            self._logger.removeHandler(self.handler)
            self._logger = None
        task, self._task = self._task, None
        if task is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            pass
        task.cancel()
        await asyncio.wait([task])
        self.dropped += self._queue.qsize()
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.dropped or self.failed:
            log.warning(
                "error reporting: %d events sent, %d dropped, %d failed to send",
                self.sent, self.dropped, self.failed,
            )  # fmt: skip

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                if time.monotonic() < self._paused_until:
                    self.dropped += 1  # rate-limited by the project, as Sentry's SDKs drop
                else:
                    await self._send(event)
            except Exception as exc:
                # Never let a bad event stop the reporter (and never report about reporting).
                self._failed(f"could not send an event: {exc!r}")
            finally:
                self._queue.task_done()

    async def _send(self, event: dict[str, Any]) -> None:
        assert self._session is not None
        sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        envelope = envelope_from_event(event, event["event_id"], {"sent_at": sent_at})
        headers = {
            "X-Sentry-Auth": self._auth,
            "Content-Type": "application/x-sentry-envelope",
        }
        try:
            async with self._session.post(
                self.url, data=envelope.serialize(), headers=headers
            ) as response:
                await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._failed(f"could not reach {self.dsn.host}: {exc!r}")
            return
        if 200 <= status < 300:
            self.sent += 1
            if self._failing:
                self._failing = False
                log.info("error reporting: %s accepts events again", self.dsn.host)
        elif status == 429:
            self.dropped += 1
            self._paused_until = time.monotonic() + _retry_after(retry_after)
            log.info("error reporting: rate-limited by %s", self.dsn.host)
        else:
            self._failed(f"{self.dsn.host} answered {status}")

    def _failed(self, reason: str) -> None:
        self.failed += 1
        # Warn on the first failure of a streak only: errors must not turn into log floods.
        log.log(logging.DEBUG if self._failing else logging.WARNING, "error reporting: %s", reason)
        self._failing = True


def _retry_after(value: str | None) -> float:
    try:
        delay = float(value) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        delay = DEFAULT_RETRY_AFTER
    return min(max(delay, 0.0), MAX_RETRY_AFTER)


class ReportHandler(logging.Handler):
    """Hands records at ``level`` or above to a :class:`SelfReporter`; never raises."""

    def __init__(self, reporter: SelfReporter, level: int = logging.ERROR) -> None:
        super().__init__(level)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        # The reporter's own records would loop back into it.
        if record.name == __name__:
            return
        try:
            self.reporter.capture(record)
        except Exception:
            self.reporter.dropped += 1
