"""The metrics pipeline on POP relays: received buckets, session filters, delivery."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import pytest

from relay.config import Config, config_from_dict
from relay.kafka.metrics import MetricBucket
from relay.metrics import AggregatorConfig, Bucket, CounterBucket, DistributionBucket
from relay.metrics.sessions import SessionAttributes
from relay.protocol.encoding import zstd_decompress
from relay.protocol.envelope import Envelope, Item, parse_envelope
from relay.protocol.items import ItemType
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.aggregator_service import AggregatorService
from relay.server.metrics_pipeline import (
    MetricsPipeline,
    clock_drift_secs,
    session_filter_view,
)
from relay.server.request_meta import RequestMeta
from relay.server.upstream import UpstreamClient

KEY = "31a5a894b4524f74a9a8d0e27e21ba91"
NOW = datetime.now(UTC).timestamp()
STATE = ProjectState(
    project_id=42, organization_id=1, public_keys=[PublicKeyConfig(public_key=KEY)], config={}
)


class FakeUpstream:
    """Records what the pipeline sends upstream."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[int | str, bytes, dict[str, str]]] = []
        self.requests: list[tuple[str, bytes, dict[str, str], bytes | None]] = []

    async def send_envelope(
        self, project_id: int | str, envelope: bytes, headers: Mapping[str, str], deadline: float
    ) -> None:
        self.envelopes.append((project_id, envelope, dict(headers)))

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        sign_data: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((path, body, dict(headers or {}), sign_data))
        return 202, {}, b"{}"


def _pipeline(options: Mapping[str, Any] | None = None) -> tuple[MetricsPipeline, FakeUpstream]:
    config: Config = config_from_dict(
        {"aggregator": {"bucket_interval": 1, "initial_delay": 0}, **(options or {})}
    )
    upstream = FakeUpstream()
    pipeline = MetricsPipeline(
        config, lambda key: STATE if key == KEY else None, upstream=cast(UpstreamClient, upstream)
    )
    return pipeline, upstream


def _envelope(buckets: list[dict[str, Any]], **headers: Any) -> Envelope:
    item = Item.new(ItemType.METRIC_BUCKETS, json.dumps(buckets).encode())
    return Envelope(headers=dict(headers), items=[item])


def _meta(*, from_relay: bool = False) -> RequestMeta:
    return RequestMeta(public_key=KEY, project_id=42, received_at=NOW, from_relay=from_relay)


def _bucket(name: str, value: Any = 1, kind: str = "c") -> dict[str, Any]:
    return {"timestamp": int(NOW), "width": 0, "name": name, "type": kind, "value": value}


def _flushed(pipeline: MetricsPipeline) -> list[Bucket]:
    return pipeline.service.aggregator.flush_all()[KEY]


def test_untrusted_buckets_keep_only_sessions_and_get_fresh_metadata() -> None:
    pipeline, _ = _pipeline()
    envelope = _envelope([_bucket("c:sessions/foo@none", 42), _bucket("c:transactions/bar")])
    assert pipeline.take_metric_buckets(envelope, _meta()) == 1
    assert envelope.items == []
    (bucket,) = _flushed(pipeline)
    assert (bucket.name, bucket.value, bucket.width) == ("c:sessions/foo@none", 42.0, 1)
    assert bucket.metadata is not None and bucket.metadata.received_at == int(NOW)


def test_internal_relays_may_send_every_known_namespace() -> None:
    pipeline, _ = _pipeline()
    envelope = _envelope([_bucket("c:sessions/foo@none"), _bucket("c:transactions/bar@none")])
    assert pipeline.take_metric_buckets(envelope, _meta(from_relay=True)) == 2


def test_invalid_items_are_dropped_and_counted() -> None:
    pipeline, _ = _pipeline()
    envelope = _envelope([{"name": "c:sessions/foo@none"}])
    envelope.items.append(Item.new(ItemType.EVENT, b"{}"))
    assert pipeline.take_metric_buckets(envelope, _meta()) == 0
    assert pipeline.invalid_items == 1
    assert [item.type for item in envelope.items] == [ItemType.EVENT]


