"""Processing relays: turn an accepted envelope into Kafka messages, or outcomes.

The client (usually a POP relay) gets its answer only after Kafka acknowledged the
messages: a Kafka outage turns into 503s that the POP retries, so nothing accepted here
is lost in a buffer, and memory stays bounded by the producer's byte budget.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from relay.config import Config
from relay.kafka.attachments import AttachmentRef, chunk_attachment, encode_attachment_message
from relay.kafka.events import (
    encode_event_message,
    event_topic,
    safe_timestamp,
    sends_individual_attachments,
)
from relay.kafka.keys import partition_key_for
from relay.kafka.monitors import encode_check_in_message
from relay.kafka.outcomes import Outcome, OutcomeCode, format_outcome_timestamp
from relay.kafka.producer import KafkaProducer
from relay.kafka.topics import KafkaTopic
from relay.kafka.user_reports import encode_user_report_message
from relay.normalize import prepare_event
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory, ItemType
from relay.protocol.project_config import ProjectState
from relay.server.outcomes import OutcomeSink
from relay.server.request_meta import RequestMeta

log = logging.getLogger(__name__)

_EVENT_TYPES = frozenset({ItemType.EVENT, ItemType.TRANSACTION})
_json_encoder = msgspec.json.Encoder()


class Message(msgspec.Struct):
    topic: KafkaTopic
    value: bytes
    key: bytes | None = None


class Processor:
    """Builds the Kafka messages of an envelope and produces them."""

    def __init__(
        self,
        config: Config,
        producer: KafkaProducer,
        topics: dict[KafkaTopic, str],
        outcomes: OutcomeSink,
    ) -> None:
        self.config = config
        self.producer = producer
        self.topics = topics
        self.outcomes = outcomes

    async def accept(self, envelope: Envelope, meta: RequestMeta, state: ProjectState) -> None:
        """Produce the envelope's messages; raises (503) if Kafka does not take them."""
        before, after = self.build_messages(envelope, meta, state)
        # Attachment chunks must be in Kafka before the event that references them.
        if before:
            await asyncio.gather(*(self._send(m) for m in before))
        if after:
            await asyncio.gather(*(self._send(m) for m in after))

    async def _send(self, message: Message) -> None:
        await self.producer.send(self.topics[message.topic], message.value, key=message.key)

    def build_messages(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> tuple[list[Message], list[Message]]:
        """Messages to send first (chunks) and then (events, the rest); drops are outcomes."""
        start_time = safe_timestamp(meta.received_at)
        org_id = state.organization_id or 0
        event_id = envelope.event_id
        key = partition_key_for(event_id, org_id) if event_id else None
        project_id = meta.project_id

        event_item: Item | None = None
        attachments: list[Item] = []
        first: list[Message] = []
        then: list[Message] = []
        for item in envelope.items:
            kind = item.type
            if kind in _EVENT_TYPES and event_item is None:
                event_item = item
            elif kind == ItemType.ATTACHMENT:
                attachments.append(item)
            elif kind == ItemType.CHECK_IN:
                then.append(
                    Message(
                        KafkaTopic.MONITORS,
                        encode_check_in_message(
                            payload=item.payload,
                            project_id=project_id,
                            start_time=meta.received_at,
                            sdk=meta.client,
                            retention_days=_retention(state),
                        ),
                    )
                )
            elif kind == ItemType.USER_REPORT:
                then.append(
                    Message(
                        KafkaTopic.ATTACHMENTS,
                        encode_user_report_message(
                            project_id=project_id, start_time=start_time, payload=item.payload
                        ),
                        key,
                    )
                )
            elif kind == ItemType.CLIENT_REPORT:
                self._client_report(item, envelope, meta, state)
            else:
                # Sessions, logs, profiles, replays, spans...: handled by later stages.
                self.outcomes.item_dropped(item, envelope, meta, state, "unsupported_item")

        event_payload: bytes | None = None
        event_type: str | None = None
        if event_item is not None:
            assert event_id is not None
            event_payload, event_type = self._event_payload(event_item, event_id, meta)
            if event_payload is None:
                self.outcomes.item_dropped(event_item, envelope, meta, state, "invalid_json")
                for attachment in attachments:
                    self.outcomes.item_dropped(attachment, envelope, meta, state, "invalid_json")
                return first, then

        refs: list[AttachmentRef] = []
        standalone = event_payload is None or sends_individual_attachments(event_type)
        attachment_event_id = event_id
        for item in attachments:
            if attachment_event_id is None:
                self.outcomes.item_dropped(item, envelope, meta, state, "invalid")
                continue
            ref, chunks = chunk_attachment(
                item.payload,
                self.config.processing.attachment_chunk_size,
                event_id=attachment_event_id,
                project_id=project_id,
                name=item.filename,
                content_type=item.content_type,
                attachment_type=item.attachment_type or "event.attachment",
                retention_days=_retention(state),
                inline=standalone,
            )
            first.extend(Message(KafkaTopic.ATTACHMENTS, chunk, key) for chunk in chunks)
            if standalone:
                then.append(
                    Message(
                        KafkaTopic.ATTACHMENTS,
                        encode_attachment_message(
                            event_id=attachment_event_id, project_id=project_id, attachment=ref
                        ),
                        key,
                    )
                )
            else:
                refs.append(ref)

        if event_payload is not None:
            assert event_id is not None
            topic = event_topic(event_type, has_attachments=bool(refs))
            then.append(
                Message(
                    topic,
                    encode_event_message(
                        event_id=event_id,
                        project_id=project_id,
                        payload=event_payload,
                        start_time=start_time,
                        remote_addr=meta.client_ip,
                        attachments=refs,
                    ),
                    key,
                )
            )
        return first, then

    def _event_payload(
        self, item: Item, event_id: str, meta: RequestMeta
    ) -> tuple[bytes | None, str | None]:
        try:
            event = msgspec.json.decode(item.payload)
        except msgspec.DecodeError:
            return None, None
        if not isinstance(event, dict):
            return None, None
        if item.type == ItemType.TRANSACTION:
            event["type"] = "transaction"
        prepare_event(event, event_id, meta.received_at)
        event_type = event.get("type")
        return _json_encoder.encode(event), event_type if isinstance(event_type, str) else None

    def _client_report(
        self, item: Item, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> None:
        """Client reports become ``client_discard`` outcomes (what the SDK dropped)."""
        try:
            report = msgspec.json.decode(item.payload)
        except msgspec.DecodeError:
            return
        if not isinstance(report, dict):
            return
        key = state.key_config(meta.public_key)
        timestamp = report.get("timestamp")
        when = float(timestamp) if isinstance(timestamp, int | float) else meta.received_at
        groups = (
            ("discarded_events", OutcomeCode.CLIENT_DISCARD),
            ("rate_limited_events", OutcomeCode.RATE_LIMITED),
            ("filtered_events", OutcomeCode.FILTERED),
            ("filtered_sampling_events", OutcomeCode.FILTERED),
        )
        for field, code in groups:
            for entry in _entries(report.get(field)):
                category = _category(entry.get("category"))
                quantity = entry.get("quantity")
                reason = entry.get("reason")
                if category is None or not isinstance(quantity, int) or quantity <= 0:
                    continue
                self.outcomes.emit(
                    Outcome(
                        timestamp=format_outcome_timestamp(when),
                        org_id=state.organization_id,
                        project_id=meta.project_id,
                        key_id=key.numeric_id if key else None,
                        outcome=int(code),
                        reason=reason if isinstance(reason, str) else None,
                        remote_addr=meta.client_ip,
                        source=self.config.outcomes.source,
                        category=int(category),
                        quantity=quantity,
                    )
                )


def _entries(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, dict)]


def _category(name: object) -> DataCategory | None:
    if not isinstance(name, str):
        return None
    category = DataCategory.from_name(name)
    return None if category is DataCategory.UNKNOWN else category


def _retention(state: ProjectState) -> int:
    value = state.config.get("eventRetention")
    return value if isinstance(value, int) and value > 0 else 90
