"""The relay's typed configuration, read from ``CONFIG_DIR/config.yml`` with Relay's key names.

Keys our relay models are decoded into msgspec Structs. Keys Sentry Relay knows but we
do not use are accepted and dropped with a debug log, so a Relay config works unchanged.
Keys neither knows name the key: ``relay config validate`` (and :func:`config_from_dict`)
refuse them, while a running relay, like Relay, ignores them with a warning at start-up
(:func:`warn_unknown_keys`), so a config Relay accepts never stops our relay.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from relay import RELAY_PROTOCOL_VERSION
from relay.config_vars import substitute
from relay.errors import AuthError, ConfigError
from relay.protocol.auth import parse_dsn

log = logging.getLogger(__name__)


class ByteSize(int):
    """A size in bytes; config files may write it as ``1048576``, ``"1MiB"`` or ``"1MB"``."""


_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_byte_size(value: object) -> ByteSize:
    """Parse an int or a string with a unit (``"10MiB"``, ``"1 KB"``) into bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int):
        return ByteSize(value)
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _SIZE_UNITS:
            return ByteSize(int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]))
    raise ValueError(f"invalid size {value!r} (expected bytes or e.g. '1MiB')")


def _dec_hook(typ: type, obj: Any) -> Any:
    if typ is ByteSize:
        return parse_byte_size(obj)
    raise NotImplementedError(f"cannot decode {typ}")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, int):
        return int(obj)
    raise NotImplementedError(f"cannot encode {type(obj)}")


NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class RelaySection(_Section):
    mode: Literal["managed", "proxy", "static", "capture"] = "managed"
    instance: Literal["default", "canary"] = "default"
    upstream: str = "https://sentry.io/"
    host: str = "127.0.0.1"
    port: int = 3000
    internal_host: str | None = None
    internal_port: int | None = None
    override_project_ids: bool = False
    #: Upstream URL advertised to downstream relays in the project configs we serve.
    advertised_upstream: str | None = None
    #: Ours: when a 200 is sent. ``default``: once the envelope is accepted in memory;
    #: ``durable``: once it is in Kafka (processing) or with the upstream or fsynced to the
    #: spool (POP). See relay.server.durable.
    ack: Literal["default", "durable"] = "default"
    #: Ours: serve ingest requests (envelope, store, browser reports) with the lean HTTP
    #: front door (relay.server.front); ``false`` leaves every request to aiohttp (same
    #: answers, ~0.05 ms more CPU each).
    front_door: bool = True
    #: The Sentry Relay version whose protocol this relay reports at registration (our own
    #: key; upstreams refuse versions they do not support).
    protocol_version: str = RELAY_PROTOCOL_VERSION


class HttpSection(_Section):
    timeout: float = 5.0
    connection_timeout: float = 3.0
    max_retry_interval: float = 60.0
    auth_interval: float | None = 600.0
    outage_grace_period: float = 10.0
    retry_delay: float = 1.0
    project_failure_interval: float = 90.0
    encoding: Literal["identity", "deflate", "gzip", "br", "zstd"] = "zstd"
    host_header: str | None = None
    forward: bool = True
    #: Send metric buckets (and outcomes as metrics) in batches to ``/api/0/relays/metrics/``
    #: instead of one envelope per project.
    global_metrics: bool = False


class CacheSection(_Section):
    project_request_full_config: bool = False
    project_expiry: float = 300.0
    project_grace_period: float = 120.0
    miss_expiry: float = 60.0
    batch_interval: float = 100.0  # milliseconds, as in Relay
    batch_size: int = 500
    relay_expiry: float = 3600.0
    downstream_relays_batch_interval: float = 100.0  # milliseconds
    global_config_fetch_interval: float = 10.0
    #: How long an envelope may wait for its project config before it is dropped.
    envelope_expiry: float = 600.0


