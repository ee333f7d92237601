"""The error reporter against a small Sentry stand-in (aiohttp on 127.0.0.1:0), in-process."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from relay import __version__
from relay.config import config_from_dict
from relay.protocol.auth import parse_auth_header
from relay.protocol.envelope import parse_envelope
from relay.server.app import RelayApp
from relay.server.self_report import ReportHandler, SelfReporter

PUBLIC_KEY = "a" * 32


@dataclass
class Received:
    headers: dict[str, str]
    envelope_headers: dict[str, Any]
    event: dict[str, Any]


@dataclass
class FakeSentry:
    """Collects envelopes POSTed to ``/api/666/envelope/``; answers ``status`` after ``delay``."""

    port: int = 0
    status: int = 200
    delay: float = 0.0
    retry_after: str | None = None
    received: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    hits: int = 0

    @property
    def dsn(self) -> str:
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self.port}/666"

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        envelope = parse_envelope(body)
        assert len(envelope.items) == 1
        assert envelope.items[0].type == "event"
        event = json.loads(envelope.items[0].payload)
        await self.received.put(Received(dict(request.headers), envelope.headers, event))
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return web.json_response({"id": event["event_id"]}, status=self.status, headers=headers)

    async def next_event(self, timeout: float = 5.0) -> Received:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def events_until(
        self, done: Callable[[list[str]], bool], timeout: float = 10.0
    ) -> list[str]:
        """Collect the events' formatted messages until ``done(messages)``."""
        messages: list[str] = []
        async with asyncio.timeout(timeout):
            while not done(messages):
                event = (await self.received.get()).event
                messages.append(event["message"]["formatted"])
        return messages