def test_clock_drift_is_corrected_only_beyond_55_minutes() -> None:
    received = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert clock_drift_secs(received.timestamp(), None) == 0
    assert clock_drift_secs(received.timestamp(), received - timedelta(minutes=54)) == 0
    assert clock_drift_secs(received.timestamp(), received - timedelta(hours=2)) == 7200


def test_drifted_client_buckets_are_shifted() -> None:
    pipeline, _ = _pipeline()
    # The client's clock is two hours behind: its timestamps move forward to now.
    sent_at = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=2)
    late = {**_bucket("c:sessions/foo@none"), "timestamp": int(NOW) - 7200}
    envelope = _envelope([late], sent_at=sent_at.isoformat())
    pipeline.take_metric_buckets(envelope, _meta())
    (bucket,) = _flushed(pipeline)
    assert abs(bucket.timestamp - int(NOW)) <= 1


def test_batch_buckets_skip_outcomes() -> None:
    pipeline, _ = _pipeline()
    buckets = [
        MetricBucket(timestamp=int(NOW), name="c:spans/foo@none", type="c", value=17.0),
        MetricBucket(timestamp=int(NOW), name="c:outcomes/accepted@none", type="c", value=1.0),
        MetricBucket(timestamp=int(NOW), name="c:spans/bad@none", type="c", value="x"),
    ]
    assert pipeline.merge_batch_buckets(KEY, buckets, NOW) == 1
    assert [b.name for b in _flushed(pipeline)] == ["c:spans/foo@none"]


async def test_envelopes_carry_the_shard_and_respect_max_flush_bytes() -> None:
    pipeline, upstream = _pipeline({"aggregator": {"max_flush_bytes": 100}})
    dist = DistributionBucket(
        timestamp=int(NOW), width=1, name="d:sessions/foo@none", value=[float(i) for i in range(7)]
    )
    await pipeline._to_upstream(7, {KEY: [dist], "unknown" + KEY[7:]: [dist]})
    # 3 + 3 + 1 values; the key whose config is not known yet waits in the aggregator.
    assert len(upstream.envelopes) == 3
    assert len(pipeline.service.aggregator) == 1
    for project_id, body, headers in upstream.envelopes:
        assert project_id == 42
        assert headers["X-Sentry-Relay-Shard"] == "7"
        (item,) = parse_envelope(body).items
        assert item.type == ItemType.METRIC_BUCKETS


async def test_global_metrics_batch_all_projects() -> None:
    pipeline, upstream = _pipeline({"http": {"global_metrics": True}})
    counter = CounterBucket(timestamp=int(NOW), width=1, name="c:spans/foo@none", value=3.0)
    await pipeline._to_upstream(3, {KEY: [counter]})
    ((path, body, headers, signed),) = upstream.requests
    assert path == "/api/0/relays/metrics/"
    assert headers["X-Sentry-Relay-Shard"] == "3"
    assert headers["Content-Encoding"] == "zstd"
    plain = zstd_decompress(body, 1 << 20)
    assert plain == signed
    assert msgspec.json.decode(plain)["buckets"][KEY][0]["value"] == 3.0


def test_session_filter_view() -> None:
    attrs = SessionAttributes(release="a@1", ip_address="127.0.0.1", user_agent="BingBot")
    assert session_filter_view(attrs) == {
        "release": "a@1",
        "user": {"ip_address": "127.0.0.1"},
        "request": {"headers": [["User-Agent", "BingBot"]]},
    }
    assert session_filter_view(SessionAttributes(release="a@1")) == {"release": "a@1"}


def test_filtered_sessions_are_dropped() -> None:
    pipeline, _ = _pipeline()
    state = ProjectState(
        project_id=42,
        public_keys=[PublicKeyConfig(public_key=KEY)],
        config={
            "sessionMetrics": {"version": 3},
            "filterSettings": {"releases": {"releases": ["bad*"]}},
        },
    )
    now = datetime.fromtimestamp(NOW, UTC).isoformat()
    envelope = Envelope(headers={}, items=[])
    for release in ("bad@1", "good@1"):
        payload = {"started": now, "timestamp": now, "init": True, "attrs": {"release": release}}
        envelope.items.append(Item.new(ItemType.SESSION, json.dumps(payload).encode()))
    pipeline.take_sessions(envelope, _meta(), state)
    assert envelope.items == []
    assert {b.tags["release"] for b in _flushed(pipeline)} == {"good@1"}


