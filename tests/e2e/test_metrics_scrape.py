"""Tier 3: scrape ``/metrics`` of real relays during a mixed run; the counters must match
what was sent (accepted, refused), dropped (outcomes) and produced (Kafka)."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
import uuid

import msgspec
import pytest

from relay.dev.chain import DEMO_PUBLIC_KEY, LocalChain
from tests.kafka_utils import by_event_id, collect

ENVELOPE_ROUTE = "/api/{project_id}/envelope/"
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> Samples:
    """Prometheus text format into ``{(name, labels): value}``; checks the syntax too."""
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line == "" or line.startswith(("# HELP ", "# TYPE ")), line
            continue
        match = _LINE.match(line)
        assert match is not None, f"not exposition format: {line!r}"
        labels = frozenset(_LABEL.findall(match.group(3) or ""))
        samples[(match.group(1), labels)] = float(match.group(4))
    return samples


def scrape(base_url: str) -> Samples:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_exposition(resp.read().decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def send(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/x-sentry-envelope"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def envelope(event_id: str, payload: bytes) -> bytes:
    header = msgspec.json.encode({"event_id": event_id})
    return header + b'\n{"type":"event"}\n' + payload + b"\n"


@pytest.mark.e2e
async def test_counters_match_what_was_sent_dropped_and_produced(chain: LocalChain) -> None:
    pop, processing = chain.pop.url, chain.processing.url
    before_pop, before_proc = scrape(pop), scrape(processing)
    url = f"{pop}/api/42/envelope/?sentry_key={DEMO_PUBLIC_KEY}"

    good = [uuid.uuid4().hex for _ in range(5)]
    statuses = [
        send(url, envelope(eid, msgspec.json.encode({"message": "scrape", "level": "error"})))
        for eid in good
    ]
    # Accepted, but the event is no JSON: the POP drops it with an invalid outcome.
    statuses += [send(url, envelope(uuid.uuid4().hex, b"{not json")) for _ in range(2)]
    # Not an envelope at all: refused with 400 before anything is accepted.
    statuses += [send(url, b"\x00garbage\n\x01") for _ in range(3)]
    assert statuses == [200] * 7 + [400] * 3

    # All five events reach Kafka (read back, validated against Sentry's schemas).
    events = await collect(
        chain.kafka_bootstrap, "ingest-events",
        lambda ms: all(by_event_id(ms, eid) for eid in good),
    )  # fmt: skip
    assert all(len(by_event_id(events, eid)) == 1 for eid in good)

    # The processing relay counts its produce acknowledgements right after they arrive.
    produced = {"topic": "ingest-events", "result": "ok"}
    for _ in range(50):
        after_proc = scrape(processing)
        total = value(after_proc, "relay_kafka_produce_total", **produced)
        if total - value(before_proc, "relay_kafka_produce_total", **produced) >= 5:
            break
        await asyncio.sleep(0.1)
    after_pop = scrape(pop)

    def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # POP: what was sent and what it did with it.
    assert delta(after_pop, before_pop, "relay_requests_total",
                 endpoint=ENVELOPE_ROUTE, status="200") == 7  # fmt: skip
    assert delta(after_pop, before_pop, "relay_requests_total",
                 endpoint=ENVELOPE_ROUTE, status="400") == 3  # fmt: skip
    assert delta(after_pop, before_pop, "relay_envelopes_accepted_total") == 7
    assert delta(after_pop, before_pop, "relay_items_dropped_total",
                 outcome="invalid", reason="invalid_json", category="error") == 2  # fmt: skip
    forwarded = delta(after_pop, before_pop, "relay_upstream_request_duration_seconds_count",
                      route=ENVELOPE_ROUTE, result="200")  # fmt: skip
    assert forwarded == 5
    # Processing: the forwarded envelopes, each produced once to ingest-events.
    assert delta(after_proc, before_proc, "relay_envelopes_accepted_total") == 5
    assert delta(after_proc, before_proc, "relay_kafka_produce_total",
                 topic="ingest-events", result="ok") == 5  # fmt: skip
    assert delta(after_proc, before_proc, "relay_items_dropped_total",
                 outcome="invalid", reason="invalid_json", category="error") == 0  # fmt: skip
    assert delta(after_proc, before_proc, "relay_project_cache_total", result="hit") >= 5
    for samples in (after_pop, after_proc):
        assert any(name == "relay_build_info" and v == 1 for (name, _), v in samples.items())
        assert value(samples, "relay_queue_bytes", queue="pending") >= 0
    assert ("relay_queue_bytes", frozenset({("queue", "forward")})) in after_pop
    assert ("relay_queue_bytes", frozenset({("queue", "kafka")})) in after_proc
