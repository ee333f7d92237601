"""The Kafka producer of a processing relay: aiokafka configured like Relay's librdkafka.

``processing.kafka_config`` is a list of librdkafka parameters; the ones with an aiokafka
equivalent are mapped onto it, the rest are reported (:attr:`KafkaProducer.unknown_params`)
and logged at start-up. :meth:`KafkaProducer.send` waits for the broker's acknowledgement,
so the caller learns about a lost message and can emit an outcome for it, and a budget of
bytes in flight bounds the memory held by messages the broker has not acknowledged yet.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidRequiredAcksError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)
from aiokafka.helpers import create_ssl_context

from relay.errors import ConfigError, ServiceUnavailable
from relay.kafka.keys import DEFAULT_PARTITIONER, partitioner
from relay.telemetry.metrics import KAFKA_PRODUCE

log = logging.getLogger(__name__)

#: Default bound on bytes handed to the producer and not yet acknowledged.
DEFAULT_MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024
#: Default time ``send`` waits for budget before giving up with a 503.
DEFAULT_BUDGET_TIMEOUT = 5.0
#: Default time ``send`` tries to deliver one message, retries included.
DEFAULT_DELIVERY_TIMEOUT = 30.0
#: Largest request (and so message) the client builds: a 10 MB message (Sentry's
#: topics allow 10 MB) and its framing fit; the broker enforces its own topic limits.
DEFAULT_MAX_REQUEST_SIZE = 16 * 1024 * 1024
#: ``linger.ms`` unless configured (see ``_client_kwargs``).
DEFAULT_LINGER_MS = 0
#: Batch buffer per partition. aiokafka's 16 KB default sends one or two events per
#: request, which caps throughput far below what the broker takes.
DEFAULT_MAX_BATCH_SIZE = 1024 * 1024


class KafkaProduceError(ServiceUnavailable):
    """A message was not delivered to Kafka; the data it carried is lost."""

    #: Seconds a sender is asked to wait (503 Retry-After). Short: broker hiccups are
    #: short, and a POP told to wait a minute would hold accepted data for that long.
    DEFAULT_RETRY_AFTER = 2.0

    def __init__(self, detail: str, retry_after: float = DEFAULT_RETRY_AFTER) -> None:
        super().__init__(detail, retry_after)


class KafkaMessageRejected(KafkaProduceError):
    """Kafka refused a message for good (not retriable, e.g. too large): do not retry it."""


class KafkaBudgetExceeded(KafkaProduceError):
    """No budget for the message in time: Kafka does not keep up, answer 503."""


@dataclass
class _Settings:
    """What a ``kafka_config`` list translates to."""

    client: dict[str, Any] = field(default_factory=dict)
    ssl: dict[str, str] = field(default_factory=dict)
    partitioner: str = DEFAULT_PARTITIONER
    max_in_flight_bytes: int | None = None
    delivery_timeout: float | None = None
    max_retries: int | None = None
    retry_backoff: float = 0.1
    retry_backoff_max: float = 1.0
    unknown: list[tuple[str, str]] = field(default_factory=list)


def _int(name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ConfigError(f"kafka_config {name}: expected an integer, got {value!r}") from None


def _float(name: str, value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ConfigError(f"kafka_config {name}: expected a number, got {value!r}") from None


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ConfigError(f"kafka_config {name}: expected true or false, got {value!r}")


_COMPRESSION = {"none": None, "gzip": "gzip", "lz4": "lz4", "zstd": "zstd", "snappy": "snappy"}
_ACKS: dict[str, int | str] = {"0": 0, "1": 1, "-1": "all", "all": "all"}
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SSL_PARAMS = {
    "ssl.ca.location": "cafile",
    "ssl.certificate.location": "certfile",
    "ssl.key.location": "keyfile",
    "ssl.key.password": "password",
}


def _apply(settings: _Settings, name: str, value: str) -> bool:
    """Apply one librdkafka parameter; ``False`` if it has no equivalent here."""
    client = settings.client
    match name:
        case "bootstrap.servers" | "metadata.broker.list":
            servers = [s.strip() for s in value.split(",") if s.strip()]
            if not servers:
                raise ConfigError(f"kafka_config {name}: no servers given")
            client["bootstrap_servers"] = servers
        case "client.id":
            client["client_id"] = value
        case "compression.type" | "compression.codec":
            codec = value.strip().lower()
            if codec not in _COMPRESSION:
                raise ConfigError(f"kafka_config {name}: unsupported codec {value!r}")
            client["compression_type"] = _COMPRESSION[codec]
        case "acks" | "request.required.acks":
            acks = value.strip().lower()
            if acks not in _ACKS:
                raise ConfigError(f"kafka_config {name}: expected all, -1, 0 or 1")
            client["acks"] = _ACKS[acks]
        case "linger.ms" | "queue.buffering.max.ms":
            client["linger_ms"] = _float(name, value)
        case "batch.size":
            client["max_batch_size"] = _int(name, value)
        case "message.max.bytes":
            client["max_request_size"] = _int(name, value)
        case "request.timeout.ms":
            client["request_timeout_ms"] = _int(name, value)
        case "metadata.max.age.ms":
            client["metadata_max_age_ms"] = _int(name, value)
        case "connections.max.idle.ms":
            client["connections_max_idle_ms"] = _int(name, value)
        case "retry.backoff.ms":
            client["retry_backoff_ms"] = _int(name, value)
            settings.retry_backoff = _int(name, value) / 1000
        case "retry.backoff.max.ms":
            settings.retry_backoff_max = _int(name, value) / 1000
        case "retries" | "message.send.max.retries":
            settings.max_retries = max(0, _int(name, value))
        case "message.timeout.ms" | "delivery.timeout.ms":
            # librdkafka's 0 means "forever"; a waiting HTTP request cannot, so keep ours.
            timeout_ms = _int(name, value)
            settings.delivery_timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        case "queue.buffering.max.kbytes":
            # librdkafka's bound on locally queued message bytes: what our budget bounds.
            settings.max_in_flight_bytes = _int(name, value) * 1024
        case "partitioner":
            partitioner(value.strip())  # validate now rather than at start-up
            settings.partitioner = value.strip()
        case "enable.idempotence":
            # The idempotent producer is not available (nor supported by every broker we
            # run against); "false" is what we do anyway.
            return not _bool(name, value)
        case "security.protocol":
            protocol = value.strip().upper()
            if protocol not in _SECURITY_PROTOCOLS:
                raise ConfigError(f"kafka_config {name}: unsupported protocol {value!r}")
            client["security_protocol"] = protocol
        case "sasl.mechanism" | "sasl.mechanisms":
            client["sasl_mechanism"] = value.strip().upper()
        case "sasl.username":
            client["sasl_plain_username"] = value
        case "sasl.password":
            client["sasl_plain_password"] = value
        case _ if name in _SSL_PARAMS:
            settings.ssl[_SSL_PARAMS[name]] = value
        case _:
            return False
    return True


def _parse_kafka_config(params: Iterable[tuple[str, str] | Mapping[str, str]]) -> _Settings:
    settings = _Settings()
    for param in params:
        if isinstance(param, Mapping):
            name, value = str(param["name"]), str(param["value"])
        else:
            name, value = param
        if not _apply(settings, name.strip(), value):
            settings.unknown.append((name, value))
    if "bootstrap_servers" not in settings.client:
        raise ConfigError("kafka_config: bootstrap.servers is required")
    return settings


class _ByteBudget:
    """A FIFO semaphore counting bytes.

    A message larger than the whole budget is charged the whole budget, so it waits for
    everything else to finish and then goes alone instead of waiting forever.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, size: int, max_wait: float) -> int:
        """Charge ``size`` bytes, waiting up to ``max_wait`` seconds; returns the charge."""
        charge = min(size, self.capacity)
        if not self._waiters and self.in_use + charge <= self.capacity:
            self.in_use += charge
            return charge
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (charge, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait([waiter], timeout=max_wait)
        except BaseException:
            # Cancelled: give back a grant that raced with the cancellation.
            self._abandon(entry)
            raise
        if not waiter.done():
            self._abandon(entry)
            raise TimeoutError
        return charge

    def _abandon(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        charge, waiter = entry
        if waiter.done():
            self.release(charge)
        else:
            waiter.cancel()
            self._waiters.remove(entry)
            # The abandoned waiter may have been the head blocking smaller ones.
            self._grant()

    def release(self, charge: int) -> None:
        """Give back bytes charged by :meth:`acquire`."""
        self.in_use -= charge
        self._grant()

    def _grant(self) -> None:
        # Strict FIFO: a big message at the head is not overtaken by small ones forever.
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            charge, waiter = self._waiters.popleft()
            self.in_use += charge
            waiter.set_result(None)


#: Errors that retrying the same message can never fix: the message itself is refused.
_PERMANENT_ERRORS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidRequiredAcksError,
    UnsupportedVersionError,
)


def _is_transient(error: KafkaError) -> bool:
    # Only errors about the message itself are permanent. Everything else is retried until
    # the delivery deadline and then answered with 503, so the sender keeps the data:
    # aiokafka's KafkaTimeoutError (an unreachable broker) is not flagged retriable, and a
    # broker that just restarted answers UnknownError until its metadata settles.
    return not isinstance(error, _PERMANENT_ERRORS)


class KafkaProducer:
    """One aiokafka producer for all topics, configured from Relay's ``kafka_config``.

    Topics are plain Kafka topic names (resolve them with
    :func:`relay.kafka.topics.resolve_topics`).
    """

    def __init__(
        self,
        kafka_config: Iterable[tuple[str, str] | Mapping[str, str]],
        *,
        max_in_flight_bytes: int | None = None,
        budget_timeout: float = DEFAULT_BUDGET_TIMEOUT,
        delivery_timeout: float | None = None,
    ) -> None:
        """Translate ``kafka_config`` (``(name, value)`` pairs or ``{name, value}``).

        Explicit ``max_in_flight_bytes`` and ``delivery_timeout`` win over the
        ``queue.buffering.max.kbytes`` and ``message.timeout.ms`` parameters. Raises
        :class:`~relay.errors.ConfigError` for values that cannot be applied.
        """
        settings = _parse_kafka_config(kafka_config)
        self._settings = settings
        budget = max_in_flight_bytes or settings.max_in_flight_bytes
        self._budget = _ByteBudget(budget or DEFAULT_MAX_IN_FLIGHT_BYTES)
        self._budget_timeout = budget_timeout
        self._delivery_timeout = (
            delivery_timeout or settings.delivery_timeout or DEFAULT_DELIVERY_TIMEOUT
        )
        self._producer: Any = None
        self._closed = False

    @property
    def unknown_params(self) -> list[tuple[str, str]]:
        """``kafka_config`` parameters that have no effect here (logged at start-up)."""
        return list(self._settings.unknown)

    @property
    def in_flight_bytes(self) -> int:
        """Bytes of messages sent or waiting to be sent and not yet acknowledged."""
        return self._budget.in_use

    @property
    def max_in_flight_bytes(self) -> int:
        """The in-flight budget in bytes."""
        return self._budget.capacity

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments given to ``AIOKafkaProducer`` (without secrets' values)."""
        options = self._client_kwargs(ssl_context=False)
        if "sasl_plain_password" in options:
            options["sasl_plain_password"] = "***"
        options["partitioner"] = self._settings.partitioner
        return options

    def _client_kwargs(self, *, ssl_context: bool = True) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            # librdkafka's defaults, which Relay runs with unless configured otherwise.
            "acks": "all",
            # Except the linger: aiokafka keeps one produce request in flight per broker,
            # so what arrives meanwhile is batched anyway; librdkafka's 5 ms on top only
            # delays every answer (each waits for its ack): on the 7 KB error event bench,
            # 5 ms cut the throughput of 16 connections by a third (bench/results/NOTES.md).
            "linger_ms": DEFAULT_LINGER_MS,
            "request_timeout_ms": 30_000,
            "max_batch_size": DEFAULT_MAX_BATCH_SIZE,
            "max_request_size": DEFAULT_MAX_REQUEST_SIZE,
            **self._settings.client,
            # Brokers like Tansu have no idempotent producer; never ask for it.
            "enable_idempotence": False,
        }
        protocol = kwargs.get("security_protocol", "PLAINTEXT")
        if ssl_context and protocol in ("SSL", "SASL_SSL"):
            # Built here, not at parse time: it reads the certificate files.
            kwargs["ssl_context"] = create_ssl_context(**self._settings.ssl)
        return kwargs

    async def start(self) -> None:
        """Connect to the cluster; raises :class:`KafkaProduceError` if it is unreachable."""
        if self._producer is not None:
            return
        if self._settings.unknown:
            names = ", ".join(name for name, _ in self._settings.unknown)
            log.warning("kafka_config parameters without effect: %s", names)
        producer = AIOKafkaProducer(
            partitioner=partitioner(self._settings.partitioner), **self._client_kwargs()
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise KafkaProduceError(f"cannot connect to kafka: {exc}") from exc
        self._producer = producer
        self._closed = False

    # The timeout bounds a shutdown sequence of several steps, which a caller's
    # asyncio.timeout around the call cannot split between them.
    async def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is pending, for at most ``timeout`` seconds, and disconnect."""
        producer, self._producer = self._producer, None
        self._closed = True
        if producer is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout(timeout):
                await producer.flush()
        except TimeoutError:
            log.warning("kafka producer stopped with undelivered messages after %.1fs", timeout)
        try:
            # Closing waits for the sender; give it a moment even when the flush used up
            # the whole timeout.
            async with asyncio.timeout(max(deadline - loop.time(), 1.0)):
                await producer.stop()
        except TimeoutError:
            log.warning("kafka producer did not close in time")

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Produce one message and wait until the broker has acknowledged it.

        Transient errors are retried with exponential backoff until the delivery timeout.
        Raises :class:`KafkaBudgetExceeded` when the message gets no budget within the
        budget timeout and :class:`KafkaProduceError` when it is finally not delivered;
        either way the message is lost and the caller owns its outcome.
        """
        producer = self._producer
        if producer is None or self._closed:
            KAFKA_PRODUCE.inc(1, topic, "error")
            raise KafkaProduceError("kafka producer is not running")
        size = len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers or ())
        try:
            charge = await self._budget.acquire(size, self._budget_timeout)
        except TimeoutError:
            KAFKA_PRODUCE.inc(1, topic, "budget")
            raise KafkaBudgetExceeded(
                f"kafka in-flight budget ({self._budget.capacity} bytes) exhausted"
                f" for {self._budget_timeout}s",
                retry_after=1.0,
            ) from None
        try:
            await self._deliver(producer, topic, value, key, headers)
        except KafkaMessageRejected:
            KAFKA_PRODUCE.inc(1, topic, "rejected")
            raise
        except BaseException:
            KAFKA_PRODUCE.inc(1, topic, "error")
            raise
        else:
            KAFKA_PRODUCE.inc(1, topic, "ok")
        finally:
            self._budget.release(charge)

    async def _deliver(
        self,
        producer: Any,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._delivery_timeout
        backoff = self._settings.retry_backoff
        retries = 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    # Two steps: the first enqueues (cancelling it drops the message), the
                    # second waits for the broker's acknowledgement of the batch.
                    delivery = await producer.send(topic, value, key=key, headers=headers)
                    await delivery
                return
            except TimeoutError:
                raise KafkaProduceError(
                    f"message to {topic!r} not delivered within {self._delivery_timeout}s"
                ) from None
            except KafkaError as exc:
                max_retries = self._settings.max_retries
                if not _is_transient(exc):
                    raise KafkaMessageRejected(f"message to {topic!r} refused: {exc!r}") from exc
                if max_retries is not None and retries >= max_retries:
                    raise KafkaProduceError(f"message to {topic!r} not delivered: {exc!r}") from exc
                pause = min(backoff, deadline - loop.time())
                if pause <= 0:
                    raise KafkaProduceError(f"message to {topic!r} not delivered: {exc!r}") from exc
                log.debug("retrying kafka send to %s after %r", topic, exc)
                await asyncio.sleep(pause)
                backoff = min(backoff * 2, self._settings.retry_backoff_max)
                retries += 1
