"""Relay's logical Kafka topics and the ``processing.topics`` configuration.

Relay names each data sink by a logical key (``events``, ``outcomes``, ...) whose default
Kafka topic name is also accepted as a configuration key (``ingest-events: my-topic``).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from relay.errors import ConfigError


class KafkaTopic(enum.StrEnum):
    """A logical topic; the value is its key in ``processing.topics``."""

    #: Errors and other events without attachments.
    EVENTS = "events"
    #: Events with attachments, attachment chunks, standalone attachments and user reports.
    ATTACHMENTS = "attachments"
    #: Transaction events.
    TRANSACTIONS = "transactions"
    #: Outcomes that are not billing-critical.
    OUTCOMES = "outcomes"
    #: Billing-critical outcomes (accepted and rate limited).
    OUTCOMES_BILLING = "outcomes_billing"
    #: Metrics extracted from sessions (release health).
    METRICS_SESSIONS = "metrics_sessions"
    #: Profiles and profile chunks.
    PROFILES = "profiles"
    #: Replay recordings, with the replay event and video.
    REPLAY_RECORDINGS = "replay_recordings"
    #: Cron monitor check-ins.
    MONITORS = "monitors"
    #: Standalone spans.
    SPANS = "spans"
    #: User feedback events.
    FEEDBACK = "feedback"
    #: Trace items (logs, trace metrics, ...) as protobuf.
    ITEMS = "items"

    @property
    def default_name(self) -> str:
        """The Kafka topic name used when the configuration does not override it."""
        return DEFAULT_TOPIC_NAMES[self]


#: Default Kafka topic name of every logical topic (Relay's ``logical_topic_name``).
DEFAULT_TOPIC_NAMES: Mapping[KafkaTopic, str] = {
    KafkaTopic.EVENTS: "ingest-events",
    KafkaTopic.ATTACHMENTS: "ingest-attachments",
    KafkaTopic.TRANSACTIONS: "ingest-transactions",
    KafkaTopic.OUTCOMES: "outcomes",
    KafkaTopic.OUTCOMES_BILLING: "outcomes-billing",
    KafkaTopic.METRICS_SESSIONS: "ingest-metrics",
    KafkaTopic.PROFILES: "profiles",
    KafkaTopic.REPLAY_RECORDINGS: "ingest-replay-recordings",
    KafkaTopic.MONITORS: "ingest-monitors",
    KafkaTopic.SPANS: "ingest-spans",
    KafkaTopic.FEEDBACK: "ingest-feedback-events",
    KafkaTopic.ITEMS: "snuba-items",
}

# Relay accepts either the logical key or the default topic name as a configuration key.
_KEY_LOOKUP: Mapping[str, KafkaTopic] = {
    **{topic.value: topic for topic in KafkaTopic},
    **{name: topic for topic, name in DEFAULT_TOPIC_NAMES.items()},
}


def topic_for_key(key: str) -> KafkaTopic | None:
    """Map a ``processing.topics`` key (logical key or default topic name) to its topic."""
    return _KEY_LOOKUP.get(key)


def unused_topic_keys(overrides: Mapping[str, object]) -> list[str]:
    """Keys of ``processing.topics`` that name no topic this relay produces to.

    Relay tolerates these (a config may be shared with newer or older relays) and only
    reports them, so callers should log them rather than fail.
    """
    return sorted(key for key in overrides if key not in _KEY_LOOKUP)


class TopicName(str):
    """A Kafka topic name that also carries the Kafka config it is produced with.

    It is the topic name itself (a ``str``), so code that only produces to it needs no
    change; :class:`relay.kafka.router.KafkaRouter` reads :attr:`config` to pick the
    cluster. ``config`` is a ``processing.secondary_kafka_configs`` name, or ``None`` for
    the primary ``processing.kafka_config``.
    """

    config: str | None

    def __new__(cls, name: str, config: str | None = None) -> TopicName:
        """A topic ``name`` on ``config`` (``None``: the primary config)."""
        self = super().__new__(cls, name)
        self.config = config
        return self

    def __repr__(self) -> str:
        return f"TopicName({str(self)!r}, config={self.config!r})"


def _topic_name(key: str, value: object) -> TopicName:
    """Extract the topic name and config name from one assignment value."""
    config: object = None
    if isinstance(value, str):
        name: object = value
    elif isinstance(value, Mapping):
        # Relay's TopicConfig: other keys are ignored, as serde ignores unknown fields.
        name = value.get("name")
        config = value.get("config")
    elif isinstance(value, list) and len(value) == 1:
        # A sharded assignment with a single shard is just that shard.
        return _topic_name(key, value[0])
    elif isinstance(value, list):
        raise ConfigError(f"processing.topics.{key}: sharded topics are not supported")
    else:
        raise ConfigError(f"processing.topics.{key}: expected a topic name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"processing.topics.{key}: expected a non-empty topic name")
    if config is not None and not isinstance(config, str):
        raise ConfigError(f"processing.topics.{key}.config: expected a kafka config name")
    return TopicName(name, config)


def resolve_topics(
    overrides: Mapping[str, object], secondary_configs: Collection[str] = ()
) -> dict[KafkaTopic, TopicName]:
    """Apply ``processing.topics`` to the defaults and return every topic's Kafka name.

    Keys may be logical keys (``events``) or default topic names (``ingest-events``).
    A value is a topic name, ``{name: ..., config: ...}`` or a one-element list of either;
    ``config`` names one of ``secondary_configs`` (``processing.secondary_kafka_configs``)
    and is kept on the returned :class:`TopicName`; without it the topic uses the primary
    ``kafka_config``. Unknown keys are ignored (see :func:`unused_topic_keys`); naming one
    topic twice, sharded topics and an unknown config name raise
    :class:`~relay.errors.ConfigError`.
    """
    resolved = {topic: TopicName(name) for topic, name in DEFAULT_TOPIC_NAMES.items()}
    seen: dict[KafkaTopic, str] = {}
    for key, value in overrides.items():
        topic = _KEY_LOOKUP.get(key)
        if topic is None:
            continue
        if topic in seen:
            raise ConfigError(
                f"processing.topics: {key!r} and {seen[topic]!r} both configure {topic.value}"
            )
        seen[topic] = key
        name = _topic_name(key, value)
        if name.config is not None and name.config not in secondary_configs:
            # Relay refuses to start on this too (UnknownKafkaConfigName).
            raise ConfigError(
                f"processing.topics.{key}: unknown kafka config {name.config!r}"
                " (not in processing.secondary_kafka_configs)"
            )
        resolved[topic] = name
    return resolved
