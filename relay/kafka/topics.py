"""Relay's logical Kafka topics and the ``processing.topics`` configuration.

Relay names each data sink by a logical key (``events``, ``outcomes``, ...) whose default
Kafka topic name is also accepted as a configuration key (``ingest-events: my-topic``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

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


def _topic_name(key: str, value: object) -> str:
    """Extract the single topic name from one assignment value."""
    if isinstance(value, str):
        name: object = value
    elif isinstance(value, Mapping):
        # Secondary clusters (``config``) would send the data elsewhere than the one
        # producer we run; refusing is safer than silently writing to the wrong cluster.
        if value.get("config") is not None:
            raise ConfigError(f"processing.topics.{key}: secondary kafka configs are not supported")
        name = value.get("name")
    elif isinstance(value, list) and len(value) == 1:
        # A sharded assignment with a single shard is just that shard.
        return _topic_name(key, value[0])
    elif isinstance(value, list):
        raise ConfigError(f"processing.topics.{key}: sharded topics are not supported")
    else:
        raise ConfigError(f"processing.topics.{key}: expected a topic name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"processing.topics.{key}: expected a non-empty topic name")
    return name


def resolve_topics(overrides: Mapping[str, object]) -> dict[KafkaTopic, str]:
    """Apply ``processing.topics`` to the defaults and return every topic's Kafka name.

    Keys may be logical keys (``events``) or default topic names (``ingest-events``).
    A value is a topic name, ``{name: ...}`` or a one-element list of either. Unknown
    keys are ignored (see :func:`unused_topic_keys`); naming one topic twice, sharded
    topics and secondary Kafka clusters raise :class:`~relay.errors.ConfigError`.
    """
    resolved = dict(DEFAULT_TOPIC_NAMES)
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
        resolved[topic] = _topic_name(key, value)
    return resolved