class LimitsSection(_Section):
    max_concurrent_requests: int = 100
    #: Parallel ``projectconfigs`` requests per fetch round (each up to ``cache.batch_size``).
    max_concurrent_queries: int = 5
    #: How long one project config request is retried before it counts as failed.
    query_timeout: float = 30.0
    max_event_size: ByteSize = ByteSize(1024**2)
    max_attachment_size: ByteSize = ByteSize(200 * 1024**2)
    max_attachment_count: int = 30
    max_attachments_size: ByteSize = ByteSize(200 * 1024**2)
    max_upload_size: ByteSize = ByteSize(1024**3)
    max_client_reports_size: ByteSize = ByteSize(100 * 1024)
    max_client_reports_count: int = 100
    max_check_in_size: ByteSize = ByteSize(100 * 1024)
    max_envelope_size: ByteSize = ByteSize(200 * 1024**2)
    max_session_count: int = 100
    max_sessions_size: ByteSize = ByteSize(10 * 1024**2)
    max_api_payload_size: ByteSize = ByteSize(20 * 1024**2)
    max_api_file_upload_size: ByteSize = ByteSize(40 * 1024**2)
    max_api_chunk_upload_size: ByteSize = ByteSize(100 * 1024**2)
    max_profile_size: ByteSize = ByteSize(50 * 1024**2)
    max_trace_metric_size: ByteSize = ByteSize(1024**2)
    max_log_size: ByteSize = ByteSize(2 * 1024**2)
    max_span_size: ByteSize = ByteSize(10 * 1024**2)
    max_standalone_span_count: int = 25
    max_container_size: ByteSize = ByteSize(12 * 1024**2)
    max_metric_buckets_size: ByteSize = ByteSize(1024**2)
    max_replay_compressed_size: ByteSize = ByteSize(10 * 1024**2)
    max_thread_count: int | None = None
    shutdown_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    # Admission control (our own keys; relay.server.admission).
    #: Bytes of envelopes held in memory while processed or forwarded; over it: 503.
    max_memory_bytes: ByteSize = ByteSize(512 * 1024**2)
    #: Bytes one project may hold in memory; over it: 429 (503 to downstream relays).
    max_project_memory_bytes: ByteSize = ByteSize(128 * 1024**2)
    #: Bytes heavy envelopes may hold (unset: 3/4 of ``max_memory_bytes``, the rest is kept
    #: for cheap envelopes).
    max_heavy_memory_bytes: ByteSize | None = None
    #: Envelopes larger than this, or with attachments or replays, are heavy.
    heavy_envelope_size: ByteSize = ByteSize(1024**2)
    #: Envelopes larger than ``heavy_envelope_size`` held at once (more: 503), and heavy
    #: envelopes sent upstream at once (more wait for a slot).
    max_concurrent_heavy: Annotated[int, msgspec.Meta(ge=1)] = 16


class LoggingSection(_Section):
    level: Literal["off", "error", "warn", "info", "debug", "trace"] = "info"
    format: Literal["auto", "pretty", "simplified", "json"] = "auto"


class MetricsSection(_Section):
    """The relay's own metrics: statsd output as in Relay (Prometheus ``/metrics`` is always on)."""

    #: ``host:port`` of a statsd server (UDP); unset: no statsd output.
    statsd: str | None = None
    #: Bytes per statsd datagram (several metrics are packed into one).
    statsd_buffer_size: Annotated[int, msgspec.Meta(ge=64, le=65000)] | None = None
    #: Prefix of every statsd metric name.
    prefix: str = "sentry.relay"
    #: Tags added to every statsd metric.
    default_tags: dict[str, str] = msgspec.field(default_factory=dict)
    #: Tag that carries this machine's hostname; unset: no hostname tag.
    hostname_tag: str | None = None
    #: Seconds between two statsd flushes of counters and gauges; 0 disables them.
    periodic_secs: NonNegativeInt = 5

    def __post_init__(self) -> None:
        if self.statsd is not None:
            host, sep, port = self.statsd.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"`metrics.statsd` must be host:port, got {self.statsd!r}")