async def test_over_budget_aggregator_is_unhealthy_until_a_flush() -> None:
    now = [NOW]

    async def deliver(partition: int, by_project: dict[str, list[Bucket]]) -> None:
        return None

    config = AggregatorConfig(bucket_interval=1, initial_delay=0, max_total_bucket_bytes=1)
    service = AggregatorService(config, deliver, clock=lambda: now[0])
    counter = CounterBucket(timestamp=int(NOW), width=0, name="c:sessions/a@none", value=1.0)
    assert service.can_accept()
    assert service.merge(KEY, [counter]) == 0
    assert not service.can_accept()
    service._recover_budget(NOW + 0.5, flushed=False)
    assert not service.can_accept()
    # Nothing is held, and the refused bucket's window has passed: accepting again.
    service._recover_budget(NOW + 2, flushed=False)
    assert service.can_accept()


def _pending_pipeline() -> tuple[MetricsPipeline, FakeUpstream, dict[str, ProjectState]]:
    """A pipeline whose project configs are known once the test puts them in ``states``."""
    config = config_from_dict({"aggregator": {"bucket_interval": 1, "initial_delay": 0}})
    states: dict[str, ProjectState] = {}
    upstream = FakeUpstream()
    pipeline = MetricsPipeline(config, states.get, upstream=cast(UpstreamClient, upstream))
    return pipeline, upstream, states


async def test_a_flush_keeps_the_buckets_of_a_project_still_being_fetched() -> None:
    pipeline, upstream, states = _pending_pipeline()
    counter = CounterBucket(timestamp=int(NOW), width=1, name="c:sessions/a@none", value=2.0)
    await pipeline._to_upstream(0, {KEY: [counter]})
    assert upstream.envelopes == []
    assert len(pipeline.service.aggregator) == 1
    states[KEY] = STATE
    for partition in pipeline.service.aggregator.flush_all_partitions():
        await pipeline._to_upstream(partition.partition_key, partition.buckets)
    ((project_id, body, _),) = upstream.envelopes
    assert project_id == 42
    (item,) = parse_envelope(body).items
    assert [(b["name"], b["value"]) for b in json.loads(item.payload)] == [
        ("c:sessions/a@none", 2.0)
    ]


async def test_the_final_flush_waits_for_a_config_being_fetched() -> None:
    pipeline, upstream, states = _pending_pipeline()
    counter = CounterBucket(timestamp=int(NOW), width=1, name="c:sessions/a@none", value=2.0)
    pipeline.service.merge(KEY, [counter])
    asyncio.get_running_loop().call_later(0.2, states.__setitem__, KEY, STATE)
    await pipeline.stop(3.0)
    assert len(upstream.envelopes) == 1


async def test_the_final_flush_drops_buckets_whose_config_never_comes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline, upstream, _ = _pending_pipeline()
    counter = CounterBucket(timestamp=int(NOW), width=1, name="c:sessions/a@none", value=2.0)
    pipeline.service.merge(KEY, [counter])
    started = time.monotonic()
    await pipeline.stop(0.5)
    assert time.monotonic() - started < 0.5
    assert upstream.envelopes == []
    assert "no project config before shutdown" in caplog.text


async def test_disabled_projects_drop_their_buckets() -> None:
    pipeline, upstream, states = _pending_pipeline()
    states[KEY] = ProjectState(disabled=True)
    counter = CounterBucket(timestamp=int(NOW), width=1, name="c:sessions/a@none", value=2.0)
    await pipeline._to_upstream(0, {KEY: [counter]})
    assert upstream.envelopes == [] and len(pipeline.service.aggregator) == 0
