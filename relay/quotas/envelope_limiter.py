"""Which items of an envelope a rate limit drops, and which outcomes that makes.

An envelope is checked category by category, in a fixed order, with a few dependencies:

- the event first (its category from the item type, or the real event type when known);
- spans (standalone, and those a transaction contains) only if the event passed;
- event attachments (bytes, then count) only if the event passed: a dropped event takes its
  attachments and every other item that needs it with it, reported with the event's reason;
- trace/span attachments, sessions, logs, trace metrics, profiles, replays, user reports,
  check-ins and profile chunks each on their own.

That order is a :class:`LimitPlan`: a list of :class:`CheckStep` s, each naming the earlier step
it depends on (its *guard*). A step runs only if its guard ran and found no limit. Planning is
separate from evaluation so that the whole plan can be evaluated in one round trip: against the
cached limits here (:meth:`LimitPlan.evaluate_cached`), or in one atomic Redis script by
``relay.quotas.redis_limiter``. :func:`enforce` turns the per-step results into an
:class:`Enforcement`, which drops the items and lists the ``rate_limited`` outcomes.

Indexed categories (``transaction_indexed``, ``span_indexed``, ``profile_indexed``) are never
checked, as in Relay: whether an item is indexed is only known after dynamic sampling.

Reference: ``EnvelopeSummary``/``EnvelopeLimiter``/``Enforcement`` in
``relay-server/src/utils/rate_limits.rs`` (semantics only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import (
    EVENT_ATTACHMENT_TYPES,
    INTEGRATION_CONTENT_TYPES,
    TRACE_ATTACHMENT_CONTENT_TYPES,
    UI_PROFILE_PLATFORMS,
    AttachmentType,
    DataCategory,
    ItemType,
)
from relay.quotas.quota import ItemScoping, Quota, Scoping
from relay.quotas.rate_limit import CachedRateLimits, RateLimit, RateLimits

__all__ = [
    "CategoryLimit",
    "CheckStep",
    "Enforcement",
    "EnvelopeSummary",
    "LimitPlan",
    "RateLimitOutcome",
    "check_envelope_cached",
    "enforce",
    "plan_envelope",
]

#: The outcome id of rate-limited data (``Outcome::RateLimited``).
OUTCOME_RATE_LIMITED: Final = 2


def _event_category(item: Item) -> DataCategory | None:
    """The category an event-creating item makes, judged by its item type alone."""
    item_type = item.type
    if item_type == ItemType.EVENT or item_type == ItemType.UNREAL_REPORT:
        return DataCategory.ERROR
    if item_type == ItemType.TRANSACTION:
        return DataCategory.TRANSACTION
    if item_type in (ItemType.SECURITY, ItemType.RAW_SECURITY):
        return DataCategory.SECURITY
    if item_type == ItemType.FEEDBACK:
        return DataCategory.USER_REPORT_V2
    if item_type == ItemType.ATTACHMENT:
        # Only reached for crash reports and event payloads, which make error events.
        return DataCategory.ERROR
    return None


_PARENT_EVENT: Final = 0
_PARENT_TRACE: Final = 1
_PARENT_SPAN: Final = 2


def _attachment_parent(item: Item) -> int:
    """Whether an attachment belongs to an event, a trace, or a span (v2 attachments)."""
    if (item.content_type or "").lower() in TRACE_ATTACHMENT_CONTENT_TYPES:
        return _PARENT_SPAN if item.headers.get("span_id") is not None else _PARENT_TRACE
    return _PARENT_EVENT


def _creates_event(item: Item) -> bool:
    if item.creates_event():
        return True
    return item.type == ItemType.ATTACHMENT and item.attachment_type in EVENT_ATTACHMENT_TYPES


def _is_rate_limited(item: Item) -> bool:
    return item.headers.get("rate_limited") is True


@dataclass(slots=True)
class EnvelopeSummary:
    """The quantities of an envelope per category, as the limiter checks them."""

    event_category: DataCategory | None = None
    #: Attachment bytes and counts by parent: index 0 event, 1 trace, 2 span.
    attachment_bytes: list[int] = field(default_factory=lambda: [0, 0, 0])
    attachment_count: list[int] = field(default_factory=lambda: [0, 0, 0])
    has_plain_attachments: bool = False
    session_quantity: int = 0
    profile_quantity: int = 0
    profile_backend_quantity: int = 0
    profile_ui_quantity: int = 0
    replay_quantity: int = 0
    user_report_quantity: int = 0
    monitor_quantity: int = 0
    log_item_quantity: int = 0
    log_byte_quantity: int = 0
    span_quantity: int = 0
    profile_chunk_quantity: int = 0
    profile_chunk_ui_quantity: int = 0
    trace_metric_quantity: int = 0
    trace_metric_byte_quantity: int = 0

    @classmethod
    def compute(cls, items: Iterable[Item]) -> EnvelopeSummary:
        """Sum up ``items``. Items already marked ``rate_limited`` were counted before: skip."""
        summary = cls()
        for item in items:
            if _creates_event(item):
                if summary.event_category in (None, DataCategory.DEFAULT):
                    category = _event_category(item)
                    if category is not None:
                        summary.event_category = category
            elif item.type == ItemType.ATTACHMENT:
                summary.has_plain_attachments = True
            if _is_rate_limited(item):
                continue
            summary._add(item)
            if item.type == ItemType.USER_REPORT:
                # v1 user reports share the feedback category but are checked by item count.
                summary.user_report_quantity += 1
        return summary

    def _add(self, item: Item) -> None:
        if item.attachment_type == AttachmentType.NINTENDO_SWITCH_DYING_MESSAGE:
            # Dissolved into other items during processing; it has no category of its own.
            return
        parent = _attachment_parent(item) if item.type == ItemType.ATTACHMENT else _PARENT_EVENT
        for category, quantity in item.quantities():
            if category == DataCategory.ATTACHMENT:
                self.attachment_bytes[parent] += quantity
            elif category == DataCategory.ATTACHMENT_ITEM:
                self.attachment_count[parent] += quantity
            elif category == DataCategory.SESSION:
                self.session_quantity += quantity
            elif category == DataCategory.PROFILE:
                self.profile_quantity += quantity
            elif category == DataCategory.PROFILE_BACKEND:
                self.profile_backend_quantity += quantity
            elif category == DataCategory.PROFILE_UI:
                self.profile_ui_quantity += quantity
            elif category in (DataCategory.REPLAY, DataCategory.REPLAY_VIDEO):
                self.replay_quantity += quantity
            elif category == DataCategory.MONITOR:
                self.monitor_quantity += quantity
            elif category == DataCategory.SPAN:
                self.span_quantity += quantity
            elif category == DataCategory.TRACE_METRIC:
                self.trace_metric_quantity += quantity
            elif category == DataCategory.TRACE_METRIC_BYTE:
                self.trace_metric_byte_quantity += quantity
            elif category == DataCategory.LOG_ITEM:
                self.log_item_quantity += quantity
            elif category == DataCategory.LOG_BYTE:
                self.log_byte_quantity += quantity
            elif category == DataCategory.PROFILE_CHUNK:
                self.profile_chunk_quantity += quantity
            elif category == DataCategory.PROFILE_CHUNK_UI:
                self.profile_chunk_ui_quantity += quantity


@dataclass(frozen=True, slots=True)
class CheckStep:
    """One quota check: ``quantity`` of ``category``, run only if step ``guard`` passed.

    A quantity of 0 checks whether the category is already limited without counting.
    """

    name: str
    category: DataCategory
    quantity: int
    #: Index of the step this one depends on, or -1.
    guard: int = -1
    #: Metric namespace, for checks of metric buckets.
    namespace: str | None = None

    def item(self, scoping: Scoping) -> ItemScoping:
        """The item scoping this step checks."""
        return scoping.item(self.category, self.namespace)


#: Result of evaluating one step: the limits it hit (empty: passed), or None if it was skipped
#: because its guard did not pass.
StepResult = RateLimits | None


@dataclass(slots=True)
class LimitPlan:
    """The checks an envelope needs, in order, with their dependencies."""

    summary: EnvelopeSummary
    steps: list[CheckStep]
    index: dict[str, int]

    @classmethod
    def single(
        cls, category: DataCategory, quantity: int, namespace: str | None = None
    ) -> LimitPlan:
        """A plan of one check, for data that is not an envelope (e.g. metric buckets)."""
        step = CheckStep("item", category, quantity, namespace=namespace)
        return cls(EnvelopeSummary(), [step], {"item": 0})

    def evaluate(self, check: Callable[[int, CheckStep], RateLimits]) -> list[StepResult]:
        """Run the steps in order with ``check(position, step)``, honouring guards."""
        results: list[StepResult] = []
        for position, step in enumerate(self.steps):
            if step.guard >= 0:
                guard = results[step.guard]
                # Results only hold limits active at evaluation time: non-empty means limited.
                if guard is None or guard:
                    results.append(None)
                    continue
            results.append(check(position, step))
        return results

    def evaluate_cached(
        self,
        scoping: Scoping,
        limits: RateLimits,
        quotas: Iterable[Quota] = (),
        now: float | None = None,
    ) -> list[StepResult]:
        """Evaluate against cached limits and ``limit: 0`` quotas (nothing is counted)."""
        quota_list = list(quotas)
        return self.evaluate(lambda _, step: limits.check(step.item(scoping), quota_list, now=now))


def plan_envelope(
    envelope: Envelope | Iterable[Item],
    event_category: DataCategory | None = None,
    *,
    indexed: bool = False,
) -> LimitPlan:
    """The checks for an envelope. ``event_category`` overrides the item-type guess once the
    event payload is parsed (a ``default`` event is still ``ERROR``; a CSP report ``SECURITY``).

    ``indexed``: also check the event's indexed category (``transaction_indexed``), as
    processing relays do (Relay's ``CheckLimits::All``). The fast path leaves it out: whether
    the event is stored is not known there yet, and it is needed downstream either way.
    """
    items = envelope.items if isinstance(envelope, Envelope) else envelope
    summary = EnvelopeSummary.compute(items)
    if event_category is not None:
        summary.event_category = event_category
    steps: list[CheckStep] = []
    index: dict[str, int] = {}

    def add(name: str, category: DataCategory, quantity: int, guard: str | None = None) -> None:
        index[name] = len(steps)
        steps.append(CheckStep(name, category, quantity, index[guard] if guard else -1))

    event = "event" if summary.event_category is not None else None
    if summary.event_category is not None:
        add("event", summary.event_category, 1)
        index_category = _INDEX_CATEGORY.get(summary.event_category)
        if indexed and index_category is not None:
            # Only counted while the event itself is within its quota.
            add("event_indexed", index_category, 1, "event")

    span_att = (summary.attachment_bytes[_PARENT_SPAN], summary.attachment_count[_PARENT_SPAN])
    if summary.span_quantity > 0 or any(span_att):
        add("span", DataCategory.SPAN, summary.span_quantity, event)
    if any(span_att):
        add("span_attachment", DataCategory.ATTACHMENT, span_att[0], "span")
        if span_att[1] > 0:
            add(
                "span_attachment_item", DataCategory.ATTACHMENT_ITEM, span_att[1], "span_attachment"
            )

    ev_bytes = summary.attachment_bytes[_PARENT_EVENT]
    ev_count = summary.attachment_count[_PARENT_EVENT]
    if ev_bytes > 0:
        add("attachment", DataCategory.ATTACHMENT, ev_bytes, event)
    if ev_count > 0:
        add(
            "attachment_item",
            DataCategory.ATTACHMENT_ITEM,
            ev_count,
            "attachment" if ev_bytes > 0 else event,
        )

    tr_bytes = summary.attachment_bytes[_PARENT_TRACE]
    tr_count = summary.attachment_count[_PARENT_TRACE]
    if tr_bytes or tr_count:
        add("trace_attachment", DataCategory.ATTACHMENT, tr_bytes)
        if tr_count > 0:
            add("trace_attachment_item", DataCategory.ATTACHMENT_ITEM, tr_count, "trace_attachment")

    if summary.session_quantity > 0:
        add("session", DataCategory.SESSION, summary.session_quantity)

    if summary.trace_metric_quantity > 0:
        add("trace_metric", DataCategory.TRACE_METRIC, summary.trace_metric_quantity)
    if summary.trace_metric_byte_quantity > 0:
        guard = "trace_metric" if summary.trace_metric_quantity > 0 else None
        add(
            "trace_metric_byte",
            DataCategory.TRACE_METRIC_BYTE,
            summary.trace_metric_byte_quantity,
            guard,
        )

    if summary.log_item_quantity > 0:
        add("log_item", DataCategory.LOG_ITEM, summary.log_item_quantity)
    if summary.log_byte_quantity > 0:
        guard = "log_item" if summary.log_item_quantity > 0 else None
        add("log_byte", DataCategory.LOG_BYTE, summary.log_byte_quantity, guard)

    if summary.profile_quantity > 0:
        add("profile", DataCategory.PROFILE, summary.profile_quantity, event)
        profile_guard = "profile"
        if summary.event_category is None:
            # A profile whose transaction was sampled away still obeys transaction limits.
            add("profile_transaction", DataCategory.TRANSACTION, 0, "profile")
            profile_guard = "profile_transaction"
        if summary.profile_backend_quantity > 0:
            add(
                "profile_backend",
                DataCategory.PROFILE_BACKEND,
                summary.profile_backend_quantity,
                profile_guard,
            )
        if summary.profile_ui_quantity > 0:
            add("profile_ui", DataCategory.PROFILE_UI, summary.profile_ui_quantity, profile_guard)

    if summary.replay_quantity > 0:
        add("replay", DataCategory.REPLAY, summary.replay_quantity)
    if summary.user_report_quantity > 0:
        add("user_report", DataCategory.USER_REPORT_V2, summary.user_report_quantity)
    if summary.monitor_quantity > 0:
        add("monitor", DataCategory.MONITOR, summary.monitor_quantity)
    if summary.profile_chunk_quantity > 0:
        add("profile_chunk", DataCategory.PROFILE_CHUNK, summary.profile_chunk_quantity)
    if summary.profile_chunk_ui_quantity > 0:
        add("profile_chunk_ui", DataCategory.PROFILE_CHUNK_UI, summary.profile_chunk_ui_quantity)
    return LimitPlan(summary, steps, index)


@dataclass(slots=True)
class CategoryLimit:
    """A limit enforced on one category: how much was dropped, and the reason code.

    An inactive limit (``category is None``) drops nothing.
    """

    category: DataCategory | None = None
    quantity: int = 0
    reason_code: str | None = None
    extra_categories: tuple[DataCategory, ...] = ()

    @classmethod
    def new(cls, category: DataCategory, quantity: int, limit: RateLimit | None) -> CategoryLimit:
        """Active with ``limit``'s reason if there is a limit, inactive otherwise."""
        if limit is None:
            return cls()
        return cls(category, quantity, limit.reason_code)

    @property
    def active(self) -> bool:
        """Whether this limit drops data."""
        return self.category is not None

    def clone_for(self, category: DataCategory, quantity: int) -> CategoryLimit:
        """The same verdict (and reason) applied to another category."""
        if self.category is None:
            return CategoryLimit()
        return CategoryLimit(category, quantity, self.reason_code)

    def with_outcome_category(self, category: DataCategory) -> CategoryLimit:
        """Also report the dropped quantity in ``category``."""
        return CategoryLimit(
            self.category, self.quantity, self.reason_code, (*self.extra_categories, category)
        )

    def outcomes(self) -> list[RateLimitOutcome]:
        """One outcome per reported category; none when inactive or nothing was dropped."""
        if self.category is None or self.quantity == 0:
            return []
        return [
            RateLimitOutcome(category, self.quantity, self.reason_code)
            for category in (self.category, *self.extra_categories)
        ]


@dataclass(frozen=True, slots=True)
class RateLimitOutcome:
    """A ``rate_limited`` outcome (id 2) to emit: category, quantity and the reason code."""

    category: DataCategory
    quantity: int
    reason: str | None


@dataclass(slots=True)
class Enforcement:
    """The verdict for one envelope: per-category limits, and the limits to report."""

    event: CategoryLimit = field(default_factory=CategoryLimit)
    event_indexed: CategoryLimit = field(default_factory=CategoryLimit)
    #: Attachment byte and count limits by parent: index 0 event, 1 trace, 2 span.
    attachment_bytes: list[CategoryLimit] = field(
        default_factory=lambda: [CategoryLimit(), CategoryLimit(), CategoryLimit()]
    )
    attachment_items: list[CategoryLimit] = field(
        default_factory=lambda: [CategoryLimit(), CategoryLimit(), CategoryLimit()]
    )
    sessions: CategoryLimit = field(default_factory=CategoryLimit)
    profiles: CategoryLimit = field(default_factory=CategoryLimit)
    profiles_backend: CategoryLimit = field(default_factory=CategoryLimit)
    profiles_ui: CategoryLimit = field(default_factory=CategoryLimit)
    profiles_indexed: CategoryLimit = field(default_factory=CategoryLimit)
    replays: CategoryLimit = field(default_factory=CategoryLimit)
    check_ins: CategoryLimit = field(default_factory=CategoryLimit)
    log_items: CategoryLimit = field(default_factory=CategoryLimit)
    log_bytes: CategoryLimit = field(default_factory=CategoryLimit)
    spans: CategoryLimit = field(default_factory=CategoryLimit)
    spans_indexed: CategoryLimit = field(default_factory=CategoryLimit)
    user_reports: CategoryLimit = field(default_factory=CategoryLimit)
    profile_chunks: CategoryLimit = field(default_factory=CategoryLimit)
    profile_chunks_ui: CategoryLimit = field(default_factory=CategoryLimit)
    trace_metrics: CategoryLimit = field(default_factory=CategoryLimit)
    trace_metric_bytes: CategoryLimit = field(default_factory=CategoryLimit)
    #: Every limit the checks hit, for ``X-Sentry-Rate-Limits`` and the per-project cache.
    #: Limits that only hit attachments which create events are left out: clients may keep
    #: sending those.
    rate_limits: RateLimits = field(default_factory=RateLimits)

    @property
    def active_event(self) -> CategoryLimit | None:
        """The limit that drops the event, if any."""
        if self.event.active:
            return self.event
        if self.event_indexed.active:
            return self.event_indexed
        return None

    @property
    def is_limited(self) -> bool:
        """Whether anything of the envelope is dropped (or any limit was hit)."""
        return bool(self.rate_limits) or any(limit.active for limit in self._all())

    def _all(self) -> list[CategoryLimit]:
        # The order of Relay's outcome list; sessions are dropped silently.
        return [
            self.event,
            self.event_indexed,
            self.attachment_bytes[_PARENT_EVENT],
            self.attachment_items[_PARENT_EVENT],
            self.attachment_bytes[_PARENT_TRACE],
            self.attachment_items[_PARENT_TRACE],
            self.attachment_bytes[_PARENT_SPAN],
            self.attachment_items[_PARENT_SPAN],
            self.profiles,
            self.profiles_backend,
            self.profiles_ui,
            self.profiles_indexed,
            self.replays,
            self.check_ins,
            self.log_items,
            self.log_bytes,
            self.spans,
            self.spans_indexed,
            self.user_reports,
            self.profile_chunks,
            self.profile_chunks_ui,
            self.trace_metrics,
            self.trace_metric_bytes,
        ]

    def outcomes(self) -> list[RateLimitOutcome]:
        """The ``rate_limited`` outcomes of everything dropped (sessions produce none)."""
        out: list[RateLimitOutcome] = []
        for limit in self._all():
            out.extend(limit.outcomes())
        return out

    def retain(self, item: Item) -> bool:
        """Whether ``item`` stays. Crash reports hit by an attachment limit stay, marked
        ``rate_limited`` (processing needs them to make the event)."""
        if self.event.active and item.requires_event():
            return False
        item_type = item.type
        if item_type == ItemType.ATTACHMENT:
            parent = _attachment_parent(item)
            if not (self.attachment_bytes[parent].active or self.attachment_items[parent].active):
                return True
            if parent == _PARENT_EVENT and _creates_event(item):
                item.headers["rate_limited"] = True
                return True
            return False
        if item_type == ItemType.SESSION:
            return not self.sessions.active
        if item_type == ItemType.PROFILE:
            if self.profiles_indexed.active:
                return False
            platform = item.platform
            if platform is None:
                return True
            if platform in UI_PROFILE_PLATFORMS:
                return not self.profiles_ui.active
            return not self.profiles_backend.active
        if item_type in (ItemType.REPLAY_EVENT, ItemType.REPLAY_RECORDING, ItemType.REPLAY_VIDEO):
            return not self.replays.active
        if item_type == ItemType.USER_REPORT:
            return not self.user_reports.active
        if item_type == ItemType.CHECK_IN:
            return not self.check_ins.active
        if item_type == ItemType.LOG:
            return not (self.log_items.active or self.log_bytes.active)
        if item_type == ItemType.SPAN:
            return not self.spans_indexed.active
        if item_type == ItemType.PROFILE_CHUNK:
            platform = item.platform
            if platform is None:
                return True
            if platform in UI_PROFILE_PLATFORMS:
                return not self.profile_chunks_ui.active
            return not self.profile_chunks.active
        if item_type == ItemType.TRACE_METRIC:
            return not (self.trace_metrics.active or self.trace_metric_bytes.active)
        if item_type == ItemType.INTEGRATION:
            product = INTEGRATION_CONTENT_TYPES.get((item.content_type or "").lower())
            if product == "logs":
                return not (self.log_items.active or self.log_bytes.active)
            if product == "spans":
                return not self.spans_indexed.active
        return True

    def apply(self, envelope: Envelope) -> list[RateLimitOutcome]:
        """Remove the dropped items from ``envelope``; return the outcomes to emit."""
        envelope.items = [item for item in envelope.items if self.retain(item)]
        return self.outcomes()


def _longest(results: list[StepResult], plan: LimitPlan, *names: str) -> RateLimits:
    merged = RateLimits()
    for name in names:
        position = plan.index.get(name)
        if position is not None:
            result = results[position]
            if result is not None:
                merged.merge(result)
    return merged


def enforce(plan: LimitPlan, results: list[StepResult]) -> Enforcement:
    """Turn the per-step results of ``plan`` into the verdict for the envelope."""
    s = plan.summary
    e = Enforcement()
    limits = e.rate_limits

    if s.event_category is not None:
        event_limits = _longest(results, plan, "event")
        e.event = CategoryLimit.new(s.event_category, 1, event_limits.longest())
        indexed = _INDEX_CATEGORY.get(s.event_category)
        if indexed is not None:
            if not event_limits:
                event_limits.merge(_longest(results, plan, "event_indexed"))
            e.event_indexed = CategoryLimit.new(indexed, 1, event_limits.longest())
        limits.merge(event_limits)
    active_event = e.active_event

    if active_event is not None:
        e.spans = e.event.clone_for(DataCategory.SPAN, s.span_quantity)
        e.spans_indexed = e.event_indexed.clone_for(DataCategory.SPAN_INDEXED, s.span_quantity)
    elif "span" in plan.index:
        span_limits = _longest(results, plan, "span")
        e.spans = CategoryLimit.new(DataCategory.SPAN, s.span_quantity, span_limits.longest())
        e.spans_indexed = CategoryLimit.new(
            DataCategory.SPAN_INDEXED, s.span_quantity, span_limits.longest()
        )
        limits.merge(span_limits)

    if e.spans_indexed.active:
        e.attachment_bytes[_PARENT_SPAN] = e.spans_indexed.clone_for(
            DataCategory.ATTACHMENT, s.attachment_bytes[_PARENT_SPAN]
        )
        e.attachment_items[_PARENT_SPAN] = e.spans_indexed.clone_for(
            DataCategory.ATTACHMENT_ITEM, s.attachment_count[_PARENT_SPAN]
        )
    elif "span_attachment" in plan.index:
        found = _longest(results, plan, "span_attachment", "span_attachment_item").longest()
        e.attachment_bytes[_PARENT_SPAN] = CategoryLimit.new(
            DataCategory.ATTACHMENT, s.attachment_bytes[_PARENT_SPAN], found
        )
        e.attachment_items[_PARENT_SPAN] = CategoryLimit.new(
            DataCategory.ATTACHMENT_ITEM, s.attachment_count[_PARENT_SPAN], found
        )

    ev_bytes = s.attachment_bytes[_PARENT_EVENT]
    ev_count = s.attachment_count[_PARENT_EVENT]
    if active_event is not None:
        e.attachment_bytes[_PARENT_EVENT] = active_event.clone_for(
            DataCategory.ATTACHMENT, ev_bytes
        )
        e.attachment_items[_PARENT_EVENT] = active_event.clone_for(
            DataCategory.ATTACHMENT_ITEM, ev_count
        )
    else:
        attachment_limits = RateLimits()
        if "attachment" in plan.index:
            found_limits = _longest(results, plan, "attachment")
            bytes_limit = CategoryLimit.new(
                DataCategory.ATTACHMENT, ev_bytes, found_limits.longest()
            )
            e.attachment_bytes[_PARENT_EVENT] = bytes_limit
            e.attachment_items[_PARENT_EVENT] = bytes_limit.clone_for(
                DataCategory.ATTACHMENT_ITEM, ev_count
            )
            attachment_limits.merge(found_limits)
        position = plan.index.get("attachment_item")
        if position is not None and results[position] is not None:
            found_limits = _longest(results, plan, "attachment_item")
            count_limit = CategoryLimit.new(
                DataCategory.ATTACHMENT_ITEM, ev_count, found_limits.longest()
            )
            e.attachment_items[_PARENT_EVENT] = count_limit
            e.attachment_bytes[_PARENT_EVENT] = count_limit.clone_for(
                DataCategory.ATTACHMENT, ev_bytes
            )
            attachment_limits.merge(found_limits)
        # Only plain attachments make the client back off: crash reports may still be sent.
        if s.has_plain_attachments:
            limits.merge(attachment_limits)

    if "trace_attachment" in plan.index:
        found = _longest(results, plan, "trace_attachment", "trace_attachment_item").longest()
        e.attachment_bytes[_PARENT_TRACE] = CategoryLimit.new(
            DataCategory.ATTACHMENT, s.attachment_bytes[_PARENT_TRACE], found
        )
        e.attachment_items[_PARENT_TRACE] = CategoryLimit.new(
            DataCategory.ATTACHMENT_ITEM, s.attachment_count[_PARENT_TRACE], found
        )

    if "session" in plan.index:
        session_limits = _longest(results, plan, "session")
        e.sessions = CategoryLimit.new(
            DataCategory.SESSION, s.session_quantity, session_limits.longest()
        )
        limits.merge(session_limits)

    _enforce_pair(
        plan,
        results,
        ("trace_metric", "trace_metric_byte"),
        (DataCategory.TRACE_METRIC, s.trace_metric_quantity),
        (DataCategory.TRACE_METRIC_BYTE, s.trace_metric_byte_quantity),
        e,
        "trace_metrics",
        "trace_metric_bytes",
    )
    _enforce_pair(
        plan,
        results,
        ("log_item", "log_byte"),
        (DataCategory.LOG_ITEM, s.log_item_quantity),
        (DataCategory.LOG_BYTE, s.log_byte_quantity),
        e,
        "log_items",
        "log_bytes",
    )

    _enforce_profiles(plan, results, e)

    for name, category, quantity, attr in (
        ("replay", DataCategory.REPLAY, s.replay_quantity, "replays"),
        ("user_report", DataCategory.USER_REPORT_V2, s.user_report_quantity, "user_reports"),
        ("monitor", DataCategory.MONITOR, s.monitor_quantity, "check_ins"),
        ("profile_chunk", DataCategory.PROFILE_CHUNK, s.profile_chunk_quantity, "profile_chunks"),
        (
            "profile_chunk_ui",
            DataCategory.PROFILE_CHUNK_UI,
            s.profile_chunk_ui_quantity,
            "profile_chunks_ui",
        ),
    ):
        if name in plan.index:
            found_limits = _longest(results, plan, name)
            setattr(e, attr, CategoryLimit.new(category, quantity, found_limits.longest()))
            limits.merge(found_limits)
    return e


_INDEX_CATEGORY: Final = {
    DataCategory.TRANSACTION: DataCategory.TRANSACTION_INDEXED,
    DataCategory.SPAN: DataCategory.SPAN_INDEXED,
    DataCategory.PROFILE: DataCategory.PROFILE_INDEXED,
}


def _enforce_pair(
    plan: LimitPlan,
    results: list[StepResult],
    names: tuple[str, str],
    first: tuple[DataCategory, int],
    second: tuple[DataCategory, int],
    e: Enforcement,
    first_attr: str,
    second_attr: str,
) -> None:
    """Items counted in two categories (logs, trace metrics): a limit on either drops both."""
    if names[0] not in plan.index and names[1] not in plan.index:
        return
    found_limits = _longest(results, plan, *names)
    found = found_limits.longest()
    setattr(e, first_attr, CategoryLimit.new(first[0], first[1], found))
    setattr(e, second_attr, CategoryLimit.new(second[0], second[1], found))
    e.rate_limits.merge(found_limits)


def _enforce_profiles(plan: LimitPlan, results: list[StepResult], e: Enforcement) -> None:
    s = plan.summary
    if e.active_event is not None:
        e.profiles = e.event.clone_for(DataCategory.PROFILE, s.profile_quantity)
        e.profiles_indexed = e.event_indexed.clone_for(
            DataCategory.PROFILE_INDEXED, s.profile_quantity
        )
        e.profiles_backend = e.event.clone_for(
            DataCategory.PROFILE_BACKEND, s.profile_backend_quantity
        )
        e.profiles_ui = e.event.clone_for(DataCategory.PROFILE_UI, s.profile_ui_quantity)
        return
    if "profile" not in plan.index:
        return
    profile_limits = _longest(results, plan, "profile", "profile_transaction")
    e.profiles = CategoryLimit.new(
        DataCategory.PROFILE, s.profile_quantity, profile_limits.longest()
    )
    if not e.profiles.active:
        if "profile_backend" in plan.index:
            found_limits = _longest(results, plan, "profile_backend")
            e.profiles_backend = CategoryLimit.new(
                DataCategory.PROFILE_BACKEND, s.profile_backend_quantity, found_limits.longest()
            ).with_outcome_category(DataCategory.PROFILE)
            profile_limits.merge(found_limits)
        if "profile_ui" in plan.index:
            found_limits = _longest(results, plan, "profile_ui")
            e.profiles_ui = CategoryLimit.new(
                DataCategory.PROFILE_UI, s.profile_ui_quantity, found_limits.longest()
            ).with_outcome_category(DataCategory.PROFILE)
            profile_limits.merge(found_limits)
        # The indexed category is never checked, so the per-platform outcomes also count as
        # indexed profiles.
        e.profiles_backend = e.profiles_backend.with_outcome_category(DataCategory.PROFILE_INDEXED)
        e.profiles_ui = e.profiles_ui.with_outcome_category(DataCategory.PROFILE_INDEXED)
    else:
        e.profiles_backend = CategoryLimit.new(
            DataCategory.PROFILE_BACKEND, s.profile_backend_quantity, profile_limits.longest()
        )
        e.profiles_ui = CategoryLimit.new(
            DataCategory.PROFILE_UI, s.profile_ui_quantity, profile_limits.longest()
        )
        e.profiles_indexed = e.profiles.clone_for(DataCategory.PROFILE_INDEXED, s.profile_quantity)
    e.rate_limits.merge(profile_limits)


def check_envelope_cached(
    envelope: Envelope,
    scoping: Scoping,
    cache: RateLimits | CachedRateLimits,
    quotas: Iterable[Quota] = (),
    *,
    event_category: DataCategory | None = None,
    now: float | None = None,
) -> Enforcement:
    """The fast-path verdict: cached limits and ``limit: 0`` quotas only, nothing counted.

    Apply it with :meth:`Enforcement.apply`; answer 429 if ``rate_limits.is_limited()``.
    """
    limits = cache.current(now) if isinstance(cache, CachedRateLimits) else cache
    plan = plan_envelope(envelope, event_category)
    return enforce(plan, plan.evaluate_cached(scoping, limits, quotas, now))