class SentrySection(_Section):
    """Reporting of the relay's own errors to a Sentry project (see relay.server.self_report)."""

    dsn: str | None = None
    enabled: bool = False
    environment: str | None = None
    server_name: str | None = None
    default_tags: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.dsn is not None:
            try:
                parse_dsn(self.dsn)
            except AuthError as exc:
                # The message names the problem, never the DSN: it may hold a secret key.
                raise ValueError(str(exc)) from None

    @property
    def enabled_dsn(self) -> str | None:
        """The DSN to report to, or None if reporting is off (as Relay's ``enabled_dsn``)."""
        return self.dsn if self.enabled and self.dsn else None


class HealthSection(_Section):
    """Readiness probes (relay.server.health_check); Relay's defaults."""

    #: How often the probes run. Shorter reacts faster but flaps more.
    refresh_interval_ms: NonNegativeInt = 3000
    #: Absolute memory watermark; by default only ``max_memory_percent`` applies.
    max_memory_bytes: ByteSize | None = None
    #: Memory watermark as a fraction of the system's (or the cgroup's) total memory.
    max_memory_percent: Annotated[float, msgspec.Meta(ge=0.0)] = 0.95
    #: A probe that takes longer than this counts as failed.
    probe_timeout_ms: NonNegativeInt = 900
    #: Memory readings are reused for at most this long.
    memory_stat_refresh_frequency_ms: NonNegativeInt = 100


