"""Metrics on every hop: sessions and received buckets are aggregated, then sent on.

A relay that extracts sessions (processing relays always; POP relays when the project
enables ``sessionMetrics``) takes ``session``/``sessions`` items out of the envelope,
turns them into ``sessions`` buckets and merges them into its aggregator. Managed relays
also take ``metric_buckets`` items (and the buckets of ``/api/0/relays/metrics/``
batches) out of envelopes and aggregate them, as Relay does: buckets are normalized,
internal-only namespaces are dropped unless an internal relay sent them, and the
metadata restarts here for untrusted senders.

Flushed buckets go to ``ingest-metrics`` (processing; ``sessions`` namespace only) or
upstream (POP): as one ``metric_buckets`` envelope per project and size-bounded batch,
or, with ``http.global_metrics``, as batches of all projects to
``/api/0/relays/metrics/``. Every upstream request carries the flush partition in
``X-Sentry-Relay-Shard``. Each layer thus sends a fraction of what it received.

As in Relay, a POP aggregates received buckets before their project config is known (the
ingestor hands them over instead of parking them with the envelope). A flush that finds a
project still being fetched returns its buckets to the aggregator for a later flush; the
final flush at shutdown waits for such configs (within the shutdown timeout) instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from relay.config import Config
from relay.kafka.metrics import MetricBucket, encode_metric_message, metric_headers
from relay.kafka.router import KafkaSink
from relay.metrics import AggregatorConfig, Bucket, decode_buckets, prepare_buckets
from relay.metrics.bucket import split_keyed
from relay.metrics.sessions import (
    MINIMUM_CLOCK_DRIFT,
    SessionAttributes,
    SessionContext,
    process_sessions,
    should_extract_abnormal_mechanism,
    should_extract_sessions,
)
from relay.protocol.encoding import zstd_compress
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.protocol.project_config import ProjectState
from relay.server.aggregator_service import (
    AggregatorService,
    metric_buckets_payloads,
    to_kafka_bucket,
)
from relay.server.event_normalization import inbound_filters
from relay.server.request_meta import RequestMeta
from relay.server.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)

#: Looks up a cached project state by public key (None while unknown).
StateLookup = Callable[[str], ProjectState | None]
#: The current global config, None while it is not known.
GlobalLookup = Callable[[], dict[str, Any] | None]

_SESSION_ITEMS = frozenset({ItemType.SESSION, ItemType.SESSIONS})
#: How long a POP relay keeps retrying a flushed batch towards its upstream.
_UPSTREAM_DEADLINE = 60.0
#: At shutdown, how often the final flush looks again for a config still being fetched.
_STATE_POLL_SECS = 0.05
#: Share of the shutdown timeout the final flush may wait for such configs (the rest is
#: left for the delivery itself).
_STATE_WAIT_SHARE = 0.6


class MetricsPipeline:
    """Session extraction and the aggregator, with delivery to Kafka or upstream."""

    def __init__(
        self,
        config: Config,
        lookup: StateLookup,
        *,
        producer: KafkaSink | None = None,
        metrics_topic: str | None = None,
        upstream: UpstreamClient | None = None,
        global_config: GlobalLookup | None = None,
    ) -> None:
        self.config = config
        self.lookup = lookup
        #: The global config (its generic inbound filters apply to sessions too).
        self.global_config = global_config
        self.producer = producer
        self.metrics_topic = metrics_topic
        self.upstream = upstream
        self.aggregator_config = AggregatorConfig.from_options(config.aggregator.options())
        deliver: Callable[[int, dict[str, list[Bucket]]], Awaitable[None]] = (
            self._to_kafka if producer is not None else self._to_upstream
        )
        self.service = AggregatorService(self.aggregator_config, deliver)
        #: ``metric_buckets`` items that were not a valid bucket list (dropped, as in Relay).
        self.invalid_items = 0
        #: Set by :meth:`stop`: until then the final flush waits for pending configs.
        self._state_deadline: float | None = None

    async def start(self) -> None:
        """Start the periodic flush."""
        await self.service.start()

    async def stop(self, timeout: float) -> None:
        """Flush everything (Relay flushes its aggregator on shutdown) and deliver it."""
        self._state_deadline = time.monotonic() + timeout * _STATE_WAIT_SHARE
        await self.service.stop(timeout)

    def take_sessions(self, envelope: Envelope, meta: RequestMeta, state: ProjectState) -> None:
        """Extract the envelope's session items into the aggregator and remove them.

        Relays that do not extract for this project leave the items in place (they are
        forwarded). Sessions the project's inbound filters reject (release, client IP,
        localhost, web crawler user agent) and invalid sessions are dropped without an
        outcome, as in Relay.
        """
        processing = self.config.processing.enabled
        if not should_extract_sessions(state.config, processing=processing):
            return
        sessions = [item for item in envelope.items if item.type in _SESSION_ITEMS]
        if not sessions:
            return
        envelope.items = [item for item in envelope.items if item.type not in _SESSION_ITEMS]
        ctx = SessionContext(
            received_at=datetime.fromtimestamp(meta.received_at, UTC),
            sent_at=envelope.sent_at_datetime,
            client=meta.client,
            client_addr=meta.client_ip,
            max_session_secs_in_past=self.config.processing.max_session_secs_in_past,
            max_secs_in_future=self.config.processing.max_secs_in_future,
            extract_abnormal_mechanism=should_extract_abnormal_mechanism(state.config),
        )
        buckets, parsed = process_sessions(
            [i.payload for i in sessions if i.type == ItemType.SESSION],
            [i.payload for i in sessions if i.type == ItemType.SESSIONS],
            ctx,
            keep=self._session_filter(state, meta.client_ip),
        )
        if parsed.invalid:
            log.debug("%d invalid sessions dropped for %s", parsed.invalid, meta.public_key)
        self.service.merge(meta.public_key, buckets)

    def _session_filter(
        self, state: ProjectState, client_ip: str | None
    ) -> Callable[[SessionAttributes], bool] | None:
        """The inbound-filter check for sessions (None: the project filters nothing)."""
        global_config = self.global_config() if self.global_config is not None else None
        filters = inbound_filters(state, global_config)
        if filters.is_empty:
            return None

        def keep(attributes: SessionAttributes) -> bool:
            reason = filters.should_filter(session_filter_view(attributes), client_ip=client_ip)
            if reason is not None:
                log.debug("session filtered: %s", reason)
            return reason is None

        return keep

    def take_metric_buckets(self, envelope: Envelope, meta: RequestMeta) -> int:
        """Move the envelope's ``metric_buckets`` items into the aggregator.

        Relay aggregates received buckets on every managed hop instead of forwarding the
        items. Buckets from anyone but an internal relay get fresh metadata and may only
        use the ``sessions`` namespace. Returns the number of buckets merged.
        """
        items = [item for item in envelope.items if item.type == ItemType.METRIC_BUCKETS]
        if not items:
            return 0
        envelope.items = [item for item in envelope.items if item.type != ItemType.METRIC_BUCKETS]
        received: list[Bucket] = []
        for item in items:
            try:
                received.extend(decode_buckets(item.payload))
            except msgspec.DecodeError as exc:
                # One bad bucket invalidates the item, as in Relay; there is no outcome.
                self.invalid_items += 1
                log.debug("invalid metric_buckets item of %s dropped: %s", meta.public_key, exc)
        drift = clock_drift_secs(meta.received_at, envelope.sent_at_datetime)
        return self._merge_received(
            meta.public_key, received, meta.from_relay, meta.received_at, drift
        )

    def merge_batch_buckets(
        self, public_key: str, buckets: list[MetricBucket], received_at: float
    ) -> int:
        """Aggregate a key's buckets of a ``/api/0/relays/metrics/`` batch.

        Only internal relays may send batches, so every namespace is accepted; outcome
        buckets are left to the outcome aggregator. Malformed buckets are dropped.
        """
        others = [bucket for bucket in buckets if bucket.namespace != "outcomes"]
        if not others:
            return 0
        parsed: list[Bucket] = []
        for bucket in others:
            try:
                # Every field, width included: the batch model omits defaults when encoding.
                parsed.append(msgspec.convert(msgspec.structs.asdict(bucket), type=Bucket))
            except msgspec.ValidationError as exc:
                log.debug("invalid bucket in a metrics batch for %s: %s", public_key, exc)
        return self._merge_received(public_key, parsed, True, received_at, 0)

    def _merge_received(
        self,
        public_key: str,
        buckets: Iterable[Bucket],
        internal: bool,
        received_at: float,
        drift_secs: int,
    ) -> int:
        prepared = prepare_buckets(
            buckets, internal=internal, received_at=int(received_at), drift_secs=drift_secs
        )
        if not prepared:
            return 0
        return self.service.merge(public_key, prepared)

    # --- delivery ------------------------------------------------------------------------

    async def _project(
        self, public_key: str, buckets: list[Bucket]
    ) -> tuple[ProjectState, int] | None:
        """The enabled project the flushed buckets belong to, with its id; None: they are not
        delivered.

        A config still being fetched sends the buckets back into the aggregator, as Relay
        does (flushed again later); during the final flush its arrival is awaited instead.
        Disabled and unknown projects drop their buckets.
        """
        state = self.lookup(public_key)
        deadline = self._state_deadline
        while state is None and deadline is not None and time.monotonic() < deadline:
            await asyncio.sleep(_STATE_POLL_SECS)
            state = self.lookup(public_key)
        if state is None:
            if deadline is None:
                self.service.merge(public_key, buckets)
            else:
                log.error(
                    "dropping %d metric buckets of %s: no project config before shutdown",
                    len(buckets), public_key,
                )  # fmt: skip
            return None
        if state.disabled or state.project_id is None:
            log.debug("dropping %d metric buckets of unknown key %s", len(buckets), public_key)
            return None
        return state, state.project_id

    async def _to_kafka(self, partition: int, by_project: dict[str, list[Bucket]]) -> None:
        del partition  # Kafka messages are keyed by nothing metric-specific
        for public_key, buckets in by_project.items():
            await self._project_to_kafka(public_key, buckets)

    async def _project_to_kafka(self, public_key: str, buckets: list[Bucket]) -> None:
        assert self.producer is not None and self.metrics_topic is not None
        found = await self._project(public_key, buckets)
        if found is None:
            return
        state, project_id = found
        retention_days = state.event_retention
        headers = metric_headers("sessions")
        for bucket in buckets:
            # Relay's store writes only session metrics to Kafka; other namespaces end here.
            if bucket.namespace != "sessions":
                continue
            message = encode_metric_message(
                to_kafka_bucket(bucket),
                org_id=state.organization_id or 0,
                project_id=project_id,
                retention_days=retention_days,
                received_at=int(time.time()),
            )
            await self.producer.send(self.metrics_topic, message, headers=headers)

    async def _to_upstream(self, partition: int, by_project: dict[str, list[Bucket]]) -> None:
        if self.config.http.global_metrics:
            await self._global_to_upstream(partition, by_project)
            return
        for public_key, buckets in by_project.items():
            await self._project_to_upstream(partition, public_key, buckets)

    async def _project_to_upstream(
        self, partition: int, public_key: str, buckets: list[Bucket]
    ) -> None:
        assert self.upstream is not None
        found = await self._project(public_key, buckets)
        if found is None:
            return
        _, project_id = found
        headers = {
            "X-Sentry-Auth": f"Sentry sentry_key={public_key}, sentry_version=7",
            "X-Sentry-Relay-Shard": str(partition),
        }
        for payload in metric_buckets_payloads(buckets, self.aggregator_config.max_flush_bytes):
            body = Envelope(headers={}, items=[Item.new(ItemType.METRIC_BUCKETS, payload)])
            try:
                await self.upstream.send_envelope(
                    project_id, body.serialize(), headers,
                    time.monotonic() + _UPSTREAM_DEADLINE,
                )  # fmt: skip
            except UpstreamError as exc:
                log.error("metric buckets for %s not delivered: %s", public_key, exc)

    async def _global_to_upstream(
        self, partition: int, by_project: Mapping[str, list[Bucket]]
    ) -> None:
        """All projects' buckets in batches to ``/api/0/relays/metrics/`` (Relay's
        ``http.global_metrics``), split by ``aggregator.max_flush_bytes``."""
        assert self.upstream is not None
        keyed = [
            (public_key, bucket)
            for public_key, buckets in by_project.items()
            if await self._project(public_key, buckets) is not None
            for bucket in buckets
        ]
        for batch in split_keyed(keyed, self.aggregator_config.max_flush_bytes):
            grouped: dict[str, list[Bucket]] = {}
            for public_key, bucket in batch:
                grouped.setdefault(public_key, []).append(bucket)
            body = _encoder.encode({"buckets": grouped})
            headers = {
                "Content-Type": "application/json",
                "Content-Encoding": "zstd",
                "X-Sentry-Relay-Shard": str(partition),
            }
            try:
                status, _, data = await self.upstream.request(
                    "POST", "/api/0/relays/metrics/", body=zstd_compress(body),
                    headers=headers, sign_data=body,
                )  # fmt: skip
            except UpstreamError as exc:
                log.error("global metrics batch not delivered: %s", exc)
                continue
            if status >= 300:
                log.error("upstream refused a global metrics batch: %s %r", status, data[:200])


_encoder = msgspec.json.Encoder()


def session_filter_view(attributes: SessionAttributes) -> dict[str, Any]:
    """The event-shaped view of session attributes that inbound filters read.

    Relay filters sessions by their release, ``attrs.ip_address`` (the localhost filter)
    and ``attrs.user_agent`` (the web crawler filter); the client IP filter uses the
    request's address.
    """
    view: dict[str, Any] = {"release": attributes.release}
    if attributes.ip_address is not None:
        view["user"] = {"ip_address": attributes.ip_address}
    if attributes.user_agent is not None:
        view["request"] = {"headers": [["User-Agent", attributes.user_agent]]}
    return view


def clock_drift_secs(received_at: float, sent_at: datetime | None) -> int:
    """Seconds to add to client timestamps: ``received_at - sent_at`` when the client
    clock is off by at least Relay's minimum drift (55 minutes), else 0."""
    if sent_at is None:
        return 0
    drift = int(received_at - sent_at.timestamp())
    if abs(drift) < MINIMUM_CLOCK_DRIFT.total_seconds():
        return 0
    return drift
