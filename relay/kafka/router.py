"""Producing to several Kafka clusters: ``processing.secondary_kafka_configs``.

Relay's ``processing.kafka_config`` is the primary cluster; a topic assigned as
``{name: TOPIC, config: NAME}`` is produced with ``processing.secondary_kafka_configs.NAME``
instead. :class:`KafkaRouter` runs one :class:`~relay.kafka.producer.KafkaProducer` per
config that some topic uses and dispatches each message by the config its topic carries
(:class:`~relay.kafka.topics.TopicName`), so callers keep the single-producer surface.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from relay.errors import ConfigError
from relay.kafka.producer import KafkaProduceError, KafkaProducer
from relay.kafka.topics import KafkaTopic, TopicName
from relay.telemetry.metrics import KAFKA_PRODUCE

log = logging.getLogger(__name__)

#: One ``kafka_config`` list: ``(name, value)`` pairs or ``{name, value}`` mappings.
KafkaParams = Sequence[tuple[str, str] | Mapping[str, str]]


class KafkaSink(Protocol):
    """What the processing pipeline needs from Kafka: a producer or a router of them."""

    @property
    def unknown_params(self) -> list[tuple[str, str]]:
        """``kafka_config`` parameters that have no effect here."""

    @property
    def in_flight_bytes(self) -> int:
        """Bytes sent and not yet acknowledged."""

    @property
    def max_in_flight_bytes(self) -> int:
        """The in-flight budget in bytes."""

    async def start(self) -> None:
        """Connect to Kafka."""

    async def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is pending and disconnect."""

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Produce one message and wait for the broker's acknowledgement."""


def config_label(config: str | None) -> str:
    """The config key a Kafka config name stands for, for messages and logs."""
    if config is None:
        return "processing.kafka_config"
    return f"processing.secondary_kafka_configs.{config}"


class KafkaRouter:
    """One producer per Kafka config in use, with :class:`KafkaProducer`'s surface.

    A config without any parameter (Relay accepts ``kafka_config: []``; librdkafka then
    cannot connect and drops what it is given) gets no producer: sends to its topics fail
    with :class:`~relay.kafka.producer.KafkaProduceError`, so their data becomes an error
    response or outcome instead of vanishing. If no used config has parameters at all the
    relay could write nothing, and that is refused as a :class:`~relay.errors.ConfigError`.
    """

    def __init__(
        self,
        primary: KafkaParams,
        secondary: Mapping[str, KafkaParams],
        topics: Mapping[KafkaTopic, TopicName],
    ) -> None:
        """Build (but do not connect) the producers of the configs ``topics`` use.

        Raises :class:`~relay.errors.ConfigError` naming the config key for a topic on an
        unknown config or a config that cannot be applied. Configs no topic uses are
        neither validated nor started, as in Relay.
        """
        used: dict[str | None, list[str]] = {}
        for topic_name in topics.values():
            used.setdefault(topic_name.config, []).append(str(topic_name))
        self._producers: dict[str | None, KafkaProducer] = {}
        #: Used configs without parameters, with the topics that cannot be delivered.
        self.unconfigured: dict[str | None, list[str]] = {}
        for config, names in used.items():
            if config is None:
                params = primary
            elif config in secondary:
                params = secondary[config]
            else:
                raise ConfigError(
                    f"processing.topics: unknown kafka config {config!r} for {', '.join(names)}"
                )
            if not params:
                self.unconfigured[config] = sorted(set(names))
                continue
            try:
                self._producers[config] = KafkaProducer(params)
            except ConfigError as exc:
                raise ConfigError(f"{config_label(config)}: {exc.detail}") from None
        if not self._producers:
            raise ConfigError("processing.kafka_config: bootstrap.servers is required")

    @property
    def producers(self) -> Mapping[str | None, KafkaProducer]:
        """The producers by config name (``None``: the primary ``kafka_config``)."""
        return dict(self._producers)

    @property
    def unknown_params(self) -> list[tuple[str, str]]:
        """Parameters without effect, of every producer."""
        return [param for p in self._producers.values() for param in p.unknown_params]

    @property
    def in_flight_bytes(self) -> int:
        """Unacknowledged bytes over all producers."""
        return sum(p.in_flight_bytes for p in self._producers.values())

    @property
    def max_in_flight_bytes(self) -> int:
        """Sum of the producers' budgets (each producer bounds its own)."""
        return sum(p.max_in_flight_bytes for p in self._producers.values())

    async def start(self) -> None:
        """Connect every producer; if one cannot connect, close the others and raise."""
        for config, names in self.unconfigured.items():
            log.warning(
                "%s is empty: messages to %s cannot be delivered",
                config_label(config),
                ", ".join(names),
            )
        producers = list(self._producers.values())
        results = await asyncio.gather(*(p.start() for p in producers), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self.stop()
            raise failure

    async def stop(self, timeout: float = 10.0) -> None:
        """Flush and close all producers at the same time, within ``timeout`` seconds."""
        await asyncio.gather(*(p.stop(timeout) for p in self._producers.values()))

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Produce with the producer of ``topic``'s config (a plain name: the primary).

        Raises :class:`KafkaProduceError` for a topic on an empty config, and whatever
        :meth:`KafkaProducer.send` raises otherwise.
        """
        config = topic.config if isinstance(topic, TopicName) else None
        producer = self._producers.get(config)
        if producer is None:
            KAFKA_PRODUCE.inc(1, topic, "error")
            raise KafkaProduceError(f"{config_label(config)} is empty: cannot produce to {topic}")
        await producer.send(topic, value, key=key, headers=headers)