class KafkaParam(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    value: str | int | float | bool


class ObjectstoreAuth(_Section):
    """Credentials for objectstore's token auth (Relay's ``processing.objectstore.auth``)."""

    #: Identifier of the signing key; objectstore looks up the public key by it.
    key_id: str
    #: Ed25519 private key (PEM, PKCS#8) that signs the per-request tokens.
    signing_key: str


class ObjectstoreSection(_Section):
    """Where processing relays store attachments instead of chunking them into Kafka."""

    #: Base URL of the objectstore service; unset: attachments always go through Kafka.
    objectstore_url: str | None = None
    #: Uploads running at the same time.
    max_concurrent_requests: Annotated[int, msgspec.Meta(ge=1)] = 10
    #: Relay's queue of uploads waiting for a slot (accepted; ours wait on the slots).
    max_backlog: NonNegativeInt = 20
    #: Seconds an upload of an attachment may take, retries included.
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 60
    #: Seconds a streamed upload may take.
    stream_timeout: Annotated[float, msgspec.Meta(gt=0)] = 300
    #: Seconds between upload attempts.
    retry_delay: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    #: Attempts per upload (connection errors, 429 and 5xx are retried).
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 5
    #: Send an attachment through Kafka when its upload fails; off: drop it with an
    #: ``upload_failed`` outcome.
    fallback_to_kafka: bool = True
    #: Token auth; unset: requests carry no credentials.
    auth: ObjectstoreAuth | None = None


class ProcessingSection(_Section):
    enabled: bool = False
    kafka_config: list[KafkaParam] = msgspec.field(default_factory=list)
    #: Further Kafka clusters by name; ``topics.<key>: {name: ..., config: NAME}`` produces
    #: that topic with ``NAME``'s parameters instead of ``kafka_config``.
    secondary_kafka_configs: dict[str, list[KafkaParam]] = msgspec.field(default_factory=dict)
    topics: dict[str, Any] = msgspec.field(default_factory=dict)
    kafka_validate_topics: bool = False
    redis: str | dict[str, Any] | None = None
    attachment_chunk_size: ByteSize = ByteSize(1024**2)
    projectconfig_cache_prefix: str = "relayconfig"
    max_secs_in_future: int = 60
    max_session_secs_in_past: int = 5 * 24 * 3600
    objectstore: ObjectstoreSection = msgspec.field(default_factory=ObjectstoreSection)
    #: The older place of ``geoip.path`` (used when that is unset).
    geoip_path: str | None = None

    @property
    def redis_url(self) -> str | None:
        """The Redis URL, from either the plain form or ``{server: ...}``; None if unset."""
        if isinstance(self.redis, str):
            return self.redis or None
        if isinstance(self.redis, dict):
            server = self.redis.get("server") or self.redis.get("cluster_nodes")
            if isinstance(server, list):
                server = server[0] if server else None
            return str(server) if server else None
        return None


class OutcomesSection(_Section):
    emit_outcomes: bool | Literal["as_client_reports"] = "as_client_reports"
    source: str | None = None
    batch_size: int = 1000
    batch_interval: float = 500.0  # milliseconds


class StaticRelay(msgspec.Struct):
    public_key: str
    internal: bool = False


class AuthSection(_Section):
    ready: Literal["authenticated", "always"] = "authenticated"
    static_relays: dict[str, StaticRelay] = msgspec.field(default_factory=dict)
    signature_max_age: float = 300.0


class AggregatorSection(_Section):
    """Relay's metrics aggregator options (``relay.metrics.AggregatorConfig`` uses them)."""

    bucket_interval: int = 10
    initial_delay: int = 30
    max_secs_in_past: int = 5 * 24 * 3600
    max_secs_in_future: int = 60
    max_total_bucket_bytes: int | None = None
    max_project_key_bucket_bytes: int | None = None
    flush_partitions: int | None = None
    flush_batching: Literal["project", "bucket", "partition", "none"] | None = None
    #: Relay's older name for ``flush_batching``.
    shift_key: Literal["project", "bucket", "partition", "none"] | None = None
    max_name_length: int = 200
    max_tag_key_length: int = 200
    max_tag_value_length: int = 200
    max_flush_bytes: int = 5_000_000
    flush_interval: float = 0.1

    def options(self) -> dict[str, Any]:
        """The options for ``AggregatorConfig.from_options`` (unset ones left out)."""
        data = {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}
        if "shift_key" in data:
            data.setdefault("flush_batching", data.pop("shift_key"))
        return data


class EnvelopeSpool(_Section):
    path: str | None = None
    max_disk_size: ByteSize = ByteSize(500 * 1024**2)
    #: Relay's flag: on an ephemeral disk, shutdown drains to the upstream instead of
    #: spooling in-flight data (see relay.server.spool).
    ephemeral: bool = False
    #: Envelopes replayed per second at most while new traffic flows (None: no limit).
    max_unspool_envelopes_per_second: int | None = None
    #: Ours: seconds a POP retries an envelope in memory before spooling it (unset: 10).
    spool_after: Annotated[float, msgspec.Meta(gt=0)] | None = None
    #: Relay's spooling batch size: a project's envelopes waiting for its config move to
    #: disk once they hold more (relay.server.pending). Validated as Relay does at start:
    #: at most a tenth of the memory below the backpressure watermark
    #: (relay.config_check.spool_batch_size_error).
    batch_size_bytes: ByteSize = ByteSize(10 * 1024)
    #: Relay's memory fraction above which the buffer stops unspooling (validation only).
    max_backpressure_memory_percent: Annotated[float, msgspec.Meta(ge=0.0)] = 0.8


class SpoolSection(_Section):
    envelopes: EnvelopeSpool = msgspec.field(default_factory=EnvelopeSpool)


class NormalizationSection(_Section):
    """How thoroughly events are normalized here (Relay's ``normalization``)."""

    #: ``full``: normalize as the last hop does (unknown fields removed, ``errors`` added)
    #: and mark event items ``fully_normalized``. ``default``: POP relays keep what a newer
    #: upstream may understand; processing relays normalize fully anyway.
    level: Literal["default", "full"] = "default"


class GeoIpSection(_Section):
    """The GeoIP database that fills ``user.geo`` (Relay's ``geoip``)."""

    #: Path of a MaxMind DB (``.mmdb``) file; unset: no geo lookups.
    path: str | None = None

    def resolved_path(self, processing: ProcessingSection) -> str | None:
        """``geoip.path``, else the legacy ``processing.geoip_path``."""
        return self.path or processing.geoip_path


class RoutingSection(_Section):
    """Traffic steering (Relay's ``routing``)."""

    #: Forward envelope items of unknown types (and attachments of unknown
    #: ``attachment_type``) upstream; when off they are removed without an outcome. Unset:
    #: on, except on processing relays, which cannot store them.
    accept_unknown_items: bool | None = None

    def accepts_unknown_items(self, processing: bool) -> bool:
        """Whether unknown items are kept (``accept_unknown_items``, resolved)."""
        return not processing if self.accept_unknown_items is None else self.accept_unknown_items


class KillswitchSection(_Section):
    """Ours (Relay has none): where kill-switches are read (relay.killswitch)."""

    #: Redis URL of the kill-switch hash; defaults to ``processing.redis``. None/"": off.
    redis: str | None = None
    redis_key: str = "relay:killswitches"
    #: Seconds between two reads of the hash.
    poll_interval: float = 1.0


class UploadCredentials(_Section):
    """Keys for upload locations, instead of the relay's own credentials."""

    #: Verifies locations in uploads and attachment placeholders.
    verification_key: str
    #: Signs the locations this relay hands out (processing relays; Relay's format).
    signing_key: str | None = None


class UploadSection(_Section):
    """Uploads of large attachments (the TUS ``/upload/`` endpoint, relay.server.uploads)."""

    #: Uploads in flight at once; more are refused with 503 instead of queued.
    max_concurrent_requests: Annotated[int, msgspec.Meta(ge=1)] = 100
    #: Seconds one upload (creation or bytes) may take, retries included.
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    #: Seconds a signed location stays valid: for the bytes and for the placeholder.
    max_age: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    #: ``{verification_key, signing_key}`` for upload locations; unset: the relay's own
    #: credentials. Relays that verify each other's locations must share the keys.
    credentials: UploadCredentials | None = None


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, dict=True):
    """The whole configuration. Every section has Relay's defaults.

    ``dict=True`` only to carry :attr:`unknown_keys` outside the fields (never serialized).
    """

    relay: RelaySection = msgspec.field(default_factory=RelaySection)
    http: HttpSection = msgspec.field(default_factory=HttpSection)
    cache: CacheSection = msgspec.field(default_factory=CacheSection)
    limits: LimitsSection = msgspec.field(default_factory=LimitsSection)
    logging: LoggingSection = msgspec.field(default_factory=LoggingSection)
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)
    sentry: SentrySection = msgspec.field(default_factory=SentrySection)
    health: HealthSection = msgspec.field(default_factory=HealthSection)
    processing: ProcessingSection = msgspec.field(default_factory=ProcessingSection)
    outcomes: OutcomesSection = msgspec.field(default_factory=OutcomesSection)
    auth: AuthSection = msgspec.field(default_factory=AuthSection)
    aggregator: AggregatorSection = msgspec.field(default_factory=AggregatorSection)
    spool: SpoolSection = msgspec.field(default_factory=SpoolSection)
    killswitches: KillswitchSection = msgspec.field(default_factory=KillswitchSection)
    routing: RoutingSection = msgspec.field(default_factory=RoutingSection)
    upload: UploadSection = msgspec.field(default_factory=UploadSection)
    normalization: NormalizationSection = msgspec.field(default_factory=NormalizationSection)
    geoip: GeoIpSection = msgspec.field(default_factory=GeoIpSection)

    @property
    def processing_enabled(self) -> bool:
        return self.processing.enabled

    def to_dict(self) -> dict[str, Any]:
        """The effective config as plain data (for ``relay config show``)."""
        data: dict[str, Any] = msgspec.to_builtins(self, enc_hook=_enc_hook)
        return data

    @property
    def unknown_keys(self) -> tuple[str, ...]:
        """Keys of the loaded file that no relay knows, ignored (``processing.foo``)."""
        keys: tuple[str, ...] = self.__dict__.get(_UNKNOWN_KEYS, ())
        return keys


