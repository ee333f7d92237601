"""Secondary Kafka configs: topic resolution with config names and the producer router."""

from __future__ import annotations

from typing import Any

import pytest

from relay.config import config_from_dict
from relay.config_check import check_config
from relay.errors import ConfigError
from relay.kafka.producer import KafkaProduceError, KafkaProducer
from relay.kafka.router import KafkaRouter
from relay.kafka.topics import KafkaTopic, TopicName, resolve_topics

PRIMARY = [("bootstrap.servers", "primary:9092")]
SECONDARY = {"foo": [("bootstrap.servers", "foo:9092")], "bar": [("bootstrap.servers", "bar:1")]}


# --- topic resolution ------------------------------------------------------------------


def test_topics_default_to_primary_config() -> None:
    topics = resolve_topics({"events": "my-events"})
    assert topics[KafkaTopic.EVENTS] == "my-events"
    assert topics[KafkaTopic.EVENTS].config is None
    assert topics[KafkaTopic.OUTCOMES] == "outcomes"
    assert topics[KafkaTopic.OUTCOMES].config is None


def test_topic_with_config_keeps_its_config_name() -> None:
    topics = resolve_topics(
        {"outcomes": {"name": "my-outcomes", "config": "foo"}, "profiles": {"name": "p"}},
        secondary_configs={"foo"},
    )
    assert topics[KafkaTopic.OUTCOMES] == "my-outcomes"
    assert topics[KafkaTopic.OUTCOMES].config == "foo"
    assert topics[KafkaTopic.PROFILES].config is None
    # A single-shard list is its one shard, config included.
    sharded = resolve_topics({"spans": [{"name": "s", "config": "foo"}]}, {"foo"})
    assert sharded[KafkaTopic.SPANS].config == "foo"


def test_topic_name_is_a_plain_string() -> None:
    name = TopicName("outcomes", "foo")
    assert name == "outcomes"
    by_name: dict[str, int] = {name: 1}
    assert by_name["outcomes"] == 1
    assert str(name) == "outcomes"
    assert "foo" in repr(name)


def test_unknown_config_name_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError) as exc:
        resolve_topics({"outcomes": {"name": "o", "config": "nope"}}, {"foo"})
    assert "nope" in exc.value.detail
    assert "processing.topics.outcomes" in exc.value.detail


def test_unknown_keys_of_a_topic_config_are_ignored() -> None:
    # Relay's TopicConfig ignores unknown fields; the topic stays on the primary.
    topics = resolve_topics({"outcomes_billing": {"name": "b", "processing": "bar"}})
    assert topics[KafkaTopic.OUTCOMES_BILLING] == "b"
    assert topics[KafkaTopic.OUTCOMES_BILLING].config is None


@pytest.mark.parametrize(
    "value", [{"config": "foo"}, {"name": "", "config": "foo"}, {"name": "o", "config": 3}]
)
def test_malformed_topic_config_is_an_error(value: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"processing\.topics\.outcomes"):
        resolve_topics({"outcomes": value}, {"foo"})


# --- the router ------------------------------------------------------------------------


def test_router_builds_one_producer_per_used_config() -> None:
    topics = resolve_topics({"outcomes": {"name": "o", "config": "foo"}}, SECONDARY)
    router = KafkaRouter(PRIMARY, SECONDARY, topics)
    # "bar" is configured but no topic uses it: no producer for it.
    assert set(router.producers) == {None, "foo"}
    assert router.max_in_flight_bytes == sum(
        p.max_in_flight_bytes for p in router.producers.values()
    )
    assert router.in_flight_bytes == 0


def test_router_unknown_config_name() -> None:
    topics = {KafkaTopic.OUTCOMES: TopicName("o", "missing")}
    with pytest.raises(ConfigError, match="'missing'"):
        KafkaRouter(PRIMARY, SECONDARY, topics)


def test_router_names_the_invalid_secondary_config() -> None:
    secondary = {"foo": [("compression.type", "brotli"), ("bootstrap.servers", "x:1")]}
    topics = resolve_topics({"outcomes": {"name": "o", "config": "foo"}}, secondary)
    with pytest.raises(ConfigError, match=r"processing\.secondary_kafka_configs\.foo"):
        KafkaRouter(PRIMARY, secondary, topics)


def test_router_reports_unknown_params_of_every_producer() -> None:
    secondary = {"foo": [("bootstrap.servers", "x:1"), ("queue.buffering.max.messages", "5")]}
    topics = resolve_topics({"outcomes": {"name": "o", "config": "foo"}}, secondary)
    router = KafkaRouter([*PRIMARY, ("socket.nagle.disable", "true")], secondary, topics)
    assert sorted(router.unknown_params) == [
        ("queue.buffering.max.messages", "5"),
        ("socket.nagle.disable", "true"),
    ]


