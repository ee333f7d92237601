"""Accounting for data: every item that is not delivered becomes an outcome.

Outcomes are tracked with Relay's outcome id, reason and data category, summed per time
slot by :class:`~relay.server.outcome_aggregator.OutcomeAggregator`, and then, as Relay
does it for ``outcomes.emit_outcomes``:

- processing relays (always) write them to Kafka (``outcomes`` / ``outcomes-billing``);
- ``true``: send them upstream as ``c:outcomes/*`` metric buckets, in an envelope per
  project or, with ``http.global_metrics``, batched to ``/api/0/relays/metrics/``;
- ``"as_client_reports"`` (the default): send filtered and rate-limited outcomes upstream
  as client reports; other outcomes are not reported;
- ``false``: drop them.

Client reports from SDKs enter here too (:meth:`OutcomeSink.client_reports`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from relay import __version__
from relay.config import Config
from relay.kafka.metrics import MetricBucket, encode_buckets
from relay.kafka.outcomes import (
    OUTCOME_METRIC_NAMES,
    Outcome,
    OutcomeCode,
    encode_outcome,
    format_outcome_timestamp,
    outcome_code_for_metric,
    outcome_topic,
)
from relay.kafka.router import KafkaSink
from relay.kafka.topics import KafkaTopic
from relay.metrics.usage import usage_bucket_counts
from relay.protocol.encoding import zstd_compress
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory, ItemType
from relay.protocol.project_config import DEFAULT_EVENT_RETENTION_DAYS, ProjectState
from relay.server.outcome_aggregator import AggregatedOutcome, OutcomeAggregator, Scoping
from relay.server.request_meta import RequestMeta
from relay.server.telemetry import count_drop

if TYPE_CHECKING:
    from relay.server.upstream import UpstreamClient

log = logging.getLogger(__name__)

EmitMode = Literal["kafka", "metrics", "client_reports", "none"]

#: Relay's limit on a client report outcome's reason.
MAX_REASON_LENGTH = 200
#: How long outcome batches for the upstream are retried.
UPSTREAM_DEADLINE_SECS = 60.0

_SAMPLED_RE = re.compile(r"^Sampled:\d+(,\d+)*$")
_CLIENT_REPORT_SECTIONS: tuple[tuple[str, OutcomeCode], ...] = (
    ("discarded_events", OutcomeCode.CLIENT_DISCARD),
    ("rate_limited_events", OutcomeCode.RATE_LIMITED),
    ("filtered_events", OutcomeCode.FILTERED),
    ("filtered_sampling_events", OutcomeCode.FILTERED),
)
_json = msgspec.json.Encoder()


def emit_mode(config: Config) -> EmitMode:
    """Where this relay's outcomes go (Relay's ``Config::emit_outcomes``)."""
    if config.processing.enabled:
        return "kafka"
    value = config.outcomes.emit_outcomes
    if value == "as_client_reports":
        return "client_reports"
    return "metrics" if value is True else "none"


def scoping_for(meta: RequestMeta, state: ProjectState | None) -> Scoping:
    """The outcome scoping of a request: its key, project, and the project's org and key id."""
    key = state.key_config(meta.public_key) if state else None
    return Scoping(
        public_key=meta.public_key,
        project_id=meta.project_id,
        org_id=state.organization_id if state else None,
        key_id=key.numeric_id if key else None,
    )