_UNKNOWN_KEYS = "_unknown_keys"


def _with_unknown_keys(config: Config, keys: tuple[str, ...]) -> Config:
    if keys:
        config.__dict__[_UNKNOWN_KEYS] = keys
    return config


def warn_unknown_keys(config: Config) -> None:
    """Log each ignored unknown key (at start-up, once logging is set up)."""
    for key in config.unknown_keys:
        log.warning("config: ignoring unknown key `%s`", key)


# Keys Sentry Relay 26.9 knows, per section, beyond the ones modelled above. They are
# accepted and ignored so that an unchanged Relay config.yml loads.
_RELAY_ONLY_KEYS: dict[str, frozenset[str]] = {
    "relay": frozenset({"config_reload_interval", "tls_port",
                        "tls_identity_path", "tls_identity_password"}),
    "http": frozenset({"dns_cache"}),
    # event_*: names of older Relay versions, which Relay 26.9 still ignores silently.
    "cache": frozenset({"project_refresh_interval", "file_interval", "envelope_buffer_size",
                        "eviction_interval", "event_buffer_expiry", "event_expiry",
                        "event_buffer_size"}),
    "limits": frozenset({"max_expanded_log_operations", "max_expanded_span_operations",
                         "max_expanded_trace_metric_operations",
                         "max_replay_uncompressed_size", "max_replay_message_size",
                         "max_removed_attribute_key_size", "max_pool_concurrency",
                         "idle_timeout", "max_connections",
                         "tcp_listen_backlog"}),
    "logging": frozenset({"enable_backtraces", "traces_sample_rate"}),
    "sentry": frozenset({"_crash_db"}),
    "processing": frozenset({"max_rate_limit", "quota_cache_ratio", "quota_cache_max"}),
    "outcomes": frozenset({"emit_client_outcomes", "aggregator"}),
    "aggregator": frozenset({"aggregator_size"}),
    "spool": frozenset(),
    "spool.envelopes": frozenset({"flush_timeout_secs",
                                  "max_envelope_delay_secs", "disk_usage_refresh_frequency_ms",
                                  "partitions",
                                  "partitioning", "max_memory_size", "min_connections",
                                  "max_connections", "unspool_interval"}),
    "auth": frozenset(),
}  # fmt: skip