async def test_router_dispatches_by_the_topic_config(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[KafkaProducer, str, bytes]] = []

    async def fake_send(self: KafkaProducer, topic: str, value: bytes, **_: Any) -> None:
        sent.append((self, topic, value))

    monkeypatch.setattr(KafkaProducer, "send", fake_send)
    # The same topic name on two clusters: only the config tells them apart.
    topics = resolve_topics(
        {"outcomes": {"name": "o", "config": "foo"}, "outcomes_billing": "o"}, SECONDARY
    )
    router = KafkaRouter(PRIMARY, SECONDARY, topics)
    await router.send(topics[KafkaTopic.OUTCOMES], b"1")
    await router.send(topics[KafkaTopic.OUTCOMES_BILLING], b"2")
    await router.send("plain", b"3")
    producers = router.producers
    assert sent == [
        (producers["foo"], "o", b"1"),
        (producers[None], "o", b"2"),
        (producers[None], "plain", b"3"),
    ]


async def test_empty_primary_config_fails_only_its_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delivered: list[str] = []

    async def fake_send(self: KafkaProducer, topic: str, value: bytes, **_: Any) -> None:
        delivered.append(topic)

    monkeypatch.setattr(KafkaProducer, "send", fake_send)
    topics = resolve_topics({"outcomes": {"name": "o", "config": "foo"}}, SECONDARY)
    router = KafkaRouter([], SECONDARY, topics)
    assert set(router.producers) == {"foo"}
    assert "ingest-events" in router.unconfigured[None]
    await router.send(topics[KafkaTopic.OUTCOMES], b"x")
    with pytest.raises(KafkaProduceError, match=r"processing\.kafka_config is empty"):
        await router.send(topics[KafkaTopic.EVENTS], b"x")
    assert delivered == ["o"]


def test_no_usable_config_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"bootstrap\.servers is required"):
        KafkaRouter([], {}, resolve_topics({}))


async def test_start_failure_stops_the_started_producers(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[KafkaProducer] = []
    stopped: list[KafkaProducer] = []
    topics = resolve_topics({"outcomes": {"name": "o", "config": "foo"}}, SECONDARY)
    router = KafkaRouter(PRIMARY, SECONDARY, topics)
    failing = router.producers["foo"]

    async def fake_start(self: KafkaProducer) -> None:
        if self is failing:
            raise KafkaProduceError("cannot connect to kafka")
        started.append(self)

    async def fake_stop(self: KafkaProducer, timeout: float = 10.0) -> None:
        stopped.append(self)

    monkeypatch.setattr(KafkaProducer, "start", fake_start)
    monkeypatch.setattr(KafkaProducer, "stop", fake_stop)
    with pytest.raises(KafkaProduceError):
        await router.start()
    assert started == [router.producers[None]]
    assert set(map(id, stopped)) == {id(p) for p in router.producers.values()}


# --- configuration -----------------------------------------------------------------------


def _processing(**processing: Any) -> dict[str, Any]:
    return {"processing": {"enabled": True, "kafka_config": [], **processing}}


def test_config_models_secondary_kafka_configs() -> None:
    config = config_from_dict(
        _processing(
            kafka_config=[{"name": "bootstrap.servers", "value": "a:1"}],
            secondary_kafka_configs={"foo": [{"name": "bootstrap.servers", "value": "b:1"}]},
        )
    )
    (param,) = config.processing.secondary_kafka_configs["foo"]
    assert (param.name, param.value) == ("bootstrap.servers", "b:1")


def test_config_rejects_malformed_secondary_kafka_configs() -> None:
    with pytest.raises(ConfigError, match="secondary_kafka_configs"):
        config_from_dict(_processing(secondary_kafka_configs={"foo": [{"name": "x"}]}))


def test_check_config_accepts_empty_primary_with_secondary_topic() -> None:
    config = config_from_dict(
        _processing(
            secondary_kafka_configs={"foo": [{"name": "bootstrap.servers", "value": "b:1"}]},
            topics={"outcomes": {"name": "o", "config": "foo"}},
        )
    )
    errors, _ = check_config(config)
    assert not [e for e in errors if "kafka" in e]


def test_check_config_reports_unknown_kafka_config_name() -> None:
    config = config_from_dict(
        _processing(
            kafka_config=[{"name": "bootstrap.servers", "value": "a:1"}],
            topics={"outcomes": {"name": "o", "config": "nope"}},
        )
    )
    errors, _ = check_config(config)
    assert any("nope" in e for e in errors)