def parse_report_timestamp(value: Any) -> float | None:
    """A client report ``timestamp``: seconds since the epoch or an RFC 3339 string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=datetime.now().astimezone().tzinfo).timestamp()
        return moment.timestamp()
    return None


def _valid_reason(code: OutcomeCode, section: str, reason: str) -> bool:
    if len(reason) > MAX_REASON_LENGTH:
        return False
    if section == "filtered_sampling_events":
        return _SAMPLED_RE.match(reason) is not None
    if section == "filtered_events":
        return bool(reason)
    return True


class OutcomeSink:
    """Tracks outcomes and delivers them, aggregated, to where this relay's config says.

    ``track`` never blocks and never raises. :attr:`totals` counts tracked quantities per
    ``(outcome, category)`` (for tests and conservation checks), :attr:`failed` counts
    outcomes that could not be delivered.
    """

    def __init__(
        self,
        config: Config,
        producer: KafkaSink | None = None,
        topics: Mapping[KafkaTopic, str] | None = None,
        *,
        upstream: UpstreamClient | None = None,
        mode: EmitMode | None = None,
    ) -> None:
        self.config = config
        self.producer = producer
        self.topics = dict(topics or {})
        self.upstream = upstream
        self.mode: EmitMode = mode or ("kafka" if producer is not None else emit_mode(config))
        agg = config.aggregator
        self.aggregator = OutcomeAggregator(
            self._deliver,
            bucket_interval=agg.bucket_interval,
            initial_delay=agg.initial_delay,
            max_secs_in_past=agg.max_secs_in_past,
            max_secs_in_future=agg.max_secs_in_future,
        )
        self.totals: collections.Counter[tuple[int, int]] = collections.Counter()
        self.emitted = 0
        self.failed = 0

    # --- tracking -------------------------------------------------------------------

    def track(
        self,
        scoping: Scoping,
        outcome: int,
        reason: str | None,
        category: int,
        quantity: int,
        *,
        timestamp: float | None = None,
        source: str | None = None,
        own: bool = True,
    ) -> None:
        """Track one outcome. ``own`` outcomes get this relay's ``outcomes.source``."""
        if quantity <= 0 or category < 0:
            return
        if own:
            count_drop(outcome, reason, category, quantity)
        if self.mode == "none":
            return
        self.emitted += 1
        self.totals[(outcome, category)] += quantity
        if own and source is None:
            source = self.config.outcomes.source
        self.aggregator.add(
            scoping, outcome, reason, category, quantity, timestamp=timestamp, source=source
        )

    def emit(self, outcome: Outcome) -> None:
        """Track an :class:`~relay.kafka.outcomes.Outcome` (which carries its own scoping)."""
        if outcome.category is None or outcome.quantity is None:
            return
        try:
            when: float | None = datetime.fromisoformat(
                outcome.timestamp.replace("Z", "+00:00")
            ).timestamp()
        except ValueError:
            when = None
        self.track(
            Scoping("", outcome.project_id, outcome.org_id, outcome.key_id),
            outcome.outcome,
            outcome.reason,
            outcome.category,
            outcome.quantity,
            timestamp=when,
            source=outcome.source,
        )

    def item_dropped(
        self,
        item: Item,
        envelope: Envelope,
        meta: RequestMeta,
        state: ProjectState | None,
        reason: str | None,
        code: OutcomeCode = OutcomeCode.INVALID,
        quantities: Iterable[tuple[DataCategory, int]] | None = None,
    ) -> None:
        """Outcomes for every category the item counts in (or the given ``quantities``)."""
        scoping = scoping_for(meta, state)
        if log.isEnabledFor(logging.DEBUG):
            # Traceable by event id (a structured field in JSON logs), never by payload.
            log.debug(
                "dropped %s item: outcome %s, reason %s", item.type, code.name.lower(), reason,
                extra={"event_id": envelope.event_id, "project_id": meta.project_id},
            )  # fmt: skip
        for category, quantity in quantities if quantities is not None else item.quantities():
            self.track(scoping, int(code), reason, int(category), quantity)

    def envelope_dropped(
        self,
        envelope: Envelope,
        meta: RequestMeta,
        state: ProjectState | None,
        reason: str | None,
        code: OutcomeCode = OutcomeCode.INVALID,
    ) -> None:
        """Outcomes for every item of a dropped envelope."""
        for item in envelope.items:
            self.item_dropped(item, envelope, meta, state, reason, code)

    def accepted(self, scoping: Scoping, category: DataCategory, quantity: int) -> None:
        """An accepted outcome (billing), for data Relay counts as accepted itself."""
        self.track(scoping, int(OutcomeCode.ACCEPTED), None, int(category), quantity)

    # --- inputs from clients and other relays ----------------------------------------

    def client_reports(
        self, items: Iterable[Item], meta: RequestMeta, state: ProjectState | None
    ) -> None:
        """Turn SDK client reports into outcomes (discards become ``client_discard``).

        Malformed reports and entries are dropped without an outcome (outcomes are not
        reported for outcomes); entries older than the project's retention or more than
        ``processing.max_secs_in_future`` ahead are refused, as in Relay.
        """
        scoping = scoping_for(meta, state)
        retention = DEFAULT_EVENT_RETENTION_DAYS if state is None else state.event_retention
        received = meta.received_at
        max_age = retention * 86400
        max_future = self.config.processing.max_secs_in_future
        for item in items:
            try:
                report = msgspec.json.decode(item.payload)
            except msgspec.DecodeError:
                log.debug("invalid client report")
                continue
            if not isinstance(report, dict):
                continue
            when = parse_report_timestamp(report.get("timestamp"))
            if when is None:
                if report.get("timestamp") is not None:
                    continue
                when = received
            if received - when > max_age or when - received > max_future:
                continue
            for section, code in _CLIENT_REPORT_SECTIONS:
                entries = report.get(section)
                if not isinstance(entries, list):
                    continue
                for entry in entries:
                    self._client_outcome(scoping, section, code, entry, when)

    def _client_outcome(
        self, scoping: Scoping, section: str, code: OutcomeCode, entry: Any, when: float
    ) -> None:
        if not isinstance(entry, dict):
            return
        category = entry.get("category")
        quantity = entry.get("quantity")
        reason = entry.get("reason", "")
        if not isinstance(category, str) or not isinstance(reason, str):
            return
        if type(quantity) is not int or quantity <= 0:
            return
        cat = DataCategory.from_name(category)
        if cat is DataCategory.UNKNOWN or not _valid_reason(code, section, reason):
            return
        stored_reason = reason if reason or code != OutcomeCode.RATE_LIMITED else None
        self.track(scoping, int(code), stored_reason, int(cat), quantity, timestamp=when)

    def outcome_buckets(self, scoping: Scoping, buckets: Iterable[MetricBucket]) -> int:
        """Merge ``c:outcomes/*`` buckets from a downstream (internal) relay.

        Their ``source`` tag is kept: the outcome belongs to the relay that tracked it.
        Returns how many buckets were outcomes.
        """
        merged = 0
        for bucket in buckets:
            code = outcome_code_for_metric(bucket.name)
            if code is None and self.mode == "kafka" and bucket.type == "c":
                self._usage_accepted(scoping, bucket)
            if code is None or bucket.type != "c":
                continue
            merged += 1
            tags = bucket.tags
            try:
                category = int(tags.get("category", ""))
                quantity = int(float(bucket.value))
            except (TypeError, ValueError):
                continue
            self.track(
                scoping,
                code,
                tags.get("reason"),
                category,
                quantity,
                timestamp=float(bucket.timestamp),
                source=tags.get("source"),
                own=False,
            )
        return merged

    def _usage_accepted(self, scoping: Scoping, bucket: MetricBucket) -> None:
        """Bill the usage counters of transactions a downstream relay did not forward
        (dynamic sampling): the relay that stores metrics emits their accepted outcomes."""
        spans, transactions = usage_bucket_counts(bucket.name, bucket.value, bucket.tags)
        if spans:
            self.accepted(scoping, DataCategory.SPAN, spans)
        if transactions:
            self.accepted(scoping, DataCategory.TRANSACTION, transactions)

    # --- delivery -------------------------------------------------------------------

    async def _deliver(self, batch: list[AggregatedOutcome]) -> None:
        if self.mode == "kafka":
            await self._to_kafka(batch)
        elif self.mode == "metrics":
            await self._to_upstream_metrics(batch)
        elif self.mode == "client_reports":
            await self._to_client_reports(batch)

    async def _to_kafka(self, batch: list[AggregatedOutcome]) -> None:
        producer = self.producer
        if producer is None:
            return

        async def send(key_qty: AggregatedOutcome) -> None:
            key, quantity = key_qty
            scoping = key.scoping
            message = Outcome(
                timestamp=format_outcome_timestamp(float(key.timestamp)),
                # Relay leaves out an unknown (zero) organization.
                org_id=scoping.org_id or None,
                project_id=scoping.project_id,
                key_id=scoping.key_id,
                outcome=key.outcome,
                reason=key.reason,
                source=key.source,
                category=key.category,
                quantity=quantity,
            )
            topic = self.topics.get(outcome_topic(key.outcome))
            if topic is None:
                return
            try:
                await producer.send(topic, encode_outcome(message))
            except Exception as exc:
                self.failed += 1
                log.error("could not write outcome to %s: %s", topic, exc)

        await asyncio.gather(*(send(entry) for entry in batch))

    def _buckets_by_project(
        self, batch: list[AggregatedOutcome]
    ) -> dict[tuple[str, int], list[MetricBucket]]:
        grouped: dict[tuple[str, int], list[MetricBucket]] = collections.defaultdict(list)
        for key, quantity in batch:
            tags = {"category": str(key.category)}
            if key.reason is not None:
                tags["reason"] = key.reason
            if key.source is not None:
                tags["source"] = key.source
            grouped[(key.scoping.public_key, key.scoping.project_id)].append(
                MetricBucket(
                    timestamp=key.timestamp,
                    name=OUTCOME_METRIC_NAMES.get(key.outcome, "c:outcomes/invalid@none"),
                    type="c",
                    value=float(quantity),
                    width=0,
                    tags=tags,
                )
            )
        return grouped

    async def _to_upstream_metrics(self, batch: list[AggregatedOutcome]) -> None:
        grouped = self._buckets_by_project(batch)
        if self.config.http.global_metrics:
            by_key: dict[str, list[MetricBucket]] = collections.defaultdict(list)
            for (public_key, _), buckets in grouped.items():
                by_key[public_key].extend(buckets)
            await self._post_global_metrics(by_key)
            return
        sends = []
        for (public_key, project_id), buckets in grouped.items():
            envelope = Envelope({}, [Item.new(ItemType.METRIC_BUCKETS, encode_buckets(buckets))])
            sends.append(self._send_envelope(public_key, project_id, envelope))
        await asyncio.gather(*sends)

    async def _post_global_metrics(self, by_key: Mapping[str, list[MetricBucket]]) -> None:
        upstream = self.upstream
        if upstream is None:
            return
        body = _json.encode({"buckets": by_key})
        headers = {"Content-Type": "application/json", "Content-Encoding": "zstd"}
        try:
            status, _, data = await upstream.request(
                "POST",
                "/api/0/relays/metrics/",
                body=zstd_compress(body),
                headers=headers,
                sign_data=body,
            )
        except Exception as exc:
            self.failed += sum(len(b) for b in by_key.values())
            log.error("could not send outcomes upstream: %s", exc)
            return
        if status >= 300:
            self.failed += sum(len(b) for b in by_key.values())
            log.error("upstream refused outcome metrics: %s %r", status, data[:200])

    async def _to_client_reports(self, batch: list[AggregatedOutcome]) -> None:
        reports: dict[tuple[str, int, int], dict[str, list[dict[str, Any]]]] = {}
        for key, quantity in batch:
            section = _client_report_section(key.outcome, key.reason)
            if section is None:
                continue
            slot = (key.scoping.public_key, key.scoping.project_id, key.timestamp)
            report = reports.setdefault(slot, {"discarded_events": []})
            category = DataCategory(key.category).name_str
            report.setdefault(section, []).append(
                {"reason": key.reason or "", "category": category, "quantity": quantity}
            )
        sends = []
        for (public_key, project_id, timestamp), sections in reports.items():
            payload = _json.encode({"timestamp": timestamp, **sections})
            envelope = Envelope({}, [Item.new(ItemType.CLIENT_REPORT, payload)])
            sends.append(self._send_envelope(public_key, project_id, envelope))
        await asyncio.gather(*sends)

    async def _send_envelope(self, public_key: str, project_id: int, envelope: Envelope) -> None:
        upstream = self.upstream
        if upstream is None or not public_key:
            return
        auth = (
            f"Sentry sentry_key={public_key}, sentry_version=7,"
            f" sentry_client=sentry-relay/{__version__}"
        )
        try:
            await upstream.send_envelope(
                project_id,
                envelope.serialize(),
                {"X-Sentry-Auth": auth},
                time.monotonic() + UPSTREAM_DEADLINE_SECS,
            )
        except Exception as exc:
            self.failed += 1
            log.error("could not send outcomes for project %s upstream: %s", project_id, exc)

    async def drain(self, timeout: float) -> None:
        """Flush every pending outcome and wait for delivery (shutdown)."""
        await self.aggregator.stop(timeout)


def _client_report_section(outcome: int, reason: str | None) -> str | None:
    # Only outcomes an upstream can re-create from a client report are reported that way.
    if outcome == OutcomeCode.FILTERED:
        if reason is not None and reason.startswith("Sampled:"):
            return "filtered_sampling_events"
        return "filtered_events"
    if outcome == OutcomeCode.RATE_LIMITED:
        return "rate_limited_events"
    if outcome == OutcomeCode.CLIENT_DISCARD:
        return "discarded_events"
    if outcome == OutcomeCode.INVALID and reason in ("invalid_signature", "missing_signature"):
        return "discarded_events"
    return None