# Whole sections Relay has that we do not model (yet): accepted as they are.
_RELAY_ONLY_SECTIONS = frozenset(
    {"secondary_aggregators", "cogs"}
)  # fmt: skip


def _strip_relay_only(data: dict[str, Any], unknown: list[str] | None = None) -> dict[str, Any]:
    """Drop keys only Relay knows (with a debug log); raise on keys nobody knows, or, given
    an ``unknown`` list, collect them there."""
    known_sections = {f.name for f in msgspec.structs.fields(Config)}
    out: dict[str, Any] = {}
    for section, value in data.items():
        if section in _RELAY_ONLY_SECTIONS:
            log.debug("config: ignoring Relay section %r", section)
            continue
        if section not in known_sections:
            home = _section_of_key(section)
            if home is None and unknown is not None:
                unknown.append(str(section))
                continue
            if home is None:
                raise ConfigError(f"invalid config: unknown key `{section}`")
            # Relay ignores keys it does not expect; a key of one of its sections put at the
            # top level is a slip worth a warning, not a relay that refuses to start.
            log.warning("config: ignoring `%s`, which belongs under `%s`", section, home)
            continue
        if isinstance(value, dict):
            value = _strip_section(section, value)
        out[section] = value
    return out


def _section_of_key(key: str) -> str | None:
    """The section that has a key named ``key`` (``processing`` for ``kafka_config``)."""
    for field in msgspec.structs.fields(Config):
        section_type = field.type
        if (
            isinstance(section_type, type)
            and issubclass(section_type, msgspec.Struct)
            and key in {f.name for f in msgspec.structs.fields(section_type)}
        ):
            return field.name
    for path, keys in _RELAY_ONLY_KEYS.items():
        if key in keys:
            return path
    return None


