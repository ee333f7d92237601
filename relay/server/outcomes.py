"""Accounting for dropped data: every item that is not delivered becomes an outcome.

Processing relays write outcomes to Kafka (``outcomes``/``outcomes-billing``). Other
relays log them; the next hop or Sentry never sees that data, so the log is the record.
"""

from __future__ import annotations

import asyncio
import logging

from relay.config import Config
from relay.kafka.outcomes import (
    Outcome,
    OutcomeCode,
    encode_outcome,
    format_outcome_timestamp,
    outcome_topic,
)
from relay.kafka.producer import KafkaProducer
from relay.kafka.topics import KafkaTopic
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory
from relay.protocol.project_config import ProjectState
from relay.server.request_meta import RequestMeta

log = logging.getLogger(__name__)


class OutcomeSink:
    """Emits outcomes; in processing mode to Kafka, in the background."""

    def __init__(
        self,
        config: Config,
        producer: KafkaProducer | None = None,
        topics: dict[KafkaTopic, str] | None = None,
    ) -> None:
        self.config = config
        self.producer = producer
        self.topics = topics or {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.emitted = 0

    def emit(self, outcome: Outcome) -> None:
        """Record one outcome (never raises)."""
        self.emitted += 1
        log.debug(
            "outcome %s reason=%s category=%s quantity=%s event_id=%s project=%s",
            outcome.outcome, outcome.reason, outcome.category, outcome.quantity,
            outcome.event_id, outcome.project_id,
        )  # fmt: skip
        if self.producer is None:
            return
        topic = self.topics.get(outcome_topic(outcome.outcome))
        if topic is None:
            return
        task = asyncio.create_task(self._send(topic, encode_outcome(outcome)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, topic: str, value: bytes) -> None:
        assert self.producer is not None
        try:
            await self.producer.send(topic, value)
        except Exception as exc:
            log.error("could not write outcome to %s: %s", topic, exc)

    def item_dropped(
        self,
        item: Item,
        envelope: Envelope,
        meta: RequestMeta,
        state: ProjectState | None,
        reason: str,
        code: OutcomeCode = OutcomeCode.INVALID,
    ) -> None:
        """Outcomes for every category the item counts in."""
        for category, quantity in item.quantities():
            self.emit(self._outcome(envelope, meta, state, code, reason, category, quantity))

    def envelope_dropped(
        self,
        envelope: Envelope,
        meta: RequestMeta,
        state: ProjectState | None,
        reason: str,
        code: OutcomeCode = OutcomeCode.INVALID,
    ) -> None:
        """Outcomes for every item of a dropped envelope."""
        for item in envelope.items:
            self.item_dropped(item, envelope, meta, state, reason, code)

    def _outcome(
        self,
        envelope: Envelope,
        meta: RequestMeta,
        state: ProjectState | None,
        code: OutcomeCode,
        reason: str | None,
        category: DataCategory,
        quantity: int,
    ) -> Outcome:
        key = state.key_config(meta.public_key) if state else None
        return Outcome(
            timestamp=format_outcome_timestamp(meta.received_at),
            org_id=state.organization_id if state else None,
            project_id=meta.project_id,
            key_id=key.numeric_id if key else None,
            outcome=int(code),
            reason=reason,
            event_id=envelope.event_id,
            remote_addr=meta.client_ip,
            source=self.config.outcomes.source,
            category=int(category),
            quantity=quantity,
        )

    async def drain(self, timeout: float) -> None:
        """Wait for outcomes still being written (shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
