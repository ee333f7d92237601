"""Sessions become metrics, aggregated on every hop before they move on.

A relay that extracts sessions (processing relays always; POP relays when the project
enables ``sessionMetrics``) takes ``session``/``sessions`` items out of the envelope,
turns them into ``sessions`` buckets and merges them into its aggregator. Flushed buckets
go to ``ingest-metrics`` (processing) or upstream as ``metric_buckets`` items (POP), so
each layer sends a fraction of what it received.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from relay.config import Config
from relay.kafka.metrics import encode_metric_message, metric_headers
from relay.kafka.producer import KafkaProducer
from relay.metrics import AggregatorConfig, Bucket
from relay.metrics.sessions import (
    SessionContext,
    process_sessions,
    should_extract_abnormal_mechanism,
    should_extract_sessions,
)
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.protocol.project_config import ProjectState
from relay.server.aggregator_service import (
    AggregatorService,
    metric_buckets_payloads,
    to_kafka_bucket,
)
from relay.server.request_meta import RequestMeta
from relay.server.upstream import UpstreamClient, UpstreamError

log = logging.getLogger(__name__)

#: Looks up a cached project state by public key (None while unknown).
StateLookup = Callable[[str], ProjectState | None]

_SESSION_ITEMS = frozenset({ItemType.SESSION, ItemType.SESSIONS})
#: How long a POP relay keeps retrying a flushed batch towards its upstream.
_UPSTREAM_DEADLINE = 60.0


class MetricsPipeline:
    """Session extraction and the aggregator, with delivery to Kafka or upstream."""

    def __init__(
        self,
        config: Config,
        lookup: StateLookup,
        *,
        producer: KafkaProducer | None = None,
        metrics_topic: str | None = None,
        upstream: UpstreamClient | None = None,
    ) -> None:
        self.config = config
        self.lookup = lookup
        self.producer = producer
        self.metrics_topic = metrics_topic
        self.upstream = upstream
        self.aggregator_config = AggregatorConfig.from_options(config.aggregator.options())
        deliver: Callable[[str, list[Bucket]], Awaitable[None]] = (
            self._to_kafka if producer is not None else self._to_upstream
        )
        self.service = AggregatorService(self.aggregator_config, deliver)

    async def start(self) -> None:
        await self.service.start()

    async def stop(self, timeout: float) -> None:
        """Flush everything (Relay flushes its aggregator on shutdown) and deliver it."""
        await self.service.stop(timeout)

    def take_sessions(self, envelope: Envelope, meta: RequestMeta, state: ProjectState) -> None:
        """Extract the envelope's session items into the aggregator and remove them.

        Relays that do not extract for this project leave the items in place (they are
        forwarded). Invalid sessions are dropped without an outcome, as in Relay.
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
        )
        if parsed.invalid:
            log.debug("%d invalid sessions dropped for %s", parsed.invalid, meta.public_key)
        self.service.merge(meta.public_key, buckets)

    async def _to_kafka(self, public_key: str, buckets: list[Bucket]) -> None:
        assert self.producer is not None and self.metrics_topic is not None
        state = self.lookup(public_key)
        if state is None or state.disabled or state.project_id is None:
            log.debug("dropping %d metric buckets of unknown key %s", len(buckets), public_key)
            return
        retention_days = state.event_retention
        headers = metric_headers("sessions")
        for bucket in buckets:
            message = encode_metric_message(
                to_kafka_bucket(bucket),
                org_id=state.organization_id or 0,
                project_id=state.project_id,
                retention_days=retention_days,
                received_at=int(time.time()),
            )
            await self.producer.send(self.metrics_topic, message, headers=headers)

    async def _to_upstream(self, public_key: str, buckets: list[Bucket]) -> None:
        assert self.upstream is not None
        state = self.lookup(public_key)
        if state is None or state.disabled or state.project_id is None:
            log.debug("dropping %d metric buckets of unknown key %s", len(buckets), public_key)
            return
        headers = {"X-Sentry-Auth": f"Sentry sentry_key={public_key}, sentry_version=7"}
        for payload in metric_buckets_payloads(buckets, self.aggregator_config.max_flush_bytes):
            body = Envelope(headers={}, items=[Item.new(ItemType.METRIC_BUCKETS, payload)])
            try:
                await self.upstream.send_envelope(
                    state.project_id, body.serialize(), headers,
                    time.monotonic() + _UPSTREAM_DEADLINE,
                )  # fmt: skip
            except UpstreamError as exc:
                log.error("metric buckets for %s not delivered: %s", public_key, exc)