def _strip_section(path: str, value: dict[str, Any]) -> dict[str, Any]:
    ignored = _RELAY_ONLY_KEYS.get(path, frozenset())
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        if key in ignored:
            log.debug("config: ignoring Relay key %s.%s", path, key)
            continue
        sub = f"{path}.{key}"
        cleaned[key] = _strip_section(sub, item) if sub in _RELAY_ONLY_KEYS else item
    return cleaned


def config_from_dict(data: Mapping[str, Any], *, strict: bool = True) -> Config:
    """Build a Config from plain data, with errors that name the offending key.

    ``strict=False`` ignores unknown keys instead (as Relay does), listing them in
    :attr:`Config.unknown_keys`; wrong values are errors either way.
    """
    unknown: list[str] = []
    if strict:
        cleaned = _strip_relay_only(dict(data))
    else:
        # Unknown keys are deleted from the data below: never from the caller's.
        cleaned = _strip_relay_only(copy.deepcopy(dict(data)), unknown)
    while True:
        try:
            config = msgspec.convert(cleaned, Config, dec_hook=_dec_hook)
        except msgspec.ValidationError as exc:
            found = None if strict else _unknown_field(exc)
            if found is None or not _delete_key(cleaned, *found):
                raise ConfigError(f"invalid config: {_describe(exc)}") from None
            path, field = found
            unknown.append(f"{path}.{field}" if path else field)
            continue
        return _with_unknown_keys(config, tuple(unknown))