@pytest_asyncio.fixture(loop_scope="session")
async def sentry() -> AsyncIterator[FakeSentry]:
    fake = FakeSentry()
    app = web.Application()
    app.router.add_post("/api/666/envelope/", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake
    await runner.cleanup()


@pytest.fixture
def logger() -> logging.Logger:
    """A fresh logger under ``relay``, like the relay's own module loggers."""
    return logging.getLogger(f"relay.test_self_report.{uuid.uuid4().hex[:8]}")


@pytest_asyncio.fixture(loop_scope="session")
async def reporter(sentry: FakeSentry, logger: logging.Logger) -> AsyncIterator[SelfReporter]:
    reporter = SelfReporter(sentry.dsn, environment="test", tags={"region": "eu"})
    await reporter.start(logger)
    yield reporter
    await reporter.stop()


async def test_error_is_reported(
    sentry: FakeSentry, reporter: SelfReporter, logger: logging.Logger
) -> None:
    logger.error("Not enough memory, %d / %d (%d >= %d)", 100, 1000, 100, 42)
    got = await sentry.next_event()

    auth = parse_auth_header(got.headers["X-Sentry-Auth"])
    assert auth.public_key == PUBLIC_KEY
    assert auth.protocol_version == 7
    assert got.headers["Content-Type"] == "application/x-sentry-envelope"
    assert got.envelope_headers["event_id"] == got.event["event_id"]
    assert "sent_at" in got.envelope_headers
    assert "dsn" not in got.envelope_headers

    event = got.event
    assert event["level"] == "error"
    assert event["logger"] == logger.name
    assert event["release"] == f"relay@{__version__}"
    assert event["environment"] == "test"
    assert event["tags"] == {"region": "eu"}
    assert event["message"] == {
        "formatted": "Not enough memory, 100 / 1000 (100 >= 42)",
        "message": "Not enough memory, %d / %d (%d >= %d)",
        "params": ["100", "1000", "100", "42"],
    }
    assert abs(event["timestamp"] - time.time()) < 60
    assert "exception" not in event
    assert reporter.sent == 1


async def test_exception_is_reported_without_locals(
    sentry: FakeSentry, reporter: SelfReporter, logger: logging.Logger
) -> None:
    password = "hunter2"
    try:
        try:
            raise KeyError(password[:0] + "project")
        except KeyError as exc:
            raise RuntimeError("fetch failed") from exc
    except RuntimeError:
        logger.exception("project config fetch failed")
    event = (await sentry.next_event()).event

    assert event["message"] == {"formatted": "project config fetch failed"}
    values = event["exception"]["values"]
    assert [(v["type"], v["value"]) for v in values] == [
        ("KeyError", "'project'"),
        ("RuntimeError", "fetch failed"),
    ]
    frame = values[-1]["stacktrace"]["frames"][-1]
    assert frame["function"] == "test_exception_is_reported_without_locals"
    assert frame["lineno"] > 0
    assert "hunter2" not in json.dumps(event)


async def test_only_errors_are_reported(
    sentry: FakeSentry, reporter: SelfReporter, logger: logging.Logger
) -> None:
    logger.warning("a warning")
    logger.info("some info")
    logging.getLogger("aiohttp.server").error("not ours")
    logger.critical("the last straw")
    event = (await sentry.next_event()).event
    assert event["message"]["formatted"] == "the last straw"
    assert event["level"] == "fatal"
    await asyncio.sleep(0.05)
    assert sentry.received.empty()


async def test_errors_from_other_threads(
    sentry: FakeSentry, reporter: SelfReporter, logger: logging.Logger
) -> None:
    thread = threading.Thread(target=logger.error, args=("from a thread",))
    thread.start()
    thread.join()
    event = (await sentry.next_event()).event
    assert event["message"]["formatted"] == "from a thread"


async def test_queue_is_bounded_and_logging_never_waits(
    sentry: FakeSentry, logger: logging.Logger
) -> None:
    sentry.delay = 0.5
    reporter = SelfReporter(sentry.dsn, max_queue=3)
    await reporter.start(logger)
    try:
        started = time.monotonic()
        for i in range(50):
            logger.error("error %d", i)
        assert time.monotonic() - started < 0.5
        # One is being sent, three wait; the rest were dropped.
        await asyncio.sleep(0.1)
        assert reporter.dropped >= 46
    finally:
        sentry.delay = 0.0
        await reporter.stop(timeout=5)
    assert reporter.sent + reporter.dropped == 50
    assert sentry.hits == reporter.sent
    while not sentry.received.empty():
        sentry.received.get_nowait()


async def test_rate_limit_pauses_sending(sentry: FakeSentry, logger: logging.Logger) -> None:
    sentry.status, sentry.retry_after = 429, "60"
    reporter = SelfReporter(sentry.dsn)
    await reporter.start(logger)
    try:
        logger.error("first")
        await sentry.next_event()
        sentry.status, sentry.retry_after = 200, None
        logger.error("second")
        await asyncio.sleep(0.1)
        assert sentry.received.empty()  # not even attempted while paused
    finally:
        await reporter.stop()
    assert (reporter.sent, reporter.dropped, sentry.hits) == (0, 2, 1)


async def test_unreachable_dsn_neither_raises_nor_blocks(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = SelfReporter(f"http://{PUBLIC_KEY}:s3cret@127.0.0.1:9/666", send_timeout=1)
    await reporter.start(logger)
    logger.error("one")
    logger.error("two")
    started = time.monotonic()
    await reporter.stop(timeout=3)
    assert time.monotonic() - started < 3.5
    assert reporter.failed + reporter.dropped == 2
    assert "s3cret" not in caplog.text
    assert PUBLIC_KEY not in caplog.text
    # The handler is gone: nothing is captured after stop.
    logger.error("three")
    assert reporter.failed + reporter.dropped == 2


async def test_relay_reports_failing_memory_probes(sentry: FakeSentry) -> None:
    """A relay whose memory watermark is exceeded is not ready and says why, as Relay does."""
    config = config_from_dict({
        "relay": {"mode": "proxy", "host": "127.0.0.1", "port": 0,
                  "upstream": "http://127.0.0.1:9/"},
        "sentry": {"dsn": sentry.dsn, "enabled": True},
        "health": {"max_memory_bytes": 42, "refresh_interval_ms": 100},
    })  # fmt: skip
    app = RelayApp(config, None)
    await app.start()
    try:
        url = f"http://127.0.0.1:{app.ports[0]}/api/relay/healthcheck/"
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "ready/") as resp:
                assert resp.status == 503
                assert await resp.json() == {"is_healthy": False}
            async with session.get(url + "live/") as resp:
                assert resp.status == 200

        def complete(messages: list[str]) -> bool:
            text = "\n".join(messages)
            return (
                "Not enough memory" in text
                and ">= 42)" in text
                and "Health check probe 'system memory' failed" in text
                and "Health check probe 'spool health' failed" in text
            )

        await sentry.events_until(complete)
    finally:
        await app.stop()
    assert app.reporter is None
    assert not any(isinstance(h, ReportHandler) for h in logging.getLogger("relay").handlers)
    while not sentry.received.empty():
        sentry.received.get_nowait()


async def test_relay_without_sentry_has_no_reporter() -> None:
    config = config_from_dict({
        "relay": {"mode": "proxy", "host": "127.0.0.1", "port": 0,
                  "upstream": "http://127.0.0.1:9/"},
        "sentry": {"dsn": "http://key@127.0.0.1:9/1", "enabled": False},
    })  # fmt: skip
    app = RelayApp(config, None)
    await app.start()
    try:
        assert app.reporter is None
        assert app.is_ready()
    finally:
        await app.stop()
