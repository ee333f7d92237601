"""Where downstream relays deliver their outcomes: ``/api/0/relays/metrics/`` and
``/api/0/relays/outcomes/``.

Relays of this protocol version send outcomes as ``c:outcomes/*`` counter buckets in metric
batches (``{"buckets": {public_key: [bucket, ...]}}``, zstd-compressed, signed over the
uncompressed body); older relays sent ``{"outcomes": [outcome, ...]}``. Both are accepted
only from internal relays (``auth.static_relays`` with ``internal: true``, or relays our
upstream reports as internal, see :class:`~relay.server.relays.RelayCache`), as Relay
does, and are merged into this relay's outcome aggregator with their ``source`` kept.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, Protocol

import msgspec
from aiohttp import web

from relay.config import Config
from relay.errors import AuthError, BadRequest, Forbidden
from relay.kafka.metrics import MetricBucket
from relay.kafka.outcomes import Outcome
from relay.protocol.encoding import decode_body
from relay.protocol.project_config import ProjectState
from relay.quotas import Scoping as QuotaScoping
from relay.server.bucket_limits import limit_buckets
from relay.server.outcome_aggregator import Scoping
from relay.server.outcomes import OutcomeSink
from relay.server.rate_limiting import RateLimiting, project_quotas
from relay.server.relay_api import SignedRequests
from relay.server.relays import RelayCache

log = logging.getLogger(__name__)

#: Largest (decompressed) metrics or outcomes batch accepted.
MAX_BATCH_BYTES = 20 * 1024 * 1024


class ProjectStates(Protocol):
    """Where project states come from (the project cache)."""

    async def get(self, public_key: str, timeout: float) -> ProjectState:
        """The key's project state; raises ``TimeoutError`` when it is not available."""


class BatchMetrics(Protocol):
    """Where a POP relay aggregates the (non-outcome) buckets of a batch."""

    def merge_batch_buckets(
        self, public_key: str, buckets: list[MetricBucket], received_at: float
    ) -> int:
        """Aggregate buckets an internal relay sent; returns how many were merged."""


class MetricsBatch(msgspec.Struct):
    """Body of ``/api/0/relays/metrics/``."""

    buckets: dict[str, list[MetricBucket]] = msgspec.field(default_factory=dict)


class OutcomesBatch(msgspec.Struct):
    """Body of ``/api/0/relays/outcomes/``."""

    #: The same fields as the outcomes written to Kafka.
    outcomes: list[Outcome] = msgspec.field(default_factory=list)


_metrics_decoder = msgspec.json.Decoder(MetricsBatch)
_outcomes_decoder = msgspec.json.Decoder(OutcomesBatch)


def _timestamp(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def outcomes_api_routes(
    config: Config,
    relays: RelayCache,
    sink: OutcomeSink,
    projects: ProjectStates,
    rate_limits: RateLimiting | None = None,
    batch_metrics: BatchMetrics | None = None,
) -> list[web.RouteDef]:
    """The routes, for any relay that has downstream relays (processing or POP).

    ``rate_limits``: on processing relays, the other buckets of a batch are checked against
    the project's quotas (relay.server.bucket_limits), with ``metric_bucket`` outcomes.
    ``batch_metrics``: on POP relays, the other buckets are aggregated and sent on.
    """
    signed = SignedRequests(config, relays)

    async def read_verified(request: web.Request) -> bytes:
        raw = await request.read()
        if len(raw) > MAX_BATCH_BYTES:
            raise BadRequest("batch too large")
        body = decode_body(raw, request.headers.get("Content-Encoding"), MAX_BATCH_BYTES)
        # Relays sign the uncompressed body; accept a signature over the bytes sent, too.
        try:
            relay = await signed.verify(request, body)
        except AuthError:
            relay = await signed.verify(request, raw)
        if not relay.internal:
            raise Forbidden("outcomes are accepted from internal relays only")
        return body

    async def metrics(request: web.Request) -> web.Response:
        received_at = time.time()
        body = await read_verified(request)
        try:
            batch = _metrics_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"invalid metrics batch: {exc}") from None
        for public_key, buckets in batch.buckets.items():
            try:
                state: ProjectState | None = await projects.get(public_key, config.http.timeout)
            except TimeoutError:
                state = None
            if state is None or state.disabled or state.project_id is None:
                log.debug("outcome buckets for unknown key %s dropped", public_key)
                continue
            key = state.key_config(public_key)
            scoping = Scoping(
                public_key,
                state.project_id,
                state.organization_id,
                key.numeric_id if key else None,
            )
            sink.outcome_buckets(scoping, buckets)
            if batch_metrics is not None and not config.processing.enabled:
                batch_metrics.merge_batch_buckets(public_key, buckets, received_at)
            if rate_limits is not None and config.processing.enabled:
                # What stays within the quotas goes no further: processing relays write no
                # generic metrics to Kafka.
                await limit_buckets(
                    rate_limits, sink,
                    QuotaScoping(state.organization_id or 0, state.project_id, public_key,
                                 scoping.key_id),
                    project_quotas(state), buckets,
                )  # fmt: skip
        return web.json_response({}, status=202)

    async def outcomes(request: web.Request) -> web.Response:
        body = await read_verified(request)
        try:
            batch = _outcomes_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"invalid outcomes batch: {exc}") from None
        for entry in batch.outcomes:
            if entry.category is None or entry.quantity is None:
                continue
            sink.track(
                Scoping("", entry.project_id, entry.org_id, entry.key_id),
                entry.outcome,
                entry.reason,
                entry.category,
                entry.quantity,
                timestamp=_timestamp(entry.timestamp),
                source=entry.source,
                own=False,
            )
        answer: dict[str, Any] = {}
        return web.json_response(answer)

    return [
        web.post("/api/0/relays/metrics/", metrics),
        web.post("/api/0/relays/outcomes/", outcomes),
    ]
