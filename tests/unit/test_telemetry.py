"""The metrics registry: counters, gauges, histograms, exposition, merging, statsd, redaction."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest

from relay.config import MetricsSection
from relay.kafka.outcomes import OutcomeCode
from relay.protocol.items import DataCategory
from relay.server.statsd import StatsdSink
from relay.server.telemetry import drop_labels
from relay.telemetry.metrics import REGISTRY, upstream_route
from relay.telemetry.redact import RedactingFilter, redact, register_secret
from relay.telemetry.registry import OVERFLOW, Registry, merge_snapshots, render


def _registry() -> Registry:
    reg = Registry()
    reg.counter("t_requests_total", "Requests.", ("endpoint", "status"))
    reg.gauge("t_queue_bytes", "Bytes.", ("queue",))
    reg.gauge("t_oldest_seconds", "Age.", aggregation="max")
    reg.histogram("t_duration_seconds", "Duration.", buckets=(0.1, 1.0))
    return reg


def test_exposition_format() -> None:
    reg = _registry()
    counter = reg.get("t_requests_total")
    assert counter is not None
    reg.counter("t_plain_total", "Plain.").inc()
    counter.inc(2, "/api/{project_id}/envelope/", "200")  # type: ignore[attr-defined]
    counter.inc(1, 'we"ird\\', "500")  # type: ignore[attr-defined]
    reg.histogram("t_h", "H.", buckets=(0.1, 1.0)).observe(0.5)
    text = render(reg.snapshot())
    assert "# TYPE t_requests_total counter" in text
    assert 't_requests_total{endpoint="/api/{project_id}/envelope/",status="200"} 2' in text
    assert 't_requests_total{endpoint="we\\"ird\\\\",status="500"} 1' in text
    assert "t_plain_total 1\n" in text
    assert 't_h_bucket{le="0.1"} 0' in text
    assert 't_h_bucket{le="1"} 1' in text
    assert 't_h_bucket{le="+Inf"} 1' in text
    assert "t_h_sum 0.5" in text
    assert "t_h_count 1" in text
    assert text.endswith("\n")


def test_labels_are_bounded() -> None:
    reg = Registry()
    counter = reg.counter("t_total", "T.", ("path",), max_series=3)
    for i in range(10):
        counter.inc(1, f"/path/{i}")
    assert len(counter.collect()) == 4
    assert counter.value(OVERFLOW) == 7
    with pytest.raises(ValueError):
        counter.inc(1, "a", "b")
    with pytest.raises(ValueError):
        counter.inc(-1, "a")


def test_gauge_functions_and_merge_of_worker_snapshots() -> None:
    workers = []
    for n in range(3):
        reg = _registry()
        reg.get("t_requests_total").inc(n + 1, "/e", "200")  # type: ignore[union-attr]
        reg.get("t_queue_bytes").set_function(lambda n=n: 100.0 * n, "forward")  # type: ignore[union-attr]
        reg.get("t_oldest_seconds").set(float(n))  # type: ignore[union-attr]
        reg.get("t_duration_seconds").observe(0.05 * (n + 1))  # type: ignore[union-attr]
        # Snapshots are plain data: they survive a trip through JSON (or a pipe).
        workers.append(json.loads(json.dumps(reg.snapshot())))
    merged = {m["name"]: m for m in merge_snapshots(workers)}
    assert merged["t_requests_total"]["series"][0]["value"] == 6
    assert merged["t_queue_bytes"]["series"][0]["value"] == 300
    assert merged["t_oldest_seconds"]["series"][0]["value"] == 2  # max, not sum
    hist = merged["t_duration_seconds"]["series"][0]
    assert hist["value"] == 3 and hist["buckets"] == [2, 3, 3]  # le is inclusive: 0.1 <= 0.1
    assert 't_requests_total{endpoint="/e",status="200"} 6' in render(list(merged.values()))


def test_relay_metrics_are_registered() -> None:
    names = {m["name"] for m in REGISTRY.snapshot()}
    assert {
        "relay_requests_total",
        "relay_envelopes_accepted_total",
        "relay_items_dropped_total",
        "relay_queue_bytes",
        "relay_queue_oldest_seconds",
        "relay_upstream_request_duration_seconds",
        "relay_kafka_produce_total",
        "relay_project_cache_total",
        "relay_build_info",
    } <= names


def test_low_cardinality_labels() -> None:
    assert upstream_route("/api/42/envelope/") == "/api/{project_id}/envelope/"
    assert upstream_route("/api/0/relays/projectconfigs/?version=3") == (
        "/api/0/relays/projectconfigs/"
    )
    assert upstream_route("/api/42/some/forwarded/thing/") == "other"
    invalid, error = int(OutcomeCode.INVALID), int(DataCategory.ERROR)
    assert drop_labels(invalid, "project_id", error) == ("invalid", "project_id", "error")
    assert drop_labels(1, "Sampled:1,2", error)[1] == "sampled"
    assert drop_labels(5, "free text from a client!", error)[1] == "other"
    assert drop_labels(3, None, error)[1] == ""


async def test_statsd_sends_counter_deltas_gauges_and_timers() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    port = server.getsockname()[1]
    reg = _registry()
    config = MetricsSection(
        statsd=f"127.0.0.1:{port}", prefix="sentry.relay", default_tags={"env": "test"},
        hostname_tag="host", periodic_secs=0,
    )  # fmt: skip
    counter = reg.get("t_requests_total")
    counter.inc(5, "/e", "200")  # type: ignore[union-attr]
    sink = StatsdSink(config, reg, hostname="box")
    await sink.start()
    counter.inc(2, "/e", "200")  # type: ignore[union-attr]
    reg.get("t_queue_bytes").set(42, "kafka")  # type: ignore[union-attr]
    reg.get("t_duration_seconds").observe(0.25)  # type: ignore[union-attr]
    sink.flush()
    await asyncio.sleep(0.05)
    lines = server.recv(65536).decode().splitlines()
    await sink.stop()
    server.close()
    assert "sentry.relay.t_duration_seconds:250|ms|#env:test,host:box" in lines
    assert "sentry.relay.t_requests_total:2|c|#env:test,host:box,endpoint:/e,status:200" in lines
    assert "sentry.relay.t_queue_bytes:42|g|#env:test,host:box,queue:kafka" in lines


def test_statsd_does_not_block_when_nobody_listens() -> None:
    sink = StatsdSink(MetricsSection(statsd="127.0.0.1:9"), _registry())
    sink._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink._sock.setblocking(False)
    sink.send(["x:1|c"] * 2000)  # many datagrams; none may block
    sink._sock.close()


def test_redaction() -> None:
    register_secret("redis://:hunter2hunter2@redis:6379/0")
    text = redact(
        "key a1b2c3d4e5f60718293a4b5c6d7e8f90 url https://pub:priv@o1.ingest.sentry.io/1 "
        "auth sentry_key=a1b2c3d4e5f60718293a4b5c6d7e8f90, sentry_secret=topsecret "
        "pw hunter2hunter2 mail jane.doe@example.com card 4242-4242-4242-4242 id 1712345678901"
    )
    assert "e5f60718293a4b5c6d7e8f90" not in text
    assert "priv" not in text and "topsecret" not in text and "hunter2hunter2" not in text
    assert "jane.doe" not in text and "4242-4242" not in text
    assert "a1b2c3d4" in text  # enough to tell projects apart
    assert "1712345678901" in text  # not a card number (Luhn)


def test_redacting_filter_keeps_event_id_field() -> None:
    key = "0123456789abcdef0123456789abcdef"
    record = logging.LogRecord("t", logging.DEBUG, __file__, 1, "dropped for key %s", (key,), None)
    record.__dict__["event_id"] = key
    RedactingFilter().filter(record)
    assert record.getMessage() == "dropped for key 01234567…"
    assert record.__dict__["event_id"] == key
