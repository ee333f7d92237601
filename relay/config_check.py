"""Checks of a loaded config beyond its types (``relay config validate``).

:func:`relay.config.load_config` already refuses wrong types, naming the key. Unknown keys
it ignores, as a running relay must (Relay does); validation still refuses them, so a typo
is caught before it silently does nothing. These checks also catch values that decode but
cannot work (an upstream that is no URL, a processing relay without a Kafka broker, a
malformed relay key), again naming the key.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from relay.config import Config
from relay.errors import ConfigError
from relay.kafka.router import KafkaRouter
from relay.kafka.topics import resolve_topics, unused_topic_keys
from relay.protocol.keys import KeyParseError, PublicKey


def check_config(config: Config) -> tuple[list[str], list[str]]:
    """``(errors, warnings)``; every message starts with the key it is about."""
    errors: list[str] = [
        f"`{key}`: unknown key (a running relay ignores it, with a warning)"
        for key in config.unknown_keys
    ]
    warnings: list[str] = []
    relay = config.relay
    upstream = urlsplit(relay.upstream)
    if upstream.scheme not in ("http", "https") or not upstream.hostname:
        errors.append(f"`relay.upstream`: expected an http(s) URL, got {relay.upstream!r}")
    for key, port in (("relay.port", relay.port), ("relay.internal_port", relay.internal_port)):
        if port is not None and not 0 <= port <= 65535:
            errors.append(f"`{key}`: {port} is not a port number")
    if relay.mode == "managed" and config.processing.enabled and not config.processing.redis_url:
        warnings.append("`processing.redis`: unset, quotas are not enforced across relays")
    secondary = {
        name: [(p.name, str(p.value)) for p in params]
        for name, params in config.processing.secondary_kafka_configs.items()
    }
    redis = config.processing.redis_url
    if redis and urlsplit(redis).scheme not in ("redis", "rediss", "unix"):
        errors.append("`processing.redis`: expected a redis://, rediss:// or unix:// URL")
    warnings.extend(
        f"`processing.topics.{key}`: names no topic this relay writes (ignored)"
        for key in unused_topic_keys(config.processing.topics)
    )
    try:
        topics = resolve_topics(config.processing.topics, secondary)
    except (ConfigError, ValueError, TypeError) as exc:
        detail = exc.detail if isinstance(exc, ConfigError) else str(exc)
        errors.append(f"`processing.topics`: {detail}")
    else:
        if config.processing.enabled or config.processing.kafka_config:
            # Builds (without connecting) the producer of every Kafka config a topic uses;
            # the error names the config key (``processing.kafka_config`` or a secondary).
            params = [(p.name, str(p.value)) for p in config.processing.kafka_config]
            try:
                KafkaRouter(params, secondary, topics)
            except ConfigError as exc:
                key, sep, detail = exc.detail.partition(": ")
                errors.append(f"`{key}`: {detail}" if sep else exc.detail)
    for relay_id, static in config.auth.static_relays.items():
        try:
            PublicKey.parse(static.public_key)
        except KeyParseError:
            errors.append(f"`auth.static_relays.{relay_id}.public_key`: not a relay public key")
    if config.outcomes.batch_size <= 0:
        errors.append("`outcomes.batch_size`: must be positive")
    if config.cache.batch_size <= 0:
        errors.append("`cache.batch_size`: must be positive")
    if config.limits.max_concurrent_requests <= 0:
        errors.append("`limits.max_concurrent_requests`: must be positive")
    return errors, warnings


def spool_batch_size_error(config: Config, total_memory: int) -> str | None:
    """Relay's start-up check of ``spool.envelopes.batch_size_bytes``, or None if it holds.

    A spool batch may take at most a tenth of the memory below the backpressure watermark
    (``total_memory * max_backpressure_memory_percent``): with bigger batches a buffer that
    stopped unspooling under memory pressure could never fill a batch to spool, and would
    deadlock. ``total_memory`` is the system's (or the limiting cgroup's) memory in bytes;
    0 (unknown) passes.
    """
    if total_memory <= 0:
        return None  # memory unknown: no basis to refuse a start on
    spool = config.spool.envelopes
    maximum = total_memory * spool.max_backpressure_memory_percent * 0.1
    if spool.batch_size_bytes > maximum:
        return (
            f"the configured `spool.envelopes.batch_size_bytes` is {int(spool.batch_size_bytes)}"
            f" bytes but it must be <= than {int(maximum)} bytes"
        )
    return None