_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `([^`]+)` - at `\$\.?([^`]*)`")
#: One step of a msgspec error path: ``.key``, ``[index]`` or ``['key']``.
_PATH_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[(['\"])(.*?)\3\]")


def _unknown_field(exc: msgspec.ValidationError) -> tuple[str, str] | None:
    """``(path, field)`` of an unknown-field error (path ``processing``), else None."""
    match = _UNKNOWN_FIELD.match(str(exc))
    return None if match is None else (match.group(2), match.group(1))


def _delete_key(data: dict[str, Any], path: str, field: str) -> bool:
    """Delete ``field`` from the mapping at ``path``; False if the path cannot be followed."""
    node: Any = data
    pos = 0
    while pos < len(path):
        step = _PATH_STEP.match(path, pos)
        if step is None or step.end() == pos:
            return False
        name, index, _, quoted = step.groups()
        key: Any = name if name is not None else int(index) if index is not None else quoted
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
        pos = step.end()
    if not isinstance(node, dict) or field not in node:
        return False
    del node[field]
    return True


def _describe(exc: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.limits.max_event_size`"; users write `limits.max_event_size`.
    text = str(exc)
    unknown = re.match(r"Object contains unknown field `([^`]+)` - at `\$\.?([^`]*)`", text)
    if unknown:
        field, path = unknown.groups()
        return f"unknown key `{path + '.' if path else ''}{field}`"
    return text.replace("`$.", "`").replace("`$`", "the top level")


def load_config(config_dir: Path | None, *, strict: bool = False) -> Config:
    """Load ``config.yml`` from ``config_dir`` (a missing file or dir means defaults), with
    its ``${file:PATH}`` and ``${NAME}`` values substituted (relay.config_vars).

    Unknown keys are ignored and listed in :attr:`Config.unknown_keys` unless ``strict``.
    """
    data: dict[str, Any] = {}
    if config_dir is not None:
        path = config_dir / "config.yml"
        if path.exists():
            try:
                loaded = yaml.safe_load(path.read_text())
            except yaml.YAMLError as exc:
                raise ConfigError(f"invalid config: {path} is not valid YAML: {exc}") from None
            if loaded is not None and not isinstance(loaded, dict):
                raise ConfigError(f"invalid config: {path} must hold a mapping")
            data = substitute(loaded or {}, config_dir)
    return config_from_dict(data, strict=strict)


class Overrides(msgspec.Struct, kw_only=True):
    """Values from command-line flags or ``RELAY_*`` variables; flags win over env."""

    mode: str | None = None
    upstream: str | None = None
    host: str | None = None
    port: str | None = None
    processing: str | None = None
    kafka_url: str | None = None
    redis_url: str | None = None
    id: str | None = None
    public_key: str | None = None
    secret_key: str | None = None
    instance: str | None = None
    log_level: str | None = None
    log_format: str | None = None
    outcome_source: str | None = None
    shutdown_timeout: str | None = None


_ENV_NAMES = {
    "mode": "RELAY_MODE",
    "upstream": "RELAY_UPSTREAM_URL",
    "host": "RELAY_HOST",
    "port": "RELAY_PORT",
    "processing": "RELAY_PROCESSING_ENABLED",
    "kafka_url": "RELAY_KAFKA_BROKER_URL",
    "redis_url": "RELAY_REDIS_URL",
    "id": "RELAY_ID",
    "public_key": "RELAY_PUBLIC_KEY",
    "secret_key": "RELAY_SECRET_KEY",
    "instance": "RELAY_INSTANCE",
    "log_level": "RELAY_LOG_LEVEL",
    "log_format": "RELAY_LOG_FORMAT",
    "shutdown_timeout": "SHUTDOWN_TIMEOUT",
}


def overrides_from_env(env: Mapping[str, str] | None = None) -> Overrides:
    """Read Relay's override variables (``RELAY_UPSTREAM_URL``, ``RELAY_PORT``, ...)."""
    env = os.environ if env is None else env
    return Overrides(**{field: env[name] for field, name in _ENV_NAMES.items() if env.get(name)})


def merge_overrides(base: Overrides, top: Overrides) -> Overrides:
    """Values set in ``top`` win over ``base``."""
    values = msgspec.structs.asdict(base)
    values.update({k: v for k, v in msgspec.structs.asdict(top).items() if v is not None})
    return Overrides(**values)


def apply_overrides(config: Config, ov: Overrides) -> Config:
    """Apply CLI/env overrides to a loaded config, validating each value."""
    data = config.to_dict()

    def put(section: str, key: str, value: object) -> None:
        data.setdefault(section, {})[key] = value

    if ov.mode:
        put("relay", "mode", ov.mode)
    if ov.upstream:
        put("relay", "upstream", ov.upstream)
    if ov.host:
        put("relay", "host", ov.host)
    if ov.port:
        if not ov.port.isdigit():
            raise ConfigError(f"invalid config: `relay.port` must be a number, got {ov.port!r}")
        put("relay", "port", int(ov.port))
    if ov.processing:
        put("processing", "enabled", ov.processing.lower() in ("1", "true", "yes", "on"))
    if ov.kafka_url:
        params = [p for p in data["processing"]["kafka_config"] if p["name"] != "bootstrap.servers"]
        params.append({"name": "bootstrap.servers", "value": ov.kafka_url})
        put("processing", "kafka_config", params)
    if ov.redis_url:
        put("processing", "redis", ov.redis_url)
    if ov.instance:
        put("relay", "instance", ov.instance)
    if ov.log_level:
        put("logging", "level", ov.log_level)
    if ov.log_format:
        put("logging", "format", ov.log_format)
    if ov.outcome_source:
        put("outcomes", "source", ov.outcome_source)
    if ov.shutdown_timeout:
        put("limits", "shutdown_timeout", float(ov.shutdown_timeout))
    return _with_unknown_keys(config_from_dict(data), config.unknown_keys)
