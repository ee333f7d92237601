"""Dynamic sampling on the relays: processing (outcomes, Kafka) and POP (usage metrics)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, cast

import msgpack

from relay.config import config_from_dict
from relay.kafka.metrics import MetricBucket
from relay.kafka.outcomes import OutcomeCode
from relay.kafka.producer import KafkaProducer
from relay.kafka.topics import KafkaTopic, resolve_topics
from relay.metrics.usage import SPAN_USAGE_METRIC
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory, ItemType
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.forwarder import Forwarder
from relay.server.metrics_pipeline import MetricsPipeline
from relay.server.outcome_aggregator import Scoping
from relay.server.outcomes import OutcomeSink
from relay.server.processor import Processor
from relay.server.request_meta import RequestMeta
from relay.server.upstream import UpstreamClient

KEY = "a" * 32
ROOT_KEY = "b" * 32
TOPICS = resolve_topics({})
FILTERED = int(OutcomeCode.FILTERED)
ACCEPTED = int(OutcomeCode.ACCEPTED)


def _sampling(value: float, name: str = "event.transaction", match: str = "hi",
              rule_type: str = "transaction") -> dict[str, Any]:  # fmt: skip
    return {
        "version": 2,
        "rules": [{
            "id": 3001, "type": rule_type,
            "samplingValue": {"type": "sampleRate", "value": value},
            "condition": {"op": "eq", "name": name, "value": match},
        }],
    }  # fmt: skip


def _state(key: str = KEY, **config: Any) -> ProjectState:
    return ProjectState(
        project_id=42,
        organization_id=1,
        public_keys=[PublicKeyConfig(public_key=key, numeric_id=123)],
        config=config,
    )


def _envelope(name: str, trace: dict[str, Any] | None = None) -> Envelope:
    now = time.time()
    transaction = {
        "type": "transaction",
        "transaction": name,
        "timestamp": now,
        "start_timestamp": now - 1,
        "contexts": {"trace": {"trace_id": "c" * 32, "span_id": "d" * 16}},
        "spans": [{"span_id": "e" * 16, "trace_id": "c" * 32, "start_timestamp": now - 1,
                   "timestamp": now}],
    }  # fmt: skip
    profile = {"version": "1", "platform": "cocoa", "profile_id": uuid.uuid4().hex}
    headers: dict[str, Any] = {"event_id": uuid.uuid4().hex}
    if trace is not None:
        headers["trace"] = trace
    return Envelope(
        headers,
        [
            Item.new("transaction", json.dumps(transaction).encode()),
            Item.new("profile", json.dumps(profile).encode()),
            Item.new("attachment", b"foobar"),
        ],
    )


def _processor(states: dict[str, ProjectState] | None = None) -> Processor:
    config = config_from_dict({"processing": {"enabled": True}})
    producer = KafkaProducer([("bootstrap.servers", "127.0.0.1:1")])
    return Processor(
        config, producer, TOPICS, OutcomeSink(config, producer, TOPICS),
        sampling_states=(states or {}).get,
    )  # fmt: skip


def test_processing_relay_drops_sampled_transaction_but_keeps_billing_and_profile() -> None:
    proc = _processor()
    plan = proc.build(_envelope("hi"), RequestMeta(public_key=KEY, project_id=42),
                      _state(sampling=_sampling(0.0)))  # fmt: skip
    topics = [m.topic for m in plan.messages]
    assert KafkaTopic.TRANSACTIONS not in topics and KafkaTopic.ATTACHMENTS not in topics
    profiles = [m for m in plan.messages if m.topic == KafkaTopic.PROFILES]
    assert len(profiles) == 1
    assert ("sampled", b"false") in (profiles[0].headers or [])
    totals = proc.outcomes.totals
    assert totals[(FILTERED, int(DataCategory.TRANSACTION_INDEXED))] == 1
    assert totals[(FILTERED, int(DataCategory.SPAN_INDEXED))] == 2
    assert totals[(FILTERED, int(DataCategory.ATTACHMENT))] == 6
    assert totals[(FILTERED, int(DataCategory.ATTACHMENT_ITEM))] == 1
    assert totals[(ACCEPTED, int(DataCategory.TRANSACTION))] == 1
    assert totals[(ACCEPTED, int(DataCategory.SPAN))] == 2
    assert totals[(FILTERED, int(DataCategory.PROFILE))] == 0


def test_processing_relay_keeps_what_no_rule_drops() -> None:
    proc = _processor()
    plan = proc.build(_envelope("ho"), RequestMeta(public_key=KEY, project_id=42),
                      _state(sampling=_sampling(0.0)))  # fmt: skip
    assert KafkaTopic.TRANSACTIONS in [m.topic for m in plan.messages]
    assert proc.outcomes.totals[(FILTERED, int(DataCategory.TRANSACTION_INDEXED))] == 0


def test_trace_rules_of_the_root_project_apply() -> None:
    root = _state(ROOT_KEY, sampling=_sampling(0.0, "trace.environment", "prod", "trace"))
    proc = _processor({ROOT_KEY: root})
    trace = {"trace_id": "c" * 32, "public_key": ROOT_KEY, "environment": "prod"}
    plan = proc.build(_envelope("ho", trace), RequestMeta(public_key=KEY, project_id=42),
                      _state())  # fmt: skip
    assert KafkaTopic.TRANSACTIONS not in [m.topic for m in plan.messages]
    assert proc.outcomes.totals[(FILTERED, int(DataCategory.TRANSACTION_INDEXED))] == 1
    # Unknown root project: nothing to sample with.
    proc = _processor()
    plan = proc.build(_envelope("ho", trace), RequestMeta(public_key=KEY, project_id=42),
                      _state())  # fmt: skip
    assert KafkaTopic.TRANSACTIONS in [m.topic for m in plan.messages]


def test_pop_relay_forwards_profile_and_usage_metrics_of_a_sampled_transaction() -> None:
    config = config_from_dict({"outcomes": {"emit_outcomes": True}})
    outcomes = OutcomeSink(config)
    metrics = MetricsPipeline(config, lambda key: None)
    forwarder = Forwarder(config, cast(UpstreamClient, None), outcomes, 1 << 20, metrics=metrics)
    envelope = _envelope("hi")
    meta = RequestMeta(public_key=KEY, project_id=42)
    forwarder._normalize(envelope, meta, _state(sampling=_sampling(0.0)))
    assert [item.type for item in envelope.items] == [ItemType.PROFILE]
    assert envelope.items[0].headers["sampled"] is False
    assert outcomes.totals[(FILTERED, int(DataCategory.TRANSACTION_INDEXED))] == 1
    assert outcomes.totals[(FILTERED, int(DataCategory.SPAN_INDEXED))] == 2
    assert outcomes.totals[(FILTERED, int(DataCategory.ATTACHMENT))] == 6
    # The totals are not outcomes here: they travel as usage metrics to the processing relay.
    assert outcomes.totals[(ACCEPTED, int(DataCategory.TRANSACTION))] == 0
    flushed = metrics.service.aggregator.flush_all_partitions()
    usage = [b for part in flushed for b in part.buckets.get(KEY, [])]
    assert sorted((b.name, tuple(sorted(b.tags.items())), b.value) for b in usage) == [
        (SPAN_USAGE_METRIC, (("is_segment", "false"),), 1.0),
        (SPAN_USAGE_METRIC, (("is_segment", "true"), ("was_transaction", "true")), 1.0),
    ]


def test_processing_relay_bills_received_usage_metrics() -> None:
    config = config_from_dict({"processing": {"enabled": True}})
    producer = KafkaProducer([("bootstrap.servers", "127.0.0.1:1")])
    sink = OutcomeSink(config, producer, TOPICS)
    buckets = [
        MetricBucket(timestamp=1, name=SPAN_USAGE_METRIC, type="c", value=2.0,
                     tags={"is_segment": "true", "was_transaction": "true"}),
        MetricBucket(timestamp=1, name=SPAN_USAGE_METRIC, type="c", value=3.0,
                     tags={"is_segment": "false"}),
    ]  # fmt: skip
    sink.outcome_buckets(Scoping(KEY, 42, 1, 123), buckets)
    assert sink.totals[(ACCEPTED, int(DataCategory.TRANSACTION))] == 2
    assert sink.totals[(ACCEPTED, int(DataCategory.SPAN))] == 5
    # A POP relay only passes them on.
    pop = OutcomeSink(config_from_dict({"outcomes": {"emit_outcomes": True}}))
    pop.outcome_buckets(Scoping(KEY, 42, 1, 123), buckets)
    assert not pop.totals


def test_processing_relay_tags_errors_with_the_trace_decision() -> None:
    for rate, expected in ((0.0, False), (1.0, True)):
        proc = _processor()
        trace = {"trace_id": "c" * 32, "public_key": KEY, "release": "1.0", "sampled": "true"}
        envelope = Envelope(
            {"event_id": uuid.uuid4().hex, "trace": trace},
            [Item.new("event", json.dumps({"message": "boom"}).encode())],
        )
        config = _sampling(rate, "trace.release", "1.0", "trace")
        plan = proc.build(envelope, RequestMeta(public_key=KEY, project_id=42),
                          _state(sampling=config))  # fmt: skip
        (message,) = [m for m in plan.messages if m.topic == KafkaTopic.EVENTS]
        wrapper = msgpack.unpackb(message.value)
        event = json.loads(wrapper["payload"])
        assert event["contexts"]["trace"]["sampled"] is expected


def test_pop_relay_leaves_sampling_to_upstream_when_filters_are_too_new() -> None:
    config = config_from_dict({"outcomes": {"emit_outcomes": True}})
    outcomes = OutcomeSink(config)
    forwarder = Forwarder(
        config, cast(UpstreamClient, None), outcomes, 1 << 20,
        global_config=lambda: {"filters": {"version": 65535, "filters": []}},
    )  # fmt: skip
    envelope = _envelope("hi")
    forwarder._normalize(envelope, RequestMeta(public_key=KEY, project_id=42),
                         _state(sampling=_sampling(0.0)))  # fmt: skip
    assert ItemType.TRANSACTION in [item.type for item in envelope.items]
    assert not outcomes.totals


# Relay samples before scrubbing: a rule on a field the piiConfig scrubs still matches.
_EMAIL_RULE = _sampling(0.0, "event.user.email", "jane@example.com")
_SCRUB_EMAILS = {"applications": {"$string": ["@email"]}}


def _with_user(envelope: Envelope) -> Envelope:
    item = envelope.items[0]
    event = json.loads(item.payload)
    event["user"] = {"email": "jane@example.com"}
    item.set_payload(json.dumps(event).encode())
    return envelope


def test_processing_relay_samples_before_scrubbing() -> None:
    proc = _processor()
    state = _state(sampling=_EMAIL_RULE, piiConfig=_SCRUB_EMAILS)
    plan = proc.build(_with_user(_envelope("x")), RequestMeta(public_key=KEY, project_id=42), state)
    assert KafkaTopic.TRANSACTIONS not in [m.topic for m in plan.messages]
    assert proc.outcomes.totals[(FILTERED, int(DataCategory.TRANSACTION_INDEXED))] == 1


def test_pop_relay_samples_before_scrubbing_and_forwards_scrubbed_events() -> None:
    config = config_from_dict({"outcomes": {"emit_outcomes": True}})
    forwarder = Forwarder(config, cast(UpstreamClient, None), OutcomeSink(config), 1 << 20)
    meta = RequestMeta(public_key=KEY, project_id=42)
    envelope = _with_user(_envelope("x"))
    forwarder._normalize(envelope, meta, _state(sampling=_EMAIL_RULE, piiConfig=_SCRUB_EMAILS))
    assert [i.type for i in envelope.items] == [ItemType.PROFILE]
    # No rule matches: the transaction goes on, scrubbed.
    envelope = _with_user(_envelope("x"))
    rule = _sampling(0.0, "event.user.email", "someone@else.org")
    forwarder._normalize(envelope, meta, _state(sampling=rule, piiConfig=_SCRUB_EMAILS))
    assert b"jane@example.com" not in envelope.items[0].payload
