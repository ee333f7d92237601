"""Inbound filters on profiles and profile chunks, and global filters on processing relays."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from relay.config import config_from_dict
from relay.filters import compile_filters
from relay.filters.profiles import filterable_profile, should_filter_profile
from relay.kafka.outcomes import OutcomeCode
from relay.kafka.producer import KafkaProducer
from relay.kafka.topics import KafkaTopic, resolve_topics
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.outcomes import OutcomeSink
from relay.server.processor import Processor
from relay.server.request_meta import RequestMeta

KEY = "a" * 32
TOPICS = resolve_topics({})
RELEASE_FILTER = {"releases": {"releases": ["foobar@1.0"]}}
GLOBAL_FILTERS = {
    "version": 1,
    "filters": [
        {
            "id": "premature-releases",
            "isEnabled": True,
            "condition": {"op": "eq", "name": "event.release", "value": "0.0.0"},
        }
    ],
}


def test_profile_view_has_only_release_and_platform() -> None:
    profile = {"release": "1.0", "platform": "cocoa", "environment": "prod", "os": {}}
    assert filterable_profile(profile) == {"release": "1.0", "platform": "cocoa"}
    assert filterable_profile({"release": 5}) == {}


def test_release_and_generic_filters_apply_to_profiles() -> None:
    filters = compile_filters(RELEASE_FILTER)
    assert should_filter_profile(filters, {"release": "foobar@1.0"}) == "release-version"
    assert should_filter_profile(filters, {"release": "foobar@2.0"}) is None
    generic = compile_filters({}, GLOBAL_FILTERS)
    assert should_filter_profile(generic, {"release": "0.0.0"}) == "premature-releases"


def test_event_filters_never_match_a_profile() -> None:
    filters = compile_filters(
        {"errorMessages": {"patterns": ["*"]}, "localhost": {"isEnabled": True}}
    )
    assert should_filter_profile(filters, {"release": "x", "platform": "python"}) is None
    # Not an object: left to profile parsing, which reports it.
    assert should_filter_profile(compile_filters(RELEASE_FILTER), ["release"]) is None


def processor(global_config: dict[str, Any] | None = None) -> Processor:
    config = config_from_dict({"processing": {"enabled": True}})
    producer = KafkaProducer([("bootstrap.servers", "127.0.0.1:1")])
    return Processor(
        config,
        producer,
        TOPICS,
        OutcomeSink(config, producer, TOPICS),
        global_config=lambda: global_config,
    )


def state(**config: Any) -> ProjectState:
    return ProjectState(
        project_id=42,
        organization_id=1,
        public_keys=[PublicKeyConfig(public_key=KEY, numeric_id=123)],
        config=config,
    )


def chunk_item(release: str) -> Item:
    chunk = {
        "version": "2",
        "chunk_id": uuid.uuid4().hex,
        "profiler_id": uuid.uuid4().hex,
        "platform": "cocoa",
        "release": release,
        "client_sdk": {"name": "sentry.cocoa", "version": "8.0.0"},
        "profile": {"samples": [], "stacks": [], "frames": [], "thread_metadata": {}},
    }
    return Item.new("profile_chunk", json.dumps(chunk).encode())


def test_processor_drops_filtered_profile_chunks_as_filtered() -> None:
    proc = processor()
    meta = RequestMeta(public_key=KEY, project_id=42)
    env = Envelope({}, [chunk_item("foobar@1.0"), chunk_item("other@1.0")])
    plan = proc.build(env, meta, state(filterSettings=RELEASE_FILTER))
    assert [m.topic for m in plan.messages] == [KafkaTopic.PROFILES]
    totals = proc.outcomes.totals
    assert totals[(int(OutcomeCode.FILTERED), int(DataCategory.PROFILE_CHUNK_UI))] == 1


def test_processor_drops_filtered_transaction_profiles() -> None:
    proc = processor()
    now = time.time()
    transaction = {
        "type": "transaction",
        "transaction": "hi",
        "timestamp": now,
        "start_timestamp": now - 1,
        "contexts": {"trace": {"trace_id": "a" * 32, "span_id": "b" * 16}},
    }
    profile = {"version": "1", "platform": "cocoa", "release": "foobar@1.0"}
    env = Envelope(
        {"event_id": uuid.uuid4().hex},
        [
            Item.new("transaction", json.dumps(transaction).encode()),
            Item.new("profile", json.dumps(profile).encode()),
        ],
    )
    meta = RequestMeta(public_key=KEY, project_id=42)
    plan = proc.build(env, meta, state(filterSettings=RELEASE_FILTER))
    # The transaction (no release) is kept; its profile goes.
    assert KafkaTopic.TRANSACTIONS in [m.topic for m in plan.messages]
    assert KafkaTopic.PROFILES not in [m.topic for m in plan.messages]
    totals = proc.outcomes.totals
    assert totals[(int(OutcomeCode.FILTERED), int(DataCategory.PROFILE))] == 1


def test_processor_applies_global_generic_filters_to_events() -> None:
    proc = processor({"filters": GLOBAL_FILTERS})
    meta = RequestMeta(public_key=KEY, project_id=42)
    env = Envelope({"event_id": uuid.uuid4().hex}, [Item.new("event", b'{"release": "0.0.0"}')])
    plan = proc.build(env, meta, state())
    assert plan.messages == []
    assert proc.outcomes.totals[(int(OutcomeCode.FILTERED), int(DataCategory.ERROR))] == 1
