"""Processing relays: turn an accepted envelope into Kafka messages, or outcomes.

Every item ends as Kafka messages or as an outcome (Relay's id, reason and category). The
client (usually a POP relay) gets its answer only after Kafka acknowledged the messages:
a Kafka outage turns into 503s that the POP retries, so nothing accepted here is lost in
a buffer, and memory stays bounded by the producer's byte budget. Messages Kafka refuses
for good (not retriable, e.g. too large) are dropped with an ``internal`` outcome.

Messages are grouped in :class:`Unit`s: what one logical item produces (an event with its
attachment chunks, a replay, a span). A unit's ``first`` messages (attachment chunks) are
acknowledged before its ``then`` messages (the event referencing them) are produced.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from relay.config import Config
from relay.filters.profiles import should_filter_profile
from relay.kafka.attachments import AttachmentRef, chunk_attachment, encode_attachment_message
from relay.kafka.events import (
    encode_event_message,
    event_topic,
    safe_timestamp,
    sends_individual_attachments,
)
from relay.kafka.keys import partition_key_for
from relay.kafka.metrics import (
    MetricBucket,
    decode_buckets,
    encode_metric_message,
    metric_headers,
)
from relay.kafka.monitors import (
    InvalidCheckIn,
    check_in_key,
    encode_check_in_message,
    normalize_check_in,
    routing_hint,
)
from relay.kafka.outcomes import OutcomeCode
from relay.kafka.producer import KafkaMessageRejected, KafkaProduceError
from relay.kafka.profiles import (
    encode_profile_chunk_message,
    encode_profile_message,
    profile_headers,
)
from relay.kafka.replays import encode_replay_recording_message
from relay.kafka.router import KafkaSink
from relay.kafka.spans import (
    InvalidSpan,
    encode_span_message,
    infer_span_name,
    span_headers,
    span_key,
    span_v1_to_v2,
    validate_span_v2,
)
from relay.kafka.topics import KafkaTopic
from relay.kafka.trace_items import (
    LOG_ITEM_TYPE,
    InvalidTraceItem,
    encode_log_item,
    trace_item_headers,
)
from relay.kafka.user_reports import encode_user_report_message
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import (
    EVENT_ATTACHMENT_TYPES,
    UI_PROFILE_PLATFORMS,
    DataCategory,
    ItemType,
)
from relay.protocol.project_config import ProjectState
from relay.server.attachment_refs import StoredAttachment, resolve_placeholders
from relay.server.crash_expansion import (
    apply_crash_placeholder,
    expand_crash_envelope,
    expand_unreal_envelope,
    strip_context_types,
)
from relay.server.dynamic_sampling import (
    SampledOut,
    StateLookup,
    indexed_quantities,
    mark_profiles_unsampled,
    may_sample,
    sampled_out_reason,
    span_count,
    tag_error_sampled,
    total_quantities,
)
from relay.server.eap_items import infers_user_agent, prepare_log
from relay.server.event_normalization import (
    SECURITY_ITEM_TYPES,
    EventRejected,
    GlobalConfigLookup,
    decode_event,
    inbound_filters,
    is_fully_normalized,
    no_global_config,
    normalize_event_dict,
    pii_pipeline,
    scrub_attachments,
    scrub_event,
    scrub_minidumps,
    security_event,
)
from relay.server.geoip import open_geoip
from relay.server.log_integrations import expand_log_integrations
from relay.server.metrics_pipeline import MetricsPipeline
from relay.server.objectstore import AttachmentUploader
from relay.server.outcome_aggregator import Scoping
from relay.server.outcomes import OutcomeSink, scoping_for
from relay.server.rate_limiting import RateLimiting
from relay.server.request_meta import RequestMeta
from relay.server.uploads import UploadKeys

log = logging.getLogger(__name__)

_json_encoder = msgspec.json.Encoder()
Quantities = list[tuple[DataCategory, int]]

#: Item types whose payload is the envelope's event (Relay's event-creating items).
_EVENT_ITEMS = frozenset(
    {ItemType.EVENT, ItemType.TRANSACTION, ItemType.FEEDBACK, *SECURITY_ITEM_TYPES}
)
_REPLAY_ITEMS = frozenset({ItemType.REPLAY_EVENT, ItemType.REPLAY_RECORDING, ItemType.REPLAY_VIDEO})
_SPAN_CONTAINER = "application/vnd.sentry.items.span.v2+json"
_LOG_CONTAINER = "application/vnd.sentry.items.log+json"
_EVENT_TYPE_CATEGORY = {
    "transaction": DataCategory.TRANSACTION,
    "csp": DataCategory.SECURITY,
    "hpkp": DataCategory.SECURITY,
    "expectct": DataCategory.SECURITY,
    "expectstaple": DataCategory.SECURITY,
    "nel": DataCategory.SECURITY,
    "feedback": DataCategory.USER_REPORT_V2,
}


class Message(msgspec.Struct):
    """One Kafka message, addressed by logical topic."""

    topic: KafkaTopic
    value: bytes
    key: bytes | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class Unit:
    """The messages of one logical item, and what it counts for if it is lost."""

    then: list[Message]
    first: list[Message] = field(default_factory=list)
    #: Categories and quantities of the data in the unit (for ``internal`` outcomes).
    quantities: Quantities = field(default_factory=list)
    #: Accepted outcomes Relay emits itself once the unit is in Kafka.
    accepted: Quantities = field(default_factory=list)


@dataclass
class Plan:
    """Everything an envelope produces: units, plus outcomes already decided."""

    units: list[Unit] = field(default_factory=list)

    @property
    def messages(self) -> list[Message]:
        """All messages in production order (for tests and benchmarks)."""
        return [m for unit in self.units for m in (*unit.first, *unit.then)]


class _Context:
    """Per-envelope values every handler needs."""

    def __init__(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState, sink: OutcomeSink
    ) -> None:
        self.envelope = envelope
        self.meta = meta
        self.state = state
        self.sink = sink
        self.scoping: Scoping = scoping_for(meta, state)
        self.org_id = state.organization_id or 0
        self.project_id = meta.project_id
        self.start_time = safe_timestamp(meta.received_at)
        self.retention = state.event_retention
        raw_id = envelope.event_id
        #: The event id, parsed once (the partition key and event message reuse it).
        self.event_uuid: uuid.UUID | None = None
        if raw_id is not None:
            try:
                self.event_uuid = uuid.UUID(raw_id)
            except ValueError:
                self.event_uuid = None
        self.event_id = self.event_uuid.hex if self.event_uuid is not None else None
        self.event_key = (
            partition_key_for(self.event_uuid, self.org_id) if self.event_uuid else None
        )
        #: Objectstore keys of attachments already uploaded, by ``id(item)``.
        self.stored: Mapping[int, str] = {}
        #: What valid attachment placeholders stand for, by ``id(item)``.
        self.placeholders: Mapping[int, StoredAttachment] = {}

    def drop(
        self,
        item: Item,
        reason: str | None,
        code: OutcomeCode = OutcomeCode.INVALID,
        quantities: Quantities | None = None,
    ) -> None:
        self.sink.item_dropped(item, self.envelope, self.meta, self.state, reason, code, quantities)

    def drop_quantities(
        self, quantities: Iterable[tuple[DataCategory, int]], reason: str | None
    ) -> None:
        for category, quantity in quantities:
            self.sink.track(self.scoping, int(OutcomeCode.INVALID), reason, int(category), quantity)


class Processor:
    """Builds the Kafka messages of an envelope and produces them."""

    def __init__(
        self,
        config: Config,
        producer: KafkaSink,
        topics: Mapping[KafkaTopic, str],
        outcomes: OutcomeSink,
        *,
        rate_limits: RateLimiting | None = None,
        metrics: MetricsPipeline | None = None,
        objectstore: AttachmentUploader | None = None,
        upload_keys: UploadKeys | None = None,
        global_config: GlobalConfigLookup | None = None,
        sampling_states: StateLookup | None = None,
    ) -> None:
        self.config = config
        #: Cached states of other projects: the trace root's sampling rules (DSC).
        self.sampling_states = sampling_states
        #: The upstream's global config (global inbound filters, measurements), if known.
        self.global_config: GlobalConfigLookup = global_config or no_global_config
        #: ``user.geo`` lookups during normalization (``geoip.path``).
        self.geoip = open_geoip(config)
        #: Verify the locations in attachment placeholders (relay.server.attachment_refs).
        self.upload_keys = upload_keys
        self.producer = producer
        self.topics = topics
        self.outcomes = outcomes
        self.rate_limits = rate_limits
        self.metrics = metrics
        self.objectstore = objectstore
        #: Items lost because Kafka refused their messages for good (``internal`` outcomes).
        self.failed_items = 0

    async def accept(self, envelope: Envelope, meta: RequestMeta, state: ProjectState) -> None:
        """Produce the envelope's messages; raises (503) if Kafka does not take them in time."""
        if self.rate_limits is not None:
            # Counted in Redis, atomically across relays; what is over quota is dropped.
            await self.rate_limits.enforce_redis(envelope, meta, state)
        if self.metrics is not None:
            self.metrics.take_sessions(envelope, meta, state)
        scrub_attachments(envelope, state)
        # NEL items not expanded by a POP relay become logs here.
        expand_log_integrations(envelope, meta, state, self.outcomes, self.config)
        # Crash uploads: form data and msgpack event parts become the event item; Unreal
        # crash reports become their event, attachments and user report.
        expand_unreal_envelope(envelope, meta, state, self.outcomes, self.config)
        expand_crash_envelope(envelope, meta, state, self.outcomes, self.config)
        # Minidumps are scrubbed once the expansion has read them (Relay scrubs last).
        scrub_minidumps(envelope, state)
        # Placeholders of attachments uploaded before: stored already, if their location holds.
        placeholders = resolve_placeholders(
            envelope, self.upload_keys, meta.project_id,
            lambda item, reason: self.outcomes.item_dropped(
                item, envelope, meta, state, reason, OutcomeCode.INVALID
            ),
        )  # fmt: skip
        # Attachment payloads stored in objectstore are referenced by key, not chunked.
        stored = None
        if self.objectstore is not None:
            stored = await self.objectstore.upload(envelope, meta, state, state.event_retention)
        plan = self.build(envelope, meta, state, stored=stored, placeholders=placeholders)
        if not plan.units:
            return
        scoping = scoping_for(meta, state)
        results: list[BaseException | None]
        if len(plan.units) == 1:
            # The usual envelope (one event): sent from this task, without a task per unit.
            results = [await self._unit_result(plan.units[0])]
        else:
            results = await asyncio.gather(
                *(self._send_unit(unit) for unit in plan.units), return_exceptions=True
            )
        retry: BaseException | None = None
        for unit, result in zip(plan.units, results, strict=True):
            if result is None:
                for category, quantity in unit.accepted:
                    self.outcomes.accepted(scoping, category, quantity)
            elif isinstance(result, KafkaMessageRejected):
                # Retrying cannot help: account for the data and answer as if accepted.
                self.failed_items += 1
                log.error("kafka refused a message for good: %s", result)
                for category, quantity in unit.quantities:
                    self.outcomes.track(
                        scoping, int(OutcomeCode.INVALID), "internal", int(category), quantity
                    )
            else:
                retry = retry or result
        if retry is not None:
            # Transient: the sender retries the whole envelope (503 + Retry-After).
            self.failed_items += 1
            raise retry

    async def _unit_result(self, unit: Unit) -> BaseException | None:
        """Send one unit; its error is returned, as ``gather(return_exceptions=True)`` does."""
        try:
            await self._send_unit(unit)
        except Exception as exc:  # the caller sorts errors into outcomes
            return exc
        return None

    async def _send_unit(self, unit: Unit) -> None:
        if unit.first:
            # Attachment chunks must be in Kafka before the event that references them.
            await self._send_all(unit.first)
        await self._send_all(unit.then)

    async def _send_all(self, messages: list[Message]) -> None:
        if len(messages) == 1:
            # No task for a lone message (the event): awaited directly.
            await self._send(messages[0])
        else:
            await asyncio.gather(*(self._send(m) for m in messages))

    async def _send(self, message: Message) -> None:
        await self.producer.send(
            self.topics[message.topic], message.value, key=message.key, headers=message.headers
        )

    def build_messages(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> tuple[list[Message], list[Message]]:
        """Messages to send first (chunks) and then (the rest); drops become outcomes."""
        plan = self.build(envelope, meta, state)
        first = [m for unit in plan.units for m in unit.first]
        then = [m for unit in plan.units for m in unit.then]
        return first, then

    def build(
        self,
        envelope: Envelope,
        meta: RequestMeta,
        state: ProjectState,
        *,
        stored: Mapping[int, str] | None = None,
        placeholders: Mapping[int, StoredAttachment] | None = None,
    ) -> Plan:
        """Route every item of the envelope: Kafka messages, or outcomes for dropped items."""
        ctx = _Context(envelope, meta, state, self.outcomes)
        ctx.stored = stored or {}
        ctx.placeholders = placeholders or {}
        plan = Plan()
        event_item: Item | None = None
        event_from_attachment: Item | None = None
        attachments: list[Item] = []
        user_reports: list[Item] = []
        replay_items: list[Item] = []
        client_reports: list[Item] = []
        profiles: list[Item] = []
        for item in envelope.items:
            kind = item.type
            if kind in _EVENT_ITEMS:
                if event_item is None:
                    event_item = item
                else:
                    ctx.drop(item, "duplicate_item")
            elif kind == ItemType.ATTACHMENT:
                if event_from_attachment is None and item.attachment_type in EVENT_ATTACHMENT_TYPES:
                    event_from_attachment = item
                attachments.append(item)
            elif kind == ItemType.USER_REPORT:
                user_reports.append(item)
            elif kind in _REPLAY_ITEMS:
                replay_items.append(item)
            elif kind == ItemType.CLIENT_REPORT:
                client_reports.append(item)
            elif kind == ItemType.CHECK_IN:
                self._check_in(ctx, item, plan)
            elif kind == ItemType.PROFILE:
                profiles.append(item)
            elif kind == ItemType.PROFILE_CHUNK:
                self._profile_chunk(ctx, item, plan)
            elif kind == ItemType.SPAN:
                self._spans(ctx, item, plan)
            elif kind == ItemType.LOG:
                self._logs(ctx, item, plan)
            elif kind == ItemType.METRIC_BUCKETS:
                self._metric_buckets(ctx, item, plan)
            elif kind in (ItemType.SESSION, ItemType.SESSIONS):
                # Sessions become metrics (session extraction); Relay emits no outcome for them.
                log.debug("session item without session extraction dropped")
            elif kind == ItemType.FORM_DATA:
                # Form fields without a file are not stored; they count in no category.
                pass
            else:
                # Processing relays drop what they cannot process (unknown types included).
                ctx.drop(item, "internal")

        if client_reports:
            self.outcomes.client_reports(client_reports, meta, state)
        if replay_items:
            self._replay(ctx, replay_items, plan)
        rejected = self._event(
            ctx, event_item, event_from_attachment, attachments, user_reports, plan
        )
        for item in profiles:
            if rejected is None:
                self._profile(ctx, item, plan)
            else:
                # A profile belongs to the envelope's event and is dropped with it.
                ctx.drop(item, rejected.reason, rejected.code)
        return plan

    # --- events, attachments, user reports -------------------------------------------

    def _event(
        self,
        ctx: _Context,
        event_item: Item | None,
        event_attachment: Item | None,
        attachments: list[Item],
        user_reports: list[Item],
        plan: Plan,
    ) -> EventRejected | None:
        """Route the event and what belongs to it; returns why the event was dropped, if."""
        payload: bytes | None = None
        event_type: str | None = None
        quantities: Quantities = []
        if event_item is not None or event_attachment is not None:
            if ctx.event_id is None:
                for item in [x for x in (event_item,) if x is not None]:
                    ctx.drop(item, "invalid_event_id")
                for item in (*attachments, *user_reports):
                    ctx.drop(item, "invalid_event_id")
                return None
            result = self._event_payload(ctx, event_item, attachments)
            if isinstance(result, SampledOut):
                self._sampled_out(ctx, result, attachments, user_reports, plan)
                return None
            if isinstance(result, EventRejected):
                assert event_item is not None
                reason, code = result.reason, result.code
                ctx.drop(event_item, reason, code, quantities=self._event_quantities(event_item))
                # Attachments (and an error's user reports) of a dropped event go with it;
                # Relay processes a transaction's user reports on their own.
                standalone = event_item.type == ItemType.TRANSACTION
                for item in attachments if standalone else (*attachments, *user_reports):
                    ctx.drop(item, reason, code)
                for item in user_reports if standalone else ():
                    self._user_report(ctx, item, None, plan)
                return result
            payload, event_type, quantities = result

        unit = Unit(then=[], quantities=list(quantities))
        individual = payload is None or sends_individual_attachments(event_type)
        refs: list[AttachmentRef] = []
        for item in attachments:
            if ctx.event_id is None:
                ctx.drop(item, "invalid_event_id")
                continue
            placeholder = ctx.placeholders.get(id(item))
            ref, chunks = chunk_attachment(
                item.payload if placeholder is None else b"",
                self.config.processing.attachment_chunk_size,
                event_id=ctx.event_id,
                project_id=ctx.project_id,
                name=item.filename,
                content_type=item.content_type if placeholder is None else placeholder.content_type,
                attachment_type=item.attachment_type or "event.attachment",
                rate_limited=bool(item.headers.get("rate_limited")),
                retention_days=ctx.retention,
                inline=individual,
                stored_id=ctx.stored.get(id(item)) if placeholder is None else placeholder.key,
                size=None if placeholder is None else placeholder.size,
            )
            chunk_messages = [Message(KafkaTopic.ATTACHMENTS, c, ctx.event_key) for c in chunks]
            if individual:
                # Standalone attachments are units of their own: one failing loses only it.
                plan.units.append(
                    Unit(
                        first=chunk_messages,
                        then=[
                            Message(
                                KafkaTopic.ATTACHMENTS,
                                encode_attachment_message(
                                    event_id=ctx.event_id, project_id=ctx.project_id, attachment=ref
                                ),
                                ctx.event_key,
                            )
                        ],
                        quantities=item.quantities(),
                    )
                )
            else:
                unit.first.extend(chunk_messages)
                unit.quantities.extend(item.quantities())
                refs.append(ref)

        for item in user_reports:
            self._user_report(ctx, item, unit if payload is not None else None, plan)

        if payload is not None:
            assert ctx.event_uuid is not None
            topic = event_topic(
                event_type, has_attachments=bool(refs), has_user_reports=bool(user_reports)
            )
            unit.then.append(
                Message(
                    topic,
                    encode_event_message(
                        event_id=ctx.event_uuid,
                        project_id=ctx.project_id,
                        payload=payload,
                        start_time=ctx.start_time,
                        remote_addr=ctx.meta.client_ip,
                        attachments=refs,
                    ),
                    ctx.event_key,
                )
            )
            if event_type == "transaction":
                unit.accepted = [
                    (c, q)
                    for c, q in quantities
                    if c in (DataCategory.TRANSACTION, DataCategory.SPAN)
                ]
            plan.units.append(unit)
        return None

    def _event_quantities(self, item: Item) -> Quantities:
        if item.type != ItemType.TRANSACTION:
            return item.quantities()
        spans = 1
        try:
            event = msgspec.json.decode(item.payload)
            if isinstance(event, dict) and isinstance(event.get("spans"), list):
                spans += len(event["spans"])
        except msgspec.DecodeError:
            spans += item.span_count
        return _transaction_quantities(spans)

    def _event_payload(
        self, ctx: _Context, item: Item | None, attachments: list[Item] | None = None
    ) -> tuple[bytes, str | None, Quantities] | EventRejected | SampledOut:
        """The normalized event, its type and what it counts for; or why it is dropped."""
        assert ctx.event_id is not None
        if item is None:
            # A crash report without an event payload: the event is built from it later.
            event: Any = {}
        else:
            try:
                if item.type in SECURITY_ITEM_TYPES:
                    event = security_event(item, ctx.meta)
                else:
                    event = decode_event(item.payload)
            except EventRejected as rejected:
                return rejected
        untyped_contexts: list[str] = []
        # An internal relay's full normalization is not redone, unless configured to.
        normalize = (
            self.config.normalization.level == "full"
            or item is None
            or not is_fully_normalized(item, ctx.meta)
        )
        if item is not None and item.type == ItemType.TRANSACTION:
            event["type"] = "transaction"
            if not _valid_transaction(event):
                return EventRejected("invalid_transaction")
        elif item is not None and item.type == ItemType.FEEDBACK:
            event["type"] = "feedback"
        else:
            if item is not None and item.type == ItemType.EVENT and normalize:
                # Never a transaction: drop the declared type, normalization infers it.
                event["type"] = None
            # A minidump or Apple crash report makes this a native crash (placeholder).
            untyped_contexts = apply_crash_placeholder(event, attachments or [])
        try:
            event = normalize_event_dict(
                event,
                ctx.envelope,
                ctx.meta,
                ctx.state,
                processing=True,
                max_secs_in_future=self.config.processing.max_secs_in_future,
                global_config=self.global_config(),
                normalize=normalize,
                geoip=self.geoip,
                scrub=False,  # after dynamic sampling, which Relay runs on unscrubbed data
            )
        except EventRejected as rejected:
            return rejected
        strip_context_types(event, untyped_contexts)
        raw_type = event.get("type")
        event_type = raw_type if isinstance(raw_type, str) else None
        if event_type == "transaction":
            spans = event.get("spans")
            quantities = _transaction_quantities(1 + (len(spans) if isinstance(spans, list) else 0))
        else:
            quantities = [(_EVENT_TYPE_CATEGORY.get(event_type or "", DataCategory.ERROR), 1)]
        if event_type == "transaction" and may_sample(
            ctx.envelope, ctx.meta.public_key, ctx.state, self.sampling_states
        ):
            # After inbound filters, as Relay: a filtered event never counts as sampled.
            reason = sampled_out_reason(
                event, ctx.envelope, ctx.meta.public_key, ctx.state, self.sampling_states,
                processing=True, client_ip=ctx.meta.client_ip,
            )  # fmt: skip
            if reason is not None:
                return SampledOut(reason, span_count(event))
        elif event_type not in ("transaction", "feedback") and ctx.envelope.trace is not None:
            tag_error_sampled(
                event, ctx.envelope, ctx.meta.public_key, ctx.state, self.sampling_states
            )
        scrub_event(event, ctx.state)
        return _json_encoder.encode(event), event_type, quantities

    def _sampled_out(
        self,
        ctx: _Context,
        sampled: SampledOut,
        attachments: list[Item],
        user_reports: list[Item],
        plan: Plan,
    ) -> None:
        """Drop what dynamic sampling dropped; the totals stay billed, profiles stay."""
        filtered = int(OutcomeCode.FILTERED)
        for category, quantity in indexed_quantities(sampled.spans):
            ctx.sink.track(ctx.scoping, filtered, sampled.reason, int(category), quantity)
        # Relay bills these through the usage metrics it extracts before sampling.
        for category, quantity in total_quantities(sampled.spans):
            self.outcomes.accepted(ctx.scoping, category, quantity)
        for item in attachments:
            ctx.drop(item, sampled.reason, OutcomeCode.FILTERED)
        for item in user_reports:
            self._user_report(ctx, item, None, plan)
        mark_profiles_unsampled(ctx.envelope)

    def _user_report(self, ctx: _Context, item: Item, unit: Unit | None, plan: Plan) -> None:
        try:
            report = msgspec.json.decode(item.payload)
        except msgspec.DecodeError:
            ctx.drop(item, "invalid_json")
            return
        event_id = report.get("event_id") if isinstance(report, dict) else None
        if not isinstance(event_id, str):
            event_id = ctx.event_id
        try:
            key = partition_key_for(event_id, ctx.org_id) if event_id else None
        except ValueError:
            ctx.drop(item, "invalid_event_id")
            return
        message = Message(
            KafkaTopic.ATTACHMENTS,
            encode_user_report_message(
                project_id=ctx.project_id, start_time=ctx.start_time, payload=item.payload
            ),
            key,
        )
        if unit is not None:
            # With an event: produced before it, so the consumer can attach it.
            unit.first.append(message)
            unit.quantities.extend(item.quantities())
        else:
            plan.units.append(Unit(then=[message], quantities=item.quantities()))

    # --- other item types ---------------------------------------------------------

    def _check_in(self, ctx: _Context, item: Item, plan: Plan) -> None:
        try:
            payload, check_in = normalize_check_in(item.payload)
        except InvalidCheckIn:
            ctx.drop(item, "invalid_check_in")
            return
        message = encode_check_in_message(
            payload=payload,
            project_id=ctx.project_id,
            start_time=ctx.start_time,
            sdk=ctx.meta.client,
            retention_days=ctx.retention,
        )
        hint = item.headers.get("routing_hint") or str(routing_hint(check_in, ctx.project_id))
        key = check_in_key(hint, ctx.org_id)
        plan.units.append(
            Unit(then=[Message(KafkaTopic.MONITORS, message, key)], quantities=item.quantities())
        )

    def _profile(self, ctx: _Context, item: Item, plan: Plan) -> None:
        reason = _profile_error(item.payload)
        quantities = item.quantities()
        if reason is not None:
            if not any(c in (DataCategory.PROFILE_UI, DataCategory.PROFILE_BACKEND)
                       for c, _ in quantities):  # fmt: skip
                quantities = quantities[:2]
            ctx.drop(item, reason, quantities=quantities)
            return
        filtered = self._filter_profile(ctx, msgspec.json.decode(item.payload))
        if filtered is not None:
            ctx.drop(item, filtered, OutcomeCode.FILTERED, quantities=quantities)
            return
        sampled = item.headers.get("sampled", True) is not False
        headers = profile_headers(ctx.project_id, sampled)
        key = ctx.state.key_config(ctx.meta.public_key)
        message = encode_profile_message(
            organization_id=ctx.org_id,
            project_id=ctx.project_id,
            key_id=key.numeric_id if key else None,
            received=ctx.start_time,
            retention_days=ctx.retention,
            payload=item.payload,
        )
        plan.units.append(
            Unit(
                then=[Message(KafkaTopic.PROFILES, message, headers=headers)],
                quantities=quantities,
            )
        )

    def _filter_profile(self, ctx: _Context, profile: Any) -> str | None:
        """The inbound filter (on the profile's own release and platform) that drops it."""
        filters = inbound_filters(ctx.state, self.global_config())
        return should_filter_profile(filters, profile, client_ip=ctx.meta.client_ip)

    def _profile_chunk(self, ctx: _Context, item: Item, plan: Plan) -> None:
        try:
            chunk = msgspec.json.decode(item.payload)
        except msgspec.DecodeError:
            chunk = None
        if not isinstance(chunk, dict):
            ctx.drop(item, "profiling_invalid_json")
            return
        quantities = item.quantities()
        if not quantities:
            platform = chunk.get("platform")
            ui = isinstance(platform, str) and platform in UI_PROFILE_PLATFORMS
            quantities = [(DataCategory.PROFILE_CHUNK_UI if ui else DataCategory.PROFILE_CHUNK, 1)]
        filtered = self._filter_profile(ctx, chunk)
        if filtered is not None:
            ctx.drop(item, filtered, OutcomeCode.FILTERED, quantities=quantities)
            return
        message = encode_profile_chunk_message(
            organization_id=ctx.org_id,
            project_id=ctx.project_id,
            key_id=ctx.scoping.key_id,
            received=ctx.start_time,
            retention_days=ctx.retention,
            payload=item.payload,
        )
        headers = [("project_id", str(ctx.project_id).encode())]
        plan.units.append(
            Unit(
                then=[Message(KafkaTopic.PROFILES, message, headers=headers)],
                quantities=quantities,
            )
        )

    def _replay(self, ctx: _Context, items: list[Item], plan: Plan) -> None:
        features = ctx.state.config.get("features")
        quantities: Quantities = [(DataCategory.REPLAY, 1) for _ in items]
        if not isinstance(features, list) or "organizations:session-replay" not in features:
            ctx.drop_quantities(quantities, "feature_disabled")
            return
        parts: dict[str, bytes] = {}
        for item in items:
            parts.setdefault(item.type, item.payload)
        replay_id = ctx.event_id
        event_payload = parts.get(ItemType.REPLAY_EVENT)
        recording = parts.get(ItemType.REPLAY_RECORDING)
        video = parts.get(ItemType.REPLAY_VIDEO)
        if video is not None:
            unpacked = _unpack_video(video)
            if unpacked is None:
                ctx.drop_quantities(quantities, "invalid_replay_video")
                return
            event_payload = unpacked.get("replay_event", event_payload)
            recording = unpacked.get("replay_recording", recording)
            video = unpacked.get("replay_video", video)
        if event_payload is not None:
            try:
                event = msgspec.json.decode(event_payload)
            except msgspec.DecodeError:
                event = None
            if not isinstance(event, dict):
                ctx.drop_quantities(quantities, "invalid_replay")
                return
            found = event.get("replay_id")
            if replay_id is None and isinstance(found, str):
                replay_id = found
        if recording is None or not _valid_recording(recording):
            reason = "invalid_replay_recording" if recording is not None else "invalid_replay"
            ctx.drop_quantities(quantities, reason if event_payload is None else "invalid_replay")
            return
        if replay_id is None:
            ctx.drop_quantities(quantities, "invalid_replay")
            return
        key = ctx.state.key_config(ctx.meta.public_key)
        try:
            message = encode_replay_recording_message(
                replay_id=replay_id,
                key_id=key.numeric_id if key else None,
                org_id=ctx.org_id,
                project_id=ctx.project_id,
                received=ctx.start_time,
                retention_days=ctx.retention,
                payload=recording,
                replay_event=event_payload,
                replay_video=video,
            )
        except ValueError:
            ctx.drop_quantities(quantities, "invalid_replay")
            return
        plan.units.append(
            Unit(then=[Message(KafkaTopic.REPLAY_RECORDINGS, message)], quantities=quantities)
        )

    def _container_items(self, item: Item) -> list[Any] | None:
        try:
            data = msgspec.json.decode(item.payload)
        except msgspec.DecodeError:
            return None
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            items: list[Any] = data["items"]
            return items
        return None

    def _spans(self, ctx: _Context, item: Item, plan: Plan) -> None:
        container = (item.content_type or "").lower() == _SPAN_CONTAINER
        scrubber = pii_pipeline(ctx.state)
        if container:
            spans = self._container_items(item)
            if spans is None:
                ctx.drop(item, "invalid_span")
                return
            # What is in the container counts, whatever item_count claims.
            ctx.drop_quantities(
                [(c, q - len(spans)) for c, q in item.quantities() if q > len(spans)],
                "invalid_span",
            )
        else:
            try:
                span = msgspec.json.decode(item.payload)
            except msgspec.DecodeError:
                ctx.drop(item, "invalid_span")
                return
            spans = [span_v1_to_v2(span)] if isinstance(span, dict) else [None]
        for span in spans:
            one: Quantities = [(DataCategory.SPAN, 1), (DataCategory.SPAN_INDEXED, 1)]
            if not isinstance(span, dict):
                ctx.drop_quantities(one, "invalid_span")
                continue
            try:
                validate_span_v2(span)
            except InvalidSpan:
                ctx.drop_quantities(one, "invalid_span")
                continue
            # As Relay: piiConfig, then datascrubbingSettings (relay.pii.eap).
            scrubber.process_span(span)
            if not span.get("name"):
                # Converted V1 spans are named from what scrubbing left (never raw PII).
                span["name"] = infer_span_name(span)
            message = encode_span_message(
                span,
                organization_id=ctx.org_id,
                project_id=ctx.project_id,
                key_id=ctx.scoping.key_id,
                event_id=None,
                received=ctx.meta.received_at,
                retention_days=ctx.retention,
            )
            plan.units.append(
                Unit(
                    then=[
                        Message(
                            KafkaTopic.SPANS,
                            message,
                            span_key(span, ctx.org_id),
                            span_headers(ctx.project_id),
                        )
                    ],
                    quantities=one,
                    accepted=[(DataCategory.SPAN, 1)],
                )
            )

    def _logs(self, ctx: _Context, item: Item, plan: Plan) -> None:
        if (item.content_type or "").lower() == _LOG_CONTAINER:
            logs = self._container_items(item)
        else:
            try:
                single = msgspec.json.decode(item.payload)
            except msgspec.DecodeError:
                single = None
            logs = [single] if isinstance(single, dict) else None
        if logs is None:
            ctx.drop(item, "invalid_log")
            return
        count = max(len(logs), 1)
        size = max(len(item.payload), 1)
        infer = infers_user_agent(item, ctx.meta)
        for index, entry in enumerate(logs):
            # Bytes are shared out so that the parts sum to the item's size exactly.
            share = size // count + (1 if index < size % count else 0)
            one: Quantities = [(DataCategory.LOG_ITEM, 1), (DataCategory.LOG_BYTE, share)]
            if not isinstance(entry, dict):
                ctx.drop_quantities(one, "invalid_log")
                continue
            # The size the first relay measured counts for quantities, as in Relay.
            share = prepare_log(entry, ctx.meta, ctx.state, infer_user_agent=infer)
            one = [(DataCategory.LOG_ITEM, 1), (DataCategory.LOG_BYTE, share)]
            try:
                value = encode_log_item(
                    entry,
                    organization_id=ctx.org_id,
                    project_id=ctx.project_id,
                    key_id=ctx.scoping.key_id,
                    received_at=ctx.meta.received_at,
                    retention_days=ctx.retention,
                    payload_size=share,
                    quantities=[(int(c), q) for c, q in one],
                )
            except InvalidTraceItem:
                ctx.drop_quantities(one, "invalid_log")
                continue
            headers = trace_item_headers(ctx.project_id, LOG_ITEM_TYPE)
            plan.units.append(
                Unit(then=[Message(KafkaTopic.ITEMS, value, headers=headers)], quantities=one)
            )

    def _metric_buckets(self, ctx: _Context, item: Item, plan: Plan) -> None:
        try:
            buckets = decode_buckets(item.payload)
        except msgspec.DecodeError:
            log.debug("invalid metric buckets dropped")
            return
        relay_id = ctx.meta.relay_id
        static = self.config.auth.static_relays.get(relay_id) if relay_id else None
        internal = static is not None and static.internal
        if internal:
            self.outcomes.outcome_buckets(ctx.scoping, buckets)
        messages = [
            Message(
                KafkaTopic.METRICS_SESSIONS,
                encode_metric_message(
                    bucket,
                    org_id=ctx.org_id,
                    project_id=ctx.project_id,
                    retention_days=ctx.retention,
                ),
                headers=metric_headers("sessions"),
            )
            for bucket in buckets
            if _is_session_bucket(bucket)
        ]
        if messages:
            plan.units.append(Unit(then=messages))


def _is_session_bucket(bucket: MetricBucket) -> bool:
    return bucket.namespace == "sessions"


def _transaction_quantities(spans: int) -> Quantities:
    return [
        (DataCategory.TRANSACTION, 1),
        (DataCategory.TRANSACTION_INDEXED, 1),
        (DataCategory.SPAN, spans),
        (DataCategory.SPAN_INDEXED, spans),
    ]


def _valid_transaction(event: dict[str, Any]) -> bool:
    """What Relay requires of a transaction before it is stored (ids and timestamps)."""
    spans = event.get("spans", [])
    if spans is None:
        return True
    if not isinstance(spans, list):
        return False
    for span in spans:
        if not isinstance(span, dict):
            return False
        if not isinstance(span.get("span_id"), str) or not span.get("span_id"):
            return False
        if span.get("start_timestamp") is None or span.get("timestamp") is None:
            return False
    return True


def _profile_error(payload: bytes) -> str | None:
    """Relay's discard reason for a profile it cannot parse, else ``None``."""
    try:
        profile = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return "profiling_invalid_json"
    if not isinstance(profile, dict):
        return "profiling_invalid_json"
    platform = profile.get("platform")
    if not isinstance(platform, str):
        return "profiling_invalid_json"
    if profile.get("version") == "1" or platform == "android":
        return None
    return "profiling_platform_not_supported"


def _valid_recording(recording: bytes) -> bool:
    # A recording starts with a JSON header line (``{"segment_id": N}``) and a body.
    header, newline, _ = recording.partition(b"\n")
    if not newline:
        return False
    try:
        meta = msgspec.json.decode(header)
    except msgspec.DecodeError:
        return False
    return isinstance(meta, dict) and isinstance(meta.get("segment_id"), int)


def _unpack_video(payload: bytes) -> dict[str, bytes] | None:
    import msgpack

    try:
        data = msgpack.unpackb(payload, raw=False)
    except Exception:
        return None
    if not isinstance(data, dict):
        return None
    return {k: bytes(v) for k, v in data.items() if isinstance(v, bytes | bytearray)}


__all__ = ["KafkaProduceError", "Message", "Plan", "Processor", "Unit"]
